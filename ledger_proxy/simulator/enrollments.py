"""Canvas enrollment rules: default states, re-enroll idempotency and state changes (no Flask)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger_proxy.simulator.live_events import emit_enrollment
from ledger_proxy.simulator.models import (
    DESIGNER,
    OBSERVER,
    STUDENT,
    TA,
    TEACHER,
    Context,
    Course,
    Enrollment,
    Role,
    Section,
    User,
    iso,
    match_key,
)
from ledger_proxy.simulator.state import SimulatorState

PROMOTED_TYPES = (TEACHER, TA, DESIGNER)


@dataclass
class EnrollOptions:
    """A fully resolved `enroll_user` call: what §2.6 matches on and what it overwrites."""

    course: Course
    section: Section
    user: User
    role: Role
    enrollment_state: str | None = None  # explicit request; None means "Canvas decides"
    associated_user_id: int | None = None
    limit_privileges: bool = False
    self_enrolled: bool | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    extra_history: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.role.base_role_type

    def key(self) -> tuple[Any, ...]:
        return match_key(
            self.course.id, self.user.id, self.type, self.role.id,
            self.associated_user_id, self.section.id,
        )


def initial_state(course: Course, type_: str, user: User, explicit: str | None) -> str:
    """§2.5: the state `enroll_user` asks for, before the §2.6 reuse table applies."""
    state = explicit
    if state is None and type_ == OBSERVER and user.registered:
        state = "active"
    available = course.workflow_state == "available"
    if state is None:
        state = "invited" if available else "creation_pending"
    if type_ in PROMOTED_TYPES:
        return "invited" if state == "creation_pending" else state
    return "creation_pending" if state == "invited" and not available else state


def enroll(state: SimulatorState, options: EnrollOptions, ctx: Context) -> tuple[Enrollment, bool]:
    """Canvas `Course#enroll_user` with `allow_multiple_enrollments`: (enrollment, created?)."""
    target = initial_state(options.course, options.type, options.user, options.enrollment_state)
    existing = state.find_match(options.key())
    if existing is not None:
        reuse(state, existing, options, target, ctx)
        return existing, False
    return create(state, options, target, ctx), True


def create(
    state: SimulatorState, options: EnrollOptions, workflow_state: str, ctx: Context,
) -> Enrollment:
    now = state.now()
    enrollment = Enrollment(
        id=state.next_enrollment_id(), user_id=options.user.id, course_id=options.course.id,
        course_section_id=options.section.id, type=options.type, role_id=options.role.id,
        workflow_state=workflow_state, created_at=now, updated_at=now,
        origin=origin(ctx, now), associated_user_id=options.associated_user_id,
        limit_privileges_to_course_section=options.limit_privileges,
        self_enrolled=options.self_enrolled, start_at=options.start_at, end_at=options.end_at,
        # A linked observer row copies the student's sis_batch_id only onto a row that already
        # has one (`Enrollment#update_from`), so a new one never shows an sis_import_id.
        sis_import_id=None if "linked_to" in options.extra_history else ctx.sis_import_id,
    )
    if workflow_state == "completed":
        enrollment.completed_at = now
    state.store_enrollment(enrollment)
    record(enrollment, ctx, "created", None, workflow_state, now, **options.extra_history)
    emit_enrollment(state, enrollment, ctx, created=True)
    if enrollment.type == STUDENT:
        create_linked_enrollments(state, options, ctx, enrollment)
    return enrollment


def create_linked_enrollments(
    state: SimulatorState, options: EnrollOptions, ctx: Context, student: Enrollment,
) -> None:
    """`after_create :create_linked_enrollments` (§2.6, §5): each observer linked to the
    student gets an ObserverEnrollment in the same section, made in the same request."""
    for observer_id in state.observer_links.get(student.user_id, []):
        observer = state.users.get(observer_id)
        if observer is not None:
            create_linked_enrollment_for(state, student, observer, ctx)


def linked_state(student_state: str) -> str:
    """`Enrollment#update_from`: an observer row takes the student's state, but `active` for
    an invitation (observers are not invited)."""
    return "active" if student_state == "invited" else student_state


def linked_enrollment_for(
    state: SimulatorState, observer_id: int, student: Enrollment, section_id: int,
) -> Enrollment | None:
    """The observer's row that follows this student's row: same associated user and section."""
    for enrollment in state.course_enrollments(student.course_id):
        if (
            enrollment.user_id == observer_id and enrollment.type == OBSERVER
            and enrollment.associated_user_id == student.user_id
            and enrollment.course_section_id == section_id
        ):
            return enrollment
    return None


def create_linked_enrollment_for(
    state: SimulatorState, student: Enrollment, observer: User, ctx: Context,
    **extra: Any,
) -> Enrollment | None:
    """`Enrollment#create_linked_enrollment_for`: nothing when the observer already has a live
    linked row; a deleted or inactive one is brought back to follow the student; else a new
    row (history `linked_to` names the student's row: the ground truth of its cause)."""
    existing = linked_enrollment_for(state, observer.id, student, student.course_section_id)
    if existing is not None and existing.workflow_state not in ("deleted", "inactive"):
        return None
    if existing is not None:
        follow_student(state, existing, student, ctx, "restore", **extra)
        return existing
    linked = EnrollOptions(
        course=state.courses[student.course_id], section=state.sections[student.course_section_id],
        user=observer, role=state.built_in_role(OBSERVER), associated_user_id=student.user_id,
        start_at=student.start_at, end_at=student.end_at,
        extra_history={"linked_to": student.id, **extra},
    )
    return create(state, linked, linked_state(student.workflow_state), ctx)


def update_linked_enrollments(
    state: SimulatorState, student: Enrollment, ctx: Context, *, was_state: str, detail: str,
) -> None:
    """`after_save :update_linked_enrollments` (§5): observer rows follow the student's row;
    one deleted on its own is left deleted; a student row restored from inactive, deleted or
    completed brings back (or makes) its observers' rows."""
    if student.type != STUDENT:
        return
    for observer_id in state.observer_links.get(student.user_id, []):
        observer = state.users.get(observer_id)
        if observer is None:
            continue
        linked = linked_enrollment_for(state, observer_id, student, student.course_section_id)
        if linked is not None and linked.workflow_state == "deleted" and was_state != "deleted":
            linked = None  # "we don't want to undelete observer enrollments explicitly deleted"
        if linked is not None:
            follow_student(state, linked, student, ctx, detail)
        elif was_state != student.workflow_state and was_state in (
            "inactive", "deleted", "completed",
        ):
            create_linked_enrollment_for(state, student, observer, ctx)


def follow_student(
    state: SimulatorState, linked: Enrollment, student: Enrollment, ctx: Context, detail: str,
    **extra: Any,
) -> None:
    """`Enrollment#update_from`: the observer row takes the student's state and dates; saved
    (and so recorded and emitted) only when something changed."""
    before = linked.workflow_state
    target = linked_state(student.workflow_state)
    changed = before != target or (linked.start_at, linked.end_at) != (
        student.start_at, student.end_at,
    )
    if not changed:
        return
    now = state.now()
    linked.workflow_state = target
    linked.start_at, linked.end_at = student.start_at, student.end_at
    linked.updated_at = now
    if target == "completed":
        linked.completed_at = now
    elif target == "active":
        linked.completed_at = None
    record(
        linked, ctx, "state_changed", before, target, now, detail=f"linked:{detail}",
        linked_to=student.id, **extra,
    )
    emit_enrollment(state, linked, ctx, created=False)


def reuse(
    state: SimulatorState, enrollment: Enrollment, options: EnrollOptions, target: str,
    ctx: Context,
) -> None:
    """§2.6: apply the state table to a matching row and overwrite its per-request attributes."""
    before = enrollment.workflow_state
    changed: list[str] = []
    if before == "deleted" and enrollment.sis_import_id is not None:
        enrollment.sis_import_id = None
        changed.append("sis_import_id")
    if before != "active" and before != target:
        enrollment.workflow_state = target
        changed.append("workflow_state")
    wanted = {
        "limit_privileges_to_course_section": options.limit_privileges,
        "self_enrolled": options.self_enrolled,
        "start_at": options.start_at,
        "end_at": options.end_at,
    }
    for name, value in wanted.items():
        if getattr(enrollment, name) != value:
            setattr(enrollment, name, value)
            changed.append(name)
    now = state.now()
    if changed:
        enrollment.updated_at = now
    record(
        enrollment, ctx, "reused", before, enrollment.workflow_state, now,
        changed=changed, **options.extra_history,
    )
    if changed:  # Canvas saves (and so emits) only when something changed
        emit_enrollment(state, enrollment, ctx, created=False)
        update_linked_enrollments(state, enrollment, ctx, was_state=before, detail="reused")


def change_state(
    state: SimulatorState, enrollment: Enrollment, new_state: str, ctx: Context, detail: str,
) -> None:
    """Move an enrollment to `new_state` (always saved, as Canvas does for conclude/delete)."""
    before = enrollment.workflow_state
    now = state.now()
    enrollment.workflow_state = new_state
    enrollment.updated_at = now
    if new_state == "completed":
        enrollment.completed_at = now
    elif new_state == "active":
        enrollment.completed_at = None
    record(enrollment, ctx, "state_changed", before, new_state, now, detail=detail)
    emit_enrollment(state, enrollment, ctx, created=False)
    update_linked_enrollments(state, enrollment, ctx, was_state=before, detail=detail)


def origin(ctx: Context, at: datetime) -> dict[str, Any]:
    return {
        "channel": ctx.channel, "actor_user_id": ctx.actor_user_id,
        "real_user_id": ctx.real_user_id,
        "request_context_id": ctx.request_context_id, "user_agent": ctx.user_agent,
        "sis_import_id": ctx.sis_import_id, "created_at": iso(at),
    }


def record(
    enrollment: Enrollment, ctx: Context, action: str, from_state: str | None,
    to_state: str | None, at: datetime, **extra: Any,
) -> None:
    """Append one ground-truth history entry to the enrollment."""
    entry = {
        "at": iso(at), "channel": ctx.channel, "action": action,
        "actor_user_id": ctx.actor_user_id, "real_user_id": ctx.real_user_id,
        "request_context_id": ctx.request_context_id,
        "user_agent": ctx.user_agent, "sis_import_id": ctx.sis_import_id,
        "from_state": from_state, "to_state": to_state,
    }
    entry.update(extra)
    enrollment.history.append(entry)


# -- §3 transitions on existing enrollments ----------------------------------------------------

DELETE_TASKS = {"delete": "deleted", "inactivate": "inactive", "deactivate": "inactive"}


def destroy_target(task: str | None) -> tuple[str, str]:
    """(new workflow_state, normalised task) for DELETE; unknown tasks conclude (§3.1)."""
    task = (task or "conclude").strip()
    if task in DELETE_TASKS:
        return DELETE_TASKS[task], task
    return "completed", "conclude"


def accept_error(enrollment: Enrollment, course: Course) -> str | None:
    """The 400 `error` message accept/reject give for a row that is not an open invitation."""
    if enrollment.workflow_state == "inactive":
        return "membership not activated"
    if enrollment.self_enrolled:
        return "self enroll"
    if enrollment.workflow_state != "invited" or course.workflow_state == "completed":
        return "no current invitation"
    return None


def answer_invitation(
    state: SimulatorState, enrollment: Enrollment, course: Course, accept: bool, ctx: Context,
) -> str | None:
    """§3.3 accept/reject: None on success, else the `{"error": ...}` message."""
    done = "active" if accept else "rejected"
    if enrollment.workflow_state == done:
        return None
    before = enrollment.workflow_state
    if accept and before == "rejected":
        enrollment.workflow_state = "invited"  # accept after reject: reset, then accept
    message = accept_error(enrollment, course)
    if message is not None:
        enrollment.workflow_state = before
        return message
    change_state(state, enrollment, done, ctx, "accept" if accept else "reject")
    enrollment.history[-1]["from_state"] = before
    return None
