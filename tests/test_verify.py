"""`ledger-proxy verify`: the hash chain catches each kind of tampering done with plain SQL (issue 4)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from canvasapi import Canvas
from click.testing import CliRunner

from ledger_proxy import create_app
from ledger_proxy.cli import main
from ledger_proxy.core import export
from ledger_proxy.core.ledger import initialise
from ledger_proxy.core.migrations import migrations
from ledger_proxy.devserver import BackgroundServer

from .conftest import World
from .helpers import ledger_rows
from .test_export import seed_events

ROOT = Path(__file__).resolve().parent.parent
CONTENT = [c for c in export.COLUMNS if c not in ("seq", "prev_hash", "hash")]


@pytest.fixture(scope="module")
def recorded_ledger(sim_server, tmp_path_factory) -> Path:
    """A ledger of 7 events that the proxy recorded from canvasapi calls (copied per test)."""
    sim_server.reset(seed_demo=False)
    world = World(sim_server)
    folder = tmp_path_factory.mktemp("recorded")
    app = create_app(
        {"CANVAS_URL": sim_server.url, "DATABASE": str(folder / "ledger.sqlite3"), "TOKEN_HASH_KEY": "k"},
        instance_path=str(folder / "instance"),
    )
    with BackgroundServer(app) as proxy:
        course = Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"]).get_course(world.course["id"])
        made = [course.enroll_user(s["id"], enrollment={"enrollment_state": "active"}) for s in world.students[:4]]
        made[1].deactivate("deactivate")
        made[1].reactivate()
        made[2].deactivate("conclude")
    return folder / "ledger.sqlite3"


@pytest.fixture
def ledger_path(recorded_ledger, tmp_path, monkeypatch) -> Path:
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(recorded_ledger) as source, sqlite3.connect(path) as target:
        source.backup(target)
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", str(path))
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")
    return path


def rows(path, sql="SELECT * FROM events ORDER BY seq", params=()):
    return ledger_rows(path, sql, params)


def tamper(path, *statements, params=()):
    """What an attacker with the file would do: lift the append-only triggers, then write."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER events_append_only_update")
        conn.execute("DROP TRIGGER events_append_only_delete")
        for statement in statements:
            conn.execute(statement, params)


def verify(*args):
    return CliRunner().invoke(main, ["verify", *args])


def test_an_intact_ledger_verifies_with_its_head_hash_and_count(ledger_path):
    events = rows(ledger_path)
    assert len(events) == 7
    assert events[0]["prev_hash"] == export.GENESIS
    assert all(e["hash"] == export.event_hash(e) for e in events)
    assert [e["prev_hash"] for e in events[1:]] == [e["hash"] for e in events[:-1]]
    result = verify()
    assert result.exit_code == 0, result.output
    assert "7 events" in result.output
    assert events[-1]["hash"] in result.output
    assert [m["value"] for m in rows(ledger_path, "SELECT value FROM ledger_meta WHERE key = 'hash_chain'")] == [export.HASH_SCHEME]


