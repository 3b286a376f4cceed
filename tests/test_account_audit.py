"""The account audit (issue 15) over real HTTP: the simulator's provisioning report, the command
`ledger-proxy audit-account`, and verdicts that equal the course lookup's."""

from __future__ import annotations

import csv
import io
import json

import pytest
import requests
from canvasapi import Canvas
from click.testing import CliRunner

from ledger_proxy.cli import main
from ledger_proxy.core import account_audit
from ledger_proxy.simulator import reports as sim_reports

from .test_lookup_e2e import BYPASS_CLIENT, lookup


class Account:
    """Three courses of one account, with rows of every origin."""

    def __init__(self, world, sim, proxy):
        self.world, self.sim, self.proxy = world, sim, proxy
        self.courses = [world.course["id"]]
        for n in (2, 3):
            self.courses.append(sim.add_course(f"Course {n}", sis_course_id=f"C-{n}")["id"])
        canvas = Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"])
        students = world.students
        # A parent linked to the first student: Canvas makes their ObserverEnrollment itself,
        # beside each student row (the lookup's linked-observer rule).
        parent = sim.add_user("Pat Parent", sis_user_id="P-1")
        sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": students[0]["id"]})
        for index, course_id in enumerate(self.courses):
            course = canvas.get_course(course_id)
            course.enroll_user(students[0]["id"], enrollment={"enrollment_state": "active"})
            course.enroll_user(students[1]["id"], enrollment={"type": "TaEnrollment"}).deactivate("conclude")
            course.enroll_user(students[2]["id"], enrollment={"type": "DesignerEnrollment"}).deactivate("delete")
            self.ui(course_id, students[3])
            sim.control("POST", "api_bypass/enrollments", {"course_id": course_id, "user_id": students[4]["id"], "actor_user_id": world.admin["id"], "user_agent": BYPASS_CLIENT})
            # Made by hand, then re-enrolled through the proxy (adopted: manual).
            self.ui(course_id, students[5])
            course.enroll_user(students[5]["id"])
            # Made through the proxy, later claimed by SIS (still integration).
            course.enroll_user(students[6]["id"], enrollment={"enrollment_state": "active"})
            for state in ("invited", "inactive", "completed", "rejected", "deleted"):
                sim.control("POST", "seed", {"course_id": course_id, "count": 1, "channel": "ui", "enrollment_state": state})
            sis_course = "BIO-101" if index == 0 else f"C-{index + 1}"
            sim.add_user(f"SIS Person {index}", sis_user_id=f"SIS-{index}")
            sim.control("POST", "sis_imports", {"csv": (
                "course_id,user_id,role,status\n"
                f"{sis_course},SIS-{index},student,active\n"
                f"{sis_course},S-07,student,active\n"  # claims the proxy-made row
                f"{sis_course},S-04,student,active\n"  # adopts the hand-made row
            )})
            sim.control("POST", "sis_imports", {"csv": f"course_id,user_id,role,status\n{sis_course},SIS-{index},student,deleted\n"})

    def ui(self, course_id, user, **fields):
        return self.sim.control("POST", "ui/enrollments", {"course_id": course_id, "user_id": user["id"], "actor_user_id": self.world.teacher["id"], **fields})


@pytest.fixture
def account(world, sim, make_proxy):
    return Account(world, sim, make_proxy(sim.url))


@pytest.fixture
def cli_env(monkeypatch, sim, account):
    monkeypatch.setenv("LEDGER_PROXY_CANVAS_URL", sim.url)
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", account.proxy.app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "test-token-hash-key")
    return account


def audit_account(*args, token=None):
    token_args = ["--token", token] if token else []
    return CliRunner().invoke(main, ["audit-account", *args, *token_args], catch_exceptions=False)


def ndjson(text):
    return [json.loads(line) for line in text.splitlines() if line]


