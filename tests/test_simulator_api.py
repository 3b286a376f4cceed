"""The simulator's Canvas REST surface over raw HTTP: shapes, states, ids, permissions, paging."""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any

import pytest

from ledger_proxy.simulator.testing import SimulatorClient
from ledger_proxy.simulator.world import ADMIN_TOKEN, STUDENT_TOKEN, TEACHER_TOKEN

ADA, ALAN, GRACE, EDSGER = 3, 4, 5, 6
NOT_FOUND = {"errors": [{"message": "The specified resource does not exist."}]}
FORBIDDEN = {"status": "unauthorized", "errors": [{"message": "user not authorized to perform that action"}]}
ENROLLMENT_KEYS = {
    "id", "user_id", "course_id", "type", "created_at", "updated_at", "associated_user_id",
    "start_at", "end_at", "course_section_id", "root_account_id",
    "limit_privileges_to_course_section", "enrollment_state", "role", "role_id",
    "last_activity_at", "last_attended_at", "total_activity_time", "html_url",
}
SIS_KEYS = {
    "sis_import_id", "sis_account_id", "sis_course_id", "course_integration_id",
    "sis_section_id", "section_integration_id", "sis_user_id",
}


@pytest.fixture
def sim(demo_sim: SimulatorClient) -> SimulatorClient:
    return demo_sim


def enroll(sim: SimulatorClient, token: str = TEACHER_TOKEN, course: Any = 1, **fields: Any) -> Any:
    data = {f"enrollment[{k}]": v for k, v in fields.items()}
    return sim.api("POST", f"courses/{course}/enrollments", token, data=data)


# -- authentication and common headers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "status", "body"),
    [
        pytest.param({}, 401, {"status": "unauthenticated", "errors": [{"message": "user authorization required"}]}, id="none"),
        pytest.param({"headers": {"Authorization": "Bearer nope"}}, 401, {"errors": [{"message": "Invalid access token."}]}, id="unknown-token"),
        pytest.param({"headers": {"Authorization": f"Token {TEACHER_TOKEN}"}}, 401, {"status": "unauthenticated", "errors": [{"message": "user authorization required"}]}, id="wrong-scheme"),
    ],
)
def test_unauthenticated_answers(sim: SimulatorClient, kwargs: dict[str, Any], status: int, body: Any) -> None:
    response = sim.api("GET", "users/self", **kwargs)

    assert response.status_code == status
    assert response.json() == body
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="canvas-lms"'
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "X-Canvas-User-Id" not in response.headers


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"params": {"access_token": TEACHER_TOKEN}}, id="query"),
        pytest.param({"data": {"access_token": TEACHER_TOKEN}}, id="form"),
        pytest.param({"json": {"access_token": TEACHER_TOKEN}}, id="json"),
    ],
)
def test_access_token_parameter(sim: SimulatorClient, kwargs: dict[str, Any]) -> None:
    method = "GET" if "params" in kwargs else "POST"
    path = "users/self" if method == "GET" else "courses/1/enrollments"

    response = sim.api(method, path, **kwargs)

    assert response.status_code in (200, 400)  # the POST has no enrollment params: a 400
    assert response.headers["X-Canvas-User-Id"] == "2"


def test_every_answer_carries_canvas_headers(sim: SimulatorClient) -> None:
    for response in (sim.api("GET", "users/self", TEACHER_TOKEN), sim.api("GET", "courses/999", TEACHER_TOKEN)):
        uuid.UUID(response.headers["X-Request-Context-Id"])
        assert float(response.headers["X-Request-Cost"]) >= 0
        assert response.headers["X-Rate-Limit-Remaining"] == "600.0"
        assert response.headers["X-Canvas-User-Id"] == "2"


def test_users_self_shows_sis_and_login_to_admins_only(sim: SimulatorClient) -> None:
    admin = sim.api("GET", "users/self", ADMIN_TOKEN).json()
    student = sim.api("GET", "users/self", STUDENT_TOKEN).json()

    assert admin["login_id"] == "simadmin" and admin["sis_user_id"] == "A-001"
    assert student["name"] == "Ada Lovelace" and student["effective_locale"] == "en"
    assert "sis_user_id" not in student and "login_id" not in student
    assert set(student["permissions"]) == {"can_update_name", "can_update_avatar", "limit_parent_app_web_access"}


