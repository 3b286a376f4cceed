"""The simulator's control API: SIS imports, ground truth, the request log, faults, throttling."""

from __future__ import annotations

import io
import time
import zipfile
from typing import Any

import pytest
import requests

from ledger_proxy.simulator import SimulatorState, create_simulator_app
from ledger_proxy.simulator.testing import SimulatorClient
from ledger_proxy.simulator.world import ADMIN_TOKEN, TEACHER_TOKEN

ADA, ALAN, GRACE = 3, 4, 5
ENROLL_ALAN = {"enrollment[user_id]": str(ALAN)}


@pytest.fixture
def sim(demo_sim: SimulatorClient) -> SimulatorClient:
    return demo_sim


def post_enrollment(sim: SimulatorClient, **kwargs: Any) -> requests.Response:
    return sim.api("POST", "courses/1/enrollments", TEACHER_TOKEN, data=ENROLL_ALAN, **kwargs)


def test_state_lives_in_app_extensions() -> None:
    app = create_simulator_app(seed_demo=True)

    state = app.extensions["canvas_simulator"]

    assert isinstance(state, SimulatorState)
    assert state.users[1].token == ADMIN_TOKEN
    assert state.courses[1].sis_course_id == "DEMO-101"


def test_reset_keeps_only_the_root_account(sim: SimulatorClient) -> None:
    sim.control("POST", "reset")

    assert sim.control("GET", "users") == []
    assert sim.api("GET", "users/self", ADMIN_TOKEN).status_code == 401
    admin = sim.add_user("Root", admin=True)
    assert sim.api("GET", "accounts/1", admin["token"]).json()["id"] == 1


# -- ground truth and SIS ----------------------------------------------------------------------


def test_ground_truth_records_origin_of_api_calls(sim: SimulatorClient) -> None:
    response = post_enrollment(sim, headers={"User-Agent": "roster-sync/1.0"})

    (truth,) = [e for e in sim.enrollments(course_id=1) if e["id"] == response.json()["id"]]
    assert truth["origin"]["channel"] == "api"
    assert truth["origin"]["actor_user_id"] == 2
    assert truth["origin"]["user_agent"] == "roster-sync/1.0"
    assert truth["origin"]["request_context_id"] == response.headers["X-Request-Context-Id"]
    assert truth["history"][0]["action"] == "created"


def test_ui_and_bypass_enrollments_use_the_same_rules(sim: SimulatorClient) -> None:
    ui = sim.control("POST", "ui/enrollments", {"actor_user_id": 2, "course_id": 1, "user_id": ALAN})
    again = sim.control("POST", "api_bypass/enrollments", {"actor_user_id": 1, "course_id": 1, "user_id": ALAN})

    assert ui["created"] is True and ui["enrollment_state"] == "invited"
    assert again["id"] == ui["id"] and again["created"] is False
    assert [(h["channel"], h["action"]) for h in again["history"]] == [("ui", "created"), ("api", "reused")]


def _zip(csv_text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("enrollments.csv", csv_text)
    return buffer.getvalue()


CSV = "course_id,user_id,role,section_id,status\nDEMO-101,S-002,student,,active\nDEMO-101,S-003,ta,DEMO-101-B,active\n"


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"files": {"attachment": ("enrollments.csv", CSV, "text/csv")}}, id="multipart"),
        pytest.param({"files": {"attachment": ("batch.zip", _zip(CSV), "application/zip")}}, id="zip"),
        pytest.param({"params": {"extension": "csv"}, "data": CSV, "headers": {"Content-Type": "text/csv"}}, id="raw-body"),
    ],
)
def test_sis_import_adopts_a_ui_made_row(sim: SimulatorClient, kwargs: dict[str, Any]) -> None:
    ui = sim.control("POST", "ui/enrollments", {"actor_user_id": 2, "course_id": 1, "user_id": ALAN})

    response = sim.api("POST", "accounts/1/sis_imports", ADMIN_TOKEN, **kwargs)

    sis_import = response.json()
    assert (response.status_code, sis_import["workflow_state"]) == (200, "created")
    status = sim.api("GET", f"accounts/1/sis_imports/{sis_import['id']}", ADMIN_TOKEN).json()
    assert status["workflow_state"] == "imported"
    assert status["statistics"]["Enrollment"]["created"] == 1
    rows = {e["user_id"]: e for e in sim.enrollments(course_id=1)}
    adopted, created = rows[ALAN], rows[GRACE]
    assert adopted["id"] == ui["id"]
    assert (adopted["origin"]["channel"], adopted["sis_import_id"], adopted["enrollment_state"]) == ("ui", sis_import["id"], "active")
    assert adopted["history"][-1]["channel"] == "sis"
    assert (created["origin"]["channel"], created["course_section_id"], created["type"]) == ("sis", 2, "TaEnrollment")
    shown = sim.api("GET", f"accounts/1/enrollments/{ui['id']}", ADMIN_TOKEN).json()
    assert shown["sis_import_id"] == sis_import["id"]
    teacher_view = sim.api("GET", "courses/1/enrollments", TEACHER_TOKEN).json()
    assert all("sis_import_id" not in row for row in teacher_view)


