"""canvasapi pointed straight at the Canvas simulator, over real HTTP."""

from __future__ import annotations

import pytest
from canvasapi import Canvas
from canvasapi.enrollment import Enrollment
from canvasapi.exceptions import BadRequest, Forbidden, InvalidAccessToken, ResourceDoesNotExist

from ledger_proxy.simulator.testing import SimulatorClient
from ledger_proxy.simulator.world import ADMIN_TOKEN, STUDENT_TOKEN, TEACHER_TOKEN

DEMO_COURSE = 1
SECTION_B = 2
ADA, ALAN, GRACE = 3, 4, 5  # demo students; Ada owns STUDENT_TOKEN


@pytest.fixture
def sim(demo_sim: SimulatorClient) -> SimulatorClient:
    return demo_sim


def canvas(sim: SimulatorClient, token: str = TEACHER_TOKEN) -> Canvas:
    return Canvas(sim.url, token)


def test_get_course_has_what_canvasapi_needs(sim: SimulatorClient) -> None:
    course = canvas(sim).get_course(DEMO_COURSE)

    assert (course.id, course.name, course.course_code) == (1, "Demo Course", "DEMO-101")
    assert course.workflow_state == "available"
    assert (course.account_id, course.root_account_id, course.enrollment_term_id) == (1, 1, 1)


def test_course_enroll_user_returns_an_invited_enrollment_without_user(sim: SimulatorClient) -> None:
    enrollment = canvas(sim).get_course(DEMO_COURSE).enroll_user(ALAN)

    assert enrollment.type == "StudentEnrollment"
    assert enrollment.enrollment_state == "invited"
    assert enrollment.course_section_id == 1
    assert not hasattr(enrollment, "user")
    assert enrollment.html_url == f"{sim.url}/courses/1/users/{ALAN}"


def test_section_enroll_user_lands_in_that_section(sim: SimulatorClient) -> None:
    section = canvas(sim).get_section(SECTION_B)

    enrollment = section.enroll_user(GRACE, enrollment={"type": "TaEnrollment"})

    assert (enrollment.course_section_id, enrollment.type, enrollment.role_id) == (2, "TaEnrollment", 5)


def test_get_enrollments_walks_every_page_exactly_once(sim: SimulatorClient) -> None:
    seeded = sim.control("POST", "seed", {"course_id": DEMO_COURSE, "count": 250})

    rows = list(canvas(sim).get_course(DEMO_COURSE).get_enrollments())

    ids = [row.id for row in rows]
    assert len(ids) == len(set(ids)) == 251  # the teacher plus 250 seeded students
    assert set(seeded["enrollment_ids"]) <= set(ids)
    assert all(hasattr(row, "user") for row in rows)
    pages = sim.requests_log(path=r"/courses/1/enrollments$")
    assert len(pages) == 3
    assert pages[0]["query_string"] == "per_page=100"
    assert pages[1]["query_string"].startswith("page=bookmark:")


def test_get_enrollments_sorts_by_type_then_sortable_name(sim: SimulatorClient) -> None:
    course = canvas(sim).get_course(DEMO_COURSE)
    for user_id in (GRACE, ALAN, ADA):
        course.enroll_user(user_id)

    names = [(row.type, row.user["sortable_name"]) for row in course.get_enrollments()]

    assert names == [
        ("StudentEnrollment", "Hopper, Grace"),
        ("StudentEnrollment", "Lovelace, Ada"),
        ("StudentEnrollment", "Turing, Alan"),
        ("TeacherEnrollment", "Teacher, Terry"),
    ]


def test_deactivate_then_reactivate(sim: SimulatorClient) -> None:
    enrollment = canvas(sim).get_course(DEMO_COURSE).enroll_user(
        ALAN, enrollment={"enrollment_state": "active"}
    )

    inactive = enrollment.deactivate("deactivate")
    active = inactive.reactivate()

    assert (inactive.id, inactive.enrollment_state) == (enrollment.id, "inactive")
    assert (active.id, active.enrollment_state) == (enrollment.id, "active")


