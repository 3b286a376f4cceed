"""The ledger layer alone: concurrent writers recording enrollments, no HTTP (issue 12).

    .venv/bin/python bench/ledger_writes.py [--threads 8] [--seconds 3] [--handles request|thread|both] [--json]

Each writer thread records enrollments one after another through the project's own
functions, exactly the calls the proxy makes for `POST /api/v1/courses/:id/enrollments`:
`record_intent` (the intent, before forwarding), then `recording.settle` with Canvas's
answer (is the enrollment known?, the event with its hash link, the current view, the
request settled). Ledger handles come from the project's `connect`:

- `request`: a new handle per enrollment, closed after it (what the app did before issue 12:
  one handle per request, closed at teardown);
- `thread`: one long-lived handle per writer thread (`ledger.thread_handle`, what the app
  does now; its writes go through the group commit).

Prints enrollments/s per mode against the target of >= 5,000/s with 8 writers, after
counting the rows in `events` (every one must be there). Bounded: each mode
runs for `--seconds` and at most 1,000,000 enrollments.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_PER_SECOND = 5000
MAX_ENROLLMENTS = 1_000_000


class LedgerAPI:
    """The ledger functions the proxy's recording path calls (docs/architecture.md)."""

    def __init__(self) -> None:
        from ledger_proxy.core import ledger, recording, util
        from ledger_proxy.upstream import operations

        self.connect = ledger.connect
        # The app's long-lived handle per thread (issue 12); before it, a handle of its own.
        self.thread_handle = getattr(ledger, "thread_handle", ledger.connect)
        self.initialise = ledger.initialise
        self.Intent = ledger.Intent
        self.Actor = ledger.Actor
        self.record_intent = ledger.record_intent
        self.utcnow = util.utcnow
        self.settle = recording.settle
        self.Answer = recording.Answer
        self.classify = operations.classify
        self.where = self.record_intent.__module__


def record_one(api: LedgerAPI, db: Any, course_id: int, enrollment_id: int) -> int:
    """One enrollment: intent, then Canvas's answer settled; returns the events recorded."""
    path = f"/api/v1/courses/{course_id}/enrollments"
    operation = api.classify("POST", path)
    received = api.utcnow()
    intent = api.Intent(
        request_id=uuid.uuid4().hex,
        received_at=received,
        method="POST",
        path=path,
        kind=operation.kind,
        integration="bench",
        actor=api.Actor(17, "Bench Admin"),
        token_hash="0" * 64,
        user_agent="ledger-writes-bench/1",
        course_ref=operation.course_ref,
        section_ref=operation.section_ref,
        enrollment_ref=operation.enrollment_ref,
        account_ref=operation.account_ref,
        params={"enrollment[user_id]": str(enrollment_id), "enrollment[type]": "StudentEnrollment"},
    )
    api.record_intent(db, intent)
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "id": enrollment_id,
        "course_id": course_id,
        "course_section_id": course_id * 10,
        "user_id": enrollment_id,
        "type": "StudentEnrollment",
        "role": "StudentEnrollment",
        "role_id": 3,
        "enrollment_state": "active",
        "created_at": stamp,
        "updated_at": stamp,
    }
    answer = api.Answer(
        200,
        [
            ("Date", format_datetime(now, usegmt=True)),
            ("Content-Type", "application/json; charset=utf-8"),
            ("X-Request-Context-Id", uuid.uuid4().hex),
        ],
        json.dumps(body).encode(),
        0.001,
    )
    events = api.settle(db, intent, operation, answer, allowance=timedelta(seconds=2))
    return len(events)


def run_mode(api: LedgerAPI, database: str, handles: str, threads: int, seconds: float) -> dict:
    before = count_events(database)  # ids continue after any earlier mode's: all new
    deadline = time.perf_counter() + seconds
    per_thread = MAX_ENROLLMENTS // threads
    done = [0] * threads
    failures: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def writer(index: int) -> None:
        db = api.thread_handle(database) if handles == "thread" else None
        start.wait()
        try:
            n = 0
            while n < per_thread and time.perf_counter() < deadline:
                enrollment_id = (index + 1) * 10_000_000 + before + n
                if handles == "thread":
                    record_one(api, db, 517, enrollment_id)
                else:
                    own = api.connect(database)
                    try:
                        record_one(api, own, 517, enrollment_id)
                    finally:
                        own.close()
                n += 1
            done[index] = n
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            if db is not None:
                db.close()

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise failures[0]
    recorded = count_events(database) - before
    return {
        "handles": handles,
        "threads": threads,
        "seconds": elapsed,
        "enrollments": sum(done),
        "rows_recorded": recorded,
        "per_second": recorded / elapsed if elapsed else 0.0,
    }


def count_events(database: str) -> int:
    with sqlite3.connect(database) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


MODES = {
    "request": "a new handle per enrollment (as the app did before issue 12)",
    "thread": "one long-lived handle per writer thread (as the app does: thread_handle)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--handles", choices=["request", "thread", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="one JSON line per mode")
    args = parser.parse_args()
    api = LedgerAPI()
    modes = ["request", "thread"] if args.handles == "both" else [args.handles]
    with tempfile.TemporaryDirectory(prefix="ledger-writes-") as tmp:
        database = str(Path(tmp) / "ledger.sqlite3")
        api.initialise(database)
        for mode in modes:
            result = run_mode(api, database, mode, args.threads, min(args.seconds, 60.0))
            result["module"] = api.where
            if args.json:
                print(json.dumps(result), flush=True)
                continue
            verdict = "PASS" if result["per_second"] >= TARGET_PER_SECOND else "FAIL"
            print(
                f"ledger layer, {args.threads} writers, {MODES[mode]}: "
                f"{result['per_second']:,.0f} enrollments/s "
                f"({result['rows_recorded']:,} events in {result['seconds']:.2f} s, "
                f"{api.where}); target >= {TARGET_PER_SECOND:,}/s: {verdict}",
                flush=True,
            )


if __name__ == "__main__":
    main()
