"""Enrollments Canvas makes or moves by itself (issue 10, item 1): linked observers' rows,
cross-listed sections and merged users, over real HTTP with canvasapi as the integration's
client, each verdict judged on the simulator's ground truth (origin and history), never on the
proxy's own output."""

from __future__ import annotations

import pytest
import requests
from canvasapi import Canvas
from canvasapi.exceptions import CanvasException

from .test_faults import ENROLLMENTS, reconcile

PROXY_CLIENT = "python-canvasapi/"  # the integration: canvasapi through the proxy
LABEL = "roster-sync"


def lookup(proxy, course_id, token):
    response = requests.get(
        f"{proxy.url}/ledger/v1/courses/{course_id}/enrollments",
        params={"include_deleted": "true"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {row["id"]: row for row in response.json()["enrollments"]}


def truth_of(sim, enrollment_id):
    [row] = [row for row in sim.enrollments() if row["id"] == enrollment_id]
    return row


def cause_in_truth(sim, truth):
    """The enrollment Canvas made this row for (its creating history entry's `linked_to`)."""
    created = truth["history"][0]
    return truth_of(sim, created["linked_to"]) if created.get("linked_to") else None


def expected(sim, truth):
    """What really made the row: the request Canvas made it in (for a linked observer's row,
    the request that made or restored the student's row, or the link), from its origin."""
    origin = truth["origin"]
    if origin["channel"] == "api" and (origin["user_agent"] or "").startswith(PROXY_CLIENT):
        return "integration"
    if origin["channel"] == "sis":
        return "sis"
    return "manual"


@pytest.fixture
def parent(sim, world):
    """An observer (parent account) linked to the world's first student."""
    observer = sim.add_user("Pat Parent")
    sim.control(
        "POST", "observer_links", {"observer_id": observer["id"], "student_id": world.students[0]["id"]}
    )
    return observer


@pytest.fixture
def integration(world, proxy):
    return Canvas(f"{proxy.url}/i/{LABEL}", world.admin["token"])


def observer_rows(sim, observer, course_id=None):
    return [row for row in sim.enrollments(course_id=course_id) if row["user_id"] == observer["id"]]


def test_observer_of_a_student_the_integration_enrolled_is_integration(world, sim, proxy, parent, integration):
    student = world.students[0]
    made = integration.get_course(world.course["id"]).enroll_user(
        student["id"], enrollment={"enrollment_state": "active"}
    )
    [observer_truth] = observer_rows(sim, parent)
    # Canvas made it in the integration's request, following the student's row.
    assert observer_truth["history"][0]["linked_to"] == made.id
    assert observer_truth["origin"]["request_context_id"] == truth_of(sim, made.id)["origin"]["request_context_id"]
    assert observer_truth["associated_user_id"] == student["id"]
    assert observer_truth["sis_import_id"] is None
    assert expected(sim, observer_truth) == "integration"

    rows = lookup(proxy, world.course["id"], world.admin["token"])
    row = rows[observer_truth["id"]]
    assert row["provenance"] == "integration", row["reason"]
    assert row["reason"].startswith(f"made by Canvas for observer user {parent['id']} (Pat Parent), following student")
    assert f"enrollment {made.id} that {LABEL} (user {world.admin['id']}) created through the proxy" in row["reason"]
    assert row["linked_to"] == {"enrollment_id": made.id, "user_id": student["id"], "course_section_id": world.section_a}
    assert row["ledger"] is None  # the proxy never saw a request for this row itself

    # The observer row follows the student's: concluded through the proxy, it is concluded too,
    # and it is still the integration's.
    made.deactivate("conclude")
    assert truth_of(sim, observer_truth["id"])["enrollment_state"] == "completed"
    assert truth_of(sim, observer_truth["id"])["history"][-1]["detail"] == "linked:conclude"
    row = lookup(proxy, world.course["id"], world.admin["token"])[observer_truth["id"]]
    assert (row["enrollment_state"], row["provenance"]) == ("completed", "integration")


def test_observer_of_a_student_made_by_hand_is_manual(world, sim, proxy, parent):
    student = sim.control(
        "POST", "ui/enrollments",
        {"course_id": world.course["id"], "user_id": world.students[0]["id"], "actor_user_id": world.teacher["id"]},
    )
    [observer_truth] = observer_rows(sim, parent)
    assert observer_truth["history"][0]["linked_to"] == student["id"]
    assert expected(sim, observer_truth) == "manual"
    row = lookup(proxy, world.course["id"], world.admin["token"])[observer_truth["id"]]
    assert row["provenance"] == "manual", row["reason"]
    assert row["linked_to"]["enrollment_id"] == student["id"]
    assert "which is manual: neither made through the proxy nor by SIS" in row["reason"]


def test_observer_of_an_sis_student_is_sis(world, sim, proxy, parent):
    sim.control("POST", "sis_imports", {"csv": "course_id,user_id,role,section_id,status\nBIO-101,S-01,student,,active\n"})
    [observer_truth] = observer_rows(sim, parent)
    student = cause_in_truth(sim, observer_truth)
    assert student["sis_import_id"] is not None and observer_truth["sis_import_id"] is None
    assert expected(sim, observer_truth) == "sis"
    row = lookup(proxy, world.course["id"], world.admin["token"])[observer_truth["id"]]
    assert row["provenance"] == "sis", row["reason"]
    assert f"Canvas shows sis_import_id {student['sis_import_id']}" in row["reason"]


def test_observer_of_a_student_whose_create_is_unsettled_is_pending_then_integration(world, sim, make_proxy, parent, monkeypatch):
    """Canvas made both rows but the answer was lost: the observer row waits with the student's."""
    proxy = make_proxy(sim.url)
    sim.set_faults({"method": "POST", "path": ENROLLMENTS, "when": "after", "times": 1, "action": "drop"})
    canvas = Canvas(f"{proxy.url}/i/{LABEL}", world.admin["token"])
    with pytest.raises(CanvasException):
        canvas.get_course(world.course["id"]).enroll_user(world.students[0]["id"], enrollment={"enrollment_state": "active"})
    [observer_truth] = observer_rows(sim, parent)
    student_id = observer_truth["history"][0]["linked_to"]
    rows = lookup(proxy, world.course["id"], world.admin["token"])
    assert rows[student_id]["provenance"] == "pending"
    row = rows[observer_truth["id"]]
    assert row["provenance"] == "pending" and "which is pending: request" in row["reason"]
    reconcile(monkeypatch, proxy.app.config["DATABASE"], sim, world.admin["token"])
    row = lookup(proxy, world.course["id"], world.admin["token"])[observer_truth["id"]]
    assert row["provenance"] == expected(sim, observer_truth) == "integration", row["reason"]


def test_teacher_without_sis_fields_gets_the_cause_s_verdict_too(world, sim, proxy, parent, integration):
    """A teacher's token: the observer follows the integration's student row (no SIS needed)."""
    integration.get_course(world.course["id"]).enroll_user(world.students[0]["id"])
    [observer_truth] = observer_rows(sim, parent)
    row = lookup(proxy, world.course["id"], world.teacher["token"])[observer_truth["id"]]
    assert row["provenance"] == expected(sim, observer_truth) == "integration"


def test_an_observer_added_by_hand_later_is_not_the_integration_s(world, sim, proxy, integration):
    student = world.students[1]
    made = integration.get_course(world.course["id"]).enroll_user(student["id"], enrollment={"enrollment_state": "active"})
    observer = sim.add_user("Olive Observer")
    sim.control("POST", "clock", {"advance_seconds": 3600})
    added = sim.control(
        "POST", "ui/enrollments",
        {"course_id": world.course["id"], "user_id": observer["id"], "type": "ObserverEnrollment",
         "associated_user_id": student["id"], "actor_user_id": world.teacher["id"]},
    )
    truth = truth_of(sim, added["id"])
    assert "linked_to" not in truth["history"][0] and truth["origin"]["channel"] == "ui"
    row = lookup(proxy, world.course["id"], world.admin["token"])[added["id"]]
    assert row["provenance"] == expected(sim, truth) == "manual", row["reason"]
    assert row["linked_to"] is None
    assert f"not with their enrollment in this section ({made.id} at" in row["reason"]


def test_linking_an_observer_later_enrolls_it_but_not_as_the_integration(world, sim, proxy, integration):
    """Canvas enrolls a newly linked observer in the student's current rows: the link made that
    row, not the integration's earlier request."""
    student = world.students[2]
    integration.get_course(world.course["id"]).enroll_user(student["id"], enrollment={"enrollment_state": "active"})
    observer = sim.add_user("Late Parent")
    sim.control("POST", "clock", {"advance_seconds": 3600})
    link = sim.control(
        "POST", "observer_links",
        {"observer_id": observer["id"], "student_id": student["id"], "actor_user_id": world.admin["id"]},
    )
    [made] = link["enrollment_ids"]
    truth = truth_of(sim, made)
    assert truth["history"][0]["cause"] == "observer_link" and truth["enrollment_state"] == "active"
    row = lookup(proxy, world.course["id"], world.admin["token"])[made]
    assert row["provenance"] == expected(sim, truth) == "manual", row["reason"]
    assert "linked later" in row["reason"]


def test_observer_row_made_when_the_integration_restores_the_student_is_integration(world, sim, proxy, integration):
    """The student's row was made by hand and deleted; the observer was linked meanwhile. The
    integration's re-enrollment restores the student's row (still manual: adopted) and Canvas
    makes the observer's row in that request: the integration's."""
    student = world.students[3]
    sim.control("POST", "clock", {"now": "2025-01-09T15:02:44Z"})  # made by hand long ago
    by_hand = sim.control("POST", "ui/enrollments", {"course_id": world.course["id"], "user_id": student["id"], "actor_user_id": world.teacher["id"], "enrollment_state": "active"})
    sim.api("DELETE", f"courses/{world.course['id']}/enrollments/{by_hand['id']}", world.teacher["token"], params={"task": "delete"})
    parent = sim.add_user("Pat Parent")
    assert sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": student["id"]})["enrollment_ids"] == []
    sim.control("POST", "clock", {"now": None})
    restored = integration.get_course(world.course["id"]).enroll_user(student["id"], enrollment={"enrollment_state": "active"})
    assert restored.id == by_hand["id"]
    [observer_truth] = observer_rows(sim, parent)
    assert observer_truth["history"][0]["linked_to"] == by_hand["id"]
    rows = lookup(proxy, world.course["id"], world.admin["token"])
    assert rows[by_hand["id"]]["provenance"] == expected(sim, truth_of(sim, by_hand["id"])) == "manual"
    row = rows[observer_truth["id"]]
    assert row["provenance"] == expected(sim, observer_truth) == "integration", row["reason"]
    assert f"when {LABEL} (user {world.admin['id']}) adopted student" in row["reason"]
    assert row["linked_to"]["enrollment_id"] == by_hand["id"]


def test_cross_listed_section_still_names_the_integration(world, sim, proxy, parent, integration):
    course = integration.get_course(world.course["id"])
    section = integration.get_section(world.section_b)
    made = [
        section.enroll_user(world.students[0]["id"], enrollment={"enrollment_state": "active"}),
        section.enroll_user(world.students[3]["id"]),
    ]
    assert course.id == world.course["id"]
    other = sim.add_course("Biology 101 (all sections)", sis_course_id="BIO-101-ALL")
    admin = Canvas(sim.url, world.admin["token"])  # an admin in Canvas directly: not the proxy
    moved = admin.get_section(world.section_b).cross_list_section(other["id"])
    assert (moved.course_id, moved.nonxlist_course_id) == (other["id"], world.course["id"])

    truth = {row["id"]: row for row in sim.enrollments(course_id=other["id"])}
    [observer_id] = [i for i, row in truth.items() if row["user_id"] == parent["id"]]
    for enrollment in made:
        assert truth[enrollment.id]["history"][-1]["detail"] == "crosslist"  # same id, moved
    rows = lookup(proxy, other["id"], world.admin["token"])
    for enrollment_id in [*(e.id for e in made), observer_id]:
        assert rows[enrollment_id]["course_id"] == other["id"]
        assert rows[enrollment_id]["provenance"] == expected(sim, truth[enrollment_id]) == "integration"
    assert rows[made[0].id]["ledger"]["integration"] == LABEL
    assert f"{LABEL} (user {world.admin['id']})" in rows[observer_id]["reason"]
    assert lookup(proxy, world.course["id"], world.admin["token"]).keys().isdisjoint(truth)

    # And back again: the rows return to the first course, still the integration's.
    admin.get_section(world.section_b).decross_list_section()
    rows = lookup(proxy, world.course["id"], world.admin["token"])
    assert {rows[e.id]["provenance"] for e in made} == {"integration"}


def test_merged_user_s_enrollments_still_name_the_integration(world, sim, proxy, integration):
    duplicate, survivor = world.students[4], world.students[5]
    made = integration.get_course(world.course["id"]).enroll_user(duplicate["id"], enrollment={"enrollment_state": "active"})
    admin = Canvas(sim.url, world.admin["token"])
    admin.get_user(duplicate["id"]).merge_into(survivor["id"])

    truth = truth_of(sim, made.id)
    assert truth["user_id"] == survivor["id"] and truth["history"][-1]["detail"] == "merge"
    row = lookup(proxy, world.course["id"], world.admin["token"])[made.id]
    assert row["user_id"] == survivor["id"]
    assert row["provenance"] == expected(sim, truth) == "integration", row["reason"]
    assert row["ledger"]["integration"] == LABEL


def test_a_merge_conflict_keeps_the_survivor_s_row_with_the_better_state(world, sim, proxy, integration):
    """Both users in the same section: the survivor's row (made by hand) takes the better state,
    the duplicate's (the integration's) is deleted; each keeps its own verdict."""
    duplicate, survivor = world.students[6], world.students[7]
    made = integration.get_course(world.course["id"]).enroll_user(duplicate["id"], enrollment={"enrollment_state": "active"})
    kept = sim.control("POST", "ui/enrollments", {"course_id": world.course["id"], "user_id": survivor["id"], "actor_user_id": world.teacher["id"]})
    Canvas(sim.url, world.admin["token"]).get_user(duplicate["id"]).merge_into(survivor["id"])
    assert truth_of(sim, kept["id"])["enrollment_state"] == "active"
    assert truth_of(sim, made.id)["enrollment_state"] == "deleted"
    rows = lookup(proxy, world.course["id"], world.admin["token"])
    assert rows[kept["id"]]["provenance"] == expected(sim, truth_of(sim, kept["id"])) == "manual"
    assert rows[made.id]["provenance"] == expected(sim, truth_of(sim, made.id)) == "integration"
