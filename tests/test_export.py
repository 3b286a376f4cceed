"""GET /ledger/v1/export, /ledger/v1/enrollments/<id> and `ledger-proxy export` (issue 4)."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from canvasapi import Canvas
from click.testing import CliRunner

from ledger_proxy.cli import main
from ledger_proxy.core import export

from .helpers import assert_canvas_error
from .helpers import ledger_rows as ledger

# The columns the issue names (as the ledger calls them), each present in every export.
ISSUE_COLUMNS = (
    "enrollment_id", "course_id", "course_section_id", "user_id", "type", "role",
    "enrollment_state", "action", "integration", "actor_user_id", "canvas_request_id",
    "request_id", "created_at", "recorded_at", "hash",
)


def get(proxy, path, token=None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{proxy.url}/ledger/v1/{path}", params=params, headers=headers, timeout=60)


def csv_rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode(), newline="")))


def as_text(value) -> str:
    return "" if value is None else str(value)


@pytest.fixture(name="proxy")
def _proxy(admin_proxy):
    return admin_proxy


@pytest.fixture
def recorded(world, sim, proxy):
    """Enrollments made through the proxy by two integrations in two courses, then changed."""
    other_course = sim.add_course("Chemistry 201", sis_course_id="CHEM-201")
    sync = Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"])
    helpdesk = Canvas(f"{proxy.url}/i/helpdesk", world.admin["token"])
    course = sync.get_course(world.course["id"])
    made = [course.enroll_user(s["id"], enrollment={"enrollment_state": "active"}) for s in world.students[:3]]
    made.append(sync.get_section(world.section_b).enroll_user(world.students[3]["id"], enrollment={"type": "TaEnrollment"}))
    made.append(helpdesk.get_course(other_course["id"]).enroll_user(world.students[4]["id"]))
    made[1].deactivate("deactivate")
    made[1].reactivate()
    made[2].deactivate("conclude")
    return {"enrollments": made, "other_course": other_course}


def test_csv_export_is_every_event_the_proxy_recorded(world, sim, proxy, recorded):
    response = get(proxy, "export", world.admin["token"])
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    assert re.fullmatch(
        r'attachment; filename="ledger-export-\d{8}T\d{6}Z\.csv"', response.headers["Content-Disposition"]
    )
    rows = csv_rows(response.content)
    assert list(rows[0]) == list(export.HEADER)
    assert set(ISSUE_COLUMNS) <= set(rows[0])
    events = ledger(proxy, "SELECT * FROM events ORDER BY seq")
    assert len(rows) == len(events) == 8
    for row, event in zip(rows, events, strict=True):
        assert row == {name: as_text(value) for name, value in export.outward(event).items() if name in export.HEADER}
    # Judged on the simulator's ground truth, not only on the ledger.
    truth = {e["id"]: e for c in (world.course["id"], recorded["other_course"]["id"]) for e in sim.enrollments(course_id=c)}
    made_here = {i for i, e in truth.items() if (e["origin"]["user_agent"] or "").startswith("python-canvasapi/")}
    assert {int(r["enrollment_id"]) for r in rows} == made_here == {e.id for e in recorded["enrollments"]}
    for row in rows:
        enrollment = truth[int(row["enrollment_id"])]
        assert (int(row["course_id"]), int(row["user_id"]), int(row["course_section_id"])) == (
            enrollment["course_id"], enrollment["user_id"], enrollment["course_section_id"])
        assert row["actor_user_id"] == str(world.admin["id"])
        assert row["created_at"] == enrollment["created_at"]
    origin_ids = {truth[int(r["enrollment_id"])]["origin"]["request_context_id"] for r in rows if r["action"] == "created"}
    assert origin_ids == {r["canvas_request_id"] for r in rows if r["action"] == "created"}
    second = recorded["enrollments"][1].id
    assert [r["action"] for r in rows if int(r["enrollment_id"]) == second] == ["created", "deactivated", "reactivated"]
    assert truth[second]["enrollment_state"] == "active"
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]


def test_ndjson_export_carries_the_same_events_typed(world, proxy, recorded):
    response = get(proxy, "export", world.admin["token"], format="ndjson")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    assert response.headers["Content-Disposition"].endswith('.ndjson"')
    lines = response.content.decode().splitlines()
    events = ledger(proxy, "SELECT * FROM events ORDER BY seq")
    assert [json.loads(line) for line in lines] == [{n: e[c] for n, c in zip(export.HEADER, export.COLUMNS, strict=True)} for e in events]
    assert list(json.loads(lines[0])) == list(export.HEADER)
    assert csv_rows(get(proxy, "export", world.admin["token"], format="csv").content) == [
        {c: as_text(v) for c, v in json.loads(line).items()} for line in lines
    ]


def test_filters_select_slices_of_the_ledger(world, proxy, recorded):
    token = world.admin["token"]
    events = ledger(proxy, "SELECT * FROM events ORDER BY seq")

    def seqs(**params):
        response = get(proxy, "export", token, **params)
        assert response.status_code == 200, response.text
        return [int(r["seq"]) for r in csv_rows(response.content)]

    other = recorded["other_course"]["id"]
    assert seqs(course_id=other) == [e["seq"] for e in events if e["course_id"] == other] != []
    assert seqs(integration="helpdesk") == [e["seq"] for e in events if e["integration"] == "helpdesk"] != []
    assert seqs(action="deactivated") == [e["seq"] for e in events if e["action"] == "deactivated"] != []
    assert seqs(course_id=world.course["id"], integration="helpdesk") == []
    middle = events[3]["recorded_at"]
    assert seqs(since=middle) == [e["seq"] for e in events if e["recorded_at"] >= middle]
    assert seqs(until=middle) == [e["seq"] for e in events if e["recorded_at"] <= middle]
    assert seqs(since=middle, until=middle) == [e["seq"] for e in events if e["recorded_at"] == middle]
    # An offset is honoured: the same instant written in another time zone.
    instant = datetime.fromisoformat(middle.replace("Z", "+00:00")).astimezone(timezone(timedelta(hours=2)))
    assert seqs(since=instant.isoformat()) == seqs(since=middle)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert seqs(since=tomorrow) == []
    assert seqs(until=tomorrow) == [e["seq"] for e in events]
    assert csv_rows(get(proxy, "export", token, action="accepted").content) == []
    assert get(proxy, "export", token, action="accepted").content.decode().strip() == ",".join(export.HEADER)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        pytest.param({"format": "xml"}, "format", id="unknown-format"),
        pytest.param({"since": "yesterday"}, "since", id="malformed-since"),
        pytest.param({"until": "2025-13-01T00:00:00Z"}, "until", id="malformed-until"),
        pytest.param({"course_id": "BIO-101"}, "course_id", id="non-numeric-course"),
        pytest.param({"course_id": "-3"}, "course_id", id="negative-course"),
        pytest.param({"course": "1"}, "course", id="unknown-filter"),
        pytest.param({"integration": ""}, "integration", id="empty-integration"),
    ],
)
def test_bad_input_is_400_naming_the_parameter(world, proxy, params, name):
    response = get(proxy, "export", world.admin["token"], **params)
    assert_canvas_error(response, 400, name)
    assert "Content-Disposition" not in response.headers


@pytest.mark.parametrize("path", ["export", "enrollments/1"])
def test_only_admins_read_the_ledger(world, proxy, path):
    response = get(proxy, path)
    assert_canvas_error(response, 401, "user authorization required")
    assert_canvas_error(get(proxy, path, "not-a-token"), 401, "Invalid access token")
    for user in (world.teacher, world.students[0]):
        assert_canvas_error(get(proxy, path, user["token"]), 403, "not authorized")
    # Canvas accepts the token as a parameter too; so does the proxy.
    by_param = requests.get(f"{proxy.url}/ledger/v1/{path}", params={"access_token": world.admin["token"]}, timeout=30)
    assert by_param.status_code == (200 if path == "export" else 404)


def test_enrollment_history_is_every_event_oldest_first_with_the_current_view(world, sim, proxy, recorded):
    enrollment = recorded["enrollments"][1]
    response = get(proxy, f"enrollments/{enrollment.id}", world.admin["token"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enrollment_id"] == enrollment.id
    assert [e["action"] for e in body["events"]] == ["created", "deactivated", "reactivated"]
    assert [e["enrollment_state"] for e in body["events"]] == ["active", "inactive", "active"]
    assert body["events"] == [export.outward(e) for e in ledger(proxy, "SELECT * FROM events WHERE enrollment_id = ? ORDER BY seq", [enrollment.id])]
    assert body["events"][0]["created_at"] == enrollment.created_at  # Canvas's name for Canvas's time
    assert {e["hash"] for e in body["events"]} <= {r["hash"] for r in ledger(proxy, "SELECT hash FROM events")}
    current = body["current"]
    assert (current["origin_action"], current["last_action"], current["enrollment_state"]) == ("created", "reactivated", "active")
    assert current["last_seq"] == body["events"][-1]["seq"]
    assert current["origin_integration"] == "roster-sync"
    [truth] = [e for e in sim.enrollments(course_id=world.course["id"]) if e["id"] == enrollment.id]
    assert current["enrollment_state"] == truth["enrollment_state"]


def test_history_of_an_enrollment_the_ledger_never_saw_is_404(world, sim, proxy, recorded):
    bypass = sim.control("POST", "ui/enrollments", {"course_id": world.course["id"], "user_id": world.students[7]["id"], "actor_user_id": world.teacher["id"]})
    for enrollment_id in [bypass["id"], 999999, "abc", "12abc", "1.0", "99999999999999999999", "1/2"]:
        assert_canvas_error(get(proxy, f"enrollments/{enrollment_id}", world.admin["token"]), 404, "does not exist")


@pytest.fixture
def cli_env(proxy, monkeypatch):
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", proxy.app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")


def test_cli_export_gives_the_same_bytes_as_http(world, proxy, recorded, cli_env, tmp_path):
    course = recorded["other_course"]["id"]
    cases = [
        ({}, []),
        ({"format": "ndjson"}, ["--format", "ndjson"]),
        ({"integration": "roster-sync", "action": "created"}, ["--integration", "roster-sync", "--action", "created"]),
        ({"course_id": course, "since": "2000-01-01T00:00:00Z"}, ["--course-id", str(course), "--since", "2000-01-01T00:00:00Z"]),
        ({"format": "ndjson", "until": "2000-01-01"}, ["--format", "ndjson", "--until", "2000-01-01"]),
    ]
    for params, options in cases:
        over_http = get(proxy, "export", world.admin["token"], **params).content
        target = tmp_path / "out"
        result = CliRunner().invoke(main, ["export", *options, "-o", str(target)])
        assert result.exit_code == 0, result.output
        assert target.read_bytes() == over_http, options
        to_stdout = CliRunner().invoke(main, ["export", *options])
        assert to_stdout.stdout_bytes == over_http, options
    assert len(csv_rows(get(proxy, "export", world.admin["token"], course_id=course).content)) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(["--since", "last week"], "--since: Not a valid datetime", id="since"),
        pytest.param(["--course-id", "BIO-101"], "--course-id: Not a valid integer", id="course"),
        pytest.param(["--format", "xml"], "Invalid value for '--format'", id="format"),
    ],
)
def test_cli_export_refuses_bad_filters(tmp_path, monkeypatch, options, message):
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", str(tmp_path / "l.sqlite3"))
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")
    result = CliRunner().invoke(main, ["export", *options])
    assert result.exit_code in (1, 2)
    assert message in result.output


@pytest.mark.parametrize("command", ["export", "verify"])
def test_the_commands_have_help_with_an_example_and_are_in_the_readme(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"`ledger-proxy {command} [" in readme


def seed_events(path: str, count: int, *, first_seq: int = 1, prev_hash: str = export.GENESIS, integration: str = 'bulk-load, "quoted"') -> str:
    """Append `count` chained events straight into a ledger (one executemany); the head hash."""
    recorded_at = datetime(2025, 1, 1, tzinfo=UTC)
    rows = export.link(
        (
            {
                "seq": seq, "request_id": "bulk", "enrollment_id": 100_000 + seq, "action": "created",
                "course_id": 500 + seq % 7, "course_section_id": 900 + seq % 7, "user_id": 10_000 + seq,
                "type": "StudentEnrollment", "role": "StudentEnrollment", "role_id": 3,
                "enrollment_state": "active", "sis_import_id": None,
                "canvas_created_at": "2025-01-01T00:00:00Z", "canvas_updated_at": "2025-01-01T00:00:00Z",
                "canvas_request_id": f"ctx-{seq}", "integration": integration, "actor_user_id": 1,
                "recorded_at": (recorded_at + timedelta(milliseconds=seq)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            for seq in range(first_seq, first_seq + count)
        ),
        prev_hash,
    )
    head = prev_hash
    columns = export.COLUMNS

    def values():
        nonlocal head
        for row in rows:
            head = row["hash"]
            yield [row[c] for c in columns]

    with sqlite3.connect(path) as conn:
        conn.execute("INSERT OR IGNORE INTO requests (id, received_at, method, path, kind, status) VALUES ('bulk', '2025-01-01', 'POST', '/api', 'enrollment_create', 'completed')")
        conn.executemany(
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            values(),
        )
    return head


def test_a_100000_event_ledger_streams_with_bounded_memory(world, make_proxy, sim):
    proxy = make_proxy(sim.url, ADMIN_USER_IDS=[world.admin["id"]], ADMIN_CONFIRM_SECONDS=60)
    head = seed_events(proxy.app.config["DATABASE"], 100_000)
    # Admin access is confirmed with Canvas; confirmed once here, the measured export makes
    # no call to the simulator, whose werkzeug server buffers 10 MB when it drains a closed
    # connection (in this process, so traced) at a moment no test can order.
    warm = requests.get(f"{proxy.url}/ledger/v1/export?since=2999-01-01T00:00:00Z", headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=60)
    assert warm.status_code == 200
    tracemalloc.start()  # traces the proxy's thread too: it runs in this process
    try:
        with requests.get(f"{proxy.url}/ledger/v1/export", headers={"Authorization": f"Bearer {world.admin['token']}"}, stream=True, timeout=60) as response:
            assert response.status_code == 200
            assert "Content-Length" not in response.headers  # streamed, not built first
            # From here on: werkzeug's test server drains each closed connection (here, the
            # token check's call to the simulator) into a 10 MB buffer; that is not the export.
            tracemalloc.reset_peak()
            size, lines, tail = 0, 0, b""
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                lines += chunk.count(b"\n")
                tail = (tail + chunk)[-1000:]
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == 100_001  # the header and every event
    last = tail.decode().rstrip("\r\n").rsplit("\r\n", 1)[-1]
    assert next(csv.reader([last]))[-1] == head
    assert size > 30_000_000
    assert peak < 4_000_000, f"peak {peak / 1e6:.1f} MB while streaming {size / 1e6:.1f} MB"