def test_each_account_verdict_equals_the_course_lookup(world, sim, cli_env):
    result = audit_account("1", "--format", "ndjson", "--timeout", "30", token=world.admin["token"])
    assert result.exit_code == 0, result.output
    audited = {row["id"]: row for row in ndjson(result.stdout)}
    looked_up = {}
    for course_id in cli_env.courses:
        response = lookup(cli_env.proxy, f"courses/{course_id}/enrollments", world.admin["token"], include_deleted="true")
        assert response.status_code == 200, response.text
        looked_up.update({row["id"]: row for row in response.json()["enrollments"]})
    assert set(audited) <= set(looked_up)
    compared = 0
    for enrollment_id, row in audited.items():
        expected = looked_up[enrollment_id]
        assert row["provenance"] == expected["provenance"], (row, expected)
        assert row["ledger"] == expected["ledger"]
        compared += 1
    # Every origin is there: proxy-made, SIS (new, adopted and claimed), UI, bypass.
    verdicts = {row["provenance"] for row in audited.values()}
    assert {"integration", "sis", "manual"} <= verdicts
    observers = [r for r in audited.values() if r["type"] == "ObserverEnrollment"]
    assert len(observers) == 3 and all(r["linked_to"] and r["provenance"] == "integration" for r in observers)
    assert compared == len(audited) > 30
    # What the report leaves out: deleted rows that no SIS batch touched; nothing else.
    missing = {i: r for i, r in looked_up.items() if i not in audited}
    assert missing and all(r["enrollment_state"] == "deleted" and r["sis_import_id"] is None for r in missing.values())
    assert any(r["enrollment_state"] == "completed" for r in audited.values())
    assert any(r["report_status"] == "deleted" for r in audited.values())  # SIS-deleted: kept
    # The closing summary, on stderr.
    counts = {v: sum(1 for r in audited.values() if r["provenance"] == v) for v in ("integration", "sis", "manual")}
    assert f"{len(audited)} enrollments judged (integration: {counts['integration']}, sis: {counts['sis']}, manual: {counts['manual']}" in result.stderr


def test_a_proxy_made_row_claimed_by_sis_stays_integration_and_says_why(world, sim, cli_env):
    result = audit_account("1", "--format", "ndjson", token=world.admin["token"])
    claimed = [r for r in ndjson(result.stdout) if r["created_by_sis"] and r["provenance"] == "integration"]
    assert len(claimed) == 3
    assert all("created_by_sis in its provisioning report" in r["reason"] for r in claimed)
    adopted_by_sis = [r for r in ndjson(result.stdout) if r["sis_user_id"] == "S-04"]
    assert {r["provenance"] for r in adopted_by_sis} == {"sis"}  # §2.2: what the report can say


def test_predates_ledger_is_unknown_not_false_without_the_ledgers_created_at(world, sim, cli_env):
    rows = ndjson(audit_account("1", "--format", "ndjson", token=world.admin["token"]).stdout)
    seen = [r for r in rows if r["ledger"] is not None]
    # (A linked observer's row has Canvas's created_at, asked for the link's timing.)
    observers = [r for r in rows if r["ledger"] is None and r["type"] == "ObserverEnrollment"]
    unseen = [r for r in rows if r["ledger"] is None and r["type"] != "ObserverEnrollment"]
    assert all(r["predates_ledger"] is False and r["created_at"] for r in seen + observers)
    assert all(r["predates_ledger"] is None and r["created_at"] is None for r in unseen)
    assert all("cannot be told" in r["reason"] for r in unseen if r["provenance"] == "manual")


def test_manual_only_csv_is_spreadsheet_safe(world, sim, cli_env, tmp_path):
    role = sim.control("POST", "roles", {"name": "=HYPERLINK(\"http://x\")", "base_role_type": "StudentEnrollment"})
    cli_env.ui(world.course["id"], world.students[7], role_id=role["id"])
    out = tmp_path / "manual.csv"
    result = audit_account("1", "--manual-only", "-o", str(out), token=world.admin["token"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and {r["provenance"] for r in rows} == {"manual"}
    assert "'=HYPERLINK(\"http://x\")" in {r["role"] for r in rows}
    assert list(rows[0]) == list(account_audit.CSV_COLUMNS)


def test_the_term_filter_reaches_canvas(world, sim, cli_env):
    result = audit_account("1", "--term", "99", "--format", "ndjson", token=world.admin["token"])
    assert result.exit_code == 0, result.output
    assert ndjson(result.stdout) == []  # every simulated course is in term 1
    [started] = [r for r in sim.requests_log() if r["method"] == "POST" and "/reports/" in r["path"]]
    assert "enrollment_term_id" in json.dumps(started)


def test_malformed_rows_are_reported_with_line_numbers_and_the_run_goes_on(world, sim, cli_env):
    sim.settings(report_extra_lines=["1,2,3", "1,,2,S-01,student,3,1,,graduated,,,false,StudentEnrollment,false,999", "not,a,row"])
    result = audit_account("1", "--format", "ndjson", token=world.admin["token"])
    assert result.exit_code == 0, result.output
    rows = ndjson(result.stdout)
    last = max(r["line"] for r in rows)
    assert f"line {last + 1}: 3 fields where the header has 15" in result.stderr
    assert f"line {last + 2}: status 'graduated' is not one of the report's words" in result.stderr
    assert f"line {last + 3}: 3 fields" in result.stderr
    assert "3 malformed row(s) skipped" in result.stderr


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        pytest.param("error", "ended with status 'error': Generating the report failed", id="failed"),
        pytest.param("aborted", "ended with status 'aborted'", id="aborted"),
        pytest.param("stuck", "did not complete within 1 s (status 'running', progress 42%)", id="never-completes"),
    ],
)
def test_a_report_that_does_not_complete_is_a_clear_error(world, sim, cli_env, outcome, message, tmp_path):
    sim.settings(report_outcome=outcome)
    out = tmp_path / "audit.csv"
    result = CliRunner().invoke(main, ["audit-account", "1", "--timeout", "1", "-o", str(out), "--token", world.admin["token"]])
    assert result.exit_code == 1
    assert message in result.output
    assert not out.exists()  # no half-written file


