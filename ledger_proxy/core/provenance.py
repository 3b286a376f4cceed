"""Pure classification: one Canvas enrollment + the ledger + SIS evidence -> a verdict (no Flask).

The verdicts, strongest evidence first:

- ``integration``: the ledger saw Canvas create the row for a request through the proxy; or
  Canvas's own ``enrollment_created`` Live Event names a request id (X-Request-Context-Id)
  that the proxy recorded for a request it forwarded ("confirmed by Canvas").
- ``sis``: Canvas shows an ``sis_import_id`` (an SIS import made or last claimed the row), or
  the row matches the institution's SIS roster, or a Live Event shows the SIS importer's job
  made the row (stronger than ``sis_import_id`` alone, and it needs no SIS fields: it turns an
  ``unknown`` into ``sis``), and the ledger does not say the proxy made it. A stored
  ``sis_batch_created`` for the row's import names who uploaded it (``SisUpload``).
- ``pending``: a request through the proxy may have made it, but its outcome is not settled yet.
- ``unknown``: not seen by the proxy, and Canvas hid the SIS fields from the caller, so an SIS
  origin can be neither shown nor ruled out (never a false ``manual``); a Live Event that
  names a person is quoted in the reason, but a later SIS claim still cannot be ruled out.
- ``ambiguous``: reconciliation found the row made while a request through the proxy was in
  flight whose answer was lost, but something else (an SIS import running then) could have
  made it too: never credited to the integration.
- ``manual``: everything else: made by hand in the web UI, by a script bypassing the proxy, or
  made by hand and later re-enrolled (adopted) through the proxy. With a Live Event the
  reason names who and how (``ActorEvidence``); without one it says only "not the proxy".

A Live Event never overrides what the ledger saw, and only an ``enrollment_created`` says who
*made* a row: an ``enrollment_updated`` (Canvas reuses a row on re-enrollment) says who last
re-enrolled or changed it, and is worded so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .live_events import VIAS
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
class SisUpload:
    """Who uploaded an SIS import, from its `sis_batch_created` Live Event."""

    sis_batch_id: int
    user_id: int | None
    real_user_id: int | None
    developer_key_id: str | None


@dataclass(frozen=True)
class ActorEvidence:
    """What Canvas's Live Events say about who made the row (core/live_events.actor_event)."""

    via: str | None  # ui, api, sis, self, canvas (core/live_events.derive_via); None: unsaid
    user_id: int | None
    name: str | None
    real_user_id: int | None
    developer_key_id: str | None
    request_id: str | None
    event_time: datetime | None
    created: bool  # an enrollment_created (else the earliest enrollment_updated)
    proxied: bool  # request_id is one the proxy recorded for a request it forwarded


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
    actor: ActorEvidence | None = None
    sis_upload: SisUpload | None = None
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


def _person(actor: ActorEvidence) -> str:
    who = f"user {actor.user_id}" if actor.name is None else f"{actor.name} (user {actor.user_id})"
    if actor.real_user_id is not None and actor.real_user_id != actor.user_id:
        who += f", as admin user {actor.real_user_id} acting as them"
    return who


def described(actor: ActorEvidence) -> str:
    """How Canvas's Live Event says the row was made: "added in the web UI by Terry Teacher
    (user 2) on 2026-09-03", "added through the API by user 9 with developer key ...". """
    verb = "added" if actor.created else "re-enrolled or changed"
    when = f" on {_day(actor.event_time)}" if actor.event_time else ""
    if actor.via == "sis":
        return f"{verb} by the SIS importer's job{when}"
    if actor.via == "canvas":
        cause = f" of a request by {_person(actor)}" if actor.user_id is not None else ""
        return f"{verb} by Canvas itself{when}, as a side effect{cause}"
    if actor.user_id is None:
        return f"{verb}{when} (the Live Event names no user)"
    if actor.via == "self":
        return f"self-enrolled by {_person(actor)}{when}"
    if actor.via == "api":
        key = (
            f" with developer key {actor.developer_key_id}" if actor.developer_key_id else ""
        )
        return f"{verb} through the API by {_person(actor)}{key}{when}"
    return f"{verb} in the web UI by {_person(actor)}{when}"


