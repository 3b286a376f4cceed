"""The simulator's records: accounts, users, courses, sections, roles, enrollments and jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ROOT_ACCOUNT_ID = 1

STUDENT = "StudentEnrollment"
TEACHER = "TeacherEnrollment"
TA = "TaEnrollment"
DESIGNER = "DesignerEnrollment"
OBSERVER = "ObserverEnrollment"
ENROLLMENT_TYPES = (STUDENT, TEACHER, TA, DESIGNER, OBSERVER)
BUILT_IN_ROLE_IDS = {STUDENT: 3, TEACHER: 4, TA: 5, DESIGNER: 6, OBSERVER: 7}

WORKFLOW_STATES = (
    "active", "invited", "creation_pending", "inactive", "completed", "rejected", "deleted",
)
CHANNELS = ("api", "ui", "sis", "bulk", "seed")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """Canvas timestamps: ISO 8601, second precision, `Z` suffix."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Account:
    id: int
    name: str
    sis_account_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class User:
    id: int
    name: str
    sortable_name: str
    short_name: str
    token: str
    created_at: datetime
    sis_user_id: str | None = None
    integration_id: str | None = None
    login_id: str | None = None
    admin: bool = False
    registered: bool = True


@dataclass
class Course:
    id: int
    name: str
    course_code: str
    workflow_state: str  # available, unpublished (Canvas "claimed"), completed, deleted
    default_section_id: int
    created_at: datetime
    sis_course_id: str | None = None
    integration_id: str | None = None
    account_id: int = ROOT_ACCOUNT_ID
    enrollment_term_id: int = 1
    self_enrollment_code: str | None = None  # None: not open for self-enrollment

    @property
    def published(self) -> bool:
        return self.workflow_state in ("available", "completed")


@dataclass
class Section:
    id: int
    course_id: int
    name: str
    created_at: datetime
    default: bool = False
    sis_section_id: str | None = None
    integration_id: str | None = None
    workflow_state: str = "active"
    nonxlist_course_id: int | None = None  # the course it came from, while cross-listed


@dataclass
class Role:
    id: int
    name: str
    base_role_type: str
    workflow_state: str = "active"  # active, inactive, deleted
    built_in: bool = False


@dataclass
class Context:
    """Who and what is acting: the ground truth recorded in an enrollment's origin and history."""

    channel: str
    actor_user_id: int | None = None
    real_user_id: int | None = None  # the admin masquerading as actor_user_id (as_user_id)
    request_context_id: str | None = None
    user_agent: str | None = None
    sis_import_id: int | None = None
    # The rest only feeds Live Events metadata (simulator/live_events.py), not the ground truth.
    developer_key_id: str | None = None  # set for access-token requests, absent for sessions
    session_id: str | None = None
    http_method: str | None = None
    url: str | None = None  # absolute, or a path under `base_url`
    referrer: str | None = None
    base_url: str | None = None
    job_id: str | None = None
    job_tag: str | None = None


@dataclass
class Enrollment:
    id: int
    user_id: int
    course_id: int
    course_section_id: int
    type: str
    role_id: int
    workflow_state: str
    created_at: datetime
    updated_at: datetime
    origin: dict[str, Any]
    associated_user_id: int | None = None
    limit_privileges_to_course_section: bool = False
    self_enrolled: bool | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    completed_at: datetime | None = None
    last_activity_at: datetime | None = None
    last_attended_at: datetime | None = None
    total_activity_time: int = 0
    sis_import_id: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def match_key(self) -> tuple[int, int, str, int, int | None, int]:
        return match_key(
            self.course_id, self.user_id, self.type, self.role_id,
            self.associated_user_id, self.course_section_id,
        )


def match_key(
    course_id: int, user_id: int, type_: str, role_id: int,
    associated_user_id: int | None, section_id: int,
) -> tuple[int, int, str, int, int | None, int]:
    """The §2.6 identity of an enrollment: re-enrolling with the same key reuses the row."""
    return (course_id, user_id, type_, role_id, associated_user_id, section_id)


@dataclass
class Job:
    """A queued asynchronous job (bulk enrollment, SIS import), run by `SimulatorState.run_jobs`."""

    kind: str  # "bulk_enrollment" | "sis_import"
    target_id: int  # progress id or SIS import id
    payload: dict[str, Any]


@dataclass
class Progress:
    id: int
    context_id: int
    user_id: int | None
    created_at: datetime
    updated_at: datetime
    tag: str = "bulk_enrollment"
    workflow_state: str = "queued"
    completion: float = 0.0
    message: str | None = None
    results: dict[str, Any] | None = None


@dataclass
class SisImport:
    id: int
    account_id: int
    user_id: int | None
    created_at: datetime
    updated_at: datetime
    csv_text: str | None = None
    rows: list[dict[str, str]] | None = None
    workflow_state: str = "created"
    ended_at: datetime | None = None
    progress: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    statistics: dict[str, Any] | None = None
    warnings: list[list[str]] = field(default_factory=list)
    errors: list[list[str]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
