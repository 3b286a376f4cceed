"""Faults between the proxy and Canvas: the client hears the truth, reconciliation settles the
ledger, and afterwards the ledger matches what the simulator says Canvas really did."""

from __future__ import annotations

import time

import pytest
import requests
from click.testing import CliRunner

from ledger_proxy.cli import main

from .helpers import assert_canvas_error
from .helpers import ledger_rows as ledger
from .processes import gunicorn

ENROLLMENTS = r"/courses/\d+/enrollments$"


def wait_for(probe, seconds=5.0):
    """Poll `probe` until it returns something truthy (or time runs out); return that."""
    import time

    deadline = time.monotonic() + seconds
    while not (result := probe()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def enroll(base, world, student, label="roster-sync"):
    return requests.post(
        f"{base}/i/{label}/api/v1/courses/{world.course['id']}/enrollments",
        data={"enrollment[user_id]": student["id"], "enrollment[type]": "StudentEnrollment"},
        headers={"Authorization": f"Bearer {world.admin['token']}", "User-Agent": "python-canvasapi/3.6.0"},
        timeout=30,
    )


def reconcile(monkeypatch, database, sim, token):
    monkeypatch.setenv("LEDGER_PROXY_CANVAS_URL", sim.url)
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", str(database))
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "test-token-hash-key")
    result = CliRunner().invoke(main, ["reconcile", "--grace", "0", "--token", token])
    assert result.exit_code == 0, result.output
    return result.output


def assert_ledger_matches_canvas(database, sim, world):
    """Every enrollment Canvas made through the API is in the ledger once; none invented."""
    made = {t["id"] for t in sim.enrollments(course_id=world.course["id"]) if t["origin"]["channel"] == "api"}
    views = ledger(database, "SELECT enrollment_id, origin_action FROM enrollments")
    assert sorted(v["enrollment_id"] for v in views) == sorted(made)
    assert {v["origin_action"] for v in views} <= {"created"}
    created = [e["enrollment_id"] for e in ledger(database, "SELECT enrollment_id FROM events WHERE action = 'created'")]
    assert sorted(created) == sorted(made)  # each exactly once
    assert ledger(database, "SELECT id FROM requests WHERE status IN ('pending', 'unknown')") == []


@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        pytest.param({"action": "delay", "seconds": 2.5}, 504, "did not answer in time", id="answer-after-read-timeout"),
        pytest.param({"action": "drop"}, 502, "connection to Canvas broke", id="connection-dropped"),
        pytest.param({"action": "error", "status": 500}, 500, None, id="canvas-500"),
    ],
)
def test_canvas_acted_but_the_answer_was_lost(world, sim, make_proxy, monkeypatch, fault, status, message):
    proxy = make_proxy(sim.url, READ_TIMEOUT=1.0)
    database = proxy.app.config["DATABASE"]
    sim.set_faults({"method": "POST", "path": ENROLLMENTS, "when": "after", "times": 1, **fault})
    student = world.students[0]

    response = enroll(proxy.url, world, student)
    assert response.status_code == status
    if message:
        assert_canvas_error(response, status, message)
    else:  # Canvas's own 500 passes through as it came
        assert response.json()["errors"][0]["error_code"] == "internal_server_error"
    # Canvas saw the POST once: never retried. (The simulator logs a delayed request once it
    # has answered it, so poll its log.)
    posts = wait_for(lambda: [r for r in sim.requests_log(path=ENROLLMENTS) if r["method"] == "POST"])
    assert len(posts) == 1
    [made] = [t for t in sim.enrollments(course_id=world.course["id"]) if t["user_id"] == student["id"]]
    [intent] = ledger(database, "SELECT * FROM requests")
    assert intent["status"] == "unknown"
    assert ledger(database, "SELECT * FROM events") == []

    # Until settled, the lookup says pending, not manual.
    lookup = requests.get(
        f"{proxy.url}/ledger/v1/courses/{world.course['id']}/enrollments",
        headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10,
    ).json()
    [row] = [r for r in lookup["enrollments"] if r["id"] == made["id"]]
    assert (row["provenance"], intent["id"] in row["reason"]) == ("pending", True)

    output = reconcile(monkeypatch, database, sim, world.admin["token"])
    assert f"{intent['id']} enrollment_create: created enrollment {made['id']}" in output
    [event] = ledger(database, "SELECT * FROM events")
    assert (event["enrollment_id"], event["action"], event["integration"], event["actor_user_id"]) == (made["id"], "created", "roster-sync", world.admin["id"])
    [settled] = ledger(database, "SELECT * FROM requests")
    assert (settled["status"], settled["settled_by"]) == ("completed", "reconcile")
    assert "while the request was in flight" in settled["evidence"]
    assert_ledger_matches_canvas(database, sim, world)

    # The script retries: Canvas returns the same row, which the ledger now calls adopted.
    retry = enroll(proxy.url, world, student)
    assert retry.status_code == 200 and retry.json()["id"] == made["id"]
    assert [e["action"] for e in ledger(database, "SELECT action FROM events ORDER BY seq")] == ["created", "adopted"]
    assert_ledger_matches_canvas(database, sim, world)