def test_canvas_refusing_the_report_is_a_clear_error(world, sim, cli_env):
    result = CliRunner().invoke(main, ["audit-account", "1", "--token", world.teacher["token"]])
    assert result.exit_code == 1
    assert "Canvas answered 403" in result.output


def test_from_report_judges_a_downloaded_file_without_canvas(world, sim, cli_env, tmp_path, monkeypatch):
    report = tmp_path / "provisioning.csv"
    sim.settings(report_polls=1)
    started = sim.api("POST", "accounts/1/reports/provisioning_csv", world.admin["token"], data={"parameters[enrollments]": "1", "parameters[include_deleted]": "1"}).json()
    polled = sim.api("GET", f"accounts/1/reports/provisioning_csv/{started['id']}", world.admin["token"]).json()
    report.write_bytes(requests.get(polled["attachment"]["url"], timeout=10).content)
    live = audit_account("1", "--format", "ndjson", token=world.admin["token"])
    monkeypatch.setenv("LEDGER_PROXY_CANVAS_URL", "http://127.0.0.1:9")  # never asked
    offline = audit_account("1", "--from-report", str(report), "--format", "ndjson")
    assert offline.exit_code == 0, offline.output
    # The same, except linked observers' rows: offline, Canvas is not asked for their
    # students, so they are judged on their own evidence.
    on_their_own = [r for r in ndjson(offline.stdout) if r["type"] == "ObserverEnrollment"]
    assert on_their_own and {r["linked_to"] for r in on_their_own} == {None}
    assert [r for r in ndjson(offline.stdout) if r["type"] != "ObserverEnrollment"] == [
        r for r in ndjson(live.stdout) if r["type"] != "ObserverEnrollment"
    ]


def test_a_file_that_is_not_a_report_is_refused(cli_env, tmp_path):
    bogus = tmp_path / "users.csv"
    bogus.write_text("user_id,login_id\n1,a\n")
    result = CliRunner().invoke(main, ["audit-account", "1", "--from-report", str(bogus)])
    assert result.exit_code == 1
    assert "not a provisioning report's enrollments CSV: no column canvas_enrollment_id" in result.output


# The simulator's reports API, as §3 describes Canvas's


