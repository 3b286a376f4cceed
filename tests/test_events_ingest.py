"""`ledger-proxy events ingest FILE|-` (issue 13): NDJSON of Live Events, as an SQS consumer
writes them, stored like the receiver stores them; bad lines reported by number and skipped."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from ledger_proxy.cli import main

from .helpers import ledger_rows


@pytest.fixture
def ledger_env(monkeypatch, tmp_path):
    path = tmp_path / "ledger.sqlite3"
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", str(path))
    return path


def ingest(*args: str, input: str | None = None):
    return CliRunner().invoke(main, ["events", "ingest", *args], input=input)


def emitted(world: Any, tmp_path: Any) -> list[str]:
    """The lines the simulator writes for a UI add and a bypassing API create."""
    path = tmp_path / "events.ndjson"
    world.sim.live_events(ndjson_path=str(path))
    try:
        world.sim.control("POST", "ui/enrollments", {"course_id": world.course["id"], "user_id": world.students[0]["id"], "actor_user_id": world.teacher["id"]})
        response = world.sim.api("POST", f"courses/{world.course['id']}/enrollments", world.admin["token"], data={"enrollment[user_id]": world.students[1]["id"]})
        assert response.status_code == 200
        world.sim.flush_live_events()
    finally:
        world.sim.live_events(enabled=False)
    return path.read_text().splitlines()


def test_a_file_is_stored_and_summarised(world, ledger_env, tmp_path):
    lines = emitted(world, tmp_path)
    path = tmp_path / "in.ndjson"
    path.write_text("\n".join(lines) + "\n")
    result = ingest(str(path))
    assert result.exit_code == 0, result.output
    kinds = [json.loads(line)["metadata"]["event_name"] for line in lines]
    kept = sum(name in ("enrollment_created", "enrollment_updated") for name in kinds)
    assert f"{kept} stored, 0 duplicates, {len(lines) - kept} ignored, 0 bad" in result.output
    rows = ledger_rows(str(ledger_env), "SELECT * FROM live_events ORDER BY rowid")
    assert [(r["actor_user_id"], r["received_via"]) for r in rows] == [(world.teacher["id"], "ingest"), (world.admin["id"], "ingest")]


def test_bad_lines_are_reported_by_number_skipped_and_make_the_exit_status_1(world, ledger_env, tmp_path):
    lines = emitted(world, tmp_path)
    mixed = [lines[0], "{not json", "", '{"metadata": {"event_name": "enrollment_created"}}', *lines[1:]]
    result = ingest("-", input="\n".join(mixed) + "\n")
    assert result.exit_code == 1
    assert "line 2: MalformedEventToken" in result.output
    assert "line 4: MalformedEvent" in result.output  # no event_time, no body
    assert "2 bad" in result.output and "the rest stored" in result.output
    assert len(ledger_rows(str(ledger_env), "SELECT key FROM live_events")) == 2


def test_ingesting_again_stores_nothing_twice(world, ledger_env, tmp_path):
    path = tmp_path / "in.ndjson"
    path.write_text("\n".join(emitted(world, tmp_path)) + "\n")
    assert ingest(str(path)).exit_code == 0
    again = ingest(str(path))
    assert again.exit_code == 0 and "0 stored, 2 duplicates" in again.output
    assert len(ledger_rows(str(ledger_env), "SELECT key FROM live_events")) == 2


def test_jwt_lines_are_verified_with_the_configured_jwks(world, ledger_env, tmp_path, monkeypatch):
    key = world.sim.state.live_events._signing_key()
    documents = [json.loads(line) for line in emitted(world, tmp_path)]
    tokens = [key.sign(document) for document in documents]
    no_jwks = ingest("-", input="\n".join(tokens) + "\n")
    assert no_jwks.exit_code == 1 and "JwksUnavailable" in no_jwks.output
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(requests.get(world.sim.live_events_jwks_url, timeout=10).json()))
    monkeypatch.setenv("LEDGER_PROXY_LIVE_EVENTS_JWKS", str(jwks))
    tampered = tokens[0][:-4] + ("AAAA" if not tokens[0].endswith("AAAA") else "BBBB")
    result = ingest("-", input="\n".join([*tokens, tampered]) + "\n")
    assert result.exit_code == 1
    assert f"line {len(tokens) + 1}: InvalidEventSignature" in result.output
    assert len(ledger_rows(str(ledger_env), "SELECT key FROM live_events")) == 2


def test_the_lookup_names_the_actor_of_ingested_events(world, tmp_path, make_proxy):
    proxy = make_proxy(world.sim.url)
    path = tmp_path / "in.ndjson"
    path.write_text("\n".join(emitted(world, tmp_path)) + "\n")
    result = CliRunner().invoke(main, ["events", "ingest", str(path)], env={"LEDGER_PROXY_DATABASE": proxy.app.config["DATABASE"]})
    assert result.exit_code == 0, result.output
    body = requests.get(f"{proxy.url}/ledger/v1/courses/{world.course['id']}/enrollments", headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10).json()
    vias = {row["user_id"]: (row["actor"] or {}).get("via") for row in body["enrollments"]}
    assert (vias[world.students[0]["id"]], vias[world.students[1]["id"]]) == ("ui", "api")
