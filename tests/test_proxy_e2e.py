"""End to end: canvasapi -> ledger-proxy -> the Canvas simulator, judged on the simulator's record."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from canvasapi import Canvas
from canvasapi.exceptions import Forbidden, InvalidAccessToken, ResourceDoesNotExist

from .helpers import ledger_rows as ledger
from .helpers import raw_request


def events(proxy):
    return ledger(proxy, "SELECT * FROM events ORDER BY seq")


def test_course_enroll_user_is_recorded_as_created_with_canvas_evidence(world, proxy):
    canvas = Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"])
    course = canvas.get_course(world.course["id"])
    student = world.students[0]
    enrollment = course.enroll_user(student["id"], enrollment={"type": "StudentEnrollment", "enrollment_state": "active"})

    truth = world.truth(enrollment.id)
    assert truth["origin"]["channel"] == "api"
    [event] = events(proxy)
    assert event["action"] == "created"
    assert (event["enrollment_id"], event["user_id"], event["course_id"]) == (truth["id"], student["id"], world.course["id"])
    assert event["course_section_id"] == truth["course_section_id"] == world.section_a
    assert (event["type"], event["role"], event["enrollment_state"]) == ("StudentEnrollment", "StudentEnrollment", "active")
    assert (event["integration"], event["actor_user_id"]) == ("roster-sync", world.admin["id"])
    assert event["canvas_request_id"] == truth["origin"]["request_context_id"]
    assert truth["origin"]["user_agent"].startswith("python-canvasapi/")


def test_section_enroll_user_is_recorded_with_the_section(world, proxy):
    canvas = Canvas(proxy.url, world.admin["token"])
    section = canvas.get_section(world.section_b)
    enrollment = section.enroll_user(world.students[1]["id"], enrollment={"type": "TaEnrollment"})
    truth = world.truth(enrollment.id)
    [event] = events(proxy)
    assert (event["action"], event["course_section_id"], event["type"]) == ("created", world.section_b, "TaEnrollment")
    assert truth["course_section_id"] == world.section_b
    assert event["integration"] is None


def test_get_enrollments_pages_through_the_proxy(world, proxy, sim):
    sim.control("POST", "seed", {"course_id": world.course["id"], "count": 250})
    canvas = Canvas(f"{proxy.url}/i/auditor", world.admin["token"])
    seen = [e.id for e in canvas.get_course(world.course["id"]).get_enrollments()]
    truth = [e["id"] for e in sim.enrollments(course_id=world.course["id"]) if e["enrollment_state"] in ("active", "invited", "creation_pending", "inactive")]
    assert len(seen) == len(set(seen)) == len(truth) >= 251
    assert set(seen) == set(truth)
    pages = sim.requests_log(path=r"/courses/\d+/enrollments$")
    assert len(pages) >= 3  # canvasapi asked for 100 per page and followed the rewritten Link


def test_deactivate_and_reactivate_are_recorded(world, proxy):
    canvas = Canvas(proxy.url, world.admin["token"])
    course = canvas.get_course(world.course["id"])
    enrollment = course.enroll_user(world.students[2]["id"], enrollment={"enrollment_state": "active"})
    deactivated = enrollment.deactivate("deactivate")
    assert deactivated.enrollment_state == "inactive"
    reactivated = enrollment.reactivate()
    assert reactivated.enrollment_state == "active"
    assert [(e["action"], e["enrollment_state"]) for e in events(proxy)] == [
        ("created", "active"), ("deactivated", "inactive"), ("reactivated", "active"),
    ]
    assert world.truth(enrollment.id)["enrollment_state"] == "active"
    [view] = ledger(proxy, "SELECT * FROM enrollments")
    assert (view["origin_action"], view["last_action"], view["enrollment_state"]) == ("created", "reactivated", "active")


@pytest.mark.parametrize("task,action,state", [("conclude", "concluded", "completed"), ("delete", "deleted", "deleted")])
def test_conclude_and_delete_are_recorded(world, proxy, task, action, state):
    canvas = Canvas(proxy.url, world.admin["token"])
    enrollment = canvas.get_course(world.course["id"]).enroll_user(world.students[3]["id"])
    enrollment.deactivate(task)
    assert [e["action"] for e in events(proxy)] == ["created", action]
    assert world.truth(enrollment.id)["enrollment_state"] == state


def test_nested_json_client_with_sis_ids(world, proxy):
    response = requests.post(
        f"{proxy.url}/api/v1/courses/sis_course_id:BIO-101/enrollments",
        json={"enrollment": {"user_id": "sis_user_id:S-05", "type": "ObserverEnrollment", "course_section_id": "sis_section_id:BIO-101-B"}},
        headers={"Authorization": f"Bearer {world.admin['token']}", "X-Ledger-Integration": "kth-sync"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    created = response.json()
    truth = world.truth(created["id"])
    [event] = events(proxy)
    assert (event["user_id"], event["course_section_id"], event["type"]) == (world.students[4]["id"], world.section_b, "ObserverEnrollment")
    assert (event["integration"], event["action"]) == ("kth-sync", "created")
    assert truth["user_id"] == world.students[4]["id"]
    [req] = ledger(proxy, "SELECT * FROM requests")
    assert req["course_ref"] == "sis_course_id:BIO-101"


def test_token_in_query_client(world, proxy):
    token = world.admin["token"]
    response = requests.post(
        f"{proxy.url}/api/v1/courses/{world.course['id']}/enrollments?access_token={token}",
        data={"enrollment[user_id]": world.students[5]["id"]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    [event] = events(proxy)
    assert event["actor_user_id"] == world.admin["id"]
    assert world.truth(event["enrollment_id"])["origin"]["actor_user_id"] == world.admin["id"]


def test_canvas_errors_reach_canvasapi_and_record_nothing(world, proxy):
    course_id = world.course["id"]
    with pytest.raises(InvalidAccessToken):
        Canvas(proxy.url, "not-a-token").get_course(course_id).enroll_user(world.students[0]["id"])
    with pytest.raises(Forbidden):
        student = Canvas(proxy.url, world.students[0]["token"])
        student._Canvas__requester.request("POST", f"courses/{course_id}/enrollments", **{"enrollment[user_id]": world.students[1]["id"]})
    with pytest.raises(ResourceDoesNotExist):
        Canvas(proxy.url, world.admin["token"])._Canvas__requester.request(
            "POST", "courses/999999/enrollments", **{"enrollment[user_id]": world.students[1]["id"]}
        )
    assert events(proxy) == []
    statuses = sorted(r["http_status"] for r in ledger(proxy, "SELECT * FROM requests WHERE kind = 'enrollment_create'"))
    assert statuses == [403, 404]  # the invalid token failed at get_course, before any create
    assert {r["status"] for r in ledger(proxy, "SELECT * FROM requests")} == {"failed"}
    assert [e for e in world.sim.enrollments(course_id=course_id) if e["origin"]["channel"] == "api"] == []


def test_re_enrolling_a_hand_made_row_is_adopted(world, proxy, sim):
    student = world.students[6]
    sim.control("POST", "clock", {"now": "2025-01-09T15:02:44Z"})
    ui_row = sim.control(
        "POST", "ui/enrollments",
        {"course_id": world.course["id"], "user_id": student["id"], "actor_user_id": world.teacher["id"]},
    )
    sim.control("POST", "clock", {"now": None})
    canvas = Canvas(proxy.url, world.admin["token"])
    enrollment = canvas.get_course(world.course["id"]).enroll_user(student["id"])
    assert enrollment.id == ui_row["id"]
    assert enrollment.created_at == "2025-01-09T15:02:44Z"
    [event] = events(proxy)
    assert event["action"] == "adopted"
    truth = world.truth(enrollment.id)
    assert truth["origin"]["channel"] == "ui"
    assert [h["action"] for h in truth["history"]][-1] == "reused"


def test_the_raw_token_never_reaches_the_sqlite_files(world, proxy):
    token = world.admin["token"]
    canvas = Canvas(proxy.url, token)
    canvas.get_course(world.course["id"]).enroll_user(world.students[7]["id"])
    requests.post(
        f"{proxy.url}/api/v1/courses/{world.course['id']}/enrollments",
        data={"enrollment[user_id]": world.students[6]["id"], "access_token": token},
        timeout=10,
    )
    assert len(events(proxy)) == 2
    files = list(Path(proxy.app.config["DATABASE"]).parent.glob("ledger.sqlite3*"))
    assert files
    for path in files:
        assert token.encode() not in path.read_bytes(), path


def test_an_absolute_uri_request_never_reaches_another_host(world, proxy, upstream):
    other, other_server = upstream
    status, _, _ = raw_request(
        proxy.port,
        f"POST {other_server.url}/api/v1/courses/{world.course['id']}/enrollments HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{other_server.port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode(),
    )
    assert status == 400
    assert other.seen == []
    assert world.sim.requests_log(path="enrollments") == []


def test_sis_import_through_the_proxy_is_tied_to_its_job(world, proxy, sim):
    csv = "course_id,user_id,role,section_id,status\nBIO-101,S-08,student,,active\n"
    response = requests.post(
        f"{proxy.url}/i/sis-feed/api/v1/accounts/1/sis_imports",
        files={"attachment": ("enrollments.csv", csv.encode(), "text/csv")},
        data={"import_type": "instructure_csv"},
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    job_id = response.json()["id"]
    [job] = ledger(proxy, "SELECT * FROM async_jobs")
    assert (job["kind"], job["job_id"], job["integration"], job["actor_user_id"]) == ("sis_import", job_id, "sis-feed", world.admin["id"])
    made = [e for e in sim.enrollments(course_id=world.course["id"]) if e["user_id"] == world.students[7]["id"]]
    assert [e["sis_import_id"] for e in made] == [job_id]


@pytest.mark.parametrize("status", [403, 429])
def test_throttled_answers_pass_through_with_their_headers(world, proxy, sim, status):
    sim.control("POST", "settings", {"throttle": status})
    response = requests.get(
        f"{proxy.url}/api/v1/courses/{world.course['id']}/enrollments",
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=10,
    )
    assert response.status_code == status
    assert "Rate Limit Exceeded" in response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "X-Rate-Limit-Remaining" in response.headers


def test_a_hand_made_row_only_seconds_old_is_still_adopted(world, proxy, sim):
    """Canvas's created_at is compared on Canvas's own clock (its Date header), with 2 s for
    whole-second rounding, so a row made 4 s before the request is not taken for a new one."""
    from datetime import UTC, datetime, timedelta

    student = world.students[5]
    four_seconds_ago = datetime.now(UTC) - timedelta(seconds=4)
    sim.control("POST", "clock", {"now": four_seconds_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
    sim.control("POST", "ui/enrollments", {"course_id": world.course["id"], "user_id": student["id"], "actor_user_id": world.teacher["id"]})
    sim.control("POST", "clock", {"now": None})
    Canvas(proxy.url, world.admin["token"]).get_course(world.course["id"]).enroll_user(student["id"])
    assert [e["action"] for e in events(proxy)] == ["adopted"]


def test_a_re_enrollment_is_adopted_on_canvas_s_clock_not_the_proxy_s(world, sim, make_proxy):
    """Canvas's Date is its own clock: a row made on Canvas an hour before the re-enrollment,
    by Canvas's clock, is `adopted`, even when Canvas's clock runs ahead of the proxy's (here
    a month: by the proxy's clock the row would not exist yet, and look new)."""
    import sqlite3
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    import requests

    proxy = make_proxy(sim.url)
    student = world.students[6]
    made = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    re_enrolled = made + timedelta(hours=1)
    sim.control("POST", "clock", {"now": made.isoformat()})
    sim.control("POST", "ui/enrollments", {"course_id": world.course["id"], "user_id": student["id"],
                                          "type": "StudentEnrollment", "actor_user_id": world.teacher["id"]})
    sim.control("POST", "clock", {"now": re_enrolled.isoformat()})
    answer = requests.post(
        f"{proxy.url}/i/roster-sync/api/v1/courses/{world.course['id']}/enrollments",
        data={"enrollment[user_id]": student["id"], "enrollment[type]": "StudentEnrollment"},
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=10,
    )
    assert answer.status_code == 200
    # werkzeug's development servers (the simulator's and this proxy's) add their own Date
    # before the application's; Canvas's own comes last.
    assert answer.headers["Date"].endswith(format_datetime(re_enrolled, usegmt=True))
    assert world.truth(answer.json()["id"])["origin"]["channel"] == "ui"
    with sqlite3.connect(proxy.app.config["DATABASE"]) as conn:
        actions = [row[0] for row in conn.execute("SELECT action FROM events WHERE enrollment_id = ?", (answer.json()["id"],))]
    assert actions == ["adopted"]
