"""The provenance lookup over real HTTP, judged on the simulator's record of how rows were made."""

from __future__ import annotations

import pytest
import requests
from canvasapi import Canvas

from .helpers import assert_canvas_error

PROXY_CLIENT = "python-canvasapi/"  # every write through the proxy here is made by canvasapi
BYPASS_CLIENT = "bypass-script/1.0"


def expected_verdict(truth):
    """What really happened, from the simulator's ground truth (never from the ledger)."""
    origin = truth["origin"]
    if origin["channel"] == "api" and (origin["user_agent"] or "").startswith(PROXY_CLIENT):
        return "integration"
    if truth["sis_import_id"] is not None:
        return "sis"
    return "manual"


def lookup(proxy, path, token, **params):
    return requests.get(
        f"{proxy.url}/ledger/v1/{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


@pytest.fixture
def mixed(world, sim, make_proxy):
    """A course with rows of every origin and state, and 250+ more to force pagination."""
    proxy = make_proxy(sim.url)
    course_id = world.course["id"]
    students = world.students
    canvas = Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"])
    course = canvas.get_course(course_id)

    def ui(user, **fields):
        return sim.control("POST", "ui/enrollments", {"course_id": course_id, "user_id": user["id"], "actor_user_id": world.teacher["id"], **fields})

    # Through the proxy: course and section endpoints, then changes of state.
    course.enroll_user(students[0]["id"], enrollment={"enrollment_state": "active"})
    canvas.get_section(world.section_b).enroll_user(students[1]["id"], enrollment={"type": "TaEnrollment"})
    course.enroll_user(students[7]["id"], enrollment={"type": "DesignerEnrollment"}).deactivate("deactivate")
    course.enroll_user(students[7]["id"], enrollment={"type": "ObserverEnrollment"}).deactivate("conclude")
    course.enroll_user(students[7]["id"], enrollment={"type": "TaEnrollment"}).deactivate("delete")
    # By hand in the web UI, and by a script that bypasses the proxy.
    ui(students[2])
    sim.control("POST", "api_bypass/enrollments", {"course_id": course_id, "user_id": students[3]["id"], "actor_user_id": world.admin["id"], "user_agent": BYPASS_CLIENT})
    # Made by hand long ago, then re-enrolled through the proxy: adopted, still manual.
    sim.control("POST", "clock", {"now": "2025-01-09T15:02:44Z"})
    ui(students[4])
    ui(students[5])
    sim.control("POST", "clock", {"now": None})
    course.enroll_user(students[4]["id"])
    # Made through the proxy, later claimed by an SIS import: still integration.
    course.enroll_user(students[6]["id"], enrollment={"enrollment_state": "active"})
    # SIS: new rows, a hand-made row it adopts (S-06), and the proxy-made row it claims (S-07).
    for n in range(3):
        sim.add_user(f"SIS Person {n}", sis_user_id=f"SIS-{n}")
    sim.control(
        "POST", "sis_imports",
        {"csv": "course_id,user_id,role,section_id,status\n"
                "BIO-101,SIS-0,student,,active\nBIO-101,SIS-1,teacher,BIO-101-B,active\n"
                "BIO-101,SIS-2,student,,completed\nBIO-101,S-06,student,,active\nBIO-101,S-07,student,,active\n"},
    )
    # Every other state, made by hand; and enough rows for three pages of 100.
    for state in ("invited", "creation_pending", "inactive", "completed", "rejected", "deleted"):
        sim.control("POST", "seed", {"course_id": course_id, "count": 2, "channel": "ui", "enrollment_state": state})
    sim.control("POST", "seed", {"course_id": course_id, "count": 250, "channel": "ui"})
    return proxy


def test_every_verdict_matches_how_the_row_was_really_made(world, sim, mixed):
    response = lookup(mixed, f"courses/{world.course['id']}/enrollments", world.admin["token"], include_deleted="true")
    assert response.status_code == 200, response.text
    body = response.json()
    truth = {row["id"]: row for row in sim.enrollments(course_id=world.course["id"])}
    got = {row["id"]: row for row in body["enrollments"]}
    assert len(body["enrollments"]) == len(got) == len(truth) > 270  # every row once, every state
    assert {row["enrollment_state"] for row in body["enrollments"]} == {
        "active", "invited", "creation_pending", "inactive", "completed", "rejected", "deleted"
    }
    wrong = {i: (got[i]["provenance"], expected_verdict(t), got[i]["reason"]) for i, t in truth.items() if got[i]["provenance"] != expected_verdict(t)}
    assert wrong == {}
    counts = {name: sum(1 for t in truth.values() if expected_verdict(t) == name) for name in ("integration", "sis", "manual")}
    assert {k: body["summary"][k] for k in counts} == counts
    assert counts["integration"] == 6 and counts["sis"] == 4
    assert body["summary"]["total"] == len(truth)


def test_each_row_carries_its_evidence(world, sim, mixed):
    body = lookup(mixed, f"courses/{world.course['id']}/enrollments", world.admin["token"]).json()
    by_user = {}
    for row in body["enrollments"]:
        by_user.setdefault(row["user_id"], []).append(row)
    made = by_user[world.students[0]["id"]][0]
    truth = {t["id"]: t for t in sim.enrollments(course_id=world.course["id"])}[made["id"]]
    assert made["provenance"] == "integration"
    assert made["ledger"]["action"] == "created"
    assert (made["ledger"]["integration"], made["ledger"]["actor_user_id"]) == ("roster-sync", world.admin["id"])
    assert made["ledger"]["canvas_request_id"] == truth["origin"]["request_context_id"]
    assert made["reason"].startswith(f"created through the proxy by roster-sync (user {world.admin['id']}) on ")
    assert made["predates_ledger"] is False
    for field in ("id", "user_id", "course_section_id", "type", "role", "enrollment_state", "created_at", "sis_import_id", "in_sis_roster", "ledger"):
        assert field in made
    assert set(made["ledger"]) >= {"integration", "actor_user_id", "action", "recorded_at", "canvas_request_id"}
    adopted = by_user[world.students[4]["id"]][0]
    assert (adopted["provenance"], adopted["ledger"]["action"]) == ("manual", "adopted")
    assert adopted["predates_ledger"] is True  # made (by the frozen clock) before the ledger began
    claimed = by_user[world.students[6]["id"]][0]
    assert claimed["provenance"] == "integration" and claimed["sis_import_id"] is not None
    assert "sis_import_id" in claimed["reason"]
    by_hand = by_user[world.students[2]["id"]][0]
    assert (by_hand["provenance"], by_hand["ledger"]) == ("manual", None)
    sis_adopted = by_user[world.students[5]["id"]][0]
    assert sis_adopted["provenance"] == "sis"


def test_deleted_rows_only_with_include_deleted(world, mixed):
    path = f"courses/{world.course['id']}/enrollments"
    without = lookup(mixed, path, world.admin["token"]).json()["enrollments"]
    with_deleted = lookup(mixed, path, world.admin["token"], include_deleted="true").json()["enrollments"]
    assert "deleted" not in {row["enrollment_state"] for row in without}
    assert len(with_deleted) - len(without) == 3


@pytest.mark.parametrize("verdict", ["manual", "sis", "integration"])
def test_provenance_filter(world, mixed, verdict):
    body = lookup(mixed, f"courses/{world.course['id']}/enrollments", world.admin["token"], provenance=verdict).json()
    assert body["enrollments"] and {row["provenance"] for row in body["enrollments"]} == {verdict}
    assert len(body["enrollments"]) == body["summary"][verdict]


def test_section_lookup(world, sim, mixed):
    body = lookup(mixed, f"sections/{world.section_b}/enrollments", world.admin["token"]).json()
    truth = [t for t in sim.enrollments(course_id=world.course["id"]) if t["course_section_id"] == world.section_b and t["enrollment_state"] != "deleted"]
    assert sorted(row["id"] for row in body["enrollments"]) == sorted(t["id"] for t in truth)
    assert {row["id"]: row["provenance"] for row in body["enrollments"]} == {t["id"]: expected_verdict(t) for t in truth}


def test_sis_style_course_id_is_resolved_by_canvas(world, mixed):
    by_sis = lookup(mixed, "courses/sis_course_id:BIO-101/enrollments", world.admin["token"]).json()
    by_id = lookup(mixed, f"courses/{world.course['id']}/enrollments", world.admin["token"]).json()
    assert by_sis == by_id


def test_teacher_lookup_never_calls_a_hidden_sis_row_manual(world, sim, mixed):
    """Canvas hides sis_import_id from teachers: rows the proxy did not make are 'unknown'."""
    body = lookup(mixed, f"courses/{world.course['id']}/enrollments", world.teacher["token"]).json()
    truth = {t["id"]: t for t in sim.enrollments(course_id=world.course["id"])}
    for row in body["enrollments"]:
        expected = expected_verdict(truth[row["id"]])
        assert row["sis_visible"] is False
        assert row["provenance"] == ("integration" if expected == "integration" else "unknown"), row


def test_a_sis_reader_token_lets_a_teacher_see_sis_verdicts(world, sim, make_proxy, mixed):
    reader = make_proxy(sim.url, SIS_READER_TOKEN=world.admin["token"], DATABASE=mixed.app.config["DATABASE"])
    path = f"courses/{world.course['id']}/enrollments"
    as_teacher = lookup(reader, path, world.teacher["token"]).json()
    as_admin = lookup(reader, path, world.admin["token"]).json()
    assert {r["id"]: r["provenance"] for r in as_teacher["enrollments"]} == {r["id"]: r["provenance"] for r in as_admin["enrollments"]}
    assert as_teacher["summary"]["unknown"] == 0


def test_errors(world, sim, mixed):
    course = f"courses/{world.course['id']}/enrollments"
    response = requests.get(f"{mixed.url}/ledger/v1/{course}", timeout=10)
    assert_canvas_error(response, 401, "user authorization required")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="canvas-lms"'
    response = lookup(mixed, course, "not-a-token")
    assert_canvas_error(response, 401, "Invalid access token.")
    outsider = sim.add_user("Outsider")
    response = lookup(mixed, course, outsider["token"])
    assert_canvas_error(response, 403, "not authorized")
    assert_canvas_error(lookup(mixed, "courses/999999/enrollments", world.admin["token"]), 404, "does not exist")
    assert_canvas_error(lookup(mixed, "courses/not-a-course/enrollments", world.admin["token"]), 404, "does not exist")
    assert_canvas_error(lookup(mixed, course, world.admin["token"], provenance="robots"), 400, "provenance")
    assert_canvas_error(lookup(mixed, course, world.admin["token"], colour="blue"), 400, "colour: unknown parameter")


def test_canvas_unreachable_is_502(world, make_proxy):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proxy = make_proxy(dead)
    assert_canvas_error(lookup(proxy, "courses/1/enrollments", "any-token"), 502, "could not be reached")
