"""Canvas REST endpoints besides enrollments: users, courses, sections, accounts and async jobs."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from flask import Blueprint, Response, request

from ledger_proxy.simulator import errors, moves
from ledger_proxy.simulator.api_enrollments import active_course, locked, path_section
from ledger_proxy.simulator.jobs import bulk_role, queue_bulk_enrollment, queue_sis_import, run_jobs
from ledger_proxy.simulator.live_events import emit_sis_batch
from ledger_proxy.simulator.models import Account
from ledger_proxy.simulator.params import text_or_none
from ledger_proxy.simulator.permissions import is_member
from ledger_proxy.simulator.serialize import (
    account_json,
    course_json,
    profile_json,
    progress_json,
    section_json,
    sis_import_json,
    user_json,
)
from ledger_proxy.simulator.sis import SisRowError, new_import, read_upload
from ledger_proxy.simulator.web import (
    base_url,
    canvas_json,
    request_context,
    request_params,
    segment,
    sim_state,
    viewer,
)

bp = Blueprint("canvas_resources", __name__, url_prefix="/api/v1")


@bp.get("/users/<user_id>")
@locked
def show_user(user_id: str) -> Response:
    current = viewer()
    state = sim_state()
    target = state.find_user(segment(user_id), current.user)
    if target is None:
        raise errors.not_found()
    if current.admin or target.id == current.user.id:
        return canvas_json(profile_json(current, target))
    shared = {e.course_id for e in state.enrollments.values() if e.user_id == target.id}
    if any(current.rights(state.courses[c]).read_roster for c in shared):
        return canvas_json(user_json(current, target))
    raise errors.not_found()


@bp.get("/courses/<course_id>")
@locked
def show_course(course_id: str) -> Response:
    current = viewer()
    course = active_course(course_id)
    if not is_member(sim_state(), current.user, course):
        raise errors.forbidden()
    return canvas_json(course_json(current, course))


@bp.get("/sections/<section_id>")
@locked
def show_section(section_id: str) -> Response:
    current = viewer()
    section = path_section(section_id)
    if section.workflow_state == "deleted":
        raise errors.not_found()
    if not is_member(sim_state(), current.user, sim_state().courses[section.course_id]):
        raise errors.forbidden()
    return canvas_json(section_json(current, section))


@bp.get("/accounts/<account_id>")
@locked
def show_account(account_id: str) -> Response:
    current = viewer()
    account = admin_account(account_id)
    return canvas_json(account_json(current, account))


def admin_account(account_id: str) -> Account:
    """The root account, for root-account admins only (404 first, then 403)."""
    current = viewer()
    account = sim_state().find_account(segment(account_id))
    if account is None:
        raise errors.not_found()
    if not current.admin:
        raise errors.forbidden()
    return account


@bp.post("/accounts/<account_id>/bulk_enrollment")
@locked
def bulk_enrollment(account_id: str) -> Response:
    current = viewer()
    admin_account(account_id)
    params = request_params()
    role = bulk_role(
        sim_state(), text_or_none(params.get("enrollment_type")),
        text_or_none(params.get("enrollment_role_id")),
    )
    users = [str(v) for v in params.get_list("user_ids") or []]
    courses = [str(v) for v in params.get_list("course_ids") or []]
    ctx = request_context("bulk")
    progress = queue_bulk_enrollment(sim_state(), current.user.id, users, courses, role, ctx)
    body = progress_json(base_url(), progress)
    _maybe_run_jobs()
    return canvas_json(body)


@bp.get("/progress/<progress_id>")
@locked
def show_progress(progress_id: str) -> Response:
    current = viewer()
    progress = sim_state().progresses.get(int(progress_id)) if progress_id.isdigit() else None
    if progress is None:
        raise errors.not_found()
    if not current.admin and progress.user_id != current.user.id:
        raise errors.forbidden()
    return canvas_json(progress_json(base_url(), progress))


@bp.post("/accounts/<account_id>/sis_imports")
@locked
def create_sis_import(account_id: str) -> Response:
    current = viewer()
    admin_account(account_id)
    try:
        text = read_upload(_uploaded_bytes())
    except (SisRowError, UnicodeDecodeError, ValueError) as exc:
        raise errors.bad_message(f"Invalid attachment: {exc}") from exc
    params = request_params()
    options = {name: params.get(name) for name in ("import_type", "batch_mode", "skip_deletes")}
    state = sim_state()
    sis_import = new_import(state, current.user.id, csv_text=text, options=options)
    emit_sis_batch(state, sis_import, request_context(), created=True)
    ctx = replace(request_context("sis"), sis_import_id=sis_import.id)
    queue_sis_import(state, sis_import.id, ctx)
    body = sis_import_json(state, sis_import)
    _maybe_run_jobs()
    return canvas_json(body)


@bp.get("/accounts/<account_id>/sis_imports")
@locked
def list_sis_imports(account_id: str) -> Response:
    """Newest first, wrapped as Canvas wraps it: {"sis_imports": [...]}; `created_since`,
    `created_before`."""
    admin_account(account_id)
    state = sim_state()
    imports = sorted(state.sis_imports.values(), key=lambda item: item.id, reverse=True)
    since, before = request.args.get("created_since"), request.args.get("created_before")
    if since:
        imports = [item for item in imports if item.created_at >= _moment(since)]
    if before:
        imports = [item for item in imports if item.created_at <= _moment(before)]
    return canvas_json({"sis_imports": [sis_import_json(state, item) for item in imports]})


def _moment(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise errors.bad_message(f"Invalid date: {value}") from None


@bp.get("/accounts/<account_id>/sis_imports/<import_id>")
@locked
def show_sis_import(account_id: str, import_id: str) -> Response:
    admin_account(account_id)
    sis_import = sim_state().sis_imports.get(int(import_id)) if import_id.isdigit() else None
    if sis_import is None:
        raise errors.not_found()
    return canvas_json(sis_import_json(sim_state(), sis_import))


def _uploaded_bytes() -> bytes:
    """A multipart `attachment`, or the raw body when `extension` is given (§5)."""
    upload = request.files.get("attachment")
    if upload is not None:
        return upload.read()
    if text_or_none(request_params().get("extension")) and request.mimetype not in (
        "application/x-www-form-urlencoded", "multipart/form-data",
    ):
        return request.get_data(cache=True)
    raise errors.bad_message("No attachment given")


def _maybe_run_jobs() -> None:
    """Jobs run once the response body is built, so clients see them `queued`/`created`."""
    if sim_state().settings.auto_run_jobs:
        run_jobs(sim_state())


# -- §5 pathways that move enrollments (simulator/moves.py) ----------------------------------


@bp.post("/sections/<section_id>/crosslist/<new_course_id>")
@locked
def crosslist_section(section_id: str, new_course_id: str) -> Response:
    """Cross-list a section into another course (admins only here): its enrollments move."""
    current = viewer()
    section = path_section(section_id)
    course = active_course(new_course_id)
    if not current.admin:
        raise errors.forbidden()
    moves.crosslist(sim_state(), section, course.id, request_context())
    return canvas_json(section_json(current, section))


@bp.delete("/sections/<section_id>/crosslist")
@locked
def uncrosslist_section(section_id: str) -> Response:
    """Back to the course the section came from, with its enrollments."""
    current = viewer()
    section = path_section(section_id)
    if not current.admin:
        raise errors.forbidden()
    moves.uncrosslist(sim_state(), section, request_context())
    return canvas_json(section_json(current, section))


@bp.put("/users/<user_id>/merge_into/<destination_user_id>")
@locked
def merge_user(user_id: str, destination_user_id: str) -> Response:
    """Merge a user into another (admins only): the enrollments move to the survivor."""
    current = viewer()
    state = sim_state()
    source = state.find_user(segment(user_id), current.user)
    target = state.find_user(segment(destination_user_id), current.user)
    if source is None or target is None:
        raise errors.not_found()
    if not current.admin:
        raise errors.forbidden()
    if source.id != target.id:
        moves.merge_users(state, source, target, request_context())
    return canvas_json(user_json(current, target))
