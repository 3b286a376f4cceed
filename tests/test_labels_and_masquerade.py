"""Labels the ledger can vouch for, and masquerading recorded as what it is (issues 10, 11).

Through the proxy to the simulator over real HTTP; who acted is judged on the simulator's
ground truth (origin actor and real user), what the ledger says on the lookup's answer.
"""

from __future__ import annotations

import json

import pytest
import requests
from canvasapi import Canvas

from .helpers import assert_canvas_error


def enroll(base, world, token, student, label="roster-sync", **params):
    return requests.post(
        f"{base}/i/{label}/api/v1/courses/{world.course['id']}/enrollments",
        params=params,
        data={"enrollment[user_id]": student["id"], "enrollment[type]": "StudentEnrollment"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def lookup_row(base, world, enrollment_id):
    answer = requests.get(
        f"{base}/ledger/v1/courses/{world.course['id']}/enrollments",
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    [row] = [e for e in answer.json()["enrollments"] if e["id"] == enrollment_id]
    return row


@pytest.fixture
def registry(tmp_path, world):
    path = tmp_path / "integrations.json"
    path.write_text(json.dumps({"roster-sync": {"user_ids": [world.admin["id"]]}}))
    return str(path)


def test_an_unregistered_user_cannot_write_under_a_registered_label(world, sim, make_proxy, registry):
    proxy = make_proxy(sim.url, INTEGRATIONS=registry)
    refused = enroll(proxy.url, world, world.teacher["token"], world.students[0])
    assert_canvas_error(refused, 403, f"user {world.teacher['id']} is not registered for integration 'roster-sync'")
    assert sim.requests_log(r"/enrollments$") == []  # nothing reached Canvas
    unknown = enroll(proxy.url, world, world.admin["token"], world.students[0], label="made-up")
    assert_canvas_error(unknown, 403, "not in the integration registry")
    made = enroll(proxy.url, world, world.admin["token"], world.students[0])
    assert made.status_code == 200
    assert world.truth(made.json()["id"])["origin"]["actor_user_id"] == world.admin["id"]
    row = lookup_row(proxy.url, world, made.json()["id"])
    assert (row["provenance"], row["ledger"]["integration"], row["ledger"]["label_verified"]) == ("integration", "roster-sync", True)


def test_record_mode_keeps_the_request_and_says_the_label_is_unverified(world, sim, make_proxy, registry):
    proxy = make_proxy(sim.url, INTEGRATIONS=registry, INTEGRATIONS_MODE="record")
    made = enroll(proxy.url, world, world.teacher["token"], world.students[1])
    assert made.status_code == 200
    assert world.truth(made.json()["id"])["origin"]["actor_user_id"] == world.teacher["id"]
    row = lookup_row(proxy.url, world, made.json()["id"])
    assert row["ledger"]["label_verified"] is False
    assert "not registered" in row["reason"]


def test_without_a_registry_every_label_is_self_declared(world, sim, make_proxy):
    proxy = make_proxy(sim.url)
    made = enroll(proxy.url, world, world.teacher["token"], world.students[2])
    assert made.status_code == 200
    assert lookup_row(proxy.url, world, made.json()["id"])["ledger"]["label_verified"] is None


def test_a_malformed_registry_stops_the_start_with_a_clear_error(tmp_path, sim, make_proxy):
    from ledger_proxy.config import ConfigError

    path = tmp_path / "integrations.json"
    path.write_text('{"roster-sync": {"user_ids": "17"}}')
    with pytest.raises(ConfigError, match="LEDGER_PROXY_INTEGRATIONS: integration 'roster-sync'"):
        make_proxy(sim.url, INTEGRATIONS=str(path))


def test_masquerading_is_recorded_as_the_admin_acting_as_the_user(world, sim, make_proxy):
    proxy = make_proxy(sim.url)
    canvas = Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"])
    student = world.students[3]
    made = canvas.get_course(world.course["id"]).enroll_user(
        student["id"], enrollment={"type": "StudentEnrollment"}, as_user_id=world.teacher["id"]
    )
    origin = world.truth(made.id)["origin"]
    assert (origin["actor_user_id"], origin["real_user_id"]) == (world.teacher["id"], world.admin["id"])
    row = lookup_row(proxy.url, world, made.id)
    assert row["provenance"] == "integration"
    assert (row["ledger"]["actor_user_id"], row["ledger"]["acting_as_user_id"]) == (world.admin["id"], world.teacher["id"])
    assert f"admin user {world.admin['id']} acting as user {world.teacher['id']}" in row["reason"]


def test_masquerading_as_oneself_is_not_masquerading(world, sim, make_proxy):
    proxy = make_proxy(sim.url)
    made = enroll(proxy.url, world, world.admin["token"], world.students[4], as_user_id=world.admin["id"])
    assert made.status_code == 200
    assert lookup_row(proxy.url, world, made.json()["id"])["ledger"]["acting_as_user_id"] is None
