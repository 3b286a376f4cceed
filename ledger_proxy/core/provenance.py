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

Live Events and that rule: Canvas's own word about the observer row is stronger evidence than
the timing inference, so it is asked first (`made_in`, `_decided_by_canvas`).

- The row's ``enrollment_created`` names a request the proxy forwarded (``proxied``; a linked
  observer's row then reads ``via: canvas``), or the SIS importer's job: the ladder decides by
  that event alone (``integration`` confirmed by Canvas, or ``sis``), whatever the timing says
  and even when Canvas hides the student's enrollments from the caller. The row still follows
  (``follows``, the lookup's ``linked_to``) the student enrollment Canvas made in that same
  request (or that the proxy restored in it), when there is one; never one found by timing (a
  job names no request, so the SIS importer's row follows none).
- Otherwise, when the row's ``enrollment_created`` names a request: the student enrollment made
  in that same request (its own ``enrollment_created``, or Canvas's answer to the proxy's create
  of it, ``LedgerRecord.canvas_request_id``) is the cause, whatever the clocks say; a student
  enrollment Canvas says another request made is never the cause, even within the allowance;
  one whose request is not known is matched by timing, as without Live Events. A restore
  through the proxy is not the cause either: Canvas says a request the proxy did not forward
  made the row.
- Without a Live Event that names a request (none stored, only an ``enrollment_updated``, or a
  job other than the SIS importer's), the timing rule above stands alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from .live_events import VIAS
from .vocab import (  # noqa: F401
    ACTION_BY_KIND,
    ADOPTED,
    AMBIGUOUS,
    CREATED,
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
    link: ObserverLink | None = None  # for an ObserverEnrollment with an associated user
    # The provisioning report's created_by_sis: an SIS batch last claimed the row (§2.2), where
    # a listing shows its sis_import_id (core/account_audit.py); None from a listing.
    created_by_sis: bool | None = None


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
    request_id: str | None = None  # Canvas's request id (X-Request-Context-Id) in its answer


@dataclass(frozen=True)
class LinkedStudent:
    """One StudentEnrollment of the observed user in the observer row's section, as Canvas
    listed it, with the verdict that row got, the proxy's later changes to it and what
    Canvas's Live Events say of who made it."""

    enrollment_id: int
    created_at: datetime | None
    verdict: Verdict
    ledger: LedgerRecord | None
    changes: tuple[ProxyChange, ...] = ()
    actor: ActorEvidence | None = None


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


def judge(evidence: Evidence) -> Verdict:
    """`classify`, after asking whether Canvas made the row itself following another row (and
    first what Canvas's own Live Event of the row says of that: see the module's docstring)."""
    linked = linked_verdict(evidence)
    if linked is not None:
        return linked
    verdict = classify(evidence)
    note = unlinked_note(evidence)
    return replace(verdict, reason=verdict.reason + note) if note else verdict


def _own_create(evidence: Evidence) -> bool:
    return evidence.ledger is not None and evidence.ledger.origin_action == CREATED


def made_in(student: LinkedStudent) -> str | None:
    """The Canvas request (X-Request-Context-Id) that made this student enrollment, as Canvas
    said it: its own ``enrollment_created`` Live Event, else Canvas's answer to the proxy's
    create of it; None when neither says."""
    actor = student.actor
    if actor is not None and actor.created and actor.request_id:
        return actor.request_id
    record = student.ledger
    if record is not None and record.origin_action == CREATED:
        return record.canvas_request_id
    return None


def _row_request(evidence: Evidence) -> str | None:
    """The Canvas request that made this row, by its own ``enrollment_created`` Live Event."""
    actor = evidence.actor
    return actor.request_id if actor is not None and actor.created and actor.request_id else None


def _decided_by_canvas(evidence: Evidence) -> bool:
    """Does the row's own ``enrollment_created`` decide its verdict by itself: it names a request
    the proxy forwarded, or the SIS importer's job (Canvas's word, stronger than any timing)?"""
    actor = evidence.actor
    return actor is not None and actor.created and (actor.proxied or actor.via == SIS)


def made_with(evidence: Evidence) -> LinkedStudent | None:
    """The student enrollment this observer row was made with: the one Canvas says was made in
    the same request as the row (`made_in`); else, of those Canvas does not say another request
    made, the one created within the allowance of the row (Canvas makes both in one request);
    the nearest when several are."""
    link = evidence.link
    if link is None or not link.students:
        return None
    request = _row_request(evidence)
    if request is not None:
        same = [student for student in link.students if made_in(student) == request]
        if same:
            return same[0]
    if evidence.created_at is None:
        return None
    created_at = evidence.created_at
    near = [
        (abs(student.created_at - created_at), student)
        for student in link.students
        if student.created_at is not None
        and abs(student.created_at - created_at) <= evidence.allowance
        and (request is None or made_in(student) is None)
    ]
    return min(near, key=lambda pair: pair[0])[1] if near else None


def linked_verdict(evidence: Evidence) -> Verdict | None:
    """The verdict of a row Canvas made for a linked observer, from its cause; None when the row
    is not one (or the proxy saw it made by a request of its own). A row whose own Live Event
    decides its verdict (`_decided_by_canvas`) gets that verdict, following its cause only when
    Canvas made both in one request."""
    link = evidence.link
    if link is None or _own_create(evidence):
        return None
    if _decided_by_canvas(evidence):
        return _canvas_decided(evidence, link)
    if link.students is None:
        said = (
            f"; Canvas's Live Event says it was {described(evidence.actor)}"
            if evidence.actor is not None
            else ""
        )
        return Verdict(
            UNKNOWN,
            f"an observer row for {link.observer}, observing {link.student}, that Canvas makes "
            "by itself when a linked observer's student is enrolled; Canvas did not show this "
            f"caller {link.student}'s enrollments, so whether it made this row cannot be "
            f"told{said}",
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
    request = _row_request(evidence)
    if request is not None and made_in(cause) == request:
        reason += (
            f"; Canvas's Live Events say request {request} made both: this row is that "
            "request's side effect"
        )
    if evidence.sis_import_id is not None and verdict.provenance != SIS:
        reason += (
            f"; Canvas now shows sis_import_id {evidence.sis_import_id} on this row: a later SIS "
            "import claimed it, which does not make SIS its creator"
        )
    return Verdict(verdict.provenance, reason, verdict.predates_ledger, cause.enrollment_id)


def _canvas_decided(evidence: Evidence, link: ObserverLink) -> Verdict:
    """A linked observer's row whose own Live Event decides it: the ladder's verdict from that
    event, following the student enrollment Canvas made (or the proxy restored) in the same
    request, if any; never one matched only by timing."""
    verdict = classify(evidence)
    request = _row_request(evidence)
    students = link.students or ()
    if request is None:
        return verdict
    for student in students:
        if made_in(student) == request:
            by = (
                f", which {_record_who(student.ledger)} created through the proxy"
                if student.ledger is not None and student.ledger.origin_action == CREATED
                else ""
            )
            return Verdict(
                verdict.provenance,
                f"{verdict.reason}; made by Canvas for observer {link.observer}, following "
                f"student {link.student}'s enrollment {student.enrollment_id}{by} in that same "
                "request",
                verdict.predates_ledger,
                student.enrollment_id,
            )
    for student in students:
        for change in student.changes:
            if change.action in RESTORING and change.request_id == request:
                return Verdict(
                    verdict.provenance,
                    f"{verdict.reason}; made by Canvas for observer {link.observer} when "
                    f"{_who(change.integration, change.actor_user_id)} {change.action} student "
                    f"{link.student}'s enrollment {student.enrollment_id} in that same request "
                    "(Canvas makes a linked observer's row when the student's row is restored)",
                    verdict.predates_ledger,
                    student.enrollment_id,
                )
    return verdict


# The changes through the proxy that can restore a student's row (from deleted, inactive or
# completed), after which Canvas makes the rows of its linked observers.
RESTORING = (ADOPTED, ACTION_BY_KIND["enrollment_reactivate"])


def restored_with(evidence: Evidence) -> Verdict | None:
    """An observer row Canvas made when a request through the proxy restored (re-enrolled,
    reactivated) the student's row: Canvas then makes the rows of observers linked since. Not
    when the row's own Live Event names a request the proxy did not forward."""
    link = evidence.link
    if link is None or not link.students or evidence.created_at is None:
        return None
    if _row_request(evidence) is not None and not (evidence.actor and evidence.actor.proxied):
        return None  # Canvas says another request made it
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
    if _decided_by_canvas(evidence):
        return ""  # Canvas's own event says what made it (`_canvas_decided`)
    if not link.students:
        return (
            f"; it observes {link.student}, who has no StudentEnrollment in this section, so "
            "Canvas did not make it as a linked observer's row"
        )
    made = ", ".join(
        f"{student.enrollment_id} at {_moment(student.created_at)}{_in(made_in(student))}"
        for student in link.students
    )
    return (
        f"; it observes {link.student}, but was made at {_moment(evidence.created_at)}"
        f"{_in(_row_request(evidence))}, not with their enrollment in this section ({made}): "
        "an observer added by hand or linked later, not Canvas's row made with that enrollment"
    )


def _in(request: str | None) -> str:
    return f" in request {request}" if request else ""


def _moment(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else "an unknown time"


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
