"""Group commit and the long-lived ledger handles (issue 12): every write waiting goes into one
transaction, and no caller hears of its write before the COMMIT that holds it."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from ledger_proxy.core import ledger

from .helpers import ledger_rows


@pytest.fixture
def database(tmp_path):
    path = str(tmp_path / "ledger.sqlite3")
    ledger.initialise(path)
    return path


def meta_writer(key: str, value: str):
    def write(handle):
        handle.execute("INSERT INTO ledger_meta (key, value) VALUES (?, ?)", [key, value])
        return key

    return write


def queued_behind_the_commit_lock(database, writes):
    """Run each write from its own thread while the commit lock is held, so that all of them
    are waiting together; then let them go. Returns {index: result or exception}."""
    group = ledger._group_commit(database)
    outcomes: dict[int, object] = {}
    started = []

    def call(index, write):
        db = ledger.thread_handle(database)
        started.append(index)
        try:
            outcomes[index] = ledger.committed(db, write)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcomes[index] = exc

    threads = [threading.Thread(target=call, args=(i, w)) for i, w in enumerate(writes)]
    with group._commit_lock:
        for thread in threads:
            thread.start()
        while len(group._queue) < len(writes):  # every write queued behind the lock
            threading.Event().wait(0.01)
    for thread in threads:
        thread.join(10)
    return outcomes


def test_waiting_writes_are_committed_together_and_each_caller_hears_after_the_commit(database):
    commits = []
    original = ledger._commit

    def counting(db, batch):
        commits.append(len(batch))
        original(db, batch)
        # By the time any caller of this batch returns, its row is visible to a new handle.
        keys = {row["key"] for row in ledger_rows(database, "SELECT key FROM ledger_meta")}
        assert {f"k{i}" for i in range(6)} <= keys

    ledger._commit = counting
    try:
        outcomes = queued_behind_the_commit_lock(database, [meta_writer(f"k{i}", "v") for i in range(6)])
    finally:
        ledger._commit = original
    assert outcomes == {i: f"k{i}" for i in range(6)}
    assert commits == [6]  # one transaction for the six


def test_a_failing_write_is_rolled_back_alone_and_raised_to_its_own_caller(database):
    def broken(handle):
        handle.execute("INSERT INTO ledger_meta (key, value) VALUES ('broken', 'half')")
        raise ValueError("this write breaks half-way")

    outcomes = queued_behind_the_commit_lock(database, [meta_writer("a", "1"), broken, meta_writer("b", "2")])
    assert outcomes[0] == "a" and outcomes[2] == "b"
    assert isinstance(outcomes[1], ValueError)
    keys = {row["key"] for row in ledger_rows(database, "SELECT key FROM ledger_meta")}
    assert {"a", "b"} <= keys and "broken" not in keys


def test_when_the_commit_fails_every_caller_of_the_batch_hears_it_and_nothing_is_written(database):
    """A COMMIT that fails (here a deferred foreign key, checked only at COMMIT) must never be
    acknowledged to any caller whose write was in it."""

    def orphan_event(handle):
        handle.execute("PRAGMA defer_foreign_keys = ON")
        handle.execute(
            "INSERT INTO async_jobs (request_id, kind, submitted_at) VALUES ('no-such-request', 'sis_import', 'x')"
        )

    outcomes = queued_behind_the_commit_lock(database, [meta_writer("c", "1"), orphan_event, meta_writer("d", "2")])
    assert all(isinstance(outcome, sqlite3.IntegrityError) for outcome in outcomes.values()), outcomes
    keys = {row["key"] for row in ledger_rows(database, "SELECT key FROM ledger_meta")}
    assert not {"c", "d"} & keys
    assert ledger_rows(database, "SELECT request_id FROM async_jobs") == []


def test_a_thread_keeps_one_handle_per_ledger_file(database, tmp_path):
    first = ledger.thread_handle(database)
    assert ledger.thread_handle(database) is first
    other = str(tmp_path / "other.sqlite3")
    ledger.initialise(other)
    assert ledger.thread_handle(other) is not first
    assert ledger.thread_handle(database) is first
    elsewhere: list[object] = []
    thread = threading.Thread(target=lambda: elsewhere.append(ledger.thread_handle(database)))
    thread.start()
    thread.join()
    assert elsewhere[0] is not first  # sqlite3 handles are never shared between threads


def test_a_handle_left_inside_a_transaction_is_rolled_back_before_reuse(database):
    db = ledger.thread_handle(database)
    db.conn.execute("BEGIN IMMEDIATE")
    db.conn.execute("INSERT INTO ledger_meta (key, value) VALUES ('left', 'open')")
    again = ledger.thread_handle(database)
    assert again is db and not again.conn.in_transaction
    assert ledger_rows(database, "SELECT key FROM ledger_meta WHERE key = 'left'") == []


def test_ledger_handles_sync_in_normal_mode_in_wal(database):
    db = ledger.thread_handle(database)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL (docs/deploy.md)