def _confirmed(actor: ActorEvidence) -> str:
    when = f" on {_day(actor.event_time)}" if actor.event_time else ""
    return f"confirmed by Canvas: request {actor.request_id} made it{when}"


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
    actor = evidence.actor
    if actor is not None and actor.via == SIS:
        when = f" on {_day(actor.event_time)}" if actor.event_time else ""
        verb = "made" if actor.created else "re-enrolled or changed"
        parts.append(f"confirmed by Canvas: the SIS importer's job {verb} it{when}")
    reason = "made by SIS: " + " and ".join(parts)
    if actor is not None and actor.via != SIS and actor.created:
        reason += f"; Canvas's Live Event says it was first {described(actor)}"
    upload = evidence.sis_upload
    if upload is not None and upload.user_id is not None:
        who = f"user {upload.user_id}"
        if upload.real_user_id is not None and upload.real_user_id != upload.user_id:
            who += f", as admin user {upload.real_user_id} acting as them"
        key = f" with developer key {upload.developer_key_id}" if upload.developer_key_id else ""
        reason += f"; Canvas's Live Event says {who} uploaded SIS import {upload.sis_batch_id}{key}"
    job = evidence.sis_import
    if job is not None:
        reason += (
            f"; SIS import {job.job_id} was submitted through the proxy by "
            f"{_who(job.integration, job.actor_user_id)}"
        )
    return reason


def classify(evidence: Evidence) -> Verdict:
    record = evidence.ledger
    actor = evidence.actor
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
        if actor is not None and actor.created and actor.proxied:
            reason += f"; {_confirmed(actor)}"
        elif actor is not None and actor.created:
            reason += f"; but Canvas's Live Event says it was {described(actor)}"
        return Verdict(INTEGRATION, reason, False)
    if actor is not None and actor.created and actor.proxied:
        # Canvas's own word that a request the proxy forwarded made the row, even though the
        # ledger holds no `created` for it (its answer was lost, or it was seen as adopted).
        reason = f"{_confirmed(actor)}, a request the proxy forwarded"
        if actor.via == "canvas":
            reason += ", as Canvas's side effect (e.g. a linked observer's enrollment)"
        if record is not None:
            reason += (
                f"; the ledger recorded it {record.origin_action} by "
                f"{_record_who(record)} on {_day(record.recorded_at)}"
            )
        return Verdict(INTEGRATION, reason, False)
    if record is not None and record.origin_action == AMBIGUOUS:
        return Verdict(
            AMBIGUOUS,
            f"made while request {record.request_id} of "
            f"{_record_who(record)} was in flight with its answer "
            "lost, but another explanation fits too (see the request's evidence): not credited "
            "to the integration",
            old,
        )
    by_sis_job = actor is not None and actor.via == SIS
    if sis_marked or by_sis_job:
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
    said = f"Canvas's Live Event says it was {described(actor)}" if actor is not None else None
    if not evidence.sis_visible and evidence.in_sis_roster is None:
        return Verdict(
            UNKNOWN,
            f"not made through the proxy{'; ' + seen if seen else ''}"
            f"{'; ' + said if said else ''}; Canvas hid the SIS "
            "fields from this caller, so an SIS origin cannot be ruled out (ask with an admin "
            "token, or set LEDGER_PROXY_SIS_READER_TOKEN)",
            old,
        )
    if actor is not None:
        reason = described(actor)
        if actor.via == "api":
            reason += ", bypassing the proxy"
        return Verdict(MANUAL, reason + (f"; {seen}" if seen else ""), old)
    if seen:
        return Verdict(MANUAL, f"neither made through the proxy nor by SIS: {seen}", old)
    reason = "neither made through the proxy nor by SIS: added by hand or by a script bypassing it"
    if old:
        reason += "; it predates the ledger, so this only means the proxy never saw it"
    return Verdict(MANUAL, reason, old)


NO_ACTOR = "none"


def summary(verdicts: list[Any]) -> dict[str, Any]:
    """Counts per verdict, and per ``via`` of the manual rows' actors (``none``: no Live
    Event names one). Each item is a verdict, or (verdict, via)."""
    counts: dict[str, Any] = {verdict: 0 for verdict in VERDICTS}
    manual_via = dict.fromkeys((*VIAS, NO_ACTOR), 0)
    for item in verdicts:
        verdict, via = item if isinstance(item, tuple) else (item, None)
        counts[verdict] += 1
        if verdict == MANUAL:
            manual_via[via if via in manual_via else NO_ACTOR] += 1
    counts["total"] = len(verdicts)
    counts["manual_via"] = manual_via
    return counts


def canvas_sis_ids(enrollment: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(sis_user_id, sis_course_id, sis_section_id) as Canvas returned them, if it did."""
    user = enrollment.get("user") if isinstance(enrollment.get("user"), dict) else {}
    sis_user_id = enrollment.get("sis_user_id") or (user or {}).get("sis_user_id")
    return sis_user_id, enrollment.get("sis_course_id"), enrollment.get("sis_section_id")