def test_an_empty_ledger_verifies(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", str(tmp_path / "empty.sqlite3"))
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")
    result = verify()
    assert result.exit_code == 0
    assert "0 events" in result.output and export.GENESIS in result.output


def test_the_triggers_still_refuse_updates_and_deletes(ledger_path):
    with sqlite3.connect(ledger_path) as conn:
        for statement in ("UPDATE events SET action = 'created'", "DELETE FROM events WHERE seq = 1"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)


def swap(a, b, columns):
    """SQL swapping `columns` of the events at seq a and b."""
    names = ", ".join(columns)
    return [
        f"CREATE TEMP TABLE swapped AS SELECT seq, {names} FROM events WHERE seq IN ({a}, {b})",
        f"UPDATE events SET ({names}) = (SELECT {names} FROM swapped WHERE swapped.seq = "
        f"CASE events.seq WHEN {a} THEN {b} ELSE {a} END) WHERE seq IN ({a}, {b})",
    ]


def rehash(path, seq):
    """An attacker who knows the algorithm edits seq and recomputes its hash."""
    [event] = rows(path, "SELECT * FROM events WHERE seq = ?", [seq])
    event["actor_user_id"] = 999
    tamper(path, "UPDATE events SET actor_user_id = 999, hash = ? WHERE seq = ?", params=(export.event_hash(event), seq))


FORGED = (
    "INSERT INTO events (request_id, enrollment_id, action, course_id, user_id, recorded_at) "
    "SELECT request_id, 424242, 'created', course_id, 31337, recorded_at FROM events WHERE seq = 7"
)
TAMPERING = [
    pytest.param(["UPDATE events SET actor_user_id = 999 WHERE seq = 3"], 3, "edited", True, id="edit-a-field"),
    pytest.param(["UPDATE events SET enrollment_state = 'deleted' WHERE seq = 7"], 7, "edited", True, id="edit-the-last-event"),
    pytest.param(["UPDATE events SET integration = NULL WHERE seq = 1"], 1, "edited", True, id="edit-the-first-event"),
    pytest.param(["UPDATE events SET hash = NULL WHERE seq = 4"], 4, "edited", True, id="erase-a-hash"),
    pytest.param(rehash, 3, "edited", True, id="edit-and-rehash"),
    pytest.param(["DELETE FROM events WHERE seq = 4"], 4, "deleted", True, id="delete-a-row"),
    pytest.param(["DELETE FROM events WHERE seq IN (3, 4, 5)"], 3, "deleted", True, id="delete-three-rows"),
    pytest.param(["DELETE FROM events WHERE seq = 1"], 1, "deleted", True, id="delete-the-first-row"),
    pytest.param(["DELETE FROM events WHERE seq = 7"], 7, "deleted", False, id="delete-the-last-row"),
    pytest.param(["DELETE FROM events WHERE seq = 4", "UPDATE events SET seq = seq - 1 WHERE seq > 4"], 4, "deleted", True, id="delete-and-renumber"),
    pytest.param([FORGED], 8, "inserted", True, id="insert-a-forged-row"),
    pytest.param([FORGED.replace("(request_id", "(seq, request_id").replace("SELECT request_id", "SELECT 0, request_id")], 0, "inserted", True, id="insert-before-the-first"),
    pytest.param(
        [f"INSERT INTO events ({', '.join(export.COLUMNS[1:])}) SELECT {', '.join(export.COLUMNS[1:])} FROM events WHERE seq = 2"],
        8, "inserted", True, id="insert-a-copy-of-a-real-row",
    ),
    pytest.param(swap(2, 5, CONTENT), 2, "reordered", True, id="swap-two-rows-content"),
    pytest.param(swap(3, 4, CONTENT), 3, "reordered", True, id="swap-adjacent-rows-content"),
    pytest.param(swap(2, 5, [*CONTENT, "prev_hash", "hash"]), 2, "reordered", True, id="swap-two-whole-rows"),
    pytest.param(swap(3, 4, [*CONTENT, "prev_hash", "hash"]), 3, "reordered", True, id="swap-adjacent-whole-rows"),
    pytest.param(["UPDATE events SET seq = -seq WHERE seq IN (2, 6)", "UPDATE events SET seq = 6 WHERE seq = -2", "UPDATE events SET seq = 2 WHERE seq = -6"], 2, "reordered", True, id="swap-two-seqs"),
]


@pytest.mark.parametrize(("attack", "seq", "kind", "offline_too"), TAMPERING)
def test_verify_reports_the_first_break_and_its_kind(ledger_path, tmp_path, attack, seq, kind, offline_too):
    assert verify().exit_code == 0
    if callable(attack):
        attack(ledger_path, seq)
    else:
        tamper(ledger_path, *attack)
    result = verify()
    assert result.exit_code == 1, result.output
    assert f"Error: ledger chain broken at seq {seq}: {kind} (" in result.output
    # The same break shows in an export of the tampered ledger, verified offline.
    exported = tmp_path / "tampered.csv"
    assert CliRunner().invoke(main, ["export", "-o", str(exported)]).exit_code == 0
    offline = verify("--file", str(exported))
    if offline_too:
        assert offline.exit_code == 1
        assert f"Error: ledger chain broken at seq {seq}: {kind} (" in offline.output
    else:  # a missing or extra last event shows only against the database's own evidence
        assert offline.exit_code in (0, 1)


def test_an_unfiltered_export_verifies_offline_with_the_same_head(ledger_path, tmp_path):
    head = verify()
    assert head.exit_code == 0
    for fmt in ("csv", "ndjson"):
        path = tmp_path / f"ledger.{fmt}"
        assert CliRunner().invoke(main, ["export", "--format", fmt, "-o", str(path)]).exit_code == 0
        offline = verify("--file", str(path))
        assert offline.exit_code == 0, offline.output
        assert offline.output.splitlines()[1] == head.output.splitlines()[1]  # the head hash
        assert "7 events, head seq 7" in offline.output and str(path) in offline.output


def test_an_edited_export_file_fails_offline(ledger_path, tmp_path):
    path = tmp_path / "ledger.csv"
    assert CliRunner().invoke(main, ["export", "-o", str(path)]).exit_code == 0
    lines = path.read_bytes().split(b"\r\n")
    assert b'"reactivated"' in lines[6]  # line 0 is the header
    lines[6] = lines[6].replace(b'"reactivated"', b'"created"')
    path.write_bytes(b"\r\n".join(lines))
    result = verify("--file", str(path))
    assert result.exit_code == 1
    assert "Error: ledger chain broken at seq 6: edited" in result.output
    not_an_export = tmp_path / "other.csv"
    not_an_export.write_text("a,b\n1,2\n")
    result = verify("--file", str(not_an_export))
    assert result.exit_code == 1 and "is not a ledger export" in result.output


def audit_script() -> str:
    """The stand-alone verification script that docs/audit.md gives auditors."""
    text = (ROOT / "docs" / "audit.md").read_text()
    [script] = re.findall(r"<!-- verify-script -->\n```python\n(.*?)```", text, re.S)
    return script


def test_the_documented_offline_procedure_verifies_an_export(ledger_path, tmp_path):
    script = tmp_path / "verify_ledger_export.py"
    script.write_text(audit_script())
    head = verify().output
    for fmt in ("csv", "ndjson"):
        path = tmp_path / f"ledger.{fmt}"
        assert CliRunner().invoke(main, ["export", "--format", fmt, "-o", str(path)]).exit_code == 0
        done = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "7 events" in done.stdout
        assert rows(ledger_path)[-1]["hash"] in done.stdout and rows(ledger_path)[-1]["hash"] in head
    tamper(ledger_path, "UPDATE events SET user_id = 1 WHERE seq = 6")
    path = tmp_path / "tampered.ndjson"
    assert CliRunner().invoke(main, ["export", "--format", "ndjson", "-o", str(path)]).exit_code == 0
    done = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "seq 6" in done.stdout


def test_awkward_text_survives_the_export_and_verifies_offline(tmp_path, monkeypatch):
    path = str(tmp_path / "awkward.sqlite3")
    initialise(path)
    head = seed_events(path, 3, integration='Ünï "cødé", \r\nline two\t\x01 ✓')
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", path)
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")
    script = tmp_path / "verify_ledger_export.py"
    script.write_text(audit_script())
    assert head in verify().output
    for fmt in ("csv", "ndjson"):
        exported = tmp_path / f"ledger.{fmt}"
        assert CliRunner().invoke(main, ["export", "--format", fmt, "-o", str(exported)]).exit_code == 0
        assert [e["integration"] for e in export.file_events(str(exported))] == ['Ünï "cødé", \r\nline two\t\x01 ✓'] * 3
        result = verify("--file", str(exported))
        assert result.exit_code == 0 and head in result.output
        done = subprocess.run([sys.executable, str(script), str(exported)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and head in done.stdout


def test_the_migration_chains_events_recorded_before_it(tmp_path):
    path = str(tmp_path / "old.sqlite3")
    with sqlite3.connect(path) as conn:
        import sqlite_utils

        migrations.apply(sqlite_utils.Database(conn), stop_before="m003_event_hash_chain")
        conn.execute("INSERT INTO requests (id, received_at, method, path, kind, status) VALUES ('r1', '2025-01-01', 'POST', '/api/v1/courses/1/enrollments', 'enrollment_create', 'completed')")
        conn.executemany(
            "INSERT INTO events (request_id, enrollment_id, action, course_id, user_id, type, recorded_at) VALUES ('r1', ?, 'created', 1, ?, 'StudentEnrollment', ?)",
            [(100 + n, 200 + n, f"2025-01-01T00:00:0{n}.000000Z") for n in range(5)],
        )
    initialise(path)
    events = rows(path)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[0]["prev_hash"] == export.GENESIS
    assert export.verify(events).count == 5
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")


def test_concurrent_recording_keeps_one_linear_chain(world, sim, make_proxy, monkeypatch):
    proxy = make_proxy(sim.url)
    course_id = world.course["id"]

    def enroll(student):
        response = requests.post(
            f"{proxy.url}/api/v1/courses/{course_id}/enrollments",
            data={"enrollment[user_id]": student["id"]},
            headers={"Authorization": f"Bearer {world.admin['token']}"},
            timeout=30,
        )
        assert response.status_code == 200

    threads = [threading.Thread(target=enroll, args=(s,)) for s in world.students]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    path = proxy.app.config["DATABASE"]
    assert len(rows(path)) == len(world.students)
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", path)
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")
    result = verify()
    assert result.exit_code == 0, result.output
    assert f"{len(world.students)} events" in result.output


def test_a_shadow_column_added_to_an_export_file_cannot_hide_an_edit(tmp_path):
    """Review finding: an added `canvas_created_at` holding the original value must not make
    an edited `created_at` verify."""
    import csv as csv_module

    from ledger_proxy.core.ledger import connect, initialise

    database = str(tmp_path / "l.sqlite3")
    initialise(database)
    seed_events(database, 3)
    db = connect(database)
    exported = tmp_path / "export.csv"
    exported.write_bytes(b"".join(export.export(db, export.Filters(), "csv")))
    db.close()
    with exported.open(newline="") as handle:
        rows = list(csv_module.DictReader(handle))
    rows[1]["canvas_created_at"] = rows[1]["created_at"]
    rows[1]["created_at"] = "2099-01-01T00:00:00Z"
    tampered = tmp_path / "tampered.csv"
    with tampered.open("w", newline="") as handle:
        writer = csv_module.DictWriter(handle, fieldnames=[*export.HEADER, "canvas_created_at"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**{"canvas_created_at": ""}, **row})
    with pytest.raises(export.ChainBroken):
        export.verify(export.file_events(str(tampered)))


@pytest.mark.parametrize(
    ("command", "label", "done"),
    [
        pytest.param(["verify"], b"verifying", b"ledger chain intact: 2500 events", id="verify"),
        pytest.param(["export", "-o", "{out}"], b"exporting", b"", id="export-to-a-file"),
    ],
)
def test_long_commands_show_progress_on_a_terminal_only(tmp_path, command, label, done):
    import os
    import pty

    from ledger_proxy.core.ledger import initialise

    database = str(tmp_path / "l.sqlite3")
    initialise(database)
    seed_events(database, 2500)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_PROXY_")}
    env.update(LEDGER_PROXY_DATABASE=database, LEDGER_PROXY_TOKEN_HASH_KEY="k", LEDGER_PROXY_INSTANCE_PATH=str(tmp_path / "i"))
    script = str(Path(sys.executable).with_name("ledger-proxy"))
    argv = [script, *(part.format(out=tmp_path / "out.csv") for part in command)]

    piped = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    assert piped.returncode == 0 and label not in piped.stderr + piped.stdout

    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(argv, env=env, stdin=secondary, stdout=secondary, stderr=secondary)
        os.close(secondary)
        output = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal closed: the command has finished
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(60) == 0
    finally:
        os.close(primary)
    assert label in output and done in output


@pytest.mark.parametrize(
    "integration",
    [
        pytest.param("plain-label", id="plain"),
        pytest.param('bulk-load, "quoted" \\ back/slash', id="quotes-and-backslashes"),
        pytest.param("Ünïcødé ✓", id="non-ascii"),
        pytest.param("tab\there\nnewline\x01\x1f", id="control-characters"),
        pytest.param("delete\x7f", id="DEL"),
        pytest.param("nul\x00inside", id="NUL"),
    ],
)
def test_verify_reads_the_canonical_text_sqlite_writes_only_where_it_is_pythons(tmp_path, integration):
    """Issue 12: verify hashes the JSON text SQLite writes where it is byte for byte Python's
    canonical JSON, and Python's own elsewhere; either way an intact chain verifies."""
    from ledger_proxy.core import chain, ledger

    path = str(tmp_path / "ledger.sqlite3")
    initialise(path)
    head = seed_events(path, 30, integration=integration)
    db = ledger.connect(path)
    try:
        result = export.verify_ledger(db)
        links = list(ledger.chain_links(db))
        rows = list(export.db_events(db))
    finally:
        db.close()
    assert (result.count, result.seq, result.hash) == (30, 30, head)
    for (seq, _prev, _hash, text), row in zip(links, rows, strict=True):
        assert seq == row["seq"] and text is not None
        if text.isascii() and "\x7f" not in text:  # what walk_links hashes as SQLite wrote it
            assert text.encode("ascii") == chain.canonical(row)
        else:
            assert not integration.isascii() or "\x7f" in integration


def test_verify_hashes_a_real_number_as_python_does(ledger_path):
    """A value stored as a float (a forger's, or a future column) is hashed by Python."""
    from ledger_proxy.core import chain

    with sqlite3.connect(ledger_path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS events_no_update")
        triggers = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
        for name in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        row = conn.execute(f"SELECT {', '.join(export.COLUMNS)} FROM events WHERE seq = 7").fetchone()
        event = dict(zip(export.HEADER, row, strict=True))
        event["role_id"] = 3.5
        new_hash = chain.event_hash(event)
        conn.execute("UPDATE events SET role_id = 3.5, hash = ? WHERE seq = 7", [new_hash])
    result = CliRunner().invoke(main, ["verify"])
    assert result.exit_code == 0, result.output  # seq 7 is the last event: its hash is its own