@pytest.mark.parametrize(
    ("task", "state"),
    [
        pytest.param("conclude", "completed", id="conclude"),
        pytest.param("delete", "deleted", id="delete"),
        pytest.param("inactivate", "inactive", id="inactivate"),
    ],
)
def test_deactivate_tasks(sim: SimulatorClient, task: str, state: str) -> None:
    enrollment = canvas(sim).get_course(DEMO_COURSE).enroll_user(ALAN)

    assert enrollment.deactivate(task).enrollment_state == state


def test_invited_student_accepts_their_own_invitation(sim: SimulatorClient) -> None:
    created = canvas(sim).get_course(DEMO_COURSE).enroll_user(ADA)
    student = canvas(sim, STUDENT_TOKEN)
    own = Enrollment(student._Canvas__requester, {"id": created.id, "course_id": DEMO_COURSE})

    assert own.accept() is True

    (truth,) = [e for e in sim.enrollments(course_id=1) if e["id"] == created.id]
    assert truth["enrollment_state"] == "active"
    assert truth["history"][-1]["detail"] == "accept"


def test_re_enrolling_returns_the_same_enrollment(sim: SimulatorClient) -> None:
    sim.control("POST", "clock", {"now": "2025-01-09T15:02:44Z"})
    course = canvas(sim).get_course(DEMO_COURSE)
    first = course.enroll_user(ALAN)
    sim.control("POST", "clock", {"advance_seconds": 90})

    second = course.enroll_user(ALAN)

    assert second.id == first.id
    assert second.created_at == first.created_at == "2025-01-09T15:02:44Z"
    assert second.updated_at == first.updated_at  # nothing changed, so nothing saved
    (truth,) = [e for e in sim.enrollments(course_id=1) if e["id"] == first.id]
    assert [h["action"] for h in truth["history"]] == ["created", "reused"]


def test_sis_user_id_reference_through_the_raw_requester(sim: SimulatorClient) -> None:
    course = canvas(sim).get_course(DEMO_COURSE)

    response = course._requester.request(
        "POST", "courses/1/enrollments", _kwargs=[("enrollment[user_id]", "sis_user_id:S-003")]
    )

    assert response.json()["user_id"] == GRACE


@pytest.mark.parametrize(
    ("token", "call", "exception"),
    [
        pytest.param("not-a-token", lambda c: c.get_course(1), InvalidAccessToken, id="bad-token"),
        pytest.param(TEACHER_TOKEN, lambda c: c.get_course(999), ResourceDoesNotExist, id="404"),
        pytest.param(
            STUDENT_TOKEN, lambda c: c.get_course(1), Forbidden, id="403-not-enrolled",
        ),
        pytest.param(
            TEACHER_TOKEN,
            lambda c: c.get_course(1).enroll_user(ALAN, enrollment={"type": "Bogus"}),
            BadRequest,
            id="400-invalid-type",
        ),
        pytest.param(
            TEACHER_TOKEN,
            lambda c: c.get_course(1).enroll_user(ALAN, enrollment={"type": "TeacherEnrollment"}),
            Forbidden,
            id="403-teacher-cannot-add-teachers",
        ),
    ],
)
def test_errors_map_to_canvasapi_exceptions(
    sim: SimulatorClient, token: str, call: object, exception: type[Exception],
) -> None:
    with pytest.raises(exception):
        call(canvas(sim, token))  # type: ignore[operator]


def test_admin_get_enrollment_by_account(sim: SimulatorClient) -> None:
    created = canvas(sim).get_course(DEMO_COURSE).enroll_user(ALAN)

    found = canvas(sim, ADMIN_TOKEN).get_account(1).get_enrollment(created.id)

    assert (found.id, found.user_id, found.sis_user_id) == (created.id, ALAN, "S-002")
