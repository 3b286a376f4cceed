"""Canvas JSON for the simulator's records, as seen by one caller (§6, §9; no Flask)."""

from __future__ import annotations

from typing import Any

from ledger_proxy.simulator.models import (
    ROOT_ACCOUNT_ID,
    STUDENT,
    Account,
    Course,
    Enrollment,
    Progress,
    Section,
    SisImport,
    User,
    iso,
)
from ledger_proxy.simulator.permissions import CourseRights, course_rights
from ledger_proxy.simulator.state import SimulatorState


class Viewer:
    """The authenticated caller, with course rights computed once per course per request."""

    def __init__(self, state: SimulatorState, user: User, base_url: str) -> None:
        self.state = state
        self.user = user
        self.base_url = base_url.rstrip("/")
        self._rights: dict[int, CourseRights] = {}

    @property
    def admin(self) -> bool:
        return self.user.admin

    def rights(self, course: Course) -> CourseRights:
        if course.id not in self._rights:
            self._rights[course.id] = course_rights(self.state, self.user, course)
        return self._rights[course.id]


def uuid_for(kind: str, record_id: int) -> str:
    """A stable 40-character Canvas-style uuid."""
    return f"sim{kind}{record_id}".ljust(40, "0")[:40]


def enrollment_json(
    viewer: Viewer, enrollment: Enrollment, *, with_user: bool = False,
) -> dict[str, Any]:
    """§6 `enrollment_json`; `user` only for the list endpoints."""
    state = viewer.state
    course = state.courses[enrollment.course_id]
    section = state.sections[enrollment.course_section_id]
    user = state.users[enrollment.user_id]
    rights = viewer.rights(course)
    own = enrollment.user_id == viewer.user.id
    data: dict[str, Any] = {
        "id": enrollment.id,
        "user_id": enrollment.user_id,
        "course_id": enrollment.course_id,
        "type": enrollment.type,
        "created_at": iso(enrollment.created_at),
        "updated_at": iso(enrollment.updated_at),
        "associated_user_id": enrollment.associated_user_id,
        "start_at": iso(enrollment.start_at),
        "end_at": iso(enrollment.end_at),
        "course_section_id": enrollment.course_section_id,
        "root_account_id": ROOT_ACCOUNT_ID,
        "limit_privileges_to_course_section": enrollment.limit_privileges_to_course_section,
        "enrollment_state": _visible_state(enrollment, course, section),
        "role": state.roles[enrollment.role_id].name,
        "role_id": enrollment.role_id,
    }
    if own or rights.grader:
        data["last_activity_at"] = iso(enrollment.last_activity_at)
        data["last_attended_at"] = iso(enrollment.last_attended_at)
        data["total_activity_time"] = enrollment.total_activity_time
    if viewer.admin:
        data["sis_import_id"] = enrollment.sis_import_id
    if enrollment.type == STUDENT:
        data["grades"] = _grades(viewer, enrollment, rights, own)
    if rights.see_sis:
        data.update(_enrollment_sis_fields(course, section, user))
    data["html_url"] = f"{viewer.base_url}/courses/{course.id}/users/{user.id}"
    if with_user:
        data["user"] = user_json(viewer, user)
    return data


def _visible_state(enrollment: Enrollment, course: Course, section: Section) -> str:
    if course.workflow_state == "deleted" or section.workflow_state == "deleted":
        return "deleted"
    return enrollment.workflow_state


def _grades(
    viewer: Viewer, enrollment: Enrollment, rights: CourseRights, own: bool,
) -> dict[str, Any]:
    grades: dict[str, Any] = {
        "html_url": f"{viewer.base_url}/courses/{enrollment.course_id}/grades/{enrollment.user_id}",
    }
    if own or rights.grader:
        grades.update(current_grade=None, current_score=None, final_grade=None, final_score=None)
    if rights.grader:
        grades.update(
            unposted_current_score=None, unposted_current_grade=None,
            unposted_final_score=None, unposted_final_grade=None,
        )
    return grades


