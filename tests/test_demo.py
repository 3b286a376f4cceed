"""`ledger-proxy demo` (issue 6, item 2): the printed verdicts are the simulator's truth."""

from __future__ import annotations

import re
import sqlite3

import requests
from click.testing import CliRunner

from ledger_proxy import demo
from ledger_proxy.cli import main

ROW = re.compile(r"^(\d+)\s+(.+?)\s{2,}(\w+Enrollment)\s+(\w+)\s+(integration|sis|manual|pending|unknown)\s", re.M)
EXPECTED = {
    "Ada Lovelace": "integration",  # enrolled through the proxy by roster-sync (canvasapi)
    "Alan Turing": "integration",
    "Grace Hopper": "manual",  # the teacher, in the web UI
    "Terry Teacher": "manual",  # the admin, in the web UI, before the proxy ran
    "Katherine Johnson": "manual",  # a script calling Canvas directly
    "Edsger Dijkstra": "sis",  # Canvas's own SIS import
    "Barbara Liskov": "sis",
    "Donald Knuth": "sis",
}


def test_the_demo_prints_the_course_and_the_urls_to_try(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--no-wait"])
    assert result.exit_code == 0, result.output
    output = result.output
    verdicts = {name: verdict for _id, name, _type, _state, verdict in ROW.findall(output)}
    assert verdicts == EXPECTED
    assert "integration: 2, sis: 3, manual: 3, pending: 0, unknown: 0, ambiguous: 0 (total 8)" in output
    # Canvas's Live Events name who made the manual rows (issue 13).
    reasons = {name: line for line in output.splitlines() for name in EXPECTED if f"  {name}  " in line}
    assert "added in the web UI by Terry Teacher (user 2) on " in reasons["Grace Hopper"]
    assert re.search(r"added through the API by user 1 with developer key \d+ on \S+, bypassing the proxy", reasons["Katherine Johnson"])
    assert "confirmed by Canvas: request " in reasons["Ada Lovelace"]
    assert "manual by how (Live Events): ui: 1, api: 1, sis: 0, self: 0, canvas: 0, none: 1" in output
    assert "\x1b[" not in output  # no colour when stdout is not a terminal
    proxy = re.search(r"ledger-proxy\s+(http://127\.0\.0\.1:\d+)", output).group(1)
    for url in (f"{proxy}/ledger/", f"{proxy}/ledger/v1/courses/1/enrollments", f"{proxy}/i/roster-sync", f"{proxy}/metrics"):
        assert url in output
    assert "sim-admin-token" in output and "sim-teacher-token" in output
    assert "(temporary)" in output


def test_the_demo_verdicts_agree_with_the_simulators_ground_truth():
    with demo.Demo() as running:
        running.populate()
        result = running.lookup()
        truth = running.sim.enrollments(course_id=demo.COURSE_ID)
        # Every /api/ request the simulator saw came through the proxy (the bypass is not /api/).
        proxied = {entry["request_context_id"] for entry in running.sim.requests_log()}
        # While it runs, the lookup URL it prints answers the same over HTTP.
        over_http = requests.get(
            f"{running.proxy.url}/ledger/v1/courses/{demo.COURSE_ID}/enrollments",
            headers={"Authorization": f"Bearer {demo.ADMIN_TOKEN}"},
            timeout=10,
        ).json()
    assert over_http["summary"] == result["summary"]
    expected = {}
    for row in truth:
        origin = row["origin"]
        if origin["channel"] == "sis":
            expected[row["id"]] = "sis"
        elif origin["channel"] == "api" and origin["request_context_id"] in proxied:
            expected[row["id"]] = "integration"
        else:
            expected[row["id"]] = "manual"
    assert {row["id"]: row["provenance"] for row in result["enrollments"]} == expected
    # Each actor the lookup names is the simulator's own record of who acted (issue 13).
    origins = {row["id"]: row["origin"] for row in truth}
    for row in result["enrollments"]:
        if row["actor"] is not None:
            assert row["actor"]["user_id"] == origins[row["id"]]["actor_user_id"]
            assert row["actor"]["request_id"] == origins[row["id"]]["request_context_id"]
    named = {row["user"]["name"]: row["actor"] for row in result["enrollments"]}
    assert (named["Grace Hopper"]["name"], named["Grace Hopper"]["via"]) == ("Terry Teacher", "ui")
    assert (named["Katherine Johnson"]["user_id"], named["Katherine Johnson"]["via"]) == (demo.ADMIN_ID, "api")
    assert sorted(expected.values()) == sorted(EXPECTED.values())


def test_the_demo_keeps_its_ledger_where_ledger_proxy_database_says(tmp_path):
    ledger = tmp_path / "demo.sqlite3"
    result = CliRunner().invoke(main, ["demo", "--no-wait"], env={"LEDGER_PROXY_DATABASE": str(ledger)})
    assert result.exit_code == 0, result.output
    assert f"ledger            {ledger}\n" in result.output
    with sqlite3.connect(ledger) as conn:
        rows = conn.execute("SELECT action, integration FROM events").fetchall()
    assert rows == [("created", "roster-sync"), ("created", "roster-sync")]
