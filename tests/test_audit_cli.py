"""`ledger-proxy audit` and `ledger-proxy sis-roster load`: the same lookup from the command line."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from ledger_proxy.cli import main

from .test_lookup_e2e import lookup, mixed  # noqa: F401 - the mixed-origin course fixture


@pytest.fixture
def cli_env(monkeypatch, sim, mixed):  # noqa: F811
    monkeypatch.setenv("LEDGER_PROXY_CANVAS_URL", sim.url)
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", mixed.app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "test-token-hash-key")
    return mixed


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_audit_json_is_the_same_verdicts_as_the_http_lookup(world, cli_env):
    result = run("audit", str(world.course["id"]), "--format", "json", "--token", world.admin["token"])
    assert result.exit_code == 0, result.output
    from_cli = json.loads(result.stdout)
    from_http = lookup(cli_env, f"courses/{world.course['id']}/enrollments", world.admin["token"]).json()
    assert from_cli == from_http
    assert "fetched" not in result.stderr  # no progress when not on a terminal


def test_audit_manual_only_csv(world, cli_env):
    result = run("audit", str(world.course["id"]), "--manual-only", "--format", "csv", env={"CANVAS_TOKEN": world.admin["token"]})
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    http = lookup(cli_env, f"courses/{world.course['id']}/enrollments", world.admin["token"], provenance="manual").json()
    assert sorted(int(r["id"]) for r in rows) == sorted(r["id"] for r in http["enrollments"])
    assert {r["provenance"] for r in rows} == {"manual"}
    assert all(r["reason"] for r in rows)


def test_audit_table(world, cli_env):
    result = run("audit", str(world.course["id"]), "--token", world.admin["token"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["id", "user", "type", "state", "provenance"]
    summary = lookup(cli_env, f"courses/{world.course['id']}/enrollments", world.admin["token"]).json()["summary"]
    assert lines[-1] == f"integration: {summary['integration']}, sis: {summary['sis']}, manual: {summary['manual']}, pending: 0, unknown: 0, ambiguous: 0 (total {summary['total']})"
    assert "\x1b[" not in result.stdout  # no colour when not on a terminal


def test_audit_errors_are_one_line(world, cli_env):
    result = CliRunner().invoke(main, ["audit", "999999", "--token", world.admin["token"]])
    assert result.exit_code == 1
    assert "Error: Canvas answered 404: The specified resource does not exist." in result.output
    result = CliRunner().invoke(main, ["audit", "1"], env={"CANVAS_TOKEN": ""})
    assert result.exit_code == 2 and "--token" in result.output


def test_sis_roster_marks_matching_rows_sis(world, sim, cli_env, tmp_path):
    course_path = f"courses/{world.course['id']}/enrollments"
    by_hand = world.students[2]  # made in the web UI: manual until the roster says SIS has it
    roster = tmp_path / "enrollments.csv"
    roster.write_text(f"course_id,user_id,role,section_id,status\nBIO-101,{by_hand['sis_user_id']},student,,active\nBIO-101,NOBODY,student,,active\n")
    before = {r["user_id"]: r for r in lookup(cli_env, course_path, world.admin["token"]).json()["enrollments"]}
    assert before[by_hand["id"]]["provenance"] == "manual"
    assert before[by_hand["id"]]["in_sis_roster"] is None

    result = run("sis-roster", "load", str(roster))
    assert result.exit_code == 0, result.output
    assert "Loaded 2 SIS enrollment rows" in result.stdout

    after = {r["user_id"]: r for r in lookup(cli_env, course_path, world.admin["token"]).json()["enrollments"]}
    assert (after[by_hand["id"]]["provenance"], after[by_hand["id"]]["in_sis_roster"]) == ("sis", True)
    assert "SIS roster" in after[by_hand["id"]]["reason"]
    other = after[world.students[3]["id"]]  # the bypassing script's row
    assert (other["provenance"], other["in_sis_roster"]) == ("manual", False)


def test_a_bad_roster_is_reported_by_line_and_nothing_is_loaded(world, cli_env, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(f"course_id,user_id,role,section_id,status\nBIO-101,{world.students[2]['sis_user_id']},student,,active\n")
    assert run("sis-roster", "load", str(good)).exit_code == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "course_id,user_id,role,section_id,status\n"
        "BIO-101,S-01,student,,active\n"
        ",S-02,student,,active\n"
        "BIO-101,S-03,student,,enrolled\n"
        "BIO-101,S-04,student\n"
    )
    result = CliRunner().invoke(main, ["sis-roster", "load", str(bad)])
    assert result.exit_code == 1
    assert "line 3: course_id or section_id is required" in result.output
    assert "line 4: status 'enrolled' is not one of" in result.output
    assert "line 5: 3 fields, the header has 5" in result.output
    assert "3 bad line(s)" in result.output and "nothing was loaded" in result.output
    rows = {r["user_id"]: r for r in lookup(cli_env, f"courses/{world.course['id']}/enrollments", world.admin["token"]).json()["enrollments"]}
    assert rows[world.students[2]["id"]]["in_sis_roster"] is True  # the good roster is still the one loaded


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "line 1: the file is empty", id="empty"),
        pytest.param(b"course_id,user_id,status\nA,B,active\n", "the header needs role or role_id", id="no-role-column"),
        pytest.param(b"course_id,user_id,role,status\nA,\xff\xfe,student,active\n", "line 2: not valid UTF-8", id="bad-utf8"),
    ],
)
def test_roster_file_problems(tmp_path, monkeypatch, content, message):
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", str(tmp_path / "l.sqlite3"))
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")
    path = tmp_path / "roster.csv"
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["sis-roster", "load", str(path)])
    assert result.exit_code == 1
    assert message in result.output