def test_the_simulated_report_has_the_exact_columns_and_filters(world, sim, account):
    token = world.admin["token"]

    def report(**parameters):
        started = sim.api("POST", "accounts/1/reports/provisioning_csv", token, data={f"parameters[{k}]": v for k, v in {"enrollments": "true", **parameters}.items()})
        assert started.status_code == 200 and started.json()["status"] == "created"
        run_id = started.json()["id"]
        polls = [sim.api("GET", f"accounts/1/reports/provisioning_csv/{run_id}", token).json() for _ in range(2)]
        assert [p["status"] for p in polls] == ["running", "complete"]
        assert [p["progress"] for p in polls] == [50, 100]
        body = requests.get(polls[-1]["attachment"]["url"], timeout=10)
        assert body.headers["Content-Type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(body.text))), body.text.splitlines()[0]

    rows, header = report()
    assert tuple(header.split(",")) == sim_reports.ENROLLMENT_COLUMNS == account_audit.REPORT_COLUMNS
    truth = {e["id"]: e for e in sim.enrollments()}
    assert {r["status"] for r in rows} == {"active", "invited", "inactive", "rejected"}
    assert len(rows) == sum(1 for e in truth.values() if e["enrollment_state"] not in ("deleted", "completed"))
    with_deleted, _ = report(include_deleted="true")
    statuses = {r["status"] for r in with_deleted}
    assert {"concluded", "deleted"} <= statuses
    assert all(r["created_by_sis"] == "true" for r in with_deleted if r["status"] == "deleted")
    only_sis, _ = report(created_by_sis="true")
    assert only_sis and {r["created_by_sis"] for r in only_sis} == {"true"}
    listed = sim.api("GET", "accounts/1/reports/provisioning_csv", token).json()
    assert [r["id"] for r in listed] == sorted((r["id"] for r in listed), reverse=True)
    assert sim.api("POST", "accounts/1/reports/provisioning_csv", world.teacher["token"]).status_code == 403
    assert sim.api("POST", "accounts/1/reports/no_such_report", token).status_code == 404


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_sees_progress_through_every_phase():
    from ledger_proxy.audit_output import AccountProgress

    terminal = Terminal()
    progress = AccountProgress(terminal, None)
    watchers = progress.watchers()
    for percent in (0, 50, 100):
        watchers.on_status({"id": 7, "status": "running", "progress": percent})
    watchers.on_download({"id": 7, "attachment": {"size": 1000}})
    watchers.on_read(400)
    watchers.on_read(600)
    progress.done()
    shown = terminal.getvalue()
    assert "Canvas builds report 7" in shown
    assert "downloading and judging  [####################################]  100%" in shown
    quiet = io.StringIO()  # not a terminal: nothing
    AccountProgress(quiet, None).watchers().on_status({"id": 7, "progress": 50})
    assert quiet.getvalue() == ""


def test_the_benchmarks_report_and_ledger_are_what_the_audit_reads(tmp_path):
    """bench/account_audit_bench.py builds a valid report and ledger (behaviour only, no timing)."""
    import importlib.util
    from datetime import timedelta
    from pathlib import Path

    from ledger_proxy.core import ledger

    path = Path(__file__).resolve().parent.parent / "bench" / "account_audit_bench.py"
    spec = importlib.util.spec_from_file_location("account_audit_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.write_report(tmp_path / "r.csv", 1000, 50)
    assert bench.build_ledger(tmp_path / "l.sqlite3", 1000, 50) == 200
    db = ledger.connect(str(tmp_path / "l.sqlite3"))
    tally = account_audit.Tally()
    with open(tmp_path / "r.csv", newline="") as lines:
        rows = list(account_audit.judged(db, lines, tally, allowance=timedelta(seconds=5)))
    db.close()
    assert len(rows) == 1000 and tally.malformed == 0
    assert tally.verdicts["integration"] > 0 and tally.verdicts["sis"] > 0 and tally.verdicts["manual"] > 0
    assert any(row["in_sis_roster"] for row in rows)
    pages, table = bench.walk_estimate(500_000, 5_000)
    assert pages == 5_050 and table[1] == (0.5, (5_050 * 0.5 - 600) / 10, 5_050 * 0.3)


def test_with_live_events_each_row_names_its_actor_as_the_lookup_does(world, sim, make_proxy, monkeypatch):
    """Issue 15 with issue 13 landed: the actor evidence, and the summary per `via`."""
    proxy = make_proxy(sim.url, LIVE_EVENTS_JWKS=sim.live_events_jwks_url)
    sim.live_events(url=f"{proxy.url}/ledger/v1/live-events")
    try:
        account = Account(world, sim, proxy)
        sim.flush_live_events()
    finally:
        sim.live_events(enabled=False)
    monkeypatch.setenv("LEDGER_PROXY_CANVAS_URL", sim.url)
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", proxy.app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "test-token-hash-key")
    result = audit_account("1", "--format", "ndjson", token=world.admin["token"])
    assert result.exit_code == 0, result.output
    audited = {row["id"]: row for row in ndjson(result.stdout)}
    for course_id in account.courses:
        listing = lookup(proxy, f"courses/{course_id}/enrollments", world.admin["token"], include_deleted="true").json()
        for expected in listing["enrollments"]:
            row = audited.get(expected["id"])
            if row is None:
                continue
            assert row["provenance"] == expected["provenance"], (row, expected)
            assert row["via"] == (expected["actor"] or {}).get("via")
            assert {k: v for k, v in (row["actor"] or {}).items() if k != "name"} == {k: v for k, v in (expected["actor"] or {}).items() if k != "name"}
    vias = {row["via"] for row in audited.values()}
    assert {"ui", "api", "sis"} <= vias
    assert "\n  via api: integration: " in result.stderr  # the closing summary per via
