"""Account audits as jobs for admins: started over HTTP, run in a thread, their state kept in
the ledger so that a restart of the proxy reports them interrupted, never loses them silently.

The caller's Canvas token lives only in the running thread's memory (never in the ledger):
a job whose process stopped cannot be resumed, and says so. A running job writes a
heartbeat (`updated_at`) at least every HEARTBEAT seconds; one whose heartbeat is older than
STALE belongs to a process that is gone (killed, or on a restarted host) and is reported
interrupted when next read. A process that stops cleanly marks its own jobs at once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from ..upstream.canvas import CANVAS_FAILURES, CanvasAnswerCut, CanvasClient, CanvasRefused
from ..upstream.reports import ReportFailed
from . import account_audit, ledger
from .util import parse_time, utcnow

log = logging.getLogger(__name__)

QUEUED, RUNNING, COMPLETE, FAILED, INTERRUPTED = (
    "queued", "running", "complete", "failed", "interrupted",
)  # fmt: skip
UNFINISHED = (QUEUED, RUNNING)
HEARTBEAT = 2.0  # seconds
STALE = timedelta(seconds=60)
STOPPED = "the proxy stopped before the audit finished; start it again"
GONE = "the process running the audit is gone (no heartbeat); start it again"


class Stopped(Exception):
    """The proxy is stopping: the job ends as interrupted."""


class AuditWorker:
    """One job's thread; `stop()` ends it as interrupted (Runtime.stop_background)."""

    def __init__(
        self,
        database: str,
        canvas: CanvasClient,
        token: str,
        audit_id: str,
        request: account_audit.Request,
        result_path: str,
        allowance: timedelta,
    ) -> None:
        self.database, self.canvas, self.token = database, canvas, token
        self.audit_id, self.request, self.result_path = audit_id, request, result_path
        self.allowance = allowance
        self._stop = threading.Event()
        self._beat = 0.0
        self.thread = threading.Thread(target=self._run, name=f"audit-{audit_id}", daemon=True)

    def start(self) -> AuditWorker:
        self.thread.start()
        return self

    def stop(self, wait: float = 10.0) -> None:
        self._stop.set()
        self.thread.join(wait)

    def _run(self) -> None:
        db = ledger.connect(self.database)
        try:
            self._update(db, state=RUNNING, phase="report")
            self._audit(db)
        except Stopped:
            self._update(db, state=INTERRUPTED, error=STOPPED)
        except (ReportFailed, account_audit.ReportUnreadable) as exc:
            self._update(db, state=FAILED, error=str(exc))
        except CanvasRefused as refusal:
            self._update(db, state=FAILED, error=f"Canvas answered {refusal.status}: "
                         f"{refusal.message(300)}")  # fmt: skip
        except (*CANVAS_FAILURES, CanvasAnswerCut) as exc:
            self._update(db, state=FAILED, error=f"Canvas gave no answer ({type(exc).__name__})")
        except Exception as exc:  # a job never dies silently: it says it failed
            log.exception("account audit %s failed", self.audit_id)
            self._update(db, state=FAILED, error=f"internal error ({type(exc).__name__})")
        finally:
            db.close()

    def _audit(self, db: Any) -> None:
        partial = self.result_path + ".part"
        os.makedirs(os.path.dirname(self.result_path), exist_ok=True)
        try:
            with open(partial, "w", encoding="utf-8") as out:
                tally = account_audit.run(
                    db, self.canvas, self.token, self.request, out,
                    allowance=self.allowance, watchers=self._watchers(db),
                )  # fmt: skip
            os.replace(partial, self.result_path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        self._update(
            db,
            state=COMPLETE,
            phase=None,
            summary=json.dumps(tally.summary()),
            problems=json.dumps([vars(problem) for problem in tally.problems]),
            result=self.result_path,
        )

    def _watchers(self, db: Any) -> account_audit.Watchers:
        read = 0

        def on_status(report: dict[str, Any]) -> None:
            self._check()
            self._update(db, report_id=report.get("id"), report_progress=report.get("progress"))

        def on_download(report: dict[str, Any]) -> None:
            self._update(db, phase="judging", report_progress=report.get("progress"))

        def on_read(characters: int) -> None:
            nonlocal read
            read += characters
            self._check()
            if time.monotonic() - self._beat >= HEARTBEAT:
                self._update(db, characters_read=read)

        def sleep(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while not self._stop.wait(min(HEARTBEAT, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    return
                self._update(db)  # still alive while Canvas builds the report
            self._check()

        return account_audit.Watchers(on_status, on_download, on_read, sleep)

    def _check(self) -> None:
        if self._stop.is_set():
            raise Stopped()

    def _update(self, db: Any, **values: Any) -> None:
        self._beat = time.monotonic()
        ledger.update_audit(db, self.audit_id, only_if=UNFINISHED, **values)


def start(
    db: Any,
    *,
    database: str,
    canvas: CanvasClient,
    token: str,
    request: account_audit.Request,
    folder: str,
    allowance: timedelta,
    requested_by: int | None,
    on_worker: Callable[[AuditWorker], None],
) -> dict[str, Any]:
    """Record a queued job and start its worker; the job as `status` shows it."""
    audit_id = uuid.uuid4().hex
    ledger.create_audit(
        db,
        {
            "id": audit_id,
            "account_id": request.account_id,
            "term": request.term,
            "provenance": request.provenance_filter,
            "requested_by": requested_by,
            "state": QUEUED,
        },
    )
    result_path = os.path.join(folder, f"{audit_id}.ndjson")
    worker = AuditWorker(database, canvas, token, audit_id, request, result_path, allowance)
    on_worker(worker.start())
    found = status(db, audit_id)
    assert found is not None
    return found


def status(db: Any, audit_id: str) -> dict[str, Any] | None:
    """The job as admins see it; an unfinished one whose heartbeat stopped is interrupted."""
    row = ledger.audit(db, audit_id)
    if row is None:
        return None
    updated = parse_time(row["updated_at"])
    if row["state"] in UNFINISHED and updated is not None and updated < utcnow() - STALE:
        ledger.interrupt_stale_audit(db, audit_id, UNFINISHED, utcnow() - STALE, GONE)
        row = ledger.audit(db, audit_id) or row
    return {
        "id": row["id"],
        "account_id": row["account_id"],
        "term": row["term"],
        "provenance": row["provenance"],
        "requested_by": row["requested_by"],
        "state": row["state"],
        "phase": row["phase"],
        "report_id": row["report_id"],
        "report_progress": row["report_progress"],
        "characters_read": row["characters_read"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "summary": json.loads(row["summary"]) if row["summary"] else None,
        "problems": json.loads(row["problems"]) if row["problems"] else [],
        "error": row["error"],
    }


def result_path(db: Any, audit_id: str) -> str | None:
    row = ledger.audit(db, audit_id)
    return row["result"] if row and row["state"] == COMPLETE else None


def result_items(path: str) -> Iterator[dict[str, Any]]:
    """The stored result's items (one JSON object per line), one at a time."""
    with open(path, encoding="utf-8") as stored:
        for line in stored:
            yield json.loads(line)


def result_chunks(path: str, fmt: str, provenance: str | None = None) -> Iterator[bytes]:
    """The stored result (NDJSON) as NDJSON or spreadsheet-safe CSV, a piece at a time; only
    the rows of one verdict when `provenance` is given."""
    import csv
    import io

    with open(path, encoding="utf-8") as stored:
        if fmt == "ndjson" and provenance is None:
            while piece := stored.read(65536):
                yield piece.encode()
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if fmt == "csv":
            writer.writerow(account_audit.CSV_COLUMNS)
        for number, line in enumerate(stored, start=1):
            item = json.loads(line)
            if provenance is not None and item["provenance"] != provenance:
                continue
            if fmt == "csv":
                writer.writerow(account_audit.csv_line(item))
            else:
                buffer.write(line)
            if number % 1000 == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()
