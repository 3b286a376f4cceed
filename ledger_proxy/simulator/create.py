"""`POST .../enrollments` argument checks, in Canvas's order, turned into `EnrollOptions` (§2.4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ledger_proxy.simulator import errors
from ledger_proxy.simulator.enrollments import EnrollOptions
from ledger_proxy.simulator.models import (
    ENROLLMENT_TYPES,
    OBSERVER,
    STUDENT,
    Course,
    Role,
    Section,
    User,
)
from ledger_proxy.simulator.params import Params, text_or_none, to_boolean
from ledger_proxy.simulator.permissions import course_rights
from ledger_proxy.simulator.state import SimulatorState

INVALID_TYPE = "Invalid type"
INVALID_ROLE = "Invalid role"
INACTIVE_ROLE = "Cannot create an enrollment with this role because it is inactive."
TYPE_MISMATCH = "The specified type must match the base type for the role"
ROOT_ACCOUNT_NEEDS_SIS = (
    "Can't create an enrollment without a sis_user_id or integration_id when root_account is "
    "provided"
)
MISSING_USER = (
    "Can't create an enrollment without a user. Include enrollment[user_id] to create an "
    "enrollment"
)
CONCLUDED_COURSE = "Can't add an enrollment to a concluded course."
ACCEPTED_STATES = ("active", "invited", "inactive", "creation_pending", "completed")


def plan_create(
    state: SimulatorState, caller: User, course: Course, url_section: Section | None,
    params: Params,
) -> EnrollOptions:
    """Steps 3-10 of §2.4; raises the exact Canvas `ApiError` at the first failing step."""
    raw = params.nested("enrollment")
    if not raw:
        raise errors.bad_message("No parameters given")
    if text_or_none(raw.get("self_enrollment_code")):
        return _self_enrollment(state, caller, course, raw)
    role, messages = resolve_role(state, raw)
    messages += user_messages(params, raw)
    if messages:
        raise errors.bad_message(*messages)
    assert role is not None
    if not course_rights(state, caller, course).can_manage(role.base_role_type):
        raise errors.forbidden()
    section = resolve_section(state, course, url_section, raw.get("course_section_id"))
    user = resolve_user(state, caller, params, raw)
    if course.workflow_state == "completed":
        raise errors.bad_message(CONCLUDED_COURSE)
    return EnrollOptions(
        course=course, section=section, user=user, role=role,
        enrollment_state=_explicit_state(raw.get("enrollment_state")),
        associated_user_id=_associated_user(state, role, user, raw.get("associated_user_id")),
        limit_privileges=bool(to_boolean(raw.get("limit_privileges_to_course_section"))),
        self_enrolled=to_boolean(raw["self_enrolled"]) if "self_enrolled" in raw else None,
        start_at=parse_time(raw.get("start_at")),
        end_at=parse_time(raw.get("end_at")),
    )


def resolve_role(state: SimulatorState, raw: dict[str, Any]) -> tuple[Role | None, list[str]]:
    """The role the request names (role_id, then role, then type) and any type/role errors."""
    type_ = text_or_none(raw.get("type"))
    role_id = text_or_none(raw.get("role_id"))
    role_name = text_or_none(raw.get("role"))
    if role_id or role_name:
        role = state.find_role(role_id) if role_id else state.find_role_by_name(role_name or "")
        if role is None or role.workflow_state == "deleted":
            return None, [INVALID_ROLE]
    else:
        type_ = type_ or STUDENT
        if type_ not in ENROLLMENT_TYPES:
            return None, [INVALID_TYPE]
        role = state.built_in_role(type_)
    messages = []
    if role.workflow_state == "inactive":
        messages.append(INACTIVE_ROLE)
    if type_ and type_ != role.base_role_type:
        messages.append(TYPE_MISMATCH)
    return role, messages


def user_messages(params: Params, raw: dict[str, Any]) -> list[str]:
    if params.has("root_account"):
        has_sis = text_or_none(raw.get("sis_user_id")) or text_or_none(raw.get("integration_id"))
        return [] if has_sis else [ROOT_ACCOUNT_NEEDS_SIS]
    return [] if text_or_none(raw.get("user_id")) else [MISSING_USER]


def resolve_section(
    state: SimulatorState, course: Course, url_section: Section | None, requested: Any,
) -> Section:
    """§2.7: the URL's section, else `course_section_id` (active sections only), else default."""
    if url_section is not None:
        section: Section | None = url_section
    elif text_or_none(requested):
        section = state.find_section(text_or_none(requested))
    else:
        section = state.sections.get(course.default_section_id)
    if section is None or section.course_id != course.id or section.workflow_state != "active":
        raise errors.not_found()
    return section


def resolve_user(
    state: SimulatorState, caller: User, params: Params, raw: dict[str, Any],
) -> User:
    if params.has("root_account"):
        sis_user_id = text_or_none(raw.get("sis_user_id"))
        ref = f"sis_user_id:{sis_user_id}" if sis_user_id else (
            f"sis_integration_id:{text_or_none(raw.get('integration_id'))}"
        )
    else:
        ref = text_or_none(raw.get("user_id")) or ""
    user = state.find_user(ref, caller)
    if user is None:
        raise errors.not_found()
    return user


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 as Rails would assign it; unparseable or blank values become null."""
    text = text_or_none(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _explicit_state(value: Any) -> str | None:
    text = text_or_none(value)
    if text is not None and text not in ACCEPTED_STATES:
        raise errors.invalid_record("workflow_state", "is not included in the list", "inclusion")
    return text


def _associated_user(state: SimulatorState, role: Role, user: User, value: Any) -> int | None:
    ref = text_or_none(value)
    if ref is None:
        return None
    if role.base_role_type != OBSERVER:
        message = "only ObserverEnrollments may have an associated_user_id"
        raise errors.invalid_record("associated_user_id", message)
    observed = state.find_user(ref)
    if observed is None:
        raise errors.not_found()
    if observed.id == user.id:
        raise errors.invalid_record("associated_user_id", "Cannot observe yourself")
    return observed.id


def _self_enrollment(
    state: SimulatorState, caller: User, course: Course, raw: dict[str, Any],
) -> EnrollOptions:
    """§2.8: the caller enrolls as an active, self-enrolled student of a course whose
    `self_enrollment_code` (set through the control API; none by default) matches."""
    messages = []
    code = text_or_none(raw.get("self_enrollment_code"))
    if course.self_enrollment_code is None or code != course.self_enrollment_code:
        messages.append("enrollment[self_enrollment_code] is invalid")
    if text_or_none(raw.get("user_id")) != "self":
        messages.append("enrollment[user_id] must be 'self' when self-enrolling")
    if messages:
        raise errors.bad_message(*messages)
    return EnrollOptions(
        course=course, section=state.sections[course.default_section_id], user=caller,
        role=state.built_in_role(STUDENT), enrollment_state="active", self_enrolled=True,
    )
