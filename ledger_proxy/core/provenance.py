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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .vocab import AMBIGUOUS, INTEGRATION, MANUAL, PENDING, SIS, UNKNOWN, VERDICTS  # noqa: F401


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
    # The provisioning report's created_by_sis: an SIS batch last claimed the row (§2.2), where
    # a listing shows its sis_import_id (core/account_audit.py); None from a listing.
    created_by_sis: bool | None = None


@dataclass(frozen=True)
class Verdict:
    provenance: str
    reason: str
    predates_ledger: bool


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
    if evidence.created_by_sis and evidence.sis_import_id is None:
        parts.append("Canvas's provisioning report marks it created_by_sis")
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
    sis_claimed = evidence.sis_import_id is not None or bool(evidence.created_by_sis)
    sis_marked = sis_claimed or bool(evidence.in_sis_roster)
    if record is not None and record.origin_action == "created":
        reason = (
            f"created through the proxy by {_record_who(record)} "
            f"on {_day(record.recorded_at)}"
        )
        if sis_claimed:
            # sis_import_id only says an SIS batch last claimed the row; the proxy saw it made.
            shown = (
                f"sis_import_id {evidence.sis_import_id}"
                if evidence.sis_import_id is not None
                else "created_by_sis in its provisioning report"
            )
            reason += (
                f"; Canvas now shows {shown}: a later SIS import "
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