def test_sis_import_needs_an_admin(sim: SimulatorClient) -> None:
    response = sim.api("POST", "accounts/1/sis_imports", TEACHER_TOKEN, files={"attachment": ("e.csv", CSV)})

    assert response.status_code == 403


def test_api_resurrection_clears_sis_import_id(sim: SimulatorClient) -> None:
    sis_import = sim.control("POST", "sis_imports", {"rows": [{"course_id": "DEMO-101", "user_id": "S-002", "role": "student", "status": "deleted"}, {"course_id": "DEMO-101", "user_id": "S-002", "role": "student", "status": "active"}]})
    (row,) = [e for e in sim.enrollments(course_id=1) if e["user_id"] == ALAN]
    sim.api("DELETE", f"courses/1/enrollments/{row['id']}", TEACHER_TOKEN, params={"task": "delete"})

    again = post_enrollment(sim).json()

    (row,) = [e for e in sim.enrollments(course_id=1) if e["user_id"] == ALAN]
    assert row["id"] == again["id"]
    assert (row["enrollment_state"], row["sis_import_id"]) == ("invited", None)
    assert sis_import["workflow_state"] == "imported"


def test_held_jobs_run_on_demand(sim: SimulatorClient) -> None:
    sim.settings(auto_run_jobs=False)
    imported = sim.control("POST", "sis_imports", {"csv": CSV})

    assert sim.api("GET", f"accounts/1/sis_imports/{imported['id']}", ADMIN_TOKEN).json()["workflow_state"] == "created"
    assert sim.control("POST", "jobs/run") == {"ran": 1}
    assert sim.api("GET", f"accounts/1/sis_imports/{imported['id']}", ADMIN_TOKEN).json()["workflow_state"] == "imported"


def test_sis_import_reports_bad_rows(sim: SimulatorClient) -> None:
    imported = sim.control("POST", "sis_imports", {"csv": "course_id,user_id,role,status\nNOPE,S-002,student,active\nDEMO-101,S-002,wizard,active\n"})

    assert imported["workflow_state"] == "imported_with_messages"
    assert len(imported["processing_warnings"]) == 2


def test_seed_is_fast(sim: SimulatorClient) -> None:
    started = time.perf_counter()
    result = sim.control("POST", "seed", {"course_id": 1, "count": 5000, "enrollment_state": "active"})
    elapsed = time.perf_counter() - started

    assert result["count"] == 5000
    assert elapsed < 1.0
    first = sim.api("GET", "courses/1/enrollments", TEACHER_TOKEN, params={"per_page": 100})
    assert len(first.json()) == 100


# -- the request log ---------------------------------------------------------------------------


def test_request_log_keeps_the_raw_request(sim: SimulatorClient) -> None:
    sim.http.post(
        f"{sim.url}/api/v1/courses/1/enrollments?b=2&a=1&a=3",
        data=b"enrollment%5Buser_id%5D=4", headers={"Authorization": f"Bearer {TEACHER_TOKEN}", "Content-Type": "application/x-www-form-urlencoded", "X-Custom": "yes"},
    )
    sim.api("POST", "courses/1/enrollments", TEACHER_TOKEN, data=b"\xff\xfe", headers={"Content-Type": "application/octet-stream"})

    raw, binary = sim.requests_log()
    assert (raw["method"], raw["path"], raw["query_string"]) == ("POST", "/api/v1/courses/1/enrollments", "b=2&a=1&a=3")
    assert (raw["body"], raw["body_base64"], raw["status"]) == ("enrollment%5Buser_id%5D=4", False, 200)
    assert ["X-Custom", "yes"] in raw["headers"]
    assert ["Authorization", f"Bearer {TEACHER_TOKEN}"] in raw["headers"]
    assert (binary["body"], binary["body_base64"], binary["status"]) == ("//4=", True, 400)
    sim.control("DELETE", "requests")
    assert sim.requests_log() == []


# -- faults, latency and throttling ------------------------------------------------------------


