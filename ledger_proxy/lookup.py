"""The provenance lookup: a course's (or section's) enrollments from Canvas, each with a verdict.

Shared by the HTTP endpoint and `ledger-proxy audit`; no Flask imports.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import sqlite_utils

from . import provenance
from .canvas import CanvasClient
from .ledger import as_int, parse_time
from .provenance import Evidence, LedgerRecord, SisImportRecord
from .sis_roster import Roster

# Every state, asked for explicitly: Canvas's default leaves out completed and rejected.
STATES = ("active", "invited", "creation_pending", "inactive", "completed", "rejected")
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
        states = STATES + (("deleted",) if self.include_deleted else ())
        query = "&".join(f"state%5B%5D={state}" for state in states)
        return (
            f"/api/v1/{self.scope}/{quote(self.scope_id, safe=':')}/enrollments"
            f"?{query}&per_page={PAGE_SIZE}"
        )


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
    verdicts: list[str],
    *,
    allowance: timedelta,
    provenance_filter: str | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Each page's rows with their verdicts (those `provenance_filter` keeps), judged as the
    page arrives; every verdict, kept or not, is appended to `verdicts` for the summary.

    The ledger is read for each page after Canvas served it, so a create through the proxy
    that Canvas already shows is in the ledger as settled or as pending, never missed.
    """
    roster_loaded = _meta(db, "sis_roster_loaded_at") is not None
    recording_since = parse_time(_meta(db, "recording_since"))
    for page in pages:
        context = _Context.load(db, page, roster_loaded, recording_since)
        kept = []
        for row in page:
            item = context.judge(row, allowance)
            verdicts.append(item["provenance"])
            if provenance_filter is None or item["provenance"] == provenance_filter:
                kept.append(item)
        yield kept


def _meta(db: sqlite_utils.Database, key: str) -> str | None:
    for row in db.query("SELECT value FROM ledger_meta WHERE key = ?", [key]):
        return str(row["value"])
    return None


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

    @classmethod
    def load(
        cls,
        db: sqlite_utils.Database,
        rows: list[dict[str, Any]],
        roster_loaded: bool,
        recording_since: datetime | None,
    ) -> _Context:
        ids = [enrollment_id for row in rows if (enrollment_id := as_int(row.get("id")))]
        records = {
            record["enrollment_id"]: record
            for record in _where_in(db, "SELECT * FROM enrollments WHERE enrollment_id IN", ids)
        }
        unsettled = [
            _unsettled(request)
            for request in db.query(
                "SELECT id, course_ref, section_ref, params, received_at FROM requests "
                "WHERE status IN ('pending', 'unknown') AND kind = 'enrollment_create'"
            )
        ]
        roster = _roster(db, rows) if roster_loaded else None
        return cls(records, roster, recording_since, unsettled, _sis_jobs(db, rows))

    def judge(self, row: dict[str, Any], allowance: timedelta) -> dict[str, Any]:
        enrollment_id = as_int(row.get("id"))
        record = self.records.get(enrollment_id) if enrollment_id is not None else None
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
        )
        verdict = provenance.classify(evidence)
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
            sis_visible=sis_visible,
        )
        return item

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
    for entry in _where_in(db, "SELECT * FROM sis_roster WHERE user_id IN", list(sis_user_ids)):
        by_user.setdefault(entry["user_id"], []).append(entry)
    return Roster(by_user)


def _sis_jobs(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> dict[int, SisImportRecord]:
    """The SIS imports sent through the proxy that these rows name (by sis_import_id)."""
    job_ids = {job_id for row in rows if (job_id := as_int(row.get("sis_import_id"))) is not None}
    sql = (
        "SELECT job_id, integration, actor_user_id FROM async_jobs "
        "WHERE kind = 'sis_import' AND job_id IN"
    )
    # In rowid order, so that a job id recorded twice keeps its last record.
    return {
        job["job_id"]: SisImportRecord(job["job_id"], job["integration"], job["actor_user_id"])
        for job in _where_in(db, sql, list(job_ids))
    }


def _where_in(db: sqlite_utils.Database, sql: str, values: list[Any]) -> Iterator[dict[str, Any]]:
    """The rows of `sql` (ending in "... IN") for all `values`, in rowid order, asked in
    chunks that stay under SQLite's limit on bound parameters."""
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        yield from db.query(f"{sql} ({', '.join('?' * len(chunk))}) ORDER BY rowid", chunk)


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
    )


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
        "action": first if first in ("created", "adopted", "ambiguous") else "adopted",
        "first_action": first,
        "recorded_at": record["first_recorded_at"],
        "canvas_request_id": record["origin_canvas_request_id"],
        "request_id": record["origin_request_id"],
        "last_action": record["last_action"],
        "last_recorded_at": record["last_recorded_at"],
    }
