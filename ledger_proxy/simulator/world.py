"""Building worlds directly: the demo world, fast seeding, and out-of-band (UI/API) enrollments."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ledger_proxy.simulator.enrollments import EnrollOptions, create, enroll, initial_state
from ledger_proxy.simulator.live_events import DEFAULT_DEVELOPER_KEY_ID
from ledger_proxy.simulator.models import (
    ENROLLMENT_TYPES,
    STUDENT,
    TEACHER,
    Context,
    Course,
    Enrollment,
    Role,
    Section,
    User,
)
from ledger_proxy.simulator.state import SimulatorState

ADMIN_TOKEN = "sim-admin-token"
TEACHER_TOKEN = "sim-teacher-token"
STUDENT_TOKEN = "sim-student-token"
DEMO_STUDENTS = (
    ("Ada Lovelace", "S-001", "alovelace", STUDENT_TOKEN),
    ("Alan Turing", "S-002", "aturing", None),
    ("Grace Hopper", "S-003", "ghopper", None),
    ("Edsger Dijkstra", "S-004", "edijkstra", None),
)


class WorldError(ValueError):
    """A control-API request that names something missing or invalid."""


@dataclass
class DirectEnrollment:
    """An enrollment made outside the REST API: by a teacher in the UI, or a script bypassing us."""

    course_id: int
    user_id: int
    channel: str = "ui"
    actor_user_id: int | None = None
    type: str | None = None
    role_id: int | None = None
    section_id: int | None = None
    enrollment_state: str | None = None
    associated_user_id: int | None = None
    user_agent: str | None = None
    real_user_id: int | None = None  # an admin masquerading as `actor_user_id`
    developer_key_id: str | None = None  # channel "api": the script's key (default: personal)
    base_url: str | None = None  # where the simulator is reached, for the events' URLs


def seed_demo(state: SimulatorState) -> dict[str, Any]:
    """The demo world: an admin, a teacher, four students with SIS ids, and course 1."""
    with state.lock:
        admin = state.add_user("Sim Admin", sis_user_id="A-001", login_id="simadmin",
                               admin=True, token=ADMIN_TOKEN)
        teacher = state.add_user("Terry Teacher", sis_user_id="T-001", login_id="tteacher",
                                 token=TEACHER_TOKEN)
        students = [
            state.add_user(name, sis_user_id=sis, login_id=login, token=token)
            for name, sis, login, token in DEMO_STUDENTS
        ]
        course = state.add_course("Demo Course", sis_course_id="DEMO-101", course_code="DEMO-101")
        second = state.add_section(course.id, "Section B", sis_section_id="DEMO-101-B")
        enroll_directly(state, DirectEnrollment(
            course.id, teacher.id, "ui", admin.id, type=TEACHER, enrollment_state="active",
        ))
        return {
            "admin": admin, "teacher": teacher, "students": students, "course": course,
            "sections": [state.sections[course.default_section_id], second],
        }


def enroll_directly(state: SimulatorState, request: DirectEnrollment) -> tuple[Enrollment, bool]:
    """The same `enroll_user` logic as the API, without its permission checks."""
    with state.lock:
        course = _course(state, request.course_id)
        user = _user(state, request.user_id)
        role = _role(state, request.type, request.role_id)
        section = _section(state, course, request.section_id)
        associated = None
        if request.associated_user_id is not None:
            associated = _user(state, request.associated_user_id).id
        options = EnrollOptions(
            course=course, section=section, user=user, role=role,
            enrollment_state=request.enrollment_state, associated_user_id=associated,
        )
        return enroll(state, options, direct_context(request, course))


def direct_context(request: DirectEnrollment, course: Course) -> Context:
    """The request a browser (`ui`: People -> +People, a session, no developer key) or a
    script (`api`: an access token) would have sent to Canvas itself (§1.7)."""
    ctx = Context(
        channel=request.channel, actor_user_id=request.actor_user_id,
        request_context_id=str(uuid.uuid4()), user_agent=request.user_agent,
        real_user_id=request.real_user_id, http_method="POST", base_url=request.base_url,
    )
    if request.channel == "ui":
        ctx.url = f"/courses/{course.id}/enroll_users"
        ctx.referrer = f"{request.base_url or ''}/courses/{course.id}/users"
        ctx.session_id = f"session-{request.real_user_id or request.actor_user_id}"
    else:
        ctx.url = f"/api/v1/courses/{course.id}/enrollments"
        ctx.developer_key_id = request.developer_key_id or DEFAULT_DEVELOPER_KEY_ID
    return ctx


def seed(
    state: SimulatorState, course_id: int, count: int, *, type_: str = STUDENT,
    enrollment_state: str | None = None, channel: str = "seed", section_id: int | None = None,
) -> list[Enrollment]:
    """`count` brand-new users, each enrolled once (no matching needed, so it is fast)."""
    with state.lock:
        course = _course(state, course_id)
        section = _section(state, course, section_id)
        role = _role(state, type_, None)
        ctx = Context(channel=channel)
        created = []
        for _ in range(count):
            user = _seed_user(state)
            target = initial_state(course, role.base_role_type, user, enrollment_state)
            options = EnrollOptions(course=course, section=section, user=user, role=role)
            created.append(create(state, options, target, ctx))
        return created


def _seed_user(state: SimulatorState) -> User:
    number = len(state.users) + 1
    user = state.add_user(
        f"Seed User {number:05d}", sortable_name=f"User {number:05d}, Seed",
        token=f"sim-seed-{uuid.uuid4().hex}",
    )
    user.sis_user_id = f"seed-{user.id}"
    user.login_id = f"seed{user.id}"
    return user


def _course(state: SimulatorState, course_id: Any) -> Course:
    course = state.find_course(course_id)
    if course is None:
        raise WorldError(f"no course {course_id!r}")
    return course


def _user(state: SimulatorState, user_id: Any) -> User:
    user = state.find_user(user_id)
    if user is None:
        raise WorldError(f"no user {user_id!r}")
    return user


def _section(state: SimulatorState, course: Course, section_id: Any) -> Section:
    if section_id is None:
        return state.sections[course.default_section_id]
    section = state.find_section(section_id)
    if section is None or section.course_id != course.id:
        raise WorldError(f"no section {section_id!r} in course {course.id}")
    return section


def _role(state: SimulatorState, type_: str | None, role_id: Any) -> Role:
    if role_id is not None:
        role = state.find_role(role_id)
        if role is None:
            raise WorldError(f"no role {role_id!r}")
        return role
    type_ = type_ or STUDENT
    if type_ not in ENROLLMENT_TYPES:
        raise WorldError(f"unknown enrollment type {type_!r}")
    return state.built_in_role(type_)
