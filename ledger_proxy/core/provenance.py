"""Pure classification: one Canvas enrollment + the ledger + SIS evidence -> a verdict (no Flask).

The verdicts, strongest evidence first:

- ``integration``: the ledger saw Canvas create the row for a request through the proxy.
- ``sis``: Canvas shows an ``sis_import_id`` (an SIS import made or last claimed the row), or
  the row matches the institution's SIS roster, and the ledger does not say the proxy made it.
- ``pending``: a request through the proxy may have made it, but its outcome is not settled yet.
- ``unknown``: not seen by the proxy, and Canvas hid the SIS fields from the caller, so an SIS
  origin can be neither shown nor ruled out (never a false ``manual``).
- ``ambiguous``: reconciliation found the row made while a request through the proxy was in
  flight whose answer was lost, but something else (an SIS import running then) could have
  made it too: never credited to the integration.
- ``manual``: everything else: made by hand in the web UI, by a script bypassing the proxy, or
  made by hand and later re-enrolled (adopted) through the proxy.

Before that ladder, `judge` asks whether Canvas made the row by itself (§2.6, §5): an
``ObserverEnrollment`` for a linked observer, made with the StudentEnrollment it follows (same
associated user, same section, created within the clock allowance of that enrollment). Such a
row takes the verdict of the student's enrollment, its cause (``integration`` when the proxy saw
that enrollment made); ``unknown`` when Canvas did not show the caller the student's
enrollments. An observer row made when a request through the proxy restored the student's row
(within the allowance of Canvas's answer to it) is ``integration`` by that request. An observer
row made at any other time (added by hand, or linked later) is judged by the ladder on its own.
Rows that cross-listing or a user merge moved keep their ids, so the ledger still finds them by
id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from .vocab import (  # noqa: F401
    ACTION_BY_KIND,
    ADOPTED,
    AMBIGUOUS,
    INTEGRATION,
    MANUAL,
    PENDING,
    SIS,
    UNKNOWN,
    VERDICTS,
)


@dataclass(frozen=True)
class LedgerRecord:
    """What the ledger knows of one enrollment (its current view)."""

    origin_action: str  # created, adopted, or the first change seen (deleted, ...)
    integration: str | None
    actor_user_id: int | None
    recorded_at: datetime
    canvas_request_id: str | None
    request_id: str
    last_action: str
    acting_as_user_id: int | None = None  # the user Canvas acted as (as_user_id), if another
    label_verified: bool | None = None  # None: no integration registry, the label is self-declared


@dataclass(frozen=True)
class SisImportRecord:
    """An SIS import submitted through the proxy: who sent the job that claimed the row."""

    job_id: int
    integration: str | None
    actor_user_id: int | None


@dataclass(frozen=True)
class Evidence:
    ledger: LedgerRecord | None
    sis_visible: bool  # did Canvas show this caller the SIS fields (sis_import_id)?
    sis_import_id: int | None
    in_sis_roster: bool | None  # None: no roster loaded, or no SIS ids to match on
    created_at: datetime | None
    recording_since: datetime | None
    allowance: timedelta
    pending_request_id: str | None = None
    sis_import: SisImportRecord | None = None
    link: ObserverLink | None = None  # for an ObserverEnrollment with an associated user


@dataclass(frozen=True)
class Verdict:
    provenance: str
    reason: str
    predates_ledger: bool
    follows: int | None = None  # the student enrollment a linked observer row follows


@dataclass(frozen=True)
class ProxyChange:
    """A request through the proxy that changed an existing enrollment (the ledger's event)."""

    action: str  # adopted, reactivated, accepted, ...
    integration: str | None
    actor_user_id: int | None
    at: datetime  # Canvas's updated_at in its answer, else when the proxy recorded it


@dataclass(frozen=True)
class LinkedStudent:
    """One StudentEnrollment of the observed user in the observer row's section, as Canvas
    listed it, with the verdict that row got and the proxy's later changes to it."""

    enrollment_id: int
    created_at: datetime | None
    verdict: Verdict
    ledger: LedgerRecord | None
    changes: tuple[ProxyChange, ...] = ()


@dataclass(frozen=True)
class ObserverLink:
    """What bears on whether Canvas made an ObserverEnrollment itself, for a linked observer."""

    observer: str  # "user 12 (Pat Parent)"
    student_id: int  # the row's associated_user_id
    student: str
    # The student's StudentEnrollments in the row's section; None: Canvas did not show them.
    students: tuple[LinkedStudent, ...] | None


def _who(
    integration: str | None,
    actor_user_id: int | None,
    acting_as_user_id: int | None = None,
    label_verified: bool | None = None,
) -> str:
    name = integration or "an unlabelled integration"
    if integration and label_verified is False:
        name += " (a label not registered for this user)"
    if actor_user_id is None:
        return name
    if acting_as_user_id is not None:
        return f"{name} (admin user {actor_user_id} acting as user {acting_as_user_id})"
    return f"{name} (user {actor_user_id})"


def _record_who(record: LedgerRecord) -> str:
    return _who(
        record.integration, record.actor_user_id, record.acting_as_user_id, record.label_verified
    )


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def predates(evidence: Evidence) -> bool:
    """Created before the ledger began recording (so 'not seen' says little)."""
    if evidence.created_at is None or evidence.recording_since is None:
        return False
    return evidence.created_at + evidence.allowance < evidence.recording_since


def _sis_reason(evidence: Evidence) -> str:
    parts = []
    if evidence.sis_import_id is not None:
        parts.append(f"Canvas shows sis_import_id {evidence.sis_import_id}")
    if evidence.in_sis_roster:
        parts.append("it matches the institution's SIS roster")
    reason = "made by SIS: " + " and ".join(parts)
    job = evidence.sis_import
    if job is not None:
        reason += (
            f"; SIS import {job.job_id} was submitted through the proxy by "
            f"{_who(job.integration, job.actor_user_id)}"
        )
    return reason


def classify(evidence: Evidence) -> Verdict:
    record = evidence.ledger
    old = predates(evidence)
    sis_marked = evidence.sis_import_id is not None or bool(evidence.in_sis_roster)
    if record is not None and record.origin_action == "created":
        reason = (
            f"created through the proxy by {_record_who(record)} "
            f"on {_day(record.recorded_at)}"
        )
        if evidence.sis_import_id is not None:
            # sis_import_id only says an SIS batch last claimed the row; the proxy saw it made.
            reason += (
                f"; Canvas now shows sis_import_id {evidence.sis_import_id}: a later SIS import "
                "claimed it, which does not make SIS its creator"
            )
        return Verdict(INTEGRATION, reason, False)
    if record is not None and record.origin_action == AMBIGUOUS:
        return Verdict(
            AMBIGUOUS,
            f"made while request {record.request_id} of "
            f"{_who(record.integration, record.actor_user_id)} was in flight with its answer "
            "lost, but another explanation fits too (see the request's evidence): not credited "
            "to the integration",
            old,
        )
    if sis_marked:
        reason = _sis_reason(evidence)
        if record is not None:
            reason += (
                f"; the proxy only saw it {record.origin_action} by "
                f"{_record_who(record)} on {_day(record.recorded_at)}"
            )
        return Verdict(SIS, reason, old)
    if evidence.pending_request_id is not None:  # (a row the proxy saw made is settled above)
        return Verdict(
            PENDING,
            f"request {evidence.pending_request_id} through the proxy may have made it; its "
            "outcome is not settled yet (see `ledger-proxy reconcile`)",
            old,
        )
    seen = (
        f"it already existed when {_record_who(record)} "
        f"{record.origin_action} it through the proxy on {_day(record.recorded_at)}"
        if record is not None
        else None
    )
    if not evidence.sis_visible and evidence.in_sis_roster is None:
        return Verdict(
            UNKNOWN,
            f"not made through the proxy{'; ' + seen if seen else ''}; Canvas hid the SIS "
            "fields from this caller, so an SIS origin cannot be ruled out (ask with an admin "
            "token, or set LEDGER_PROXY_SIS_READER_TOKEN)",
            old,
        )
    if seen:
        return Verdict(MANUAL, f"neither made through the proxy nor by SIS: {seen}", old)
    reason = "neither made through the proxy nor by SIS: added by hand or by a script bypassing it"
    if old:
        reason += "; it predates the ledger, so this only means the proxy never saw it"
    return Verdict(MANUAL, reason, old)


def judge(evidence: Evidence) -> Verdict:
    """`classify`, after asking whether Canvas made the row itself following another row."""
    linked = linked_verdict(evidence)
    if linked is not None:
        return linked
    verdict = classify(evidence)
    note = unlinked_note(evidence)
    return replace(verdict, reason=verdict.reason + note) if note else verdict


def _own_create(evidence: Evidence) -> bool:
    return evidence.ledger is not None and evidence.ledger.origin_action == "created"


def made_with(evidence: Evidence) -> LinkedStudent | None:
    """The student enrollment this observer row was made with: created within the allowance
    of the row (Canvas makes both in one request); the nearest when several are."""
    link = evidence.link
    if link is None or not link.students or evidence.created_at is None:
        return None
    created_at = evidence.created_at
    near = [
        (abs(student.created_at - created_at), student)
        for student in link.students
        if student.created_at is not None
        and abs(student.created_at - created_at) <= evidence.allowance
    ]
    return min(near, key=lambda pair: pair[0])[1] if near else None


def linked_verdict(evidence: Evidence) -> Verdict | None:
    """The verdict of a row Canvas made for a linked observer, from its cause; None when the row
    is not one (or the proxy saw it made by a request of its own)."""
    link = evidence.link
    if link is None or _own_create(evidence):
        return None
    if link.students is None:
        return Verdict(
            UNKNOWN,
            f"an observer row for {link.observer}, observing {link.student}, that Canvas makes "
            "by itself when a linked observer's student is enrolled; Canvas did not show this "
            f"caller {link.student}'s enrollments, so whether it made this row cannot be told",
            predates(evidence),
        )
    cause = made_with(evidence)
    if cause is None:
        return restored_with(evidence)
    head = (
        f"made by Canvas for observer {link.observer}, following student {link.student}'s "
        f"enrollment {cause.enrollment_id}"
    )
    verdict = cause.verdict
    if verdict.provenance == INTEGRATION and cause.ledger is not None:
        record = cause.ledger
        reason = (
            f"{head} that {_record_who(record)} created through the proxy on "
            f"{_day(record.recorded_at)}"
        )
    else:
        reason = f"{head}, which is {verdict.provenance}: {verdict.reason}"
    if evidence.sis_import_id is not None and verdict.provenance != SIS:
        reason += (
            f"; Canvas now shows sis_import_id {evidence.sis_import_id} on this row: a later SIS "
            "import claimed it, which does not make SIS its creator"
        )
    return Verdict(verdict.provenance, reason, verdict.predates_ledger, cause.enrollment_id)


# The changes through the proxy that can restore a student's row (from deleted, inactive or
# completed), after which Canvas makes the rows of its linked observers.
RESTORING = (ADOPTED, ACTION_BY_KIND["enrollment_reactivate"])


def restored_with(evidence: Evidence) -> Verdict | None:
    """An observer row Canvas made when a request through the proxy restored (re-enrolled,
    reactivated) the student's row: Canvas then makes the rows of observers linked since."""
    link = evidence.link
    if link is None or not link.students or evidence.created_at is None:
        return None
    created_at = evidence.created_at
    near = [
        (abs(change.at - created_at), student, change)
        for student in link.students
        for change in student.changes
        if change.action in RESTORING and abs(change.at - created_at) <= evidence.allowance
    ]
    if not near:
        return None
    _, student, change = min(near, key=lambda item: item[0])
    return Verdict(
        INTEGRATION,
        f"made by Canvas for observer {link.observer} when "
        f"{_who(change.integration, change.actor_user_id)} {change.action} student "
        f"{link.student}'s enrollment {student.enrollment_id} through the proxy on "
        f"{_day(change.at)} (Canvas makes a linked observer's row when the student's row is "
        "restored)",
        False,
        student.enrollment_id,
    )


def unlinked_note(evidence: Evidence) -> str:
    """Why an observer row of a linked kind was not taken as Canvas's side effect."""
    link = evidence.link
    if link is None or link.students is None or _own_create(evidence):
        return ""
    if not link.students:
        return (
            f"; it observes {link.student}, who has no StudentEnrollment in this section, so "
            "Canvas did not make it as a linked observer's row"
        )
    made = ", ".join(
        f"{student.enrollment_id} at {_moment(student.created_at)}" for student in link.students
    )
    return (
        f"; it observes {link.student}, but was made at {_moment(evidence.created_at)}, not "
        f"with their enrollment in this section ({made}): an observer added by hand or linked "
        "later, not Canvas's row made with that enrollment"
    )


def _moment(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else "an unknown time"


def summary(verdicts: list[str]) -> dict[str, int]:
    counts = {verdict: 0 for verdict in VERDICTS}
    for verdict in verdicts:
        counts[verdict] += 1
    counts["total"] = len(verdicts)
    return counts


def canvas_sis_ids(enrollment: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(sis_user_id, sis_course_id, sis_section_id) as Canvas returned them, if it did."""
    user = enrollment.get("user") if isinstance(enrollment.get("user"), dict) else {}
    sis_user_id = enrollment.get("sis_user_id") or (user or {}).get("sis_user_id")
    return sis_user_id, enrollment.get("sis_course_id"), enrollment.get("sis_section_id")
