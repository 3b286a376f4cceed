"""The institution's SIS roster (Canvas SIS `enrollments.csv`): load it, match enrollments to it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from . import ledger

STATUSES = frozenset({"active", "deleted", "completed", "inactive", "deleted_last_completed"})
BUILT_IN_ROLES = {
    "student": "StudentEnrollment",
    "teacher": "TeacherEnrollment",
    "ta": "TaEnrollment",
    "observer": "ObserverEnrollment",
    "designer": "DesignerEnrollment",
}
COLUMNS = (
    "course_id",
    "section_id",
    "user_id",
    "user_integration_id",
    "role",
    "role_id",
    "status",
    "associated_user_id",
)


class RosterError(ValueError):
    """The file is not a valid enrollments.csv; `problems` name every bad line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:20]) + (" ..." if len(problems) > 20 else ""))
        self.problems = problems


@dataclass(frozen=True)
class RosterRow:
    line: int
    course_id: str | None
    section_id: str | None
    user_id: str | None
    user_integration_id: str | None
    role: str | None
    role_id: str | None
    status: str
    associated_user_id: str | None


def parse(data: bytes) -> list[RosterRow]:
    """Every row of an enrollments.csv, or RosterError listing each bad line by number."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RosterError([f"line {line}: not valid UTF-8"]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip().lower() for name in next(reader, [])]
    problems = _header_problems(header)
    if problems:
        raise RosterError(problems)
    rows: list[RosterRow] = []
    for values in reader:
        line = reader.line_num
        if not any(value.strip() for value in values):
            continue
        if len(values) != len(header):
            problems.append(f"line {line}: {len(values)} fields, the header has {len(header)}")
            continue
        record = {name: value.strip() or None for name, value in zip(header, values, strict=True)}
        row, problem = _row(line, record)
        if problem:
            problems.append(f"line {line}: {problem}")
        elif row:
            rows.append(row)
    if problems:
        raise RosterError(problems)
    return rows


def _header_problems(header: list[str]) -> list[str]:
    if not header:
        return ["line 1: the file is empty; expected an enrollments.csv header"]
    needs = (("course_id", "section_id"), ("user_id", "user_integration_id"), ("role", "role_id"))
    problems = [
        f"line 1: the header needs {' or '.join(names)}"
        for names in needs
        if not any(name in header for name in names)
    ]
    if "status" not in header:
        problems.append("line 1: the header needs status")
    return problems


def _row(line: int, record: Mapping[str, str | None]) -> tuple[RosterRow | None, str | None]:
    if not (record.get("course_id") or record.get("section_id")):
        return None, "course_id or section_id is required"
    if not (record.get("user_id") or record.get("user_integration_id")):
        return None, "user_id or user_integration_id is required"
    if not (record.get("role") or record.get("role_id")):
        return None, "role or role_id is required"
    status = (record.get("status") or "").lower()
    if status not in STATUSES:
        return None, f"status {record.get('status')!r} is not one of {', '.join(sorted(STATUSES))}"
    values = {name: record.get(name) for name in COLUMNS if name != "status"}
    return RosterRow(line=line, status=status, **values), None


def load(db: sqlite_utils.Database, rows: Iterable[RosterRow], source: str) -> int:
    """Replace the loaded roster with `rows`, all or nothing."""
    values = [(row.line, *(getattr(row, name) for name in COLUMNS)) for row in rows]
    return ledger.replace_roster(db, COLUMNS, values, source)


@dataclass
class Roster:
    """The loaded roster, indexed by SIS user id for matching Canvas's enrollments."""

    by_user: dict[str, list[dict[str, Any]]]

    @classmethod
    def from_db(cls, db: sqlite_utils.Database) -> Roster | None:
        if ledger.meta(db, ledger.ROSTER_LOADED_AT) is None:
            return None
        by_user: dict[str, list[dict[str, Any]]] = {}
        for row in ledger.roster_entries(db):
            by_user.setdefault(row["user_id"], []).append(row)
        return cls(by_user)

    def matches(
        self,
        enrollment: Mapping[str, Any],
        sis_user_id: str | None,
        sis_course_id: str | None,
        sis_section_id: str | None,
    ) -> bool | None:
        """Whether the roster has this enrollment; None when Canvas gave no SIS ids to match."""
        if sis_user_id is None or (sis_course_id is None and sis_section_id is None):
            return None
        return any(
            _same_role(row, enrollment)
            and (
                row["section_id"] == sis_section_id
                if row["section_id"]
                else row["course_id"] == sis_course_id
            )
            for row in self.by_user.get(sis_user_id, ())
        )


def _same_role(row: Mapping[str, Any], enrollment: Mapping[str, Any]) -> bool:
    if row["role_id"]:
        return str(enrollment.get("role_id")) == row["role_id"]
    role = row["role"] or ""
    expected = BUILT_IN_ROLES.get(role.lower())
    if expected:
        return enrollment.get("type") == expected and enrollment.get("role") in (expected, None)
    return enrollment.get("role") == role