# -- create -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"data": {"enrollment[user_id]": "4", "enrollment[type]": "TaEnrollment"}}, id="form"),
        pytest.param({"files": {"enrollment[user_id]": (None, "4"), "enrollment[type]": (None, "TaEnrollment")}}, id="multipart"),
        pytest.param({"json": {"enrollment": {"user_id": 4, "type": "TaEnrollment"}}}, id="json"),
        pytest.param({"params": {"enrollment[user_id]": "4", "enrollment[type]": "TaEnrollment"}}, id="query-string"),
        pytest.param({"data": "enrollment[user_id]=5&enrollment[type]=TaEnrollment&enrollment[user_id]=4", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, id="last-wins"),
    ],
)
def test_create_accepts_every_body_encoding(sim: SimulatorClient, kwargs: dict[str, Any]) -> None:
    response = sim.api("POST", "courses/1/enrollments", TEACHER_TOKEN, **kwargs)

    assert response.status_code == 200
    body = response.json()
    assert (body["user_id"], body["type"], body["role"], body["role_id"]) == (ALAN, "TaEnrollment", "TaEnrollment", 5)
    assert set(body) == ENROLLMENT_KEYS  # a teacher sees no SIS fields; a TA row has no grades


def test_create_body_has_grades_for_students_and_sis_fields_for_admins(sim: SimulatorClient) -> None:
    body = enroll(sim, ADMIN_TOKEN, user_id=ALAN).json()

    assert set(body) == ENROLLMENT_KEYS | SIS_KEYS | {"grades"}
    assert (body["sis_course_id"], body["sis_user_id"], body["sis_import_id"]) == ("DEMO-101", "S-002", None)
    assert body["grades"]["html_url"] == f"{sim.url}/courses/1/grades/{ALAN}"


@pytest.mark.parametrize(
    ("fields", "status", "body"),
    [
        pytest.param({}, 400, {"message": "No parameters given"}, id="no-params"),
        pytest.param({"user_id": ALAN, "type": "StudentViewEnrollment"}, 400, {"message": "Invalid type"}, id="invalid-type"),
        pytest.param({"user_id": ALAN, "role_id": 999}, 400, {"message": "Invalid role"}, id="invalid-role-id"),
        pytest.param({"user_id": ALAN, "role": "Nope"}, 400, {"message": "Invalid role"}, id="invalid-role-name"),
        pytest.param({"user_id": ALAN, "role_id": 4, "type": "StudentEnrollment"}, 400, {"message": "The specified type must match the base type for the role"}, id="type-mismatch"),
        pytest.param({"type": "StudentEnrollment"}, 400, {"message": "Can't create an enrollment without a user. Include enrollment[user_id] to create an enrollment"}, id="missing-user"),
        pytest.param({"type": "Bogus", "limit_privileges_to_course_section": "t"}, 400, {"message": "Invalid type, Can't create an enrollment without a user. Include enrollment[user_id] to create an enrollment"}, id="errors-joined"),
        pytest.param({"user_id": 999}, 404, NOT_FOUND, id="unknown-user"),
        pytest.param({"user_id": "jdoe"}, 404, NOT_FOUND, id="garbage-user-ref"),
        pytest.param({"user_id": ALAN, "course_section_id": 999}, 404, NOT_FOUND, id="unknown-section"),
        pytest.param({"user_id": ALAN, "type": "TeacherEnrollment"}, 403, FORBIDDEN, id="teacher-adds-teacher"),
        pytest.param({"user_id": ALAN, "type": "ObserverEnrollment", "associated_user_id": ALAN}, 400, {"errors": {"associated_user_id": [{"attribute": "associated_user_id", "type": "Cannot observe yourself", "message": "Cannot observe yourself"}]}}, id="observe-yourself"),
    ],
)
def test_create_errors(sim: SimulatorClient, fields: dict[str, Any], status: int, body: Any) -> None:
    response = enroll(sim, **fields)

    assert (response.status_code, response.json()) == (status, body)


