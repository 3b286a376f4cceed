"""The simulator's simplified Canvas permission model (see docs/simulator.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ledger_proxy.simulator.models import DESIGNER, OBSERVER, STUDENT, TA, TEACHER, Course, User
from ledger_proxy.simulator.state import SimulatorState

ADMIN_STATES = ("active", "invited", "creation_pending", "inactive")
STUDENT_STATES = ("active", "invited", "creation_pending")
MANAGEABLE_BY_TEACHER = (STUDENT, TA, OBSERVER, DESIGNER)


@dataclass(frozen=True)
class CourseRights:
    """What one caller may do in one course."""

    admin: bool = False
    teacher: bool = False
    read_as_admin: bool = False
    read_roster: bool = False
    observer: bool = False
    designer_only: bool = False

    @property
    def any_read(self) -> bool:
        return self.read_as_admin or self.read_roster or self.observer

    @property
    def see_sis(self) -> bool:
        return self.admin

    @property
    def grader(self) -> bool:
        """`manage_grades` / `view_all_grades` / `read_reports` in this simplified model."""
        return self.read_as_admin and not self.designer_only

    def can_manage(self, enrollment_type: str) -> bool:
        """Create, conclude, delete, deactivate or reactivate an enrollment of this type."""
        return self.admin or (self.teacher and enrollment_type in MANAGEABLE_BY_TEACHER)

    def default_list_states(self) -> tuple[str, ...]:
        return ADMIN_STATES if self.read_as_admin else STUDENT_STATES


def course_rights(state: SimulatorState, user: User, course: Course) -> CourseRights:
    """Rights from root-account adminship or the caller's active enrollments in `course`."""
    if user.admin:
        return CourseRights(admin=True, teacher=True, read_as_admin=True, read_roster=True)
    active = {
        e.type for e in state.course_enrollments(course.id)
        if e.user_id == user.id and e.workflow_state == "active"
    }
    teacher = TEACHER in active
    staff = teacher or TA in active or DESIGNER in active
    return CourseRights(
        teacher=teacher,
        read_as_admin=staff,
        read_roster=staff or STUDENT in active,
        observer=OBSERVER in active,
        designer_only=staff and not teacher and TA not in active,
    )


def is_member(state: SimulatorState, user: User, course: Course) -> bool:
    """Any non-deleted enrollment (or adminship) lets a caller read the course itself."""
    if user.admin:
        return True
    return any(
        e.user_id == user.id and e.workflow_state not in ("deleted", "rejected")
        for e in state.course_enrollments(course.id)
    )
