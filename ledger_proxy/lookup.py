"""The provenance lookup: a course's (or section's) enrollments from Canvas, each with a verdict.

Shared by the HTTP endpoint and `ledger-proxy audit`; no Flask imports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import sqlite_utils

from . import provenance
from .canvas import CanvasClient
from .ledger import as_int, parse_time
from .provenance import Evidence, LedgerRecord, SisImportRecord
from .sis_roster import Roster

# Every state, asked for explicitly: Canvas's default leaves out completed and rejected.
STATES = ("active", "invited", "creation_pending", "inactive", "completed", "rejected")
SCOPES = ("courses", "sections")
PAGE_SIZE = 100

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
    rows: list[dict[str, Any]] = []
    for page in canvas.pages(query.canvas_target(), token):
        rows.extend(row for row in page if isinstance(row, dict))
        if on_page:
            on_page(len(rows))
    return rows


def add_sis_fields(rows: list[dict[str, Any]], reader_rows: Iterable[Mapping[str, Any]]) -> None:
    """Copy SIS fields from a SIS-reading token's listing onto the caller's rows (same ids
    only: the caller never sees a row Canvas did not show them)."""
    by_id = {row.get("id"): row for row in reader_rows}
    for row in rows:
        other = by_id.get(row.get("id"))
        if other is not None and "sis_import_id" in other:
            for field in ("sis_import_id", "sis_user_id", "sis_course_id", "sis_section_id"):
                row[field] = other.get(field)
            row["_sis_from_reader"] = True


def classify_rows(
    db: sqlite_utils.Database,
    rows: list[dict[str, Any]],
    *,
    allowance: timedelta,
    provenance_filter: str | None = None,
) -> dict[str, Any]:
    """The lookup's answer: each row with its verdict and evidence, and counts per verdict."""
    context = _Context.load(db, rows)
    enrollments = []
    verdicts = []
    for row in rows:
        item = context.judge(row, allowance)
        verdicts.append(item["provenance"])
        if provenance_filter is None or item["provenance"] == provenance_filter:
            enrollments.append(item)
    return {"enrollments": enrollments, "summary": provenance.summary(verdicts)}


@dataclass
class _Context:
    """What the ledger knows that bears on these rows, read in a few queries."""

    records: dict[int, dict[str, Any]]
    roster: Roster | None
    recording_since: Any
    unsettled: list[dict[str, Any]]
    sis_jobs: dict[int, SisImportRecord]

    @classmethod
    def load(cls, db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> _Context:
        ids = [enrollment_id for row in rows if (enrollment_id := as_int(row.get("id")))]
        records: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for record in db.query(
                f"SELECT * FROM enrollments WHERE enrollment_id IN ({marks})", chunk
            ):
                records[record["enrollment_id"]] = record
        meta = dict(
            (row["key"], row["value"])
            for row in db.query("SELECT key, value FROM ledger_meta WHERE key = 'recording_since'")
        )
        unsettled = list(
            db.query(
                "SELECT id, course_ref, section_ref, params FROM requests "
                "WHERE status IN ('pending', 'unknown') AND kind = 'enrollment_create'"
            )
        )
        sis_jobs = {
            job["job_id"]: SisImportRecord(job["job_id"], job["integration"], job["actor_user_id"])
            for job in db.query(
                "SELECT job_id, integration, actor_user_id FROM async_jobs "
                "WHERE kind = 'sis_import' AND job_id IS NOT NULL"
            )
        }
        return cls(
            records,
            Roster.from_db(db),
            parse_time(meta.get("recording_since")),
            unsettled,
            sis_jobs,
        )

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
        users = {str(row.get("user_id")), f"sis_user_id:{sis_user_id}" if sis_user_id else None}
        places = {
            ("course", str(row.get("course_id"))),
            ("section", str(row.get("course_section_id"))),
            ("course", f"sis_course_id:{sis_course_id}" if sis_course_id else None),
            ("section", f"sis_section_id:{sis_section_id}" if sis_section_id else None),
        }
        for request in self.unsettled:
            params = json.loads(request["params"] or "{}")
            place = (
                ("course", request["course_ref"])
                if request["course_ref"]
                else ("section", request["section_ref"])
            )
            if str(params.get("enrollment[user_id]")) in users and place in places:
                return str(request["id"])
        return None


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
    return {
        "integration": record["origin_integration"],
        "actor_user_id": record["origin_actor_user_id"],
        "action": record["origin_action"],
        "recorded_at": record["first_recorded_at"],
        "canvas_request_id": record["origin_canvas_request_id"],
        "request_id": record["origin_request_id"],
        "last_action": record["last_action"],
        "last_recorded_at": record["last_recorded_at"],
    }