def test_create_error_order_and_permissions(sim: SimulatorClient) -> None:
    assert enroll(sim, course=999, user_id=ALAN).json() == NOT_FOUND
    assert enroll(sim, STUDENT_TOKEN, user_id=ALAN).status_code == 403
    assert enroll(sim, STUDENT_TOKEN).json() == {"message": "No parameters given"}  # before 403
    sim.control("PATCH", "courses/1", {"workflow_state": "completed"})
    concluded = enroll(sim, ADMIN_TOKEN, user_id=ALAN)
    assert concluded.json() == {"message": "Can't add an enrollment to a concluded course."}
    sim.control("PATCH", "courses/1", {"workflow_state": "deleted"})
    assert enroll(sim, ADMIN_TOKEN, user_id=ALAN).status_code == 404


def test_inactive_custom_role(sim: SimulatorClient) -> None:
    role = sim.control("POST", "roles", {"name": "Auditor", "base_role_type": "StudentEnrollment", "workflow_state": "inactive"})

    response = enroll(sim, user_id=ALAN, role_id=role["id"])

    assert response.json() == {"message": "Cannot create an enrollment with this role because it is inactive."}


def test_custom_role_infers_type(sim: SimulatorClient) -> None:
    role = sim.control("POST", "roles", {"name": "Auditor", "base_role_type": "StudentEnrollment"})

    body = enroll(sim, user_id=ALAN, role="Auditor").json()

    assert (body["type"], body["role"], body["role_id"]) == ("StudentEnrollment", "Auditor", role["id"])


@pytest.mark.parametrize(
    ("course_state", "fields", "expected"),
    [
        pytest.param("available", {}, "invited", id="published-student"),
        pytest.param("unpublished", {}, "creation_pending", id="unpublished-student"),
        pytest.param("unpublished", {"type": "TaEnrollment"}, "invited", id="unpublished-ta-promoted"),
        pytest.param("unpublished", {"type": "DesignerEnrollment"}, "invited", id="unpublished-designer-promoted"),
        pytest.param("unpublished", {"enrollment_state": "invited"}, "creation_pending", id="unpublished-explicit-invited"),
        pytest.param("available", {"type": "ObserverEnrollment"}, "active", id="observer-registered"),
        pytest.param("available", {"enrollment_state": "active"}, "active", id="explicit-active"),
        pytest.param("available", {"enrollment_state": "inactive"}, "inactive", id="explicit-inactive"),
    ],
)
def test_default_states(sim: SimulatorClient, course_state: str, fields: dict[str, Any], expected: str) -> None:
    course = sim.add_course("State Course", workflow_state=course_state)

    body = enroll(sim, ADMIN_TOKEN, course=course["id"], user_id=ALAN, **fields).json()

    assert body["enrollment_state"] == expected


@pytest.mark.parametrize(
    ("setup", "requested", "expected"),
    [
        pytest.param("active", {}, "active", id="active-stays-active"),
        pytest.param("invited", {}, "invited", id="invited-stays-invited"),
        pytest.param("invited", {"enrollment_state": "active"}, "active", id="invited-becomes-active"),
        pytest.param("inactive", {}, "invited", id="inactive-takes-request"),
        pytest.param("completed", {}, "invited", id="completed-takes-request"),
        pytest.param("deleted", {"enrollment_state": "active"}, "active", id="deleted-resurrected"),
    ],
)
def test_re_enroll_state_table(sim: SimulatorClient, setup: str, requested: dict[str, Any], expected: str) -> None:
    first = enroll(sim, user_id=ALAN, enrollment_state="active" if setup != "invited" else "invited").json()
    tasks = {"inactive": "deactivate", "completed": "conclude", "deleted": "delete"}
    if setup in tasks:
        sim.api("DELETE", f"courses/1/enrollments/{first['id']}", TEACHER_TOKEN, params={"task": tasks[setup]})

    again = enroll(sim, user_id=ALAN, **requested)

    assert again.status_code == 200
    assert (again.json()["id"], again.json()["enrollment_state"]) == (first["id"], expected)
    assert again.json()["created_at"] == first["created_at"]