def test_drop_after_processing_creates_the_enrollment_then_drops(sim: SimulatorClient) -> None:
    sim.set_faults({"method": "POST", "path": r"/courses/\d+/enrollments$", "action": "drop", "when": "after", "times": 1})

    with pytest.raises(requests.ConnectionError):
        post_enrollment(sim)

    (logged,) = sim.requests_log()
    (truth,) = [e for e in sim.enrollments(course_id=1) if e["user_id"] == ALAN]
    assert logged["status"] is None
    assert truth["origin"]["request_context_id"] == logged["request_context_id"]
    assert post_enrollment(sim).json()["id"] == truth["id"]  # the retry reuses the row


def test_drop_before_processing_has_no_side_effects(sim: SimulatorClient) -> None:
    sim.set_faults({"path": "enrollments", "action": "drop"})

    with pytest.raises(requests.ConnectionError):
        post_enrollment(sim)

    assert [e for e in sim.enrollments(course_id=1) if e["user_id"] == ALAN] == []


@pytest.mark.parametrize(
    ("when", "side_effect"),
    [pytest.param("before", False, id="before"), pytest.param("after", True, id="after")],
)
def test_error_fault(sim: SimulatorClient, when: str, side_effect: bool) -> None:
    sim.set_faults({"method": "POST", "action": "error", "when": when, "times": 1})

    response = post_enrollment(sim)

    assert response.status_code == 500
    body = response.json()
    assert body["errors"] == [{"message": "An error occurred.", "error_code": "internal_server_error"}]
    assert isinstance(body["error_report_id"], int)
    assert any(e["user_id"] == ALAN for e in sim.enrollments(course_id=1)) is side_effect
    assert post_enrollment(sim).status_code == 200  # times=1: only once


def test_delay_fault_and_latency(sim: SimulatorClient) -> None:
    sim.set_faults({"method": "GET", "action": "delay", "seconds": 0.3, "when": "after"})
    started = time.perf_counter()
    assert sim.api("GET", "users/self", TEACHER_TOKEN).status_code == 200
    assert time.perf_counter() - started >= 0.3
    sim.control("DELETE", "faults")
    sim.settings(latency_seconds=0.2)
    started = time.perf_counter()
    sim.api("GET", "users/self", TEACHER_TOKEN)
    assert time.perf_counter() - started >= 0.2


@pytest.mark.parametrize(
    ("status", "text"),
    [
        pytest.param(403, "403 Forbidden (Rate Limit Exceeded)\n", id="403"),
        pytest.param(429, "429 Too Many Requests (Rate Limit Exceeded)\n", id="429"),
    ],
)
def test_throttle_fault_and_mode(sim: SimulatorClient, status: int, text: str) -> None:
    sim.set_faults({"action": "throttle", "status": status, "times": 1})
    faulted = post_enrollment(sim)
    sim.settings(throttle=status)
    throttled = sim.api("GET", "users/self", TEACHER_TOKEN)

    for response in (faulted, throttled):
        assert (response.status_code, response.text) == (status, text)
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.headers["X-Rate-Limit-Remaining"] == "-3.2"
        assert "X-Request-Cost" not in response.headers
    assert [e for e in sim.enrollments(course_id=1) if e["user_id"] == ALAN] == []
    sim.settings(throttle=None)
    assert sim.api("GET", "users/self", TEACHER_TOKEN).status_code == 200


def test_control_api_rejects_bad_input(sim: SimulatorClient) -> None:
    bad_fault = sim.http.post(f"{sim.url}/_sim/faults", json={"rules": [{"action": "explode"}]})
    bad_setting = sim.http.post(f"{sim.url}/_sim/settings", json={"nope": 1})

    assert bad_fault.status_code == bad_setting.status_code == 400
    assert "error" in bad_fault.json()


def test_unknown_api_route_is_canvas_404(sim: SimulatorClient) -> None:
    response = sim.api("GET", "nothing/here", TEACHER_TOKEN)

    assert (response.status_code, response.json()) == (404, {"errors": [{"message": "The specified resource does not exist."}]})
    assert "X-Request-Context-Id" in response.headers


def test_run_simulator_prints_its_url_and_demo_tokens() -> None:
    import subprocess
    import sys

    code = "from ledger_proxy.simulator import run_simulator; run_simulator('127.0.0.1', 0, seed_demo=True)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        url = first_line.rsplit(" ", 1)[-1].strip()
        banner = "".join(process.stdout.readline() for _ in range(5))
        session = requests.Session()
        session.trust_env = False
        me = session.get(f"{url}/api/v1/users/self", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
        assert url.startswith("http://127.0.0.1:")
        assert ADMIN_TOKEN in banner and TEACHER_TOKEN in banner
        assert me.json()["name"] == "Sim Admin"
    finally:
        process.terminate()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
