"""The provenance lookup: a course's (or section's) enrollments from Canvas, each with a verdict.

`run` and `judged` compose it from explicit sources (the ledger handle, the Canvas client, the
caller's token, the query, an optional SIS reader token, the clock allowance); the HTTP
endpoint, the dashboard and `ledger-proxy audit` all call them. No Flask imports.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlite_utils

from ..upstream.canvas import CanvasClient, CanvasRefused, enrollments_target
from . import ledger, live_store, provenance
from .live_events import actor_json, derive_via
from .provenance import (
    ActorEvidence,
    Evidence,
    LedgerRecord,
    LinkedStudent,
    ObserverLink,
    ProxyChange,
    SisImportRecord,
    SisUpload,
)
from .sis_roster import Roster
from .util import as_int, parse_time
from .vocab import ADOPTED, ALL_STATES, AMBIGUOUS, CREATED, LISTED_STATES

PAGE_SIZE = 100
PENDING_MARGIN = timedelta(minutes=5)

# What the lookup repeats of Canvas's Enrollment, as Canvas gave it.
CANVAS_FIELDS = (
    "id",
    "user_id",
    "course_id",
    "course_section_id",
    "type",
    "role",
    "role_id",
    "enrollment_state",
    "created_at",
    "updated_at",
    "sis_import_id",
    "sis_user_id",
    "sis_course_id",
    "sis_section_id",
)


@dataclass(frozen=True)
class Query:
    scope: str  # courses or sections
    scope_id: str  # as the caller named it: 517, sis_course_id:BIO-101, ...
    include_deleted: bool = False
    provenance: str | None = None  # keep only this verdict

    def canvas_target(self) -> str:
        states = ALL_STATES if self.include_deleted else LISTED_STATES
        return enrollments_target(self.scope, self.scope_id, states, per_page=PAGE_SIZE)


def run(
    db: sqlite_utils.Database,
    canvas: CanvasClient,
    token: str,
    query: Query,
    *,
    sis_reader: str | None,
    allowance: timedelta,
    on_page: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The whole lookup: Canvas with the caller's token, then the ledger; rows and summary."""
    verdicts: list[Any] = []
    rows = judged(
        db, canvas, token, query, verdicts, sis_reader=sis_reader, allowance=allowance,
        on_page=on_page,
    )  # fmt: skip
    enrollments = [item for page in rows for item in page]
    return {"enrollments": enrollments, "summary": provenance.summary(verdicts)}