def test_a_request_canvas_never_processed_is_reconciled_as_failed(world, sim, make_proxy, monkeypatch):
    proxy = make_proxy(sim.url, READ_TIMEOUT=1.0)
    database = proxy.app.config["DATABASE"]
    sim.set_faults({"method": "POST", "path": ENROLLMENTS, "when": "before", "action": "error", "status": 503, "times": 1})
    assert enroll(proxy.url, world, world.students[1]).status_code == 503
    output = reconcile(monkeypatch, database, sim, world.admin["token"])
    assert "enrollment_create: failed" in output
    [settled] = ledger(database, "SELECT * FROM requests")
    assert (settled["status"], settled["http_status"]) == ("failed", 503)
    assert "Canvas has no enrollment" in settled["evidence"]
    assert_ledger_matches_canvas(database, sim, world)


def test_young_requests_are_left_for_later(world, sim, make_proxy, monkeypatch):
    proxy = make_proxy(sim.url, READ_TIMEOUT=1.0)
    sim.set_faults({"method": "POST", "path": ENROLLMENTS, "when": "after", "action": "drop", "times": 1})
    enroll(proxy.url, world, world.students[2])
    monkeypatch.setenv("LEDGER_PROXY_CANVAS_URL", sim.url)
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", proxy.app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")
    result = CliRunner().invoke(main, ["reconcile", "--token", world.admin["token"]])  # default grace
    assert result.exit_code == 0 and "Reconciled 0 request(s)" in result.output
    assert [r["status"] for r in ledger(proxy.app.config["DATABASE"], "SELECT status FROM requests")] == ["unknown"]


def test_a_change_with_a_lost_answer_is_reconciled(world, sim, make_proxy, monkeypatch):
    proxy = make_proxy(sim.url, READ_TIMEOUT=1.0)
    database = proxy.app.config["DATABASE"]
    created = enroll(proxy.url, world, world.students[3]).json()
    sim.set_faults({"method": "DELETE", "when": "after", "action": "drop", "times": 1})
    response = requests.delete(
        f"{proxy.url}/api/v1/courses/{world.course['id']}/enrollments/{created['id']}",
        data={"task": "delete"}, headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10,
    )
    assert response.status_code == 502
    reconcile(monkeypatch, database, sim, world.admin["token"])
    assert [e["action"] for e in ledger(database, "SELECT action FROM events ORDER BY seq")] == ["created", "deleted"]
    assert world.truth(created["id"])["enrollment_state"] == "deleted"


@pytest.mark.slow
def test_a_worker_killed_between_canvas_and_the_ledger(world, sim, tmp_path, monkeypatch):
    """SIGKILL after Canvas answered, before the outcome was written (the test-only hook)."""
    database = tmp_path / "ledger.sqlite3"
    settings = {
        "LEDGER_PROXY_CANVAS_URL": sim.url,
        "LEDGER_PROXY_DATABASE": str(database),
        "LEDGER_PROXY_TOKEN_HASH_KEY": "test-token-hash-key",
    }
    student = world.students[4]
    with gunicorn(settings, workers=1, threads=2, app="tests.crash_wsgi:app") as base:
        with pytest.raises(requests.ConnectionError):
            enroll(base, world, student)  # no answer at all: never a false success
    [made] = [t for t in sim.enrollments(course_id=world.course["id"]) if t["user_id"] == student["id"]]
    assert [r["status"] for r in ledger(database, "SELECT status FROM requests")] == ["pending"]
    output = reconcile(monkeypatch, database, sim, world.admin["token"])
    assert f"created enrollment {made['id']}" in output
    assert_ledger_matches_canvas(database, sim, world)


