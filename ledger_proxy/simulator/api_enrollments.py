"""Canvas Enrollments API endpoints (§1-§8) over the simulator state."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Blueprint, Response, request

from ledger_proxy.simulator import errors
from ledger_proxy.simulator.create import plan_create
from ledger_proxy.simulator.enrollments import (
    answer_invitation,
    change_state,
    destroy_target,
    enroll,
    record,
)
from ledger_proxy.simulator.listing import bookmark_of, course_rows, order, user_rows
from ledger_proxy.simulator.models import Course, Enrollment, Section, iso
from ledger_proxy.simulator.pagination import link_header, paginate
from ledger_proxy.simulator.params import text_or_none
from ledger_proxy.simulator.serialize import Viewer, enrollment_json
from ledger_proxy.simulator.web import (
    authenticate,
    canvas_json,
    endpoint_url,
    query_pairs,
    request_context,
    request_params,
    segment,
    sim_state,
    viewer,
)

bp = Blueprint("canvas_enrollments", __name__, url_prefix="/api/v1")
View = TypeVar("View", bound=Callable[..., Any])


def locked(view: View) -> View:
    """Run the whole view under the state lock, so each request sees one consistent world."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with sim_state().lock:
            return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def active_course(ref: str) -> Course:
    course = sim_state().find_course(segment(ref))
    if course is None or course.workflow_state == "deleted":
        raise errors.not_found()
    return course


def path_section(ref: str) -> Section:
    """A section found by path, deleted or not, whose course still exists (§2.7)."""
    state = sim_state()
    section = state.find_section(segment(ref))
    if section is None or state.courses[section.course_id].workflow_state == "deleted":
        raise errors.not_found()
    return section


def course_enrollment(course: Course, enrollment_id: str) -> Enrollment:
    """`@context.enrollments.find(id)`: rows of this course that are not deleted."""
    try:
        enrollment = sim_state().enrollments.get(int(enrollment_id))
    except ValueError:
        enrollment = None
    if enrollment is None or enrollment.course_id != course.id:
        raise errors.not_found()
    if enrollment.workflow_state == "deleted":
        raise errors.not_found()
    return enrollment


# -- create ---------------------------------------------------------------------------------


@bp.post("/courses/<course_id>/enrollments")
@locked
def create_in_course(course_id: str) -> Response:
    authenticate()
    return _create(active_course(course_id), None)


@bp.post("/sections/<section_id>/enrollments")
@locked
def create_in_section(section_id: str) -> Response:
    authenticate()
    section = path_section(section_id)
    return _create(sim_state().courses[section.course_id], section)


def _create(course: Course, section: Section | None) -> Response:
    current = viewer()
    options = plan_create(sim_state(), current.user, course, section, request_params())
    enrollment, _ = enroll(sim_state(), options, request_context())
    return canvas_json(enrollment_json(current, enrollment))


# -- change ---------------------------------------------------------------------------------


@bp.delete("/courses/<course_id>/enrollments/<enrollment_id>")
@locked
def destroy(course_id: str, enrollment_id: str) -> Response:
    current = viewer()
    course = active_course(course_id)
    enrollment = course_enrollment(course, enrollment_id)
    if not current.rights(course).can_manage(enrollment.type):
        raise errors.forbidden()
    new_state, task = destroy_target(text_or_none(request_params().get("task")))
    change_state(sim_state(), enrollment, new_state, request_context(), task)
    return canvas_json(enrollment_json(current, enrollment))


@bp.put("/courses/<course_id>/enrollments/<enrollment_id>/reactivate")
@locked
def reactivate(course_id: str, enrollment_id: str) -> Response:
    current = viewer()
    course = active_course(course_id)
    enrollment = course_enrollment(course, enrollment_id)
    if not current.rights(course).can_manage(enrollment.type):
        raise errors.forbidden()
    if enrollment.workflow_state != "inactive":
        raise errors.bad_error("enrollment not inactive")
    change_state(sim_state(), enrollment, "active", request_context(), "reactivate")
    return canvas_json(enrollment_json(current, enrollment))