def test_re_enroll_matches_on_section_type_and_observee(sim: SimulatorClient) -> None:
    base = enroll(sim, user_id=ALAN).json()["id"]
    same_default_section = enroll(sim, user_id=ALAN, course_section_id=1).json()["id"]
    other_section = enroll(sim, user_id=ALAN, course_section_id=2).json()["id"]
    other_type = enroll(sim, user_id=ALAN, type="TaEnrollment").json()["id"]
    observer_a = enroll(sim, user_id=ADA, type="ObserverEnrollment", associated_user_id=ALAN).json()["id"]
    observer_b = enroll(sim, user_id=ADA, type="ObserverEnrollment", associated_user_id=GRACE).json()["id"]

    assert same_default_section == base
    assert len({base, other_section, other_type, observer_a, observer_b}) == 5


def test_re_enroll_resets_request_attributes_and_moves_updated_at(sim: SimulatorClient) -> None:
    sim.control("POST", "clock", {"now": "2025-01-01T00:00:00Z"})
    first = enroll(sim, user_id=ALAN, limit_privileges_to_course_section="yes").json()
    sim.control("POST", "clock", {"advance_seconds": 60})

    again = enroll(sim, user_id=ALAN).json()

    assert first["limit_privileges_to_course_section"] is True
    assert again["limit_privileges_to_course_section"] is False
    assert (again["created_at"], again["updated_at"]) == ("2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z")


@pytest.mark.parametrize(
    ("path", "user_ref"),
    [
        pytest.param("courses/sis_course_id:DEMO-101/enrollments", "sis_user_id:S-002", id="sis-course-and-user"),
        pytest.param("courses/1/enrollments", "sis_login_id:ATURING", id="login-id-any-case"),
        pytest.param("courses/sis_course_id:DEMO%2F101/enrollments", "4", id="encoded-slash"),
        pytest.param("sections/sis_section_id:DEMO-101-B/enrollments", "4", id="sis-section"),
    ],
)
def test_sis_id_forms(sim: SimulatorClient, path: str, user_ref: str) -> None:
    sim.add_course("Slashed", sis_course_id="DEMO/101")

    response = sim.api("POST", path, ADMIN_TOKEN, data={"enrollment[user_id]": user_ref})

    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == ALAN


def test_self_user_ref_and_sis_section_in_body(sim: SimulatorClient) -> None:
    body = enroll(sim, ADMIN_TOKEN, user_id="self", course_section_id="sis_section_id:DEMO-101-B").json()

    assert (body["user_id"], body["course_section_id"]) == (1, 2)


def test_section_url_forces_its_section(sim: SimulatorClient) -> None:
    response = sim.api("POST", "sections/2/enrollments", TEACHER_TOKEN, data={"enrollment[user_id]": ALAN, "enrollment[course_section_id]": 1})

    assert response.json()["course_section_id"] == 2


def test_deleted_section_url_is_404_after_parameter_checks(sim: SimulatorClient) -> None:
    sim.control("PATCH", "sections/2", {"workflow_state": "deleted"})

    assert sim.api("POST", "sections/2/enrollments", TEACHER_TOKEN, data={"x": 1}).json() == {"message": "No parameters given"}
    assert sim.api("POST", "sections/2/enrollments", TEACHER_TOKEN, data={"enrollment[user_id]": ALAN}).status_code == 404


# -- change -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "state"),
    [
        pytest.param({}, "completed", id="default-conclude"),
        pytest.param({"params": {"task": "bogus"}}, "completed", id="unknown-concludes"),
        pytest.param({"params": {"task": "delete"}}, "deleted", id="delete-query"),
        pytest.param({"data": {"task": "deactivate"}}, "inactive", id="deactivate-body"),
        pytest.param({"data": {"task": "inactivate"}}, "inactive", id="inactivate-body"),
    ],
)
def test_destroy_tasks(sim: SimulatorClient, kwargs: dict[str, Any], state: str) -> None:
    enrollment_id = enroll(sim, user_id=ALAN).json()["id"]

    response = sim.api("DELETE", f"courses/1/enrollments/{enrollment_id}", TEACHER_TOKEN, **kwargs)

    assert (response.status_code, response.json()["enrollment_state"]) == (200, state)


