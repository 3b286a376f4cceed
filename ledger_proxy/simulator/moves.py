"""Canvas pathways that move existing enrollments without an enrollment call (§5): cross-listing
a section and merging users. Rows keep their ids (no Flask)."""

from __future__ import annotations

from typing import Any

from ledger_proxy.simulator.enrollments import record
from ledger_proxy.simulator.live_events import emit_enrollment
from ledger_proxy.simulator.models import Context, Enrollment, Section, User
from ledger_proxy.simulator.state import SimulatorState

# `UserMerge#enrollment_keeper`: the better of two conflicting rows, best first.
STATE_RANK = ("active", "invited", "creation_pending", "completed", "rejected", "inactive",
              "deleted")


def crosslist(state: SimulatorState, section: Section, course_id: int, ctx: Context) -> None:
    """`CourseSection#crosslist_to_course`: the section, with every enrollment in it, moves to
    the other course; the course it came from is kept as `nonxlist_course_id`."""
    if section.course_id == course_id:
        return
    if section.nonxlist_course_id is None:
        section.nonxlist_course_id = section.course_id
    move_section(state, section, course_id, ctx, "crosslist")


def uncrosslist(state: SimulatorState, section: Section, ctx: Context) -> None:
    """`CourseSection#uncrosslist`: back to `nonxlist_course_id` (nothing when not cross-listed)."""
    home = section.nonxlist_course_id
    if home is None:
        return
    section.nonxlist_course_id = None
    move_section(state, section, home, ctx, "uncrosslist")


def move_section(
    state: SimulatorState, section: Section, course_id: int, ctx: Context, detail: str,
) -> None:
    """`CourseSection#move_to_course`: `all_enrollments.update_all(course_id: ...)`: the same
    ids, no callbacks, `updated_at` untouched, no Live Events."""
    old_course_id = section.course_id
    section.course_id = course_id
    section.default = False
    for enrollment in list(state.course_enrollments(old_course_id)):
        if enrollment.course_section_id == section.id:
            _reindex(state, enrollment, course_id=course_id)
            record(
                enrollment, ctx, "moved", enrollment.workflow_state, enrollment.workflow_state,
                state.now(), detail=detail, from_course_id=old_course_id, to_course_id=course_id,
            )


def merge_users(state: SimulatorState, source: User, target: User, ctx: Context) -> None:
    """`UserMerge#into`, for enrollments: a source row that conflicts with a target row (same
    course, section, type, role and associated user) gives the target row the better state
    and is deleted; every other source row moves to the target with its id (`update_all`);
    observer rows observing the source now observe the target. The source user is deleted
    (its token stops working)."""
    for enrollment in [e for e in state.enrollments.values() if e.user_id == source.id]:
        key = (enrollment.course_id, target.id, enrollment.type, enrollment.role_id,
               enrollment.associated_user_id, enrollment.course_section_id)
        keeper = state.find_match(key)
        if keeper is not None:
            _resolve_conflict(state, enrollment, keeper, ctx)
            continue
        _reindex(state, enrollment, user_id=target.id)
        record(
            enrollment, ctx, "moved", enrollment.workflow_state, enrollment.workflow_state,
            state.now(), detail="merge", from_user_id=source.id, to_user_id=target.id,
        )
    for enrollment in [e for e in state.enrollments.values() if e.associated_user_id == source.id]:
        _reindex(state, enrollment, associated_user_id=target.id)
        record(
            enrollment, ctx, "moved", enrollment.workflow_state, enrollment.workflow_state,
            state.now(), detail="merge_observee", from_user_id=source.id, to_user_id=target.id,
        )
    observers = state.observer_links.pop(source.id, [])
    links = state.observer_links.setdefault(target.id, [])
    links.extend(o for o in observers if o not in links and o != target.id)
    for linked in state.observer_links.values():
        if source.id in linked:
            linked.remove(source.id)
            if target.id not in linked:
                linked.append(target.id)
    state.tokens.pop(source.token, None)
    state.merged_users[source.id] = target.id


def _resolve_conflict(
    state: SimulatorState, source_row: Enrollment, target_row: Enrollment, ctx: Context,
) -> None:
    now = state.now()
    rank = STATE_RANK.index
    if rank(source_row.workflow_state) < rank(target_row.workflow_state):
        before = target_row.workflow_state
        target_row.workflow_state = source_row.workflow_state  # update_all: updated_at stays
        record(target_row, ctx, "state_changed", before, target_row.workflow_state, now,
               detail="merge_keeper", from_enrollment_id=source_row.id)
    if source_row.workflow_state != "deleted":
        before = source_row.workflow_state
        source_row.workflow_state = "deleted"
        source_row.updated_at = now
        record(source_row, ctx, "state_changed", before, "deleted", now, detail="merge_conflict",
               kept_enrollment_id=target_row.id)
        emit_enrollment(state, source_row, ctx, created=False)  # keeper.destroy saves


def _reindex(state: SimulatorState, enrollment: Enrollment, **changes: Any) -> None:
    """Change identity columns of a row and keep the course and §2.6 match indexes true."""
    state.by_match.pop(enrollment.match_key(), None)
    old_course = enrollment.course_id
    for name, value in changes.items():
        setattr(enrollment, name, value)
    if enrollment.course_id != old_course:
        state.by_course[old_course].remove(enrollment.id)
        state.by_course.setdefault(enrollment.course_id, []).append(enrollment.id)
    state.by_match[enrollment.match_key()] = enrollment.id
