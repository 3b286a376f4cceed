"""The account reports API (`provisioning_csv`, enrollments) over the simulator's own data.

provenance-sources.md §3: start a run with `parameters[...]`, poll it (`status`, `progress`),
download its attachment. A run advances one step per poll and ends after
`Settings.report_polls` polls the way `Settings.report_outcome` says: `complete` (the CSV is
written then, from the enrollments as they are at that moment), `error`, `aborted`, or
`stuck` (running forever, for clients' time-outs).
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, request

from ledger_proxy.simulator import errors
from ledger_proxy.simulator.api import admin_account
from ledger_proxy.simulator.api_enrollments import locked
from ledger_proxy.simulator.models import Enrollment, iso
from ledger_proxy.simulator.params import to_boolean
from ledger_proxy.simulator.sis import ROLE_NAMES
from ledger_proxy.simulator.state import SimulatorState
from ledger_proxy.simulator.web import base_url, canvas_json, request_params, sim_state, viewer

bp = Blueprint("account_reports", __name__)

PROVISIONING = "provisioning_csv"
# §3.2, in order (the temporary-enrollment and root_account columns are never added here).
ENROLLMENT_COLUMNS = (
    "canvas_course_id", "course_id", "canvas_user_id", "user_id", "role", "role_id",
    "canvas_section_id", "section_id", "status", "canvas_associated_user_id",
    "associated_user_id", "created_by_sis", "base_role_type", "limit_section_privileges",
    "canvas_enrollment_id",
)
# workflow_state -> the report's status word (§3.2).
STATUS_WORDS = {
    "active": "active", "invited": "invited", "creation_pending": "invited",
    "completed": "concluded", "inactive": "inactive", "deleted": "deleted",
    "rejected": "rejected",
}
SIS_ROLE_WORDS = {type_: word for word, type_ in ROLE_NAMES.items()}
PARAMETERS = (
    "enrollment_term_id", "users", "accounts", "terms", "courses", "sections", "enrollments",
    "groups", "group_categories", "group_membership", "xlist", "user_observers", "admins",
    "created_by_sis", "include_deleted", "enrollment_filter", "enrollment_states",
)
STUCK_PROGRESS = 42


@dataclass
class AccountReport:
    id: int
    account_id: int
    user_id: int
    parameters: dict[str, Any]
    created_at: datetime
    status: str = "created"
    progress: int = 0
    polls: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    csv_text: str | None = None
    verifier: str = field(default_factory=lambda: secrets.token_hex(8))


@bp.get("/api/v1/accounts/<account_id>/reports")
@locked
def available(account_id: str) -> Response:
    admin_account(account_id)
    parameters = {name: {"required": False, "description": name} for name in PARAMETERS}
    report = {"report": PROVISIONING, "title": "Provisioning", "parameters": parameters}
    return canvas_json([report])


@bp.post("/api/v1/accounts/<account_id>/reports/<report>")
@locked
def start(account_id: str, report: str) -> Response:
    account = admin_account(account_id)
    if report != PROVISIONING:
        raise errors.not_found()
    state = sim_state()
    run = AccountReport(
        id=next(state.ids.reports), account_id=account.id, user_id=viewer().user.id,
        parameters=_parameters(), created_at=state.now(),
    )
    state.account_reports[run.id] = run
    return canvas_json(report_json(run))


def _parameters() -> dict[str, Any]:
    params = request_params()
    given: dict[str, Any] = {}
    for name in PARAMETERS:
        value = params.get(f"parameters[{name}]")
        if value is not None:
            given[name] = value
    return given


@bp.get("/api/v1/accounts/<account_id>/reports/<report>")
@locked
def past_runs(account_id: str, report: str) -> Response:
    account = admin_account(account_id)
    runs = sorted(_runs(account.id, report), key=lambda run: run.id, reverse=True)
    return canvas_json([report_json(run) for run in runs])


@bp.get("/api/v1/accounts/<account_id>/reports/<report>/<report_id>")
@locked
def poll(account_id: str, report: str, report_id: str) -> Response:
    run = _run(account_id, report, report_id)
    advance(sim_state(), run)
    return canvas_json(report_json(run))


@bp.delete("/api/v1/accounts/<account_id>/reports/<report>/<report_id>")
@locked
def delete(account_id: str, report: str, report_id: str) -> Response:
    run = _run(account_id, report, report_id)
    run.status = "deleted"
    return canvas_json(report_json(run))


@bp.get("/files/<int:attachment_id>/download")
def download(attachment_id: int) -> Response:
    """The attachment's bytes; the URL's verifier stands for a token, as on Canvas's files
    domain. Streamed in pieces, as a large file would be."""
    run = sim_state().account_reports.get(attachment_id)
    if run is None or run.csv_text is None or request.args.get("verifier") != run.verifier:
        return Response("Not found", status=404, content_type="text/plain")
    text = run.csv_text
    pieces = (text[start : start + 65536].encode() for start in range(0, len(text), 65536))
    return Response(
        pieces,
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{_file_name(run)}"'},
    )


def _runs(account_id: int, report: str) -> Iterator[AccountReport]:
    if report != PROVISIONING:
        raise errors.not_found()
    for run in sim_state().account_reports.values():
        if run.account_id == account_id:
            yield run


def _run(account_id: str, report: str, report_id: str) -> AccountReport:
    account = admin_account(account_id)
    run = sim_state().account_reports.get(int(report_id)) if report_id.isdigit() else None
    if run is None or run not in list(_runs(account.id, report)):
        raise errors.not_found()
    return run


def advance(state: SimulatorState, run: AccountReport) -> None:
    """One step of a running report, as a poll sees it."""
    if run.status not in ("created", "running", "compiling"):
        return
    settings = state.settings
    run.polls += 1
    run.started_at = run.started_at or state.now()
    if settings.report_outcome == "stuck":
        run.status, run.progress = "running", STUCK_PROGRESS
        return
    if run.polls < max(1, settings.report_polls):
        run.status = "running"
        run.progress = min(99, run.polls * 100 // max(1, settings.report_polls))
        return
    run.ended_at = state.now()
    if settings.report_outcome == "complete":
        run.csv_text = provisioning_enrollments(state, run.parameters)
        run.csv_text += "".join(f"{line}\n" for line in settings.report_extra_lines)
        run.status, run.progress = "complete", 100
    elif settings.report_outcome == "aborted":
        run.status = "aborted"
    else:
        run.status = "error"
        run.parameters["extra_text"] = "Generating the report failed (simulated)."


def report_json(run: AccountReport) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": run.id,
        "report": PROVISIONING,
        "file_url": None,
        "status": run.status,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "parameters": run.parameters,
        "progress": run.progress,
        "current_line": None,
    }
    if run.csv_text is not None:
        url = f"{base_url()}/files/{run.id}/download?download_frd=1&verifier={run.verifier}"
        document["file_url"] = f"{base_url()}/accounts/{run.account_id}/files/{run.id}/download"
        document["current_line"] = run.csv_text.count("\n")
        document["attachment"] = {
            "id": run.id,
            "display_name": _file_name(run),
            "filename": _file_name(run),
            "content-type": "text/csv",
            "size": len(run.csv_text.encode()),
            "url": url,
        }
    return document


def _file_name(run: AccountReport) -> str:
    return f"provisioning_csv_{iso(run.created_at)}.csv".replace(":", "_")


def provisioning_enrollments(state: SimulatorState, parameters: dict[str, Any]) -> str:
    """The enrollments CSV with §3.2's columns and filters."""
    include_deleted = bool(to_boolean(parameters.get("include_deleted")))
    only_sis = bool(to_boolean(parameters.get("created_by_sis")))
    term = str(parameters.get("enrollment_term_id") or "").strip()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ENROLLMENT_COLUMNS)
    for enrollment in sorted(state.enrollments.values(), key=lambda e: e.id):
        course = state.courses[enrollment.course_id]
        if term and str(course.enrollment_term_id) != term.removeprefix("sis_term_id:"):
            continue
        status = _status(state, enrollment)
        if status in ("deleted", "concluded") and not include_deleted:
            continue  # without include_deleted, deleted and completed rows are dropped
        if status == "deleted" and enrollment.sis_import_id is None:
            continue  # with it, deleted rows only when an SIS batch touched them
        if only_sis and enrollment.sis_import_id is None:
            continue
        writer.writerow(_row(state, enrollment, status))
    return out.getvalue()


def _status(state: SimulatorState, enrollment: Enrollment) -> str:
    course = state.courses[enrollment.course_id]
    section = state.sections[enrollment.course_section_id]
    if course.workflow_state == "deleted" or section.workflow_state == "deleted":
        return "deleted"
    return STATUS_WORDS[enrollment.workflow_state]


def _row(state: SimulatorState, enrollment: Enrollment, status: str) -> list[Any]:
    course = state.courses[enrollment.course_id]
    section = state.sections[enrollment.course_section_id]
    user = state.users[enrollment.user_id]
    role = state.roles[enrollment.role_id]
    associated = state.users.get(enrollment.associated_user_id or 0)
    return [
        course.id, course.sis_course_id or "", user.id, user.sis_user_id or "",
        SIS_ROLE_WORDS[role.name] if role.built_in else role.name, role.id,
        section.id, section.sis_section_id or "", status,
        enrollment.associated_user_id or "", (associated.sis_user_id if associated else "") or "",
        "true" if enrollment.sis_import_id is not None else "false",
        enrollment.type,
        "true" if enrollment.limit_privileges_to_course_section else "false",
        enrollment.id,
    ]
