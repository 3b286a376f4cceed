"""SIS imports: `enrollments.csv` rows applied like Canvas's importer, adopting existing rows."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

from ledger_proxy.simulator.create import parse_time
from ledger_proxy.simulator.enrollments import EnrollOptions, change_state, create, record
from ledger_proxy.simulator.live_events import emit_sis_batch
from ledger_proxy.simulator.models import Context, Enrollment, Role, Section, SisImport, User
from ledger_proxy.simulator.params import to_boolean
from ledger_proxy.simulator.state import SimulatorState

ROLE_NAMES = {
    "student": "StudentEnrollment",
    "teacher": "TeacherEnrollment",
    "ta": "TaEnrollment",
    "observer": "ObserverEnrollment",
    "designer": "DesignerEnrollment",
}
STATUS_STATES = {"active": "active", "completed": "completed", "inactive": "inactive",
                 "deleted": "deleted"}
FILE_NAME = "enrollments.csv"


class SisRowError(ValueError):
    """A row the importer skips, reported as a processing warning."""


def read_upload(data: bytes) -> str:
    """The `enrollments.csv` text of an upload: a CSV file, or a zip holding one."""
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(FILE_NAME)]
            if not names:
                raise SisRowError("no enrollments.csv in the zip file")
            data = archive.read(names[0])
    return data.decode("utf-8-sig")


def parse_csv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    headers = [h.strip().lower() for h in reader.fieldnames or []]
    if not ({"course_id", "section_id"} & set(headers)) or not (
        {"user_id", "user_integration_id"} & set(headers)
    ):
        raise SisRowError("enrollments.csv needs course_id or section_id, and user_id")
    return [
        {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        for row in reader
    ]


def run_import(state: SimulatorState, sis_import: SisImport, ctx: Context) -> None:
    """Apply every row, then mark the import `imported` (or `..._with_messages`)."""
    sis_import.workflow_state = "importing"
    emit_sis_batch(state, sis_import, ctx, created=False)
    stats = {"created": 0, "concluded": 0, "deactivated": 0, "restored": 0, "deleted": 0}
    applied = 0
    try:
        rows = sis_import.rows if sis_import.rows is not None else parse_csv(
            sis_import.csv_text or ""
        )
    except (SisRowError, csv.Error) as exc:
        rows = []
        sis_import.errors.append([FILE_NAME, str(exc)])
    for line, row in enumerate(rows, start=2):
        try:
            outcome = apply_row(state, {k: str(v) for k, v in row.items()}, ctx)
        except SisRowError as exc:
            sis_import.warnings.append([FILE_NAME, f"line {line}: {exc}"])
            continue
        applied += 1
        if outcome in stats:
            stats[outcome] += 1
    _finish(state, sis_import, applied, stats)
    emit_sis_batch(state, sis_import, ctx, created=False)


def _finish(
    state: SimulatorState, sis_import: SisImport, applied: int, stats: dict[str, int],
) -> None:
    now = state.now()
    if sis_import.errors:
        sis_import.workflow_state = "failed_with_messages"
    elif sis_import.warnings:
        sis_import.workflow_state = "imported_with_messages"
    else:
        sis_import.workflow_state = "imported"
    sis_import.progress = 100
    sis_import.ended_at = now
    sis_import.updated_at = now
    sis_import.counts = {
        "enrollments": applied,
        "error_count": len(sis_import.errors),
        "warning_count": len(sis_import.warnings),
    }
    sis_import.statistics = {"total_state_changes": applied, "Enrollment": stats}


def apply_row(state: SimulatorState, row: dict[str, str], ctx: Context) -> str:
    """One enrollments.csv row: returns the statistics bucket it counted in ("" for none)."""
    section = _row_section(state, row)
    course = state.courses[section.course_id]
    user = _row_user(state, row)
    role = _row_role(state, row)
    status = row.get("status", "").lower()
    if status == "deleted_last_completed":
        status = "deleted"
    if status not in STATUS_STATES:
        raise SisRowError(f"improper status {status!r}")
    associated = _row_associated(state, row)
    options = EnrollOptions(
        course=course, section=section, user=user, role=role, enrollment_state=status,
        associated_user_id=associated,
        limit_privileges=bool(to_boolean(row.get("limit_section_privileges"))),
        start_at=parse_time(row.get("start_date")), end_at=parse_time(row.get("end_date")),
    )
    existing = state.find_match(options.key())
    if existing is None:
        if status == "deleted":
            return ""
        create(state, options, STATUS_STATES[status], ctx)
        return "created"
    return _adopt(state, existing, options, STATUS_STATES[status], ctx)


def _adopt(
    state: SimulatorState, enrollment: Enrollment, options: EnrollOptions, target: str,
    ctx: Context,
) -> str:
    """Update an existing row (made by anyone) and stamp it with this batch's id."""
    before = enrollment.workflow_state
    enrollment.sis_import_id = ctx.sis_import_id
    if before != target:
        change_state(state, enrollment, target, ctx, f"sis_status:{target}")
        if target == "active":
            return "restored" if before in ("deleted", "inactive", "completed") else ""
        return {"completed": "concluded", "inactive": "deactivated"}.get(target, "deleted")
    record(enrollment, ctx, "reused", before, before, state.now(), changed=["sis_import_id"])
    return ""


def _row_section(state: SimulatorState, row: dict[str, str]) -> Section:
    if row.get("section_id"):
        section = state.find_section(f"sis_section_id:{row['section_id']}")
        if section is None or section.workflow_state != "active":
            raise SisRowError(f"unknown section {row['section_id']!r}")
        return section
    course = state.find_course(f"sis_course_id:{row.get('course_id', '')}")
    if course is None or course.workflow_state == "deleted":
        raise SisRowError(f"unknown course {row.get('course_id')!r}")
    return state.sections[course.default_section_id]


def _row_user(state: SimulatorState, row: dict[str, str]) -> User:
    if row.get("user_id"):
        user = state.find_user(f"sis_user_id:{row['user_id']}")
    else:
        user = state.find_user(f"sis_integration_id:{row.get('user_integration_id', '')}")
    if user is None:
        raise SisRowError(f"unknown user {row.get('user_id') or row.get('user_integration_id')!r}")
    return user


def _row_role(state: SimulatorState, row: dict[str, str]) -> Role:
    if row.get("role_id"):
        role = state.find_role(row["role_id"])
    else:
        name = row.get("role", "")
        type_ = ROLE_NAMES.get(name.lower())
        role = state.built_in_role(type_) if type_ else state.find_role_by_name(name)
    if role is None or role.workflow_state != "active":
        raise SisRowError(f"improper role {row.get('role_id') or row.get('role')!r}")
    return role


def _row_associated(state: SimulatorState, row: dict[str, str]) -> int | None:
    if not row.get("associated_user_id"):
        return None
    user = state.find_user(f"sis_user_id:{row['associated_user_id']}")
    if user is None:
        raise SisRowError(f"unknown associated user {row['associated_user_id']!r}")
    return user.id


def new_import(
    state: SimulatorState, user_id: int | None, *, csv_text: str | None = None,
    rows: list[dict[str, Any]] | None = None, options: dict[str, Any] | None = None,
) -> SisImport:
    now = state.now()
    sis_import = SisImport(
        id=next(state.ids.sis_imports), account_id=1, user_id=user_id, created_at=now,
        updated_at=now, csv_text=csv_text, rows=rows, options=options or {},
    )
    state.sis_imports[sis_import.id] = sis_import
    return sis_import