def _process_tree(pid):
    """`pid` and its children (gunicorn's master and its workers), from /proc."""
    from pathlib import Path

    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children)]


@pytest.mark.slow
def test_every_enrollment_a_client_was_told_about_survives_sigkill_of_the_whole_server(world, sim, tmp_path, monkeypatch):
    """Issue 12: with group commit and synchronous=NORMAL, 8 clients enroll concurrently and the
    master and every worker are SIGKILLed mid-load: each enrollment answered with 200 is in the
    ledger (committed before its answer), and reconciliation settles the rest from Canvas."""
    import os
    import signal
    import threading

    from ledger_proxy.devserver import gunicorn_process

    database = tmp_path / "ledger.sqlite3"
    settings = {
        "LEDGER_PROXY_CANVAS_URL": sim.url,
        "LEDGER_PROXY_DATABASE": str(database),
        "LEDGER_PROXY_TOKEN_HASH_KEY": "test-token-hash-key",
    }
    students = [sim.add_user(f"Load {n:03d}") for n in range(64)]
    answered: list[int] = []
    with gunicorn_process(settings, workers=2, threads=4) as service:

        def client(mine):
            for student in mine:
                try:
                    response = enroll(service.url, world, student)
                except requests.ConnectionError:
                    return  # the server is gone: no answer, no promise
                if response.status_code == 200:
                    answered.append(response.json()["id"])

        clients = [threading.Thread(target=client, args=(students[i::8],)) for i in range(8)]
        for thread in clients:
            thread.start()
        assert wait_for(lambda: len(answered) >= 16, 30)
        for pid in _process_tree(service.process.pid):
            os.kill(pid, signal.SIGKILL)
        for thread in clients:
            thread.join(30)
    assert 16 <= len(answered) < 64
    recorded = {e["enrollment_id"] for e in ledger(database, "SELECT enrollment_id FROM events WHERE action = 'created'")}
    assert set(answered) <= recorded
    reconcile(monkeypatch, database, sim, world.admin["token"])
    assert_ledger_matches_canvas(database, sim, world)


def test_automatic_reconciliation_in_the_running_proxy(world, sim, make_proxy):
    proxy = make_proxy(
        sim.url, READ_TIMEOUT=1.0, RECONCILE_TOKEN=world.admin["token"], RECONCILE_INTERVAL_SECONDS=1, RECONCILE_GRACE_SECONDS=0
    )
    sim.set_faults({"method": "POST", "path": ENROLLMENTS, "when": "after", "action": "drop", "times": 1})
    assert enroll(proxy.url, world, world.students[5]).status_code == 502
    database = proxy.app.config["DATABASE"]
    wait_for(lambda: ledger(database, "SELECT id FROM requests WHERE settled_by = 'reconcile'"), 10)
    assert_ledger_matches_canvas(database, sim, world)


def test_a_retry_before_reconciliation_does_not_turn_the_integrations_row_manual(world, sim, make_proxy, monkeypatch):
    """The script retries a timed-out create at once: Canvas returns the row the first request
    made. Until reconciled the lookup says pending; afterwards, integration."""
    proxy = make_proxy(sim.url, READ_TIMEOUT=1.0)
    database = proxy.app.config["DATABASE"]
    sim.set_faults({"method": "POST", "path": ENROLLMENTS, "when": "after", "action": "delay", "seconds": 2.5, "times": 1})
    student = world.students[6]
    assert enroll(proxy.url, world, student).status_code == 504
    wait_for(lambda: [t for t in sim.enrollments(course_id=world.course["id"]) if t["user_id"] == student["id"]])
    # The script retries a little later, as canvas_sdk does: past the 2 s allowance even after
    # Canvas's whole-second timestamps are truncated.
    time.sleep(3.2)
    retry = enroll(proxy.url, world, student)
    assert retry.status_code == 200

    def verdict():
        body = requests.get(
            f"{proxy.url}/ledger/v1/courses/{world.course['id']}/enrollments",
            headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10,
        ).json()
        return next(r for r in body["enrollments"] if r["id"] == retry.json()["id"])

    assert verdict()["provenance"] == "pending"
    reconcile(monkeypatch, database, sim, world.admin["token"])
    settled = verdict()
    assert (settled["provenance"], settled["ledger"]["action"]) == ("integration", "created")
    assert_ledger_matches_canvas(database, sim, world)


