"""Live Events storage (core/live_store.py): idempotent, order-free, and group commit across
threads answering each caller only for its own row, once it is committed."""

from __future__ import annotations

import threading

import pytest

from ledger_proxy.core import ledger, live_store
from ledger_proxy.core.live_events import parse_event

from .helpers import ledger_rows


def document(n: int, name: str = "enrollment_created", actor: int = 2) -> dict:
    return {
        "metadata": {"event_name": name, "event_time": f"2026-09-03T10:00:{n % 60:02d}.{n:03d}Z", "user_id": str(10**13 + actor), "request_id": f"req-{n}"},
        "body": {"enrollment_id": str(10**13 + 100 + n), "course_id": "10000000000001", "user_id": str(10**13 + 50 + n), "user_name": f"Student {n}", "type": "StudentEnrollment", "workflow_state": "active"},
    }


@pytest.fixture
def path(tmp_path):
    path = str(tmp_path / "ledger.sqlite3")
    ledger.initialise(path)
    return path


def test_many_threads_store_each_event_once_and_each_hears_its_own_answer(path):
    docs = [document(n) for n in range(200)] * 2  # every event delivered twice
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def post(index: int) -> None:
        # Each thread its own long-lived handle, as the receiver's threads have: the ledger's
        # group commit puts the writes waiting at once into one transaction.
        outcome = live_store.receive(ledger.thread_handle(path), docs[index], live_store.HTTPS)
        with lock:
            answers.append((index % 200, outcome))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(docs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_event: dict[int, list[str]] = {}
    for n, outcome in answers:
        by_event.setdefault(n, []).append(outcome)
    assert {n: sorted(o) for n, o in by_event.items()} == {n: ["duplicate", "stored"] for n in range(200)}
    assert len(ledger_rows(path, "SELECT key FROM live_events")) == 200


def test_a_failed_write_is_the_caller_s_error_and_stores_nothing(path, monkeypatch):
    def broken(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(ledger, "insert_live_event", broken)
    with pytest.raises(OSError, match="disk full"):
        live_store.receive(ledger.connect(path), document(1), live_store.HTTPS)
    assert ledger_rows(path, "SELECT key FROM live_events") == []


def test_the_live_events_table_is_append_only(path):
    db = ledger.connect(path)
    live_store.receive(db, document(1), live_store.INGEST)
    with pytest.raises(Exception, match="append-only"):
        db.execute("UPDATE live_events SET actor_user_id = 9")
    with pytest.raises(Exception, match="append-only"):
        db.execute("DELETE FROM live_events")


def test_the_actor_is_the_earliest_created_in_any_order_of_arrival(path):
    db = ledger.connect(path)
    updated = document(1, "enrollment_updated", actor=7)
    updated["metadata"]["event_time"] = "2026-09-04T00:00:00.000Z"
    created = document(1, actor=2)
    for doc in (updated, created, updated):
        live_store.receive(db, doc, live_store.INGEST)
    found = live_store.actors(db, [101])[101]
    assert (found.event.event_name, found.event.actor.user_id) == ("enrollment_created", 2)
    assert found.event == parse_event(created) and not found.proxied