def test_destroy_not_found_cases(sim: SimulatorClient) -> None:
    other = sim.add_course("Other")
    enrollment_id = enroll(sim, user_id=ALAN).json()["id"]

    wrong_course = sim.api("DELETE", f"courses/{other['id']}/enrollments/{enrollment_id}", ADMIN_TOKEN)
    sim.api("DELETE", f"courses/1/enrollments/{enrollment_id}", TEACHER_TOKEN, params={"task": "delete"})
    again = sim.api("DELETE", f"courses/1/enrollments/{enrollment_id}", TEACHER_TOKEN, params={"task": "delete"})

    assert (wrong_course.status_code, wrong_course.json()) == (404, NOT_FOUND)
    assert (again.status_code, again.json()) == (404, NOT_FOUND)


def test_reactivate_requires_inactive(sim: SimulatorClient) -> None:
    enrollment_id = enroll(sim, user_id=ALAN).json()["id"]

    response = sim.api("PUT", f"courses/1/enrollments/{enrollment_id}/reactivate", TEACHER_TOKEN)

    assert (response.status_code, response.json()) == (400, {"error": "enrollment not inactive"})


def test_teacher_cannot_remove_a_teacher(sim: SimulatorClient) -> None:
    response = sim.api("DELETE", "courses/1/enrollments/1", TEACHER_TOKEN)

    assert (response.status_code, response.json()) == (403, FORBIDDEN)


@pytest.mark.parametrize(
    ("setup", "action", "status", "body"),
    [
        pytest.param("invited", "reject", 200, {"success": True}, id="reject"),
        pytest.param("active", "accept", 200, {"success": True}, id="accept-already-active"),
        pytest.param("inactive", "accept", 400, {"error": "membership not activated"}, id="inactive"),
        pytest.param("completed", "accept", 400, {"error": "no current invitation"}, id="completed"),
    ],
)
def test_accept_and_reject(sim: SimulatorClient, setup: str, action: str, status: int, body: Any) -> None:
    state = "invited" if setup == "invited" else "active"
    enrollment_id = enroll(sim, user_id=ADA, enrollment_state=state).json()["id"]
    tasks = {"inactive": "deactivate", "completed": "conclude"}
    if setup in tasks:
        sim.api("DELETE", f"courses/1/enrollments/{enrollment_id}", TEACHER_TOKEN, params={"task": tasks[setup]})

    response = sim.api("POST", f"courses/1/enrollments/{enrollment_id}/{action}", STUDENT_TOKEN)

    assert (response.status_code, response.json()) == (status, body)


def test_only_the_invitee_may_accept(sim: SimulatorClient) -> None:
    enrollment_id = enroll(sim, user_id=ALAN).json()["id"]

    assert sim.api("POST", f"courses/1/enrollments/{enrollment_id}/accept", STUDENT_TOKEN).status_code == 403


def test_last_attended(sim: SimulatorClient) -> None:
    enrollment_id = enroll(sim, user_id=ALAN).json()["id"]

    ok = sim.api("PUT", f"courses/1/users/{ALAN}/last_attended", TEACHER_TOKEN, data={"date": "2025-03-01T10:00:00Z"})
    bad = sim.api("PUT", f"courses/1/users/{ALAN}/last_attended", TEACHER_TOKEN, data={"date": "soon"})

    assert ok.json() == {"date": "2025-03-01T10:00:00Z"}
    assert (bad.status_code, bad.json()) == (400, {"message": "Invalid date time input"})
    shown = sim.api("GET", f"accounts/1/enrollments/{enrollment_id}", ADMIN_TOKEN).json()
    assert shown["last_attended_at"] == "2025-03-01T10:00:00Z"


# -- listing and pagination ---------------------------------------------------------------------


def _list(sim: SimulatorClient, token: str, path: str = "courses/1/enrollments", **params: Any) -> Any:
    return sim.api("GET", path, token, params=params)


