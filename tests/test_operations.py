"""Operations (issue 6, item 5): /healthz, /readyz, /metrics and the JSON access log."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from canvasapi import Canvas
from prometheus_client.parser import text_string_to_metric_families

from .helpers import assert_canvas_error, free_port


def metric(proxy, name, **labels):
    """The value of one sample of /metrics (0 when the series does not exist yet)."""
    text = requests.get(f"{proxy.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Health and readiness


def test_healthz_says_ok(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_readyz_fails_without_canvas_and_names_it(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["failing"] == ["canvas"] and response.json["checks"]["ledger"]["ok"]


def test_readyz_checks_the_ledger_and_canvas(proxy):
    response = requests.get(f"{proxy.url}/readyz", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["ledger"]["ok"] is True
    assert body["checks"]["canvas"] == {**body["checks"]["canvas"], "ok": True, "http_status": 401}


def test_readyz_is_503_naming_canvas_when_canvas_cannot_be_reached(make_proxy):
    proxy = make_proxy(f"http://127.0.0.1:{closed_port()}")
    response = requests.get(f"{proxy.url}/readyz", timeout=10)
    assert_canvas_error(response, 503, "canvas: Canvas gave no HTTP answer")
    body = response.json()
    assert body["failing"] == ["canvas"]
    assert body["checks"]["ledger"]["ok"] is True


def test_readyz_is_503_naming_the_ledger_when_it_cannot_be_written(proxy, tmp_path):
    proxy.app.config["DATABASE"] = str(tmp_path)  # a folder: SQLite cannot open it
    response = requests.get(f"{proxy.url}/readyz", timeout=10)
    assert_canvas_error(response, 503, "ledger: the ledger cannot be written")
    assert response.json()["failing"] == ["ledger"]


def test_readyz_leaves_no_trace_in_the_ledger(proxy):
    requests.get(f"{proxy.url}/readyz", timeout=10).raise_for_status()
    with sqlite3.connect(proxy.app.config["DATABASE"]) as conn:
        assert conn.execute("SELECT count(*) FROM ledger_meta WHERE key = 'readyz'").fetchone() == (0,)


# Metrics


def test_metrics_count_forwarded_requests_canvas_latency_and_recorded_enrollments(world, proxy):
    canvas = Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"])
    course = canvas.get_course(world.course["id"])
    enrollment = course.enroll_user(world.students[0]["id"], enrollment={"enrollment_state": "active"})
    enrollment.deactivate("delete")
    requests.get(f"{proxy.url}/api/v1/courses/999999", headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10)

    assert metric(proxy, "ledger_proxy_forwarded_requests_total", method="GET", status="200") == 1
    assert metric(proxy, "ledger_proxy_forwarded_requests_total", method="GET", status="404") == 1
    assert metric(proxy, "ledger_proxy_forwarded_requests_total", method="POST", status="200") == 1
    assert metric(proxy, "ledger_proxy_forwarded_requests_total", method="DELETE", status="200") == 1
    assert metric(proxy, "ledger_proxy_canvas_request_duration_seconds_count", method="GET") == 2
    assert metric(proxy, "ledger_proxy_canvas_request_duration_seconds_bucket", method="POST", le="+Inf") == 1
    assert metric(proxy, "ledger_proxy_enrollments_recorded_total", action="created") == 1
    assert metric(proxy, "ledger_proxy_enrollments_recorded_total", action="deleted") == 1
    # The proxy's own endpoints are not forwarded requests.
    assert metric(proxy, "ledger_proxy_forwarded_requests_total", method="GET", status="200") == 1


def test_the_pending_intents_gauge_is_read_from_the_ledger(world, proxy, sim):
    assert metric(proxy, "ledger_proxy_pending_intents", status="unknown") == 0
    sim.set_faults({"method": "POST", "path": "/enrollments", "when": "after", "action": "error", "status": 500, "times": 1})
    response = requests.post(
        f"{proxy.url}/api/v1/courses/{world.course['id']}/enrollments",
        data={"enrollment[user_id]": world.students[1]["id"]},
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=10,
    )
    assert response.status_code == 500
    assert metric(proxy, "ledger_proxy_pending_intents", status="unknown") == 1
    assert metric(proxy, "ledger_proxy_pending_intents", status="pending") == 0
    assert metric(proxy, "ledger_proxy_oldest_pending_intent_age_seconds", status="unknown") >= 0


@pytest.mark.parametrize(
    ("throttle", "path", "counted"),
    [
        pytest.param(429, "courses/{course}", 1, id="429"),
        pytest.param(403, "courses/{course}", 1, id="403-rate-limit-exceeded"),
        pytest.param(None, "accounts/1", 0, id="403-not-allowed"),
    ],
)
def test_throttled_responses_are_counted(world, proxy, sim, throttle, path, counted):
    if throttle:
        sim.settings(throttle=throttle)
    response = requests.get(
        f"{proxy.url}/api/v1/{path.format(course=world.course['id'])}",
        headers={"Authorization": f"Bearer {world.teacher['token']}"},
        timeout=10,
    )
    assert response.status_code == (throttle or 403)
    status = str(throttle or 403)
    assert metric(proxy, "ledger_proxy_canvas_throttled_responses_total", status=status) == counted


# The access log


@pytest.fixture
def access_lines(capsys):
    """The JSON lines the access logger wrote to stderr so far (they are written once the
    response has been sent, so wait briefly for the expected count)."""

    def read(expected: int, request_id: str | None = None) -> list[dict]:
        """At least `expected` lines (only those of `request_id`, when given)."""
        lines: list[dict] = []
        deadline = time.monotonic() + 5
        while True:
            err = capsys.readouterr().err
            lines += [json.loads(line) for line in err.splitlines() if line.startswith("{")]
            wanted = [line for line in lines if request_id in (None, line.get("request_id"))]
            if len(wanted) >= expected or time.monotonic() > deadline:
                return wanted
            time.sleep(0.02)

    return read


def test_one_json_access_line_per_request_with_both_request_ids(world, proxy, access_lines):
    response = requests.get(
        f"{proxy.url}/i/roster-sync/api/v1/courses/{world.course['id']}?include[]=term",
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=10,
    )
    [line] = access_lines(1, response.headers["X-Ledger-Request-Id"])
    assert line == {
        **line,
        "logger": "ledger_proxy.access",
        "method": "GET",
        "path": f"/i/roster-sync/api/v1/courses/{world.course['id']}",
        "status": 200,
        "request_id": response.headers["X-Ledger-Request-Id"],
        "canvas_request_id": response.headers["X-Request-Context-Id"],
        "integration": "roster-sync",
    }
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0


def test_the_integration_header_is_logged_and_the_proxys_own_endpoints_too(proxy, access_lines):
    requests.get(f"{proxy.url}/api/v1/users/self", headers={"X-Ledger-Integration": "grades-export"}, timeout=10)
    requests.get(f"{proxy.url}/healthz", timeout=10)
    # A line is written when its response is done, so two requests' lines may come either way.
    lines = {line["path"]: line for line in access_lines(2)}
    forwarded, health = lines["/api/v1/users/self"], lines["/healthz"]
    assert (forwarded["integration"], forwarded["status"]) == ("grades-export", 401)
    assert (health["request_id"], health["integration"]) == (None, None)


def test_tokens_never_reach_the_logs(world, proxy, caplog, access_lines):
    caplog.set_level(logging.DEBUG)
    secrets = ("SECRET-QUERY-TOKEN", "SECRET-HEADER-TOKEN", "SECRET-FORM-TOKEN")
    requests.get(
        f"{proxy.url}/i/roster-sync/api/v1/courses/{world.course['id']}/enrollments?access_token={secrets[0]}",
        headers={"Authorization": f"Bearer {secrets[1]}"},
        timeout=10,
    )
    requests.post(
        f"{proxy.url}/api/v1/courses/{world.course['id']}/enrollments",
        data={"enrollment[user_id]": world.students[2]["id"], "access_token": secrets[2]},
        timeout=10,
    )
    requests.get(f"{proxy.url}/ledger/v1/courses/1/enrollments?access_token={secrets[0]}", timeout=10)
    lines = access_lines(3)
    assert [line["status"] for line in lines] == [401, 401, 401]
    assert f"/i/roster-sync/api/v1/courses/{world.course['id']}/enrollments" in {line["path"] for line in lines}
    logged = json.dumps(lines) + caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in secrets:
        assert secret not in logged


def test_a_head_request_is_logged_too(world, proxy, access_lines):
    response = requests.head(f"{proxy.url}/api/v1/courses/{world.course['id']}", headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10)
    [line] = access_lines(1, response.headers["X-Ledger-Request-Id"])
    assert (line["method"], line["status"], line["request_id"]) == ("HEAD", response.status_code, response.headers["X-Ledger-Request-Id"])


# gunicorn with several workers


ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        pytest.param([str(BIN / "ledger-proxy"), "serve", "--port", "{port}", "--workers", "2", "--threads", "2"], id="ledger-proxy-serve"),
        pytest.param([str(BIN / "gunicorn"), "-c", "python:ledger_proxy.ops.gunicorn_conf", "--bind", "127.0.0.1:{port}", "--workers", "2", "wsgi:app"], id="gunicorn-conf"),
        # The path deploy guides gave before ops/ existed: kept working (CHANGELOG).
        pytest.param([str(BIN / "gunicorn"), "-c", "python:ledger_proxy.gunicorn_conf", "--bind", "127.0.0.1:{port}", "--workers", "2", "wsgi:app"], id="gunicorn-conf-old-path"),
    ],
)
def test_metrics_add_up_every_gunicorn_worker(world, sim, tmp_path, command):
    """gunicorn runs in prometheus-client's multiprocess mode: whichever worker answers a
    scrape, it reports what all of them forwarded."""
    port, metrics_dir = free_port(), tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # a previous run's: emptied at start
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_PROXY_")}
    env.update(
        LEDGER_PROXY_INSTANCE_PATH=str(tmp_path / "instance"),  # keys and control socket
        LEDGER_PROXY_CANVAS_URL=sim.url,
        LEDGER_PROXY_DATABASE=str(tmp_path / "ledger.sqlite3"),
        LEDGER_PROXY_TOKEN_HASH_KEY="k",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    proc = subprocess.Popen(
        [part.format(port=port) for part in command],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "".join(output)
            time.sleep(0.05)
        sent = 0
        # New connections until both workers have served some (each counts in its own file).
        while len(list(metrics_dir.glob("counter_*.db"))) < 2 or sent < 10:
            response = requests.get(f"{base}/api/v1/users/self", headers={"Authorization": f"Bearer {world.admin['token']}", "Connection": "close"}, timeout=10)
            assert response.status_code == 200
            sent += 1
            assert sent < 300, "only one worker ever answered"
        for _ in range(6):  # scrapes land on either worker; each sees the sum
            text = requests.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10).text
            [value] = [
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "ledger_proxy_forwarded_requests_total" and sample.labels == {"method": "GET", "status": "200"}
            ]
            assert value == sent
    finally:
        proc.terminate()
        proc.wait(15)
        reader.join(5)
        proc.stderr.close()  # type: ignore[union-attr]
    assert not (metrics_dir / "counter_1.db").exists()
    assert metrics_dir.exists()  # an operator's folder is emptied at start, never removed