@pytest.mark.parametrize(("when", "outcome"), [("after", "submitted"), ("before", "failed")])
def test_an_sis_import_whose_answer_was_lost_is_reconciled_from_canvas_list(world, sim, make_proxy, monkeypatch, when, outcome):
    proxy = make_proxy(sim.url, READ_TIMEOUT=1.0)
    database = proxy.app.config["DATABASE"]
    sim.set_faults({"method": "POST", "path": r"/sis_imports$", "when": when, "action": "drop", "times": 1})
    response = requests.post(
        f"{proxy.url}/i/sis-feed/api/v1/accounts/1/sis_imports",
        files={"attachment": ("enrollments.csv", b"course_id,user_id,role,section_id,status\nBIO-101,S-08,student,,active\n", "text/csv")},
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=10,
    )
    assert response.status_code == 502
    output = reconcile(monkeypatch, database, sim, world.admin["token"])
    assert f"sis_import: {outcome}" in output
    jobs = ledger(database, "SELECT job_id, integration, actor_user_id FROM async_jobs")
    made = [t for t in sim.enrollments(course_id=world.course["id"]) if t["origin"]["channel"] == "sis"]
    if outcome == "submitted":
        assert [(j["job_id"], j["integration"], j["actor_user_id"]) for j in jobs] == [(made[0]["sis_import_id"], "sis-feed", world.admin["id"])]
    else:
        assert jobs == [] and made == []
    assert ledger(database, "SELECT id FROM requests WHERE status IN ('pending', 'unknown')") == []


def test_a_request_canvas_never_acted_on_does_not_claim_the_retrys_row(world, sim, make_proxy, monkeypatch):
    """Review finding: R1 fails before Canvas acts, its retry R2 creates the row at once; R1's
    window covers that row, but R2 made it: R1 may only have re-enrolled it."""
    proxy = make_proxy(sim.url)
    database = proxy.app.config["DATABASE"]
    sim.set_faults({"method": "POST", "path": ENROLLMENTS, "when": "before", "action": "drop", "times": 1})
    student = world.students[7]
    assert enroll(proxy.url, world, student).status_code == 502
    assert enroll(proxy.url, world, student).status_code == 200
    output = reconcile(monkeypatch, database, sim, world.admin["token"])
    assert "enrollment_create: adopted" in output and "already has request" in output
    assert [e["action"] for e in ledger(database, "SELECT action FROM events ORDER BY seq")] == ["created", "adopted"]
    assert_ledger_matches_canvas(database, sim, world)


def test_one_request_canvas_refuses_to_explain_does_not_hold_up_the_others(world, sim, make_proxy, monkeypatch):
    proxy = make_proxy(sim.url)
    database = proxy.app.config["DATABASE"]
    doomed = sim.add_course("Doomed")
    sim.set_faults({"method": "POST", "path": ENROLLMENTS, "when": "after", "action": "drop", "times": 2})
    requests.post(
        f"{proxy.url}/api/v1/courses/{doomed['id']}/enrollments",
        data={"enrollment[user_id]": world.students[0]["id"]},
        headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10,
    )
    enroll(proxy.url, world, world.students[1])
    sim.control("PATCH", f"courses/{doomed['id']}", {"workflow_state": "deleted"})  # Canvas now says 404
    output = reconcile(monkeypatch, database, sim, world.admin["token"])
    assert "skipped (not now: Canvas answered 404)" in output
    assert "enrollment_create: created enrollment" in output
    statuses = sorted(r["status"] for r in ledger(database, "SELECT status FROM requests"))
    assert statuses == ["completed", "unknown"]  # the doomed one waits for another try


def test_reconcile_with_the_configured_token_runs_every_time(world, sim, make_proxy, monkeypatch):
    """Review finding: the CLI's own app must not start a background reconciler that takes
    the lease (and leaves it behind) before the command can."""
    proxy = make_proxy(sim.url)
    monkeypatch.setenv("LEDGER_PROXY_CANVAS_URL", sim.url)
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", proxy.app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")
    monkeypatch.setenv("LEDGER_PROXY_RECONCILE_TOKEN", world.admin["token"])
    for _ in range(3):
        result = CliRunner().invoke(main, ["reconcile", "--grace", "0"])
        assert result.exit_code == 0, result.output