def test_default_list_states_depend_on_the_caller(sim: SimulatorClient) -> None:
    enroll(sim, user_id=ADA, enrollment_state="active")
    inactive = enroll(sim, user_id=ALAN, enrollment_state="inactive").json()["id"]
    completed = enroll(sim, user_id=GRACE).json()["id"]
    sim.api("DELETE", f"courses/1/enrollments/{completed}", TEACHER_TOKEN)

    teacher_view = {row["id"] for row in _list(sim, TEACHER_TOKEN).json()}
    student_view = {row["id"] for row in _list(sim, STUDENT_TOKEN).json()}
    completed_only = _list(sim, TEACHER_TOKEN, **{"state[]": "completed"}).json()

    assert inactive in teacher_view and completed not in teacher_view
    assert inactive not in student_view and len(student_view) == 2
    assert [row["id"] for row in completed_only] == [completed]


def test_list_rows_carry_user_and_filters_apply(sim: SimulatorClient) -> None:
    enroll(sim, user_id=ALAN)
    enroll(sim, user_id=GRACE, type="TaEnrollment")

    tas = _list(sim, TEACHER_TOKEN, **{"type[]": "TaEnrollment"}).json()
    alan = _list(sim, TEACHER_TOKEN, user_id="sis_user_id:S-002").json()

    assert [(r["user_id"], r["user"]["name"]) for r in tas] == [(GRACE, "Grace Hopper")]
    assert [r["user_id"] for r in alan] == [ALAN]
    assert _list(sim, TEACHER_TOKEN, **{"role[]": "Nope"}).status_code == 400
    assert _list(sim, TEACHER_TOKEN, **{"sis_user_id[]": "S-002"}).json() == {"message": "Insufficient permissions to filter by SIS fields"}
    assert _list(sim, STUDENT_TOKEN, path="courses/1/enrollments").status_code == 403


def test_link_header_exact_format(sim: SimulatorClient) -> None:
    for user_id in (ALAN, GRACE):
        enroll(sim, user_id=user_id)
    query = "state[]=active&state[]=invited&access_token=x&include[]=avatar_url&per_page=1&per_page=2"

    response = sim.http.get(f"{sim.url}/api/v1/courses/1/enrollments?{query}", headers={"Authorization": f"Bearer {TEACHER_TOKEN}"})

    endpoint = f"{sim.url}/api/v1/courses/1/enrollments"
    carried = "include%5B%5D=avatar_url&state%5B%5D=active&state%5B%5D=invited"
    token = base64.urlsafe_b64encode(json.dumps(["StudentEnrollment", "Turing, Alan", 2], separators=(",", ":")).encode()).decode().rstrip("=")
    assert response.headers["Link"] == (
        f'<{endpoint}?{carried}&page=first&per_page=2>; rel="current",'
        f'<{endpoint}?{carried}&page=bookmark:{token}&per_page=2>; rel="next",'
        f'<{endpoint}?{carried}&page=first&per_page=2>; rel="first"'
    )
    last = sim.http.get(f"{endpoint}?{carried}&page=bookmark:{token}&per_page=2", headers={"Authorization": f"Bearer {TEACHER_TOKEN}"})
    assert [row["user_id"] for row in last.json()] == [2]  # only the teacher is left
    assert 'rel="next"' not in last.headers["Link"]
    assert re.findall(r'rel="(\w+)"', last.headers["Link"]) == ["current", "first"]


@pytest.mark.parametrize(
    ("per_page", "expected"),
    [
        pytest.param(None, 10, id="default"),
        pytest.param("3", 3, id="number"),
        pytest.param("1000", 100, id="clamped"),
        pytest.param("0", 1, id="zero"),
        pytest.param("abc", 1, id="garbage"),
        pytest.param(["10", "2"], 2, id="last-wins"),
    ],
)
def test_per_page(sim: SimulatorClient, per_page: Any, expected: int) -> None:
    sim.control("POST", "seed", {"course_id": 1, "count": 120})

    response = _list(sim, TEACHER_TOKEN, per_page=per_page)

    assert len(response.json()) == expected
    assert f"per_page={expected}>" in response.headers["Link"]