def judged(
    db: sqlite_utils.Database,
    canvas: CanvasClient,
    token: str,
    query: Query,
    verdicts: list[Any],
    *,
    sis_reader: str | None,
    allowance: timedelta,
    on_page: Callable[[int], None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The lookup's rows page by page, each judged while Canvas serves the next (with a SIS
    reader token, once both listings are in: whether it is needed shows only at the end).
    Every (verdict, actor's via), kept by the query's filter or not, is appended to `verdicts`."""
    pages_: Iterable[list[dict[str, Any]]]
    gate = threading.Lock()  # one request to Canvas at a time, the cause reads included
    if sis_reader:
        rows = fetch(canvas, token, query, on_page)
        if any("sis_import_id" not in row for row in rows):
            add_sis_fields(rows, fetch(canvas, sis_reader, query))
        pages_ = [rows]
    else:
        pages_ = counted(prefetched(one_at_a_time(pages(canvas, token, query), gate)), on_page)
    return judge_pages(
        db,
        pages_,
        verdicts,
        allowance=allowance,
        provenance_filter=query.provenance,
        students=student_rows(canvas, token, sis_reader, gate),
    )


StudentRows = Callable[[int, int], "list[dict[str, Any]] | None"]
OBSERVER, STUDENT = "ObserverEnrollment", "StudentEnrollment"


def student_rows(
    canvas: CanvasClient, token: str, sis_reader: str | None, gate: threading.Lock
) -> StudentRows:
    """(course id, user id) -> that user's StudentEnrollments in the course as Canvas shows
    them to the caller (every state; SIS fields from the reader token when the caller's lack
    them), or None when Canvas refused: the causes a linked observer's row may follow."""

    def read(course_id: int, user_id: int) -> list[dict[str, Any]] | None:
        target = enrollments_target("courses", str(course_id), ALL_STATES, user_ref=str(user_id))
        with gate:
            return _student_rows(canvas, target, token, sis_reader)

    return read


def _student_rows(
    canvas: CanvasClient, target: str, token: str, sis_reader: str | None
) -> list[dict[str, Any]] | None:
    try:
        rows = [
            row
            for page in canvas.pages(target, token)
            for row in page
            if isinstance(row, dict) and row.get("type") == STUDENT
        ]
        if sis_reader and any("sis_import_id" not in row for row in rows):
            add_sis_fields(rows, [r for page in canvas.pages(target, sis_reader) for r in page])
    except CanvasRefused:
        return None
    return rows


def fetch(
    canvas: CanvasClient,
    token: str,
    query: Query,
    on_page: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Every enrollment Canvas shows this token, all pages (Canvas authorises the caller)."""
    return [row for page in counted(pages(canvas, token, query), on_page) for row in page]


def pages(canvas: CanvasClient, token: str, query: Query) -> Iterator[list[dict[str, Any]]]:
    """Each page of enrollments Canvas shows this token, one request at a time."""
    for page in canvas.pages(query.canvas_target(), token):
        yield [row for row in page if isinstance(row, dict)]


def counted(
    pages: Iterable[list[dict[str, Any]]], on_page: Callable[[int], None] | None
) -> Iterator[list[dict[str, Any]]]:
    """`pages`, telling `on_page` how many rows have come so far after each one."""
    seen = 0
    for page in pages:
        seen += len(page)
        if on_page:
            on_page(seen)
        yield page


_Item = TypeVar("_Item")
_DONE: Any = object()


def prefetched(items: Iterator[_Item]) -> Iterator[_Item]:
    """`items`, fetched ahead in a helper thread while the caller works on those before.

    Canvas takes longer to serve a page than the proxy takes to judge and encode one, so the
    proxy's own work hides in that wait: the helper asks for the next page as soon as it has
    read one. Still one request to Canvas at a time (its throttling counts concurrent
    requests); an error from Canvas is raised here, after the pages before it.
    """
    ready: queue.SimpleQueue[tuple[Any, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()

    def read_ahead() -> None:
        error: BaseException | None = None
        try:
            for item in items:
                ready.put((item, None))
                if stop.is_set():
                    return
        except BaseException as exc:  # raised in the caller's thread, below
            error = exc
        finally:
            ready.put((_DONE, error))

    threading.Thread(target=read_ahead, name="canvas-pages", daemon=True).start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()  # a caller that stops early costs at most the request in flight


def one_at_a_time(items: Iterator[_Item], gate: threading.Lock) -> Iterator[_Item]:
    """`items`, each fetched holding `gate`, so that a read made while judging waits for the
    page being fetched ahead (and the reverse)."""
    while True:
        with gate:
            item = next(items, _DONE)
        if item is _DONE:
            return
        yield item


def add_sis_fields(rows: list[dict[str, Any]], reader_rows: Iterable[Mapping[str, Any]]) -> None:
    """Copy SIS fields from a SIS-reading token's listing onto the caller's rows (same ids
    only: the caller never sees a row Canvas did not show them)."""
    by_id = {row.get("id"): row for row in reader_rows}
    for row in rows:
        other = by_id.get(row.get("id"))
        if other is not None and "sis_import_id" in other:
            for field in ("sis_import_id", "sis_user_id", "sis_course_id", "sis_section_id"):
                row[field] = other.get(field)


def judge_pages(
    db: sqlite_utils.Database,
    pages: Iterable[list[dict[str, Any]]],
    verdicts: list[Any],
    *,
    allowance: timedelta,
    provenance_filter: str | None = None,
    students: StudentRows | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Each page's rows with their verdicts (those `provenance_filter` keeps), judged as the
    page arrives; every (verdict, actor's via), kept or not, is appended to `verdicts`.
    `students` reads the enrollments a linked observer's row may follow (Canvas lists
    observers before students, so they are asked for, not waited for).

    The ledger is read for each page after Canvas served it, so a create through the proxy
    that Canvas already shows is in the ledger as settled or as pending, never missed.
    Actors' names come from the listing's `user` objects (this page's and earlier pages'),
    else from a stored Live Event of the actor's own enrollment in that course.
    """
    roster_loaded = ledger.meta(db, ledger.ROSTER_LOADED_AT) is not None
    recording_since = parse_time(ledger.meta(db, ledger.RECORDING_SINCE))
    names: dict[int, str] = {}
    links = (
        _Links(db, students, roster_loaded, recording_since, allowance, names)
        if students
        else None
    )
    for page in pages:
        _listed_names(page, names)
        context = _Context.load(db, page, roster_loaded, recording_since, names)
        context.links = links
        kept = []
        for row in page:
            item = context.judge(row, allowance)
            via = item["actor"]["via"] if item["actor"] else None
            verdicts.append((item["provenance"], via))
            if provenance_filter is None or item["provenance"] == provenance_filter:
                kept.append(item)
        yield kept


@dataclass(frozen=True)
class _Unsettled:
    """An enrollment-creating request through the proxy whose outcome is not settled yet."""

    request_id: str
    user: str  # its enrollment[user_id], as a string
    place: tuple[str, str | None]  # ("course", ref) or ("section", ref), as the request named it
    received_at: datetime | None  # the proxy's clock


@dataclass
class _Context:
    """What the ledger knows that bears on these rows, read in a few queries."""

    records: dict[int, dict[str, Any]]
    roster: Roster | None
    recording_since: datetime | None
    unsettled: list[_Unsettled]
    sis_jobs: dict[int, SisImportRecord]
    actors: dict[int, live_store.Found]
    names: dict[int, str]
    sis_uploads: dict[int, SisUpload]
    links: _Links | None = None

    @classmethod
    def load(
        cls,
        db: sqlite_utils.Database,
        rows: list[dict[str, Any]],
        roster_loaded: bool,
        recording_since: datetime | None,
        names: dict[int, str],
    ) -> _Context:
        ids = [enrollment_id for row in rows if (enrollment_id := as_int(row.get("id")))]
        records = ledger.enrollments_by_id(db, ids)
        unsettled = [_unsettled(request) for request in ledger.unsettled_creates(db)]
        roster = _roster(db, rows) if roster_loaded else None
        actors = live_store.actors(db, ids)
        return cls(
            records, roster, recording_since, unsettled, _sis_jobs(db, rows), actors,
            _actor_names(db, rows, actors, names), _sis_uploads(db, rows),
        )

    def judge(self, row: dict[str, Any], allowance: timedelta) -> dict[str, Any]:
        enrollment_id = as_int(row.get("id"))
        record = self.records.get(enrollment_id) if enrollment_id is not None else None
        evidence, in_roster = self.evidence(row, record, allowance)
        if self.links is not None:
            evidence = replace(evidence, link=self.links.link(row, evidence))
        verdict = provenance.judge(evidence)
        item = {field: row.get(field) for field in CANVAS_FIELDS}
        if isinstance(row.get("user"), dict):
            user = row["user"]
            item["user"] = {key: user.get(key) for key in ("id", "name", "sortable_name")}
        item.update(
            provenance=verdict.provenance,
            reason=verdict.reason,
            predates_ledger=verdict.predates_ledger,
            ledger=_ledger_json(record),
            in_sis_roster=in_roster,
            sis_visible="sis_import_id" in row,
            actor=self._actor_json(enrollment_id),
            linked_to=_linked_json(row, verdict),
        )
        return item

    def evidence(
        self, row: dict[str, Any], record: Mapping[str, Any] | None, allowance: timedelta
    ) -> tuple[Evidence, bool | None]:
        """What the ledger, Canvas, its Live Events and the SIS roster say of one row (and its
        roster match)."""
        enrollment_id = as_int(row.get("id"))
        sis_visible = "sis_import_id" in row
        sis_import_id = as_int(row.get("sis_import_id"))
        sis_user_id, sis_course_id, sis_section_id = provenance.canvas_sis_ids(row)
        in_roster = (
            self.roster.matches(row, sis_user_id, sis_course_id, sis_section_id)
            if self.roster is not None
            else None
        )
        evidence = Evidence(
            ledger=_ledger_record(record),
            sis_visible=sis_visible,
            sis_import_id=sis_import_id,
            in_sis_roster=in_roster,
            created_at=parse_time(row.get("created_at")),
            recording_since=self.recording_since,
            allowance=allowance,
            pending_request_id=self._pending(row, sis_user_id, sis_course_id, sis_section_id),
            sis_import=self.sis_jobs.get(sis_import_id) if sis_import_id is not None else None,
            actor=self._actor_evidence(enrollment_id),
            sis_upload=self.sis_uploads.get(sis_import_id) if sis_import_id is not None else None,
        )
        return evidence, in_roster

    def _actor_evidence(self, enrollment_id: int | None) -> ActorEvidence | None:
        found = self.actors.get(enrollment_id) if enrollment_id is not None else None
        if found is None:
            return None
        event, actor = found.event, found.event.actor
        return ActorEvidence(
            via=derive_via(event, found.same_request),
            user_id=actor.user_id,
            name=self.names.get(actor.user_id) if actor.user_id is not None else None,
            real_user_id=actor.real_user_id,
            developer_key_id=actor.developer_key_id,
            request_id=actor.request_id,
            event_time=parse_time(event.event_time),
            created=event.event_name == "enrollment_created",
            proxied=found.proxied,
        )

    def _actor_json(self, enrollment_id: int | None) -> dict[str, Any] | None:
        found = self.actors.get(enrollment_id) if enrollment_id is not None else None
        if found is None:
            return None
        user_id = found.event.actor.user_id
        name = self.names.get(user_id) if user_id is not None else None
        return actor_json(found.event, found.same_request, name)

    def _pending(
        self,
        row: Mapping[str, Any],
        sis_user_id: str | None,
        sis_course_id: str | None,
        sis_section_id: str | None,
    ) -> str | None:
        """An unsettled create through the proxy that may have made this row."""
        if not self.unsettled:
            return None
        users = {str(row.get("user_id")), f"sis_user_id:{sis_user_id}" if sis_user_id else None}
        places = {
            ("course", str(row.get("course_id"))),
            ("section", str(row.get("course_section_id"))),
            ("course", f"sis_course_id:{sis_course_id}" if sis_course_id else None),
            ("section", f"sis_section_id:{sis_section_id}" if sis_section_id else None),
        }
        created_at = parse_time(row.get("created_at"))
        for request in self.unsettled:
            if request.user in users and request.place in places:
                # A row made well before the request cannot be its work (Canvas's clock and
                # ours may differ a little: hence the margin).
                if (
                    created_at
                    and request.received_at
                    and created_at < request.received_at - PENDING_MARGIN
                ):
                    continue
                return request.request_id
        return None


def _listed_names(rows: list[dict[str, Any]], names: dict[int, str]) -> None:
    """Each listed user's name, from Canvas's `user` object of their enrollment."""
    for row in rows:
        user = row.get("user")
        user_id = as_int(row.get("user_id"))
        if isinstance(user, dict) and user_id is not None and isinstance(user.get("name"), str):
            names.setdefault(user_id, user["name"])


def _actor_names(
    db: sqlite_utils.Database,
    rows: list[dict[str, Any]],
    actors: Mapping[int, live_store.Found],
    names: dict[int, str],
) -> dict[int, str]:
    """`names`, plus the actors of these rows not listed so far, named from a stored Live
    Event of their own enrollment in the same course (the listing may show them on a later
    page)."""
    missing: dict[int, set[int]] = {}
    for found in actors.values():
        user_id, course_id = found.event.actor.user_id, found.event.course_id
        if user_id is not None and course_id is not None and user_id not in names:
            missing.setdefault(course_id, set()).add(user_id)
    for course_id, user_ids in missing.items():
        for user_id, name in ledger.live_event_user_names(db, course_id, user_ids).items():
            names.setdefault(user_id, name)
    return names


class _Links:
    """The causes of linked observers' rows (§2.6, §5): for an ObserverEnrollment with an
    associated user, that user's StudentEnrollments in the row's section, each judged as the
    lookup judges any row (its Live Events included: the request that made it). Read once
    per (course, student) for the whole lookup; actors are named from the lookup's `names`."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        students: StudentRows,
        roster_loaded: bool,
        recording_since: datetime | None,
        allowance: timedelta,
        names: dict[int, str],
    ) -> None:
        self.db, self.students, self.allowance = db, students, allowance
        self.roster_loaded, self.recording_since = roster_loaded, recording_since
        self.names = names
        self.cache: dict[tuple[int, int], list[tuple[dict[str, Any], LinkedStudent]] | None] = {}

    def link(self, row: Mapping[str, Any], evidence: Evidence) -> ObserverLink | None:
        student_id = as_int(row.get("associated_user_id"))
        course_id = as_int(row.get("course_id"))
        if row.get("type") != OBSERVER or student_id is None or course_id is None:
            return None
        if evidence.ledger is not None and evidence.ledger.origin_action == CREATED:
            return None  # the proxy saw a request of its own make it: nothing to ask Canvas
        judged = self._judged(course_id, student_id)
        observer = _person(row.get("user_id"), row.get("user"))
        if judged is None:
            return ObserverLink(observer, student_id, f"user {student_id}", None)
        section = as_int(row.get("course_section_id"))
        in_section = [
            (student, linked)
            for student, linked in judged
            if as_int(student.get("course_section_id")) == section
        ]
        name = _person(student_id, judged[0][0].get("user") if judged else None)
        return ObserverLink(observer, student_id, name, tuple(item for _, item in in_section))

    def _judged(
        self, course_id: int, student_id: int
    ) -> list[tuple[dict[str, Any], LinkedStudent]] | None:
        key = (course_id, student_id)
        if key not in self.cache:
            rows = self.students(course_id, student_id)
            self.cache[key] = None if rows is None else self._judge(rows)
        return self.cache[key]

    def _judge(self, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], LinkedStudent]]:
        context = _Context.load(
            self.db, rows, self.roster_loaded, self.recording_since, self.names
        )
        judged = []
        for row in rows:
            enrollment_id = as_int(row.get("id"))
            if enrollment_id is None:
                continue
            record = context.records.get(enrollment_id)
            evidence, _ = context.evidence(row, record, self.allowance)
            verdict = provenance.classify(evidence)
            changes = self._changes(enrollment_id) if record is not None else ()
            linked = LinkedStudent(
                enrollment_id, evidence.created_at, verdict, evidence.ledger, changes,
                evidence.actor,
            )
            judged.append((row, linked))
        return judged

    def _changes(self, enrollment_id: int) -> tuple[ProxyChange, ...]:
        """The proxy's requests that changed this row after it existed (not its creation)."""
        changes = []
        for event in ledger.enrollment_history(self.db, enrollment_id):
            at = parse_time(event["canvas_updated_at"]) or parse_time(event["recorded_at"])
            if event["action"] != CREATED and at is not None:
                changes.append(
                    ProxyChange(
                        event["action"], event["integration"], event["actor_user_id"], at,
                        event["canvas_request_id"],
                    )
                )
        return tuple(changes)


def _person(user_id: Any, user: Any) -> str:
    name = user.get("name") if isinstance(user, dict) else None
    return f"user {user_id} ({name})" if name else f"user {user_id}"


def _linked_json(row: Mapping[str, Any], verdict: provenance.Verdict) -> dict[str, Any] | None:
    """The evidence of a linked observer's row: the student enrollment it follows."""
    if verdict.follows is None:
        return None
    return {
        "enrollment_id": verdict.follows,
        "user_id": as_int(row.get("associated_user_id")),
        "course_section_id": as_int(row.get("course_section_id")),
    }


def _unsettled(request: Mapping[str, Any]) -> _Unsettled:
    params = json.loads(request["params"] or "{}")
    place = (
        ("course", request["course_ref"])
        if request["course_ref"]
        else ("section", request["section_ref"])
    )
    return _Unsettled(
        str(request["id"]),
        str(params.get("enrollment[user_id]")),
        place,
        parse_time(request["received_at"]),
    )


def _roster(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> Roster:
    """The loaded SIS roster's rows for the SIS users these rows name (all that matching
    reads: the institution's whole roster can be far larger than a course)."""
    sis_user_ids = {user for row in rows if (user := provenance.canvas_sis_ids(row)[0])}
    by_user: dict[str, list[dict[str, Any]]] = {}
    for entry in ledger.roster_entries(db, sis_user_ids):
        by_user.setdefault(entry["user_id"], []).append(entry)
    return Roster(by_user)


def _sis_jobs(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> dict[int, SisImportRecord]:
    """The SIS imports sent through the proxy that these rows name (by sis_import_id)."""
    job_ids = {job_id for row in rows if (job_id := as_int(row.get("sis_import_id"))) is not None}
    return {
        job["job_id"]: SisImportRecord(job["job_id"], job["integration"], job["actor_user_id"])
        for job in ledger.sis_import_jobs(db, job_ids)
    }


def _sis_uploads(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> dict[int, SisUpload]:
    """Who uploaded the SIS imports these rows name, from stored `sis_batch_created` events."""
    job_ids = {job_id for row in rows if (job_id := as_int(row.get("sis_import_id"))) is not None}
    if not job_ids:
        return {}
    uploads: dict[int, SisUpload] = {}
    for event in live_store.sis_batches(db, job_ids):
        if event.event_name == "sis_batch_created" and event.sis_batch_id is not None:
            uploads.setdefault(event.sis_batch_id, SisUpload(
                event.sis_batch_id, event.actor.user_id, event.actor.real_user_id,
                event.actor.developer_key_id,
            ))
    return uploads


def _ledger_record(record: Mapping[str, Any] | None) -> LedgerRecord | None:
    if record is None:
        return None
    recorded_at = parse_time(record["first_recorded_at"])
    assert recorded_at is not None
    return LedgerRecord(
        origin_action=record["origin_action"],
        integration=record["origin_integration"],
        actor_user_id=record["origin_actor_user_id"],
        recorded_at=recorded_at,
        canvas_request_id=record["origin_canvas_request_id"],
        request_id=record["origin_request_id"],
        last_action=record["last_action"],
        acting_as_user_id=record.get("origin_acting_as_user_id"),
        label_verified=_flag(record.get("origin_label_verified")),
    )


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _ledger_json(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    first = record["origin_action"]
    return {
        "integration": record["origin_integration"],
        "actor_user_id": record["origin_actor_user_id"],
        # created, or adopted: the row existed before the proxy first touched it (whether by a
        # re-enrollment or by a change, which `first_action` names); ambiguous: reconciliation
        # found that the request may have made it, and so may something else.
        "action": first if first in (CREATED, ADOPTED, AMBIGUOUS) else ADOPTED,
        "first_action": first,
        "recorded_at": record["first_recorded_at"],
        "canvas_request_id": record["origin_canvas_request_id"],
        "request_id": record["origin_request_id"],
        "last_action": record["last_action"],
        "last_recorded_at": record["last_recorded_at"],
        # The user Canvas acted as when actor_user_id masqueraded (as_user_id), else null.
        "acting_as_user_id": record.get("origin_acting_as_user_id"),
        # true: the integration registry confirmed the label for the actor; false: it did not
        # (recorded in 'record' mode); null: no registry, the label is self-declared.
        "label_verified": _flag(record.get("origin_label_verified")),
    }


# What core/account_audit.py shares of the lookup: the same join with the ledger and the same
# evidence, for the rows of Canvas's provisioning report.
Context = _Context
Links = _Links
ledger_record = _ledger_record
ledger_json = _ledger_json
linked_json = _linked_json