@bp.post("/courses/<course_id>/enrollments/<enrollment_id>/accept")
@locked
def accept(course_id: str, enrollment_id: str) -> Response:
    return _answer(course_id, enrollment_id, accept=True)


@bp.post("/courses/<course_id>/enrollments/<enrollment_id>/reject")
@locked
def reject(course_id: str, enrollment_id: str) -> Response:
    return _answer(course_id, enrollment_id, accept=False)


def _answer(course_id: str, enrollment_id: str, *, accept: bool) -> Response:
    current = viewer()
    course = active_course(course_id)
    enrollment = course_enrollment(course, enrollment_id)
    if enrollment.user_id != current.user.id:
        raise errors.forbidden()
    message = answer_invitation(sim_state(), enrollment, course, accept, request_context())
    if message is not None:
        raise errors.bad_error(message)
    return canvas_json({"success": True})


@bp.put("/courses/<course_id>/users/<user_id>/last_attended")
@locked
def last_attended(course_id: str, user_id: str) -> Response:
    current = viewer()
    course = active_course(course_id)
    if not current.rights(course).grader:
        raise errors.forbidden()
    user = sim_state().find_user(segment(user_id), current.user)
    if user is None:
        raise errors.not_found()
    moment = _parse_date(request_params().get("date"))
    ctx = request_context()
    for enrollment in sim_state().course_enrollments(course.id):
        if enrollment.user_id == user.id:
            enrollment.last_attended_at = moment  # update_all: updated_at does not move
            record(enrollment, ctx, "last_attended", None, None, sim_state().now(),
                   date=iso(moment))
    return canvas_json({"date": iso(moment)})


def _parse_date(value: Any) -> datetime:
    text = text_or_none(value)
    try:
        moment = datetime.fromisoformat((text or "").replace("Z", "+00:00"))
    except ValueError as exc:
        raise errors.bad_message("Invalid date time input") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- read -----------------------------------------------------------------------------------


@bp.get("/courses/<course_id>/enrollments")
@locked
def list_course(course_id: str) -> Response:
    current = viewer()
    course = active_course(course_id)
    return _paginated(current, course_rows(current, course, None, request_params()))


@bp.get("/sections/<section_id>/enrollments")
@locked
def list_section(section_id: str) -> Response:
    current = viewer()
    section = path_section(section_id)
    course = sim_state().courses[section.course_id]
    return _paginated(current, course_rows(current, course, section, request_params()))


@bp.get("/users/<user_id>/enrollments")
@locked
def list_user(user_id: str) -> Response:
    current = viewer()
    target = sim_state().find_user(segment(user_id), current.user)
    if target is None:
        raise errors.not_found()
    return _paginated(current, user_rows(current, target, request_params()))


@bp.get("/accounts/<account_id>/enrollments/<enrollment_id>")
@locked
def show(account_id: str, enrollment_id: str) -> Response:
    current = viewer()
    if sim_state().find_account(segment(account_id)) is None:
        raise errors.not_found()
    try:
        enrollment = sim_state().enrollments.get(int(enrollment_id))
    except ValueError:
        enrollment = None
    if enrollment is None:
        raise errors.not_found()
    if not current.admin and enrollment.user_id != current.user.id:
        raise errors.forbidden()
    return canvas_json(enrollment_json(current, enrollment))


def _paginated(current: Viewer, rows: list[Enrollment]) -> Response:
    state = sim_state()
    page = paginate(rows, lambda e: bookmark_of(state, e), order, query_pairs())
    body = [enrollment_json(current, e, with_user=True) for e in page.rows]
    link = link_header(endpoint_url(), request.query_string.decode("latin-1"), page)
    return canvas_json(body, headers={"Link": link})