def _enrollment_sis_fields(course: Course, section: Section, user: User) -> dict[str, Any]:
    return {
        "sis_account_id": None,
        "sis_course_id": course.sis_course_id,
        "course_integration_id": course.integration_id,
        "sis_section_id": section.sis_section_id,
        "section_integration_id": section.integration_id,
        "sis_user_id": user.sis_user_id,
    }


def user_json(viewer: Viewer, user: User) -> dict[str, Any]:
    """§6.3 `user_json`: the listing sub-object (SIS and login fields for admins only)."""
    data: dict[str, Any] = {
        "id": user.id,
        "name": user.name,
        "created_at": iso(user.created_at),
        "sortable_name": user.sortable_name,
        "short_name": user.short_name,
    }
    if viewer.admin:
        data.update(
            sis_user_id=user.sis_user_id, integration_id=user.integration_id,
            sis_import_id=None, login_id=user.login_id,
        )
    return data


def profile_json(viewer: Viewer, user: User) -> dict[str, Any]:
    """§9 `GET /users/self` and `/users/:id`."""
    data = user_json(viewer, user)
    data.update(
        locale=None,
        effective_locale="en",
        permissions={
            "can_update_name": True, "can_update_avatar": False,
            "limit_parent_app_web_access": False,
        },
    )
    return data


def course_json(viewer: Viewer, course: Course) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": course.id,
        "name": course.name,
        "account_id": course.account_id,
        "uuid": uuid_for("course", course.id),
        "start_at": None,
        "grading_standard_id": None,
        "is_public": False,
        "created_at": iso(course.created_at),
        "course_code": course.course_code,
        "default_view": "modules",
        "root_account_id": ROOT_ACCOUNT_ID,
        "enrollment_term_id": course.enrollment_term_id,
        "license": "private",
        "end_at": None,
        "public_syllabus": False,
        "storage_quota_mb": 500,
        "is_public_to_auth_users": False,
        "apply_assignment_group_weights": False,
        "calendar": {"ics": f"{viewer.base_url}/feeds/calendars/course_{course.id}.ics"},
        "time_zone": "Etc/UTC",
        "blueprint": False,
        "template": False,
        "hide_final_grades": False,
        "workflow_state": course.workflow_state,
        "restrict_enrollments_to_course_dates": False,
    }
    if viewer.admin:
        data.update(
            sis_course_id=course.sis_course_id, integration_id=course.integration_id,
            sis_import_id=None,
        )
    return data


def section_json(viewer: Viewer, section: Section) -> dict[str, Any]:
    course = viewer.state.courses[section.course_id]
    data: dict[str, Any] = {
        "id": section.id,
        "course_id": section.course_id,
        "name": section.name,
        "start_at": None,
        "end_at": None,
        "created_at": iso(section.created_at),
        "restrict_enrollments_to_section_dates": False,
        "nonxlist_course_id": section.nonxlist_course_id,
    }
    if viewer.admin:
        data.update(
            sis_section_id=section.sis_section_id, sis_course_id=course.sis_course_id,
            integration_id=section.integration_id, sis_import_id=None,
        )
    return data


def account_json(viewer: Viewer, account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "workflow_state": "active",
        "parent_account_id": None,
        "root_account_id": None,
        "uuid": uuid_for("account", account.id),
        "default_storage_quota_mb": 500,
        "default_user_storage_quota_mb": 50,
        "default_group_storage_quota_mb": 50,
        "default_time_zone": "Etc/UTC",
        "sis_account_id": account.sis_account_id,
        "integration_id": None,
        "sis_import_id": None,
    }


