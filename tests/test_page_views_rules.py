"""core/page_views: the matching rules of issue 14, table by table (no Canvas, no ledger)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger_proxy.core import page_views as pv

CREATED = datetime(2027, 3, 2, 9, 0, 2, 400_000, tzinfo=UTC)  # Canvas shows 09:00:02
ALLOW = timedelta(seconds=5)
COURSE, SECTION = 7, 70
TEACHER, OTHER, STUDENT = 11, 12, 13


def target(**overrides: Any) -> pv.Target:
    values: dict[str, Any] = {
        "enrollment_id": 100, "user_id": STUDENT, "course_id": COURSE, "section_id": SECTION,
        "created_at": CREATED,
    }
    return pv.Target(**{**values, **overrides})


def view(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": "req-1", "url": f"https://canvas.example/api/v1/courses/{COURSE}/enrollments",
        "http_method": "post", "created_at": "2027-03-02T09:00:02Z",
        "user_agent": "User-Generated", "app_name": None, "links": {"real_user": None},
    }
    return {**values, **overrides}


@pytest.mark.parametrize(
    ("fields", "matches"),
    [
        pytest.param({}, True, id="course-enrollments-post"),
        pytest.param({"http_method": None}, True, id="no-method"),
        pytest.param({"http_method": "get"}, False, id="a-get"),
        pytest.param({"url": f"/api/v1/sections/{SECTION}/enrollments"}, True, id="section"),
        pytest.param({"url": "/api/v1/sections/71/enrollments"}, False, id="other-section"),
        pytest.param({"url": f"/courses/{COURSE}/enroll_users"}, True, id="enroll-users"),
        pytest.param({"url": "/api/v1/courses/8/enrollments"}, False, id="other-course"),
        pytest.param({"url": f"/api/v1/courses/{COURSE}/enrollments/5"}, False, id="one-row"),
        pytest.param({"url": f"/api/v1/courses/{COURSE}/users"}, False, id="people-page"),
    ],
)
def test_what_counts_as_an_enrollment_create(fields: dict[str, Any], matches: bool) -> None:
    assert pv.creates_enrollment_in(view(**fields), COURSE, [SECTION]) is matches


@pytest.mark.parametrize(
    ("agent", "user_id", "via"),
    [
        pytest.param("User-Generated", TEACHER, "ui", id="user-generated"),
        pytest.param("Mozilla/5.0 (X11) Firefox/133.0", TEACHER, "ui", id="browser"),
        pytest.param("python-requests/2.32", TEACHER, "api", id="script"),
        pytest.param(None, TEACHER, "api", id="no-agent"),
        pytest.param("Mozilla/5.0", STUDENT, "self", id="enrolled-user"),
    ],
)
def test_via_from_the_user_agent(agent: str | None, user_id: int, via: str) -> None:
    assert pv.via_of(view(user_agent=agent), user_id, target()) == via


def run(views: dict[int, list[dict[str, Any]]], known: dict[str, int | None] | None = None):
    return pv.match(target(), views, [TEACHER, OTHER, STUDENT], [SECTION], known or {}, ALLOW)


@pytest.mark.parametrize(
    ("views", "known", "user_id", "confidence"),
    [
        pytest.param({TEACHER: [view()]}, {}, TEACHER, "probable", id="one-candidate"),
        pytest.param({TEACHER: [view()]}, {"req-1": None}, TEACHER, "confirmed", id="known-id"),
        pytest.param({TEACHER: [view()]}, {"req-1": 100}, TEACHER, "confirmed", id="known-row"),
        pytest.param(
            {TEACHER: [view()], OTHER: [view(id="req-2")]}, {}, None, "ambiguous", id="two",
        ),
        pytest.param(
            {TEACHER: [view()], OTHER: [view(id="req-2")]}, {"req-1": None}, TEACHER,
            "confirmed", id="two-one-confirmed",
        ),
        pytest.param(
            {TEACHER: [view()], OTHER: [view(id="req-2")]}, {"req-2": 99}, TEACHER,
            "probable", id="other-known-for-another-row",
        ),
        pytest.param(
            {TEACHER: [view(created_at="2027-03-02T09:00:08Z")]}, {}, None, None,
            id="outside-the-allowance",
        ),
        pytest.param(
            {TEACHER: [view(created_at="2027-03-02T09:00:07Z")]}, {}, TEACHER, "probable",
            id="at-the-allowance",
        ),
        pytest.param({}, {}, None, None, id="nobody"),
    ],
)
def test_confidence_never_overstates_the_evidence(
    views: dict[int, list[dict[str, Any]]], known: dict[str, int | None],
    user_id: int | None, confidence: str | None,
) -> None:
    found = run(views, known)
    if confidence is None:
        assert found.actor is None
        return
    assert found.actor is not None
    assert found.actor["confidence"] == confidence
    assert found.actor["user_id"] == user_id
    assert found.actor["source"] == "page_views"


def test_ambiguous_lists_everyone_and_names_nobody() -> None:
    found = run({TEACHER: [view()], OTHER: [view(id="req-2", user_agent="curl/8")]})
    assert found.actor is not None
    assert [c["user_id"] for c in found.actor["candidates"]] == [TEACHER, OTHER]
    assert found.actor["name"] is None
    assert "user" not in pv.reason(found.actor)


def test_the_closest_view_of_a_candidate_is_kept() -> None:
    far = view(id="far", created_at="2027-03-02T09:00:06Z")
    near = view(id="near", created_at="2027-03-02T09:00:03Z")
    found = run({TEACHER: [far, near]})
    assert found.actor is not None and found.actor["request_id"] == "near"


def test_windows_are_joined_into_as_few_queries_as_possible() -> None:
    at = [CREATED, CREATED + timedelta(minutes=10), CREATED + timedelta(days=2)]
    targets = [target(enrollment_id=n, created_at=moment) for n, moment in enumerate(at)]
    windows = pv.windows(targets, ALLOW)
    assert [w.enrollment_ids for w in windows] == [(0, 1), (2,)]
    assert windows[0].start == datetime(2027, 3, 2, 8, 59, 57, tzinfo=UTC)
    assert windows[1].end == datetime(2027, 3, 4, 9, 0, 8, tzinfo=UTC)  # end exclusive


def test_candidates_are_teaching_roles_admins_and_integrations() -> None:
    roster = [
        {"user_id": 1, "type": "TeacherEnrollment"}, {"user_id": 2, "type": "TaEnrollment"},
        {"user_id": 3, "type": "DesignerEnrollment"}, {"user_id": 4, "type": "StudentEnrollment"},
    ]
    assert pv.candidates(roster, [9], [8, 1]) == [1, 2, 3, 8, 9]
    assert pv.for_target([1, 2], target()) == [1, 2, STUDENT]


@pytest.mark.parametrize(
    ("via", "confidence", "sentence"),
    [
        pytest.param("ui", "probable", "Canvas page views show Terry (user 11) adding people in "
                     "the web UI (probable: the only match at that time).", id="ui"),
        pytest.param("api", "confirmed", "Canvas page views show Terry (user 11) calling the "
                     "enrollments API (confirmed: the same request).", id="api"),
        pytest.param("self", "probable", "Canvas page views show Terry (user 11) enrolling "
                     "themselves (probable: the only match at that time).", id="self"),
    ],
)
def test_the_reason_says_who_how_and_how_sure(via: str, confidence: str, sentence: str) -> None:
    actor = {"user_id": TEACHER, "name": "Terry", "via": via, "confidence": confidence}
    assert pv.reason(actor) == sentence
