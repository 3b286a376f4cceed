"""Which enrollments a list endpoint returns, filtered and sorted as Canvas does (§7; no Flask)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger_proxy.simulator import errors
from ledger_proxy.simulator.models import Course, Enrollment, Section, User
from ledger_proxy.simulator.params import Params
from ledger_proxy.simulator.permissions import STUDENT_STATES
from ledger_proxy.simulator.serialize import Viewer
from ledger_proxy.simulator.state import SimulatorState

USER_PATH_STATES = {
    "active": ("active",),
    "inactive": ("inactive",),
    "rejected": ("rejected",),
    "invited": ("invited",),
    "creation_pending": ("creation_pending",),
    "completed": ("completed",),
    # Date-based states, approximated: the simulator has no term or course dates.
    "pending_active": (),
    "pending_invited": (),
    "current_and_invited": ("active", "invited"),
    "current_and_future": ("active", "invited", "creation_pending"),
    "current_future_and_restricted": ("active", "invited", "creation_pending"),
    "current_and_concluded": ("active", "completed"),
}
SIS_FILTERS = {
    "sis_user_id": lambda s, e: s.users[e.user_id].sis_user_id,
    "sis_section_id": lambda s, e: s.sections[e.course_section_id].sis_section_id,
    "sis_course_id": lambda s, e: s.courses[e.course_id].sis_course_id,
    "sis_account_id": lambda s, e: None,
}


def bookmark_of(state: SimulatorState, enrollment: Enrollment) -> list[Any]:
    """The JSON sort key that a bookmark carries: [type, sortable_name, id]."""
    return [enrollment.type, state.users[enrollment.user_id].sortable_name, enrollment.id]


def order(key: Sequence[Any]) -> tuple[str, str, str, int]:
    """Comparable form of a bookmark key; names compare case-insensitively first."""
    type_, name, enrollment_id = key
    return (str(type_), str(name).casefold(), str(name), int(enrollment_id))


def sort_rows(state: SimulatorState, rows: list[Enrollment]) -> list[Enrollment]:
    return sorted(rows, key=lambda e: order(bookmark_of(state, e)))


def course_rows(
    viewer: Viewer, course: Course, section: Section | None, params: Params,
) -> list[Enrollment]:
    """`GET /courses/:id/enrollments` and `/sections/:id/enrollments`, sorted."""
    state = viewer.state
    rights = viewer.rights(course)
    if not rights.any_read:
        raise errors.forbidden()
    requested = _state_list(params)
    if requested is None:
        states: tuple[str, ...] = rights.default_list_states()
    elif rights.read_as_admin:
        states = tuple(requested)
    else:
        states = tuple(s for s in requested if s in STUDENT_STATES)
    rows = [
        e for e in state.course_enrollments(course.id)
        if e.workflow_state in states and (section is None or e.course_section_id == section.id)
    ]
    if not rights.read_roster:
        rows = _observer_visible(viewer.user, rows)
    user_ref = params.get("user_id")
    if user_ref is not None:
        user = state.find_user(user_ref, viewer.user)
        if user is None:
            raise errors.not_found()
        rows = [e for e in rows if e.user_id == user.id]
    rows = _filter_sis(state, rights.see_sis, rows, params)
    return sort_rows(state, _filter_type_and_role(state, rows, params))


def user_rows(viewer: Viewer, target: User, params: Params) -> list[Enrollment]:
    """`GET /users/:id/enrollments`, sorted (§7.2 user rows)."""
    state = viewer.state
    requested = _state_list(params)
    if target.id == viewer.user.id:
        states = _own_user_states(requested)
    elif viewer.admin:
        states = set(requested) if requested is not None else {"active", "invited"}
    else:
        raise errors.forbidden()
    rows = [
        e for e in state.enrollments.values()
        if e.user_id == target.id and e.workflow_state in states
        and state.courses[e.course_id].workflow_state != "deleted"
    ]
    rows = _filter_sis(state, viewer.admin, rows, params)
    return sort_rows(state, _filter_type_and_role(state, rows, params))


def _own_user_states(requested: list[str] | None) -> set[str]:
    if requested is None:
        return {"active", "invited"}
    states: set[str] = set()
    for name in requested:
        if name not in USER_PATH_STATES:
            raise errors.bad_error(f"Invalid state {name}")
        states.update(USER_PATH_STATES[name])
    return states


def _state_list(params: Params) -> list[str] | None:
    values = params.get_list("state")
    if values is None:
        return None
    if not all(isinstance(v, str) for v in values):
        raise errors.generic_bad_request()
    return values


def _observer_visible(user: User, rows: list[Enrollment]) -> list[Enrollment]:
    """Observers without roster rights see themselves and the students they observe."""
    observed = {
        e.associated_user_id for e in rows if e.user_id == user.id and e.associated_user_id
    }
    return [e for e in rows if e.user_id == user.id or e.user_id in observed]


def _filter_type_and_role(
    state: SimulatorState, rows: list[Enrollment], params: Params,
) -> list[Enrollment]:
    role_names = params.get_list("role")
    role_ids = params.get_list("role_id")
    if role_names is not None or role_ids is not None:
        wanted: set[int] = set()
        for name in role_names or []:
            role = state.find_role_by_name(str(name))
            if role is None:
                raise errors.generic_bad_request()
            wanted.add(role.id)
        wanted.update(r.id for r in (state.find_role(x) for x in role_ids or []) if r)
        return [e for e in rows if e.role_id in wanted]
    types = params.get_list("type")
    if types is not None:
        return [e for e in rows if e.type in types]
    return rows


def _filter_sis(
    state: SimulatorState, see_sis: bool, rows: list[Enrollment], params: Params,
) -> list[Enrollment]:
    for name, getter in SIS_FILTERS.items():
        wanted = params.get_list(name)
        if wanted is None:
            continue
        if not see_sis:
            raise errors.bad_message("Insufficient permissions to filter by SIS fields")
        rows = [e for e in rows if getter(state, e) in wanted]
    return rows