def progress_json(base_url: str, progress: Progress) -> dict[str, Any]:
    return {
        "id": progress.id,
        "context_id": progress.context_id,
        "context_type": "Account",
        "user_id": progress.user_id,
        "tag": progress.tag,
        "completion": progress.completion,
        "workflow_state": progress.workflow_state,
        "created_at": iso(progress.created_at),
        "updated_at": iso(progress.updated_at),
        "message": progress.message,
        "results": progress.results,
        "url": f"{base_url.rstrip('/')}/api/v1/progress/{progress.id}",
    }


def sis_import_json(state: SimulatorState, sis_import: SisImport) -> dict[str, Any]:
    starter = state.users.get(sis_import.user_id) if sis_import.user_id else None
    return {
        "id": sis_import.id,
        "created_at": iso(sis_import.created_at),
        "ended_at": iso(sis_import.ended_at),
        "updated_at": iso(sis_import.updated_at),
        "workflow_state": sis_import.workflow_state,
        "data": {
            "import_type": "instructure_csv",
            "supplied_batches": ["enrollment"],
            "counts": dict(sis_import.counts),
        },
        "statistics": sis_import.statistics,
        "progress": sis_import.progress,
        "errors_attachment": None,
        "user": None if starter is None else {
            "id": starter.id, "name": starter.name, "created_at": iso(starter.created_at),
            "sortable_name": starter.sortable_name, "short_name": starter.short_name,
        },
        "processing_warnings": [list(w) for w in sis_import.warnings],
        "processing_errors": [list(e) for e in sis_import.errors],
        "batch_mode": bool(sis_import.options.get("batch_mode")),
        "batch_mode_term_id": None,
        "multi_term_batch_mode": False,
        "skip_deletes": bool(sis_import.options.get("skip_deletes")),
        "override_sis_stickiness": False,
        "add_sis_stickiness": False,
        "clear_sis_stickiness": False,
        "diffing_data_set_identifier": None,
        "diffed_against_import_id": None,
        "csv_attachments": [],
    }


def ground_truth_json(state: SimulatorState, enrollment: Enrollment) -> dict[str, Any]:
    """`GET /_sim/enrollments`: every field, SIS included, plus origin and history."""
    course = state.courses[enrollment.course_id]
    section = state.sections[enrollment.course_section_id]
    user = state.users[enrollment.user_id]
    return {
        "id": enrollment.id,
        "user_id": enrollment.user_id,
        "course_id": enrollment.course_id,
        "course_section_id": enrollment.course_section_id,
        "root_account_id": ROOT_ACCOUNT_ID,
        "type": enrollment.type,
        "role": state.roles[enrollment.role_id].name,
        "role_id": enrollment.role_id,
        "enrollment_state": enrollment.workflow_state,
        "associated_user_id": enrollment.associated_user_id,
        "limit_privileges_to_course_section": enrollment.limit_privileges_to_course_section,
        "self_enrolled": enrollment.self_enrolled,
        "created_at": iso(enrollment.created_at),
        "updated_at": iso(enrollment.updated_at),
        "updated_at_precise": enrollment.updated_at.isoformat(),
        "start_at": iso(enrollment.start_at),
        "end_at": iso(enrollment.end_at),
        "completed_at": iso(enrollment.completed_at),
        "last_attended_at": iso(enrollment.last_attended_at),
        "sis_import_id": enrollment.sis_import_id,
        **_enrollment_sis_fields(course, section, user),
        "origin": dict(enrollment.origin),
        "history": [dict(entry) for entry in enrollment.history],
    }


def stringify_ids(value: Any) -> Any:
    """`Accept: application/json+canvas-string-ids`: every `id`, `*_id`, `*_ids` as strings."""
    if isinstance(value, list):
        return [stringify_ids(item) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, inner in value.items():
        if _is_id_key(key):
            result[key] = _id_to_string(inner)
        else:
            result[key] = stringify_ids(inner)
    return result


def _is_id_key(key: str) -> bool:
    return key == "id" or key.endswith("_id") or key.endswith("_ids")


def _id_to_string(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return [_id_to_string(item) for item in value]
    return stringify_ids(value)
