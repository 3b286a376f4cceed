"""Asynchronous jobs (bulk enrollment, SIS import): queued, then run in order by `run_jobs`."""

from __future__ import annotations

from ledger_proxy.simulator import errors
from ledger_proxy.simulator.enrollments import EnrollOptions, enroll
from ledger_proxy.simulator.models import ENROLLMENT_TYPES, Context, Job, Progress, Role
from ledger_proxy.simulator.sis import run_import
from ledger_proxy.simulator.state import SimulatorState

MAX_BULK_PAIRS = 500


def bulk_role(state: SimulatorState, enrollment_type: str | None, role_id: str | None) -> Role:
    """§3.5 checks, each failing with a `{"errors": "<string>"}` 400."""
    if role_id:
        role = state.find_role(role_id)
        if role is None or role.workflow_state == "deleted":
            raise errors.bad_errors_string("Invalid role")
        if role.workflow_state == "inactive":
            raise errors.bad_errors_string(
                "Cannot create an enrollment with this role because it is inactive."
            )
        if enrollment_type and enrollment_type != role.base_role_type:
            raise errors.bad_errors_string(
                "The specified type must match the base type for the role"
            )
        return role
    enrollment_type = enrollment_type or "StudentEnrollment"
    if enrollment_type not in ENROLLMENT_TYPES:
        raise errors.bad_errors_string("Invalid enrollment type.")
    return state.built_in_role(enrollment_type)


def queue_bulk_enrollment(
    state: SimulatorState, actor_id: int, user_refs: list[str], course_refs: list[str],
    role: Role, ctx: Context,
) -> Progress:
    if len(user_refs) * len(course_refs) > MAX_BULK_PAIRS:
        raise errors.bad_errors_string("Too many users to enroll at once.")
    now = state.now()
    progress = Progress(
        id=next(state.ids.progress), context_id=1, user_id=actor_id, created_at=now,
        updated_at=now,
    )
    state.progresses[progress.id] = progress
    payload = {"users": user_refs, "courses": course_refs, "role_id": role.id, "ctx": ctx}
    state.jobs.append(Job("bulk_enrollment", progress.id, payload))
    return progress


def queue_sis_import(state: SimulatorState, sis_import_id: int, ctx: Context) -> None:
    state.jobs.append(Job("sis_import", sis_import_id, {"ctx": ctx}))


def run_jobs(state: SimulatorState) -> int:
    """Run every queued job in order; returns how many ran."""
    ran = 0
    with state.lock:
        while state.jobs:
            job = state.jobs.popleft()
            if job.kind == "bulk_enrollment":
                _run_bulk(state, job)
            else:
                ctx = job.payload["ctx"]
                run_import(state, state.sis_imports[job.target_id], ctx)
            ran += 1
    return ran


def _run_bulk(state: SimulatorState, job: Job) -> None:
    progress = state.progresses[job.target_id]
    role = state.roles[job.payload["role_id"]]
    ctx: Context = job.payload["ctx"]
    created: list[int] = []
    failed: list[dict[str, str]] = []
    for course_ref in job.payload["courses"]:
        course = state.find_course(course_ref)
        for user_ref in job.payload["users"]:
            user = state.find_user(user_ref)
            if course is None or user is None or course.workflow_state in ("deleted", "completed"):
                failed.append({"course_id": str(course_ref), "user_id": str(user_ref)})
                continue
            section = state.sections[course.default_section_id]
            options = EnrollOptions(course=course, section=section, user=user, role=role)
            enrollment, _ = enroll(state, options, ctx)
            created.append(enrollment.id)
    progress.workflow_state = "completed"
    progress.completion = 100.0
    progress.updated_at = state.now()
    progress.results = {"enrollment_ids": created, "failed": failed}
