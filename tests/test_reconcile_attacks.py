"""Issue 11 item 4: reconciliation never credits an integration with a row it did not make.

Each test is the attack over real HTTP: Canvas (the simulator) answers a create through the
proxy with a 5xx, then something else adds the same user to the course; `ledger-proxy
reconcile` must not settle that row as the integration's.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import requests

from .test_faults import ENROLLMENTS, enroll, ledger, reconcile


def lookup_row(proxy, world, enrollment_id):
    body = requests.get(
        f"{proxy.url}/ledger/v1/courses/{world.course['id']}/enrollments",
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=10,
    ).json()
    return next(row for row in body["enrollments"] if row["id"] == enrollment_id), body["summary"]


def later_on_canvas(sim, seconds=60):
    """Canvas's clock a minute on (frozen): what happens now happens well after the 5xx,
    yet inside the two minutes the old in-flight window gave every request."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    sim.control("POST", "clock", {"now": moment.isoformat()})


def real_time_on_canvas(sim):
    sim.control("POST", "clock", {"now": None})


def a_5xx_that_did_nothing(proxy, world, sim, student):
    sim.set_faults({"method": "POST", "path": ENROLLMENTS, "when": "before", "action": "error", "status": 500, "times": 1})
    assert enroll(proxy.url, world, student).status_code == 500
    assert [t for t in sim.enrollments(course_id=world.course["id"]) if t["user_id"] == student["id"]] == []
    [intent] = ledger(proxy.app.config["DATABASE"], "SELECT * FROM requests")
    assert (intent["status"], intent["http_status"]) == ("unknown", 500)
    assert intent["outcome_at"] is not None  # when the answer came: the window's end
    return intent


def test_a_teacher_adding_the_user_after_a_5xx_is_not_the_integrations(world, sim, make_proxy, monkeypatch):
    proxy = make_proxy(sim.url)
    database = proxy.app.config["DATABASE"]
    student = world.students[0]
    intent = a_5xx_that_did_nothing(proxy, world, sim, student)

    later_on_canvas(sim)
    made = sim.control("POST", "ui/enrollments", {
        "course_id": world.course["id"], "user_id": student["id"], "type": "StudentEnrollment",
        "actor_user_id": world.teacher["id"],
    })
    real_time_on_canvas(sim)

    output = reconcile(monkeypatch, database, sim, world.admin["token"])
    assert f"{intent['id']} enrollment_create: failed" in output
    assert ledger(database, "SELECT * FROM events") == []
    [settled] = ledger(database, "SELECT * FROM requests")
    assert settled["status"] == "failed" and str(made["id"]) in settled["evidence"]
    row, _ = lookup_row(proxy, world, made["id"])
    assert (row["provenance"], row["ledger"]) == ("manual", None)


def test_an_sis_import_adding_the_user_after_a_5xx_is_sis(world, sim, make_proxy, monkeypatch):
    proxy = make_proxy(sim.url)
    database = proxy.app.config["DATABASE"]
    student = world.students[1]
    a_5xx_that_did_nothing(proxy, world, sim, student)

    later_on_canvas(sim)
    sim.control("POST", "sis_imports", {"csv": f"course_id,user_id,role,section_id,status\nBIO-101,{student['sis_user_id']},student,,active\n"})
    real_time_on_canvas(sim)
    [made] = [t for t in sim.enrollments(course_id=world.course["id"]) if t["user_id"] == student["id"]]
    assert made["origin"]["channel"] == "sis"

    output = reconcile(monkeypatch, database, sim, world.admin["token"])
    assert "enrollment_create: failed" in output
    assert ledger(database, "SELECT * FROM events") == []
    row, _ = lookup_row(proxy, world, made["id"])
    assert (row["provenance"], row["ledger"]) == ("sis", None)


def test_a_row_an_sis_import_running_meanwhile_may_have_made_is_ambiguous(world, sim, make_proxy, monkeypatch):
    """An SIS import naming the user was already running when the request went through; the
    request's answer was a 5xx, and the row appeared in flight: either made it."""
    proxy = make_proxy(sim.url, ADMIN_USER_IDS=[world.admin["id"]])
    database = proxy.app.config["DATABASE"]
    student = world.students[2]
    sim.settings(auto_run_jobs=False)
    job = sim.control("POST", "sis_imports", {"csv": f"course_id,user_id,role,section_id,status\nBIO-101,{student['sis_user_id']},student,,active\n"})
    sim.set_faults({"method": "POST", "path": ENROLLMENTS, "when": "after", "action": "error", "status": 500, "times": 1})
    assert enroll(proxy.url, world, student).status_code == 500
    sim.control("POST", "jobs/run")
    [made] = [t for t in sim.enrollments(course_id=world.course["id"]) if t["user_id"] == student["id"]]
    assert made["sis_import_id"] == job["id"]

    output = reconcile(monkeypatch, database, sim, world.admin["token"])
    assert f"enrollment_create: ambiguous enrollment {made['id']}" in output
    [settled] = ledger(database, "SELECT * FROM requests")
    assert settled["status"] == "completed" and f"SIS import {job['id']}, begun at" in settled["evidence"]
    assert "was running then" in settled["evidence"]
    row, summary = lookup_row(proxy, world, made["id"])
    assert (row["provenance"], row["ledger"]["action"]) == ("ambiguous", "ambiguous")
    assert summary["ambiguous"] == 1 and summary["integration"] == 0

    export = requests.get(
        f"{proxy.url}/ledger/v1/export", params={"format": "ndjson"},
        headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10,
    )
    assert export.status_code == 200
    events = [json.loads(line) for line in export.text.splitlines()]
    assert [(e["enrollment_id"], e["action"]) for e in events] == [(made["id"], "ambiguous")]


def test_a_row_an_sis_import_begun_after_a_long_request_made_is_not_the_integrations(world, sim, make_proxy, monkeypatch):
    """A request that waited a minute for Canvas (then timed out): an SIS import begun during
    that minute made the row. The row is inside the in-flight window, but its import began
    after the request did, so it is SIS's."""
    proxy = make_proxy(sim.url)
    database = proxy.app.config["DATABASE"]
    student = world.students[3]
    intent = a_5xx_that_did_nothing(proxy, world, sim, student)
    # The request reached the proxy a minute before its outcome came (a long wait for Canvas).
    with sqlite3.connect(database) as conn:
        received = datetime.now(UTC) - timedelta(seconds=60)
        conn.execute("UPDATE requests SET received_at = ? WHERE id = ?", [received.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), intent["id"]])
    job = sim.control("POST", "sis_imports", {"csv": f"course_id,user_id,role,section_id,status\nBIO-101,{student['sis_user_id']},student,,active\n"})
    [made] = [t for t in sim.enrollments(course_id=world.course["id"]) if t["user_id"] == student["id"]]
    assert made["sis_import_id"] == job["id"]

    output = reconcile(monkeypatch, database, sim, world.admin["token"])
    assert "enrollment_create: failed" in output and f"SIS import {job['id']}" in output
    assert ledger(database, "SELECT * FROM events") == []
    row, _ = lookup_row(proxy, world, made["id"])
    assert (row["provenance"], row["ledger"]) == ("sis", None)
