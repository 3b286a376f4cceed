"""The ledger's words, defined once: request statuses, actions, enrollment states, verdicts."""

from __future__ import annotations

# Request statuses. 'pending': forwarded, outcome not yet written (the proxy may have died);
# 'unknown': Canvas's answer was lost or was a 5xx, so Canvas may have acted; both wait for
# reconciliation. 'completed' and 'failed' are settled.
PENDING, COMPLETED, FAILED, UNKNOWN = "pending", "completed", "failed", "unknown"
UNSETTLED = (PENDING, UNKNOWN)

# Enrollment states Canvas lists. A listing asks for each explicitly: Canvas's default leaves
# out completed and rejected, and deleted only when asked for.
LISTED_STATES = ("active", "invited", "creation_pending", "inactive", "completed", "rejected")
ALL_STATES = (*LISTED_STATES, "deleted")

# Actions of events. A create records `created` when Canvas made the row for the request,
# `adopted` when the row already existed (a re-enrollment).
CREATED, ADOPTED = "created", "adopted"
# The action an enrollment-changing request's kind records (creates and deletes are decided
# from Canvas's answer).
ACTION_BY_KIND = {
    "enrollment_reactivate": "reactivated",
    "enrollment_accept": "accepted",
    "enrollment_reject": "rejected",
}
# The state a change of that kind leaves the enrollment in.
STATE_AFTER = {
    "enrollment_reactivate": "active",
    "enrollment_accept": "active",
    "enrollment_reject": "rejected",
}
# DELETE .../enrollments/:id?task=...: the state each task leaves, and the action it records.
STATE_AFTER_TASK = {"delete": "deleted", "inactivate": "inactive", "deactivate": "inactive"}
ACTION_BY_DELETED_STATE = {
    "completed": "concluded",
    "deleted": "deleted",
    "inactive": "deactivated",
}
# A delete whose answer names another state records `updated`.
UPDATED = "updated"
# The action of an event reconciliation records when a row fits more than one explanation
# (this request, or an SIS import running meanwhile): it names the candidate request without
# crediting its integration with the row. The lookup's verdict for such a row has the same name.
AMBIGUOUS = "ambiguous"
ACTIONS = (
    CREATED,
    ADOPTED,
    UPDATED,
    *ACTION_BY_DELETED_STATE.values(),
    *ACTION_BY_KIND.values(),
    AMBIGUOUS,
)

# Verdicts of the lookup, strongest evidence first (core/provenance.py says what each means).
# 'pending' and 'unknown' are the request statuses' words: a request not yet settled.
INTEGRATION, SIS, MANUAL = "integration", "sis", "manual"
VERDICTS = (INTEGRATION, SIS, MANUAL, PENDING, UNKNOWN, AMBIGUOUS)