@pytest.mark.parametrize(
    ("page", "status"),
    [
        pytest.param("first", 200, id="first"),
        pytest.param("1", 200, id="one"),
        pytest.param("2", 404, id="numeric-page"),
        pytest.param("bookmark:!!!", 404, id="bad-bookmark"),
    ],
)
def test_page_parameter(sim: SimulatorClient, page: str, status: int) -> None:
    assert _list(sim, TEACHER_TOKEN, page=page).status_code == status


def test_user_enrollments(sim: SimulatorClient) -> None:
    enroll(sim, user_id=ADA)
    other = sim.add_course("Other")
    enroll(sim, ADMIN_TOKEN, course=other["id"], user_id=ADA, enrollment_state="active")

    own = _list(sim, STUDENT_TOKEN, path="users/self/enrollments").json()
    active_only = _list(sim, STUDENT_TOKEN, path="users/self/enrollments", **{"state[]": "active"}).json()

    assert sorted(r["course_id"] for r in own) == [1, other["id"]]
    assert [r["course_id"] for r in active_only] == [other["id"]]
    assert _list(sim, STUDENT_TOKEN, path="users/self/enrollments", state="nope").json() == {"error": "Invalid state nope"}
    assert _list(sim, STUDENT_TOKEN, path=f"users/{ALAN}/enrollments").status_code == 403


def test_string_ids(sim: SimulatorClient) -> None:
    response = enroll(sim, ADMIN_TOKEN, user_id=ALAN)
    listed = sim.api("GET", "courses/1/enrollments", TEACHER_TOKEN, headers={"Accept": "application/json+canvas-string-ids"})

    row = listed.json()[0]
    assert response.json()["id"] == 2
    assert (row["id"], row["user_id"], row["course_section_id"], row["user"]["id"]) == ("2", "4", "1", "4")
    assert row["associated_user_id"] is None and row["total_activity_time"] == 0


# -- asynchronous jobs --------------------------------------------------------------------------


def test_bulk_enrollment_progress(sim: SimulatorClient) -> None:
    response = sim.api("POST", "accounts/1/bulk_enrollment", ADMIN_TOKEN, data=[("user_ids[]", ALAN), ("user_ids[]", GRACE), ("course_ids[]", 1)])

    progress = response.json()
    assert (progress["tag"], progress["workflow_state"], progress["context_type"]) == ("bulk_enrollment", "queued", "Account")
    done = sim.http.get(progress["url"], headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert done["workflow_state"] == "completed"
    bulk = [e for e in sim.enrollments(course_id=1) if e["origin"]["channel"] == "bulk"]
    assert sorted(e["user_id"] for e in bulk) == [ALAN, GRACE]
    invalid = sim.api("POST", "accounts/1/bulk_enrollment", ADMIN_TOKEN, data={"enrollment_type": "Nope"})
    assert (invalid.status_code, invalid.json()) == (400, {"errors": "Invalid enrollment type."})
    assert sim.api("POST", "accounts/1/bulk_enrollment", TEACHER_TOKEN).status_code == 403


def test_an_admin_masquerading_acts_as_the_user(world, sim):
    student = world.students[0]
    response = sim.api(
        "POST", f"courses/{world.course['id']}/enrollments", world.admin["token"],
        params={"as_user_id": world.teacher["id"]},
        data={"enrollment[user_id]": student["id"], "enrollment[type]": "StudentEnrollment"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Canvas-User-Id"] == str(world.teacher["id"])
    assert response.headers["X-Canvas-Real-User-Id"] == str(world.admin["id"])
    origin = world.truth(response.json()["id"])["origin"]
    assert (origin["actor_user_id"], origin["real_user_id"]) == (world.teacher["id"], world.admin["id"])


@pytest.mark.parametrize("who", ["teacher", "unknown-target"])
def test_masquerading_without_the_right_is_refused(world, sim, who):
    token = world.teacher["token"] if who == "teacher" else world.admin["token"]
    target = world.students[0]["id"] if who == "teacher" else "sis_user_id:NOBODY"
    response = sim.api("GET", "users/self", token, params={"as_user_id": target})
    assert response.status_code == 401
    assert response.json() == {"errors": "Invalid as_user_id"}
