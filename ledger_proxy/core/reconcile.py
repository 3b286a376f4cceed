"""Settle requests whose outcome is unknown by asking Canvas what it really did (no Flask).

A request is unsettled when the proxy never learnt Canvas's answer: the proxy died, Canvas
timed out, the connection broke, or Canvas answered 5xx. Reconciliation lists that user's
enrollments in that course (every state) and settles the intent as `created`, `adopted` or
`failed`, with the evidence, through the same ledger functions as a normal answer.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import sqlite_utils

from ..upstream.canvas import CANVAS_FAILURES, CanvasClient, CanvasRefused, enrollments_target
from . import ledger
from .util import as_int, iso, parse_time, utcnow
from .vocab import (
    ACTION_BY_DELETED_STATE,
    ACTION_BY_KIND,
    ADOPTED,
    ALL_STATES,
    AMBIGUOUS,
    CREATED,
    FAILED,
    STATE_AFTER,
    STATE_AFTER_TASK,
    UNKNOWN,
)

log = logging.getLogger(__name__)

# How long after its start Canvas may still have been working on a timed-out request.
PROCESSING_WINDOW = timedelta(seconds=120)
LOCK = "reconcile_lock"


@dataclass(frozen=True)
class Result:
    request_id: str
    kind: str
    outcome: str  # created, adopted, a change's action (deleted, ...), submitted, failed, skipped
    enrollment_id: int | None
    evidence: str


@dataclass(frozen=True)
class Options:
    grace: timedelta  # leave requests younger than this alone: they may be in flight
    allowance: timedelta  # whole-second timestamps and clock difference


def reconcile(
    db: sqlite_utils.Database, canvas: CanvasClient, token: str, options: Options
) -> list[Result]:
    """Settle every unsettled request older than the grace period; one result per request."""
    now = utcnow()
    skew = _canvas_clock_offset(canvas, token, now)
    results = []
    for request in ledger.unsettled_requests(db):
        received_at = parse_time(request["received_at"])
        if received_at is None or now - received_at < options.grace:
            continue
        settle = SETTLERS.get(request["kind"])
        if settle is None:
            results.append(
                Result(
                    request["id"],
                    request["kind"],
                    "skipped",
                    None,
                    "a bulk enrollment is not reconciled: Canvas does not list its jobs",
                )
            )
            continue
        try:
            result = settle(db, canvas, token, request, received_at + skew, options)
        except ledger.AlreadySettled:
            result = Result(request["id"], request["kind"], "skipped", None, "settled meanwhile")
        except (CanvasRefused, *CANVAS_FAILURES) as exc:
            # One request Canvas will not answer for (a deleted course, ...) must not hold up
            # the others: it stays unsettled and is tried again next time.
            why = f"Canvas answered {exc.status}" if isinstance(exc, CanvasRefused) else str(exc)
            result = Result(request["id"], request["kind"], "skipped", None, f"not now: {why}")
        results.append(result)
        log.info(
            "reconciled request %s (%s): %s %s",
            result.request_id,
            result.kind,
            result.outcome,
            result.enrollment_id or "",
        )
    return results


def _canvas_clock_offset(canvas: CanvasClient, token: str, now: datetime) -> timedelta:
    """Canvas's clock minus ours, from its Date header, so timestamps compare fairly."""
    canvas_now = canvas.server_time(token)
    return canvas_now - now if canvas_now is not None else timedelta(0)


def _listing(
    canvas: CanvasClient, token: str, scope: str, ref: str, user_ref: str | None
) -> list[Any]:
    target = enrollments_target(scope, ref, ALL_STATES, user_ref=user_ref)
    return [row for page in canvas.pages(target, token) for row in page if isinstance(row, dict)]


def _matches_request(row: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """Could `row` be the one the create asked for (type/role/section as Canvas reads them)?"""
    role_id = params.get("enrollment[role_id]")
    role = params.get("enrollment[role]")
    kind = params.get("enrollment[type]")
    if role_id not in (None, ""):
        if str(row.get("role_id")) != str(role_id):
            return False
    elif role not in (None, ""):
        if row.get("role") != role:
            return False
    elif row.get("type") != (kind or "StudentEnrollment"):
        return False
    section = params.get("enrollment[course_section_id]")
    if section not in (None, "") and as_int(section) is not None:
        return as_int(row.get("course_section_id")) == as_int(section)
    return True


def _settle_create(
    db: sqlite_utils.Database,
    canvas: CanvasClient,
    token: str,
    request: Mapping[str, Any],
    started: datetime,
    options: Options,
) -> Result:
    params = json.loads(request["params"] or "{}")
    user_ref = params.get("enrollment[user_id]")
    if user_ref == "self" and request["actor_user_id"] is not None:
        user_ref = str(request["actor_user_id"])
    if user_ref in (None, ""):
        return _fail(db, request, "the request named no enrollment[user_id]: Canvas makes none")
    scope, ref = (
        ("sections", request["section_ref"])
        if request["section_ref"]
        else ("courses", request["course_ref"])
    )
    rows = [
        row
        for row in _listing(canvas, token, scope, ref, str(user_ref))
        if _matches_request(row, params)
    ]
    earliest = started - options.allowance
    latest = _in_flight_until(request, started) + options.allowance
    timed = [(parse_time(row.get("created_at")), row) for row in rows]
    made = [row for created, row in timed if created is not None and earliest <= created <= latest]
    before = [row for created, row in timed if created is not None and created < earliest]
    # A row an SIS import made (one that began after this request) is not this request's work;
    # one an import running since before the request may have made is ambiguous.
    sis_made: list[tuple[Any, str]] = []
    ambiguous: list[tuple[Any, str]] = []
    for row in made:
        explanation = _sis_explanation(canvas, token, row, started, options.allowance)
        if explanation is not None:
            (sis_made if explanation[0] == "after" else ambiguous).append((row, explanation[1]))
    made = [row for row in made if all(row is not other for other, _ in sis_made + ambiguous)]
    if ambiguous and not made:
        row, why = ambiguous[0]
        evidence = (
            f"Canvas shows enrollment {row.get('id')} created at {row.get('created_at')}, while "
            f"the request was in flight, but {why}: either could have made it"
        )
        return _record(db, request, row, AMBIGUOUS, evidence)
    if made:
        # Made while this request was in flight: this request made it, even if a retry that
        # Canvas answered since has already shown the ledger the row (as adopted).
        row = made[0]
        view = ledger.current_enrollment(db, as_int(row.get("id")) or 0)
        if view is not None and view["origin_action"] == CREATED:
            evidence = (
                f"Canvas shows enrollment {row.get('id')} created at {row.get('created_at')}, but "
                f"the ledger already has request {view['origin_request_id']} creating it"
            )
            return _record(db, request, row, ADOPTED, evidence)
        known = view is not None
        evidence = (
            f"Canvas shows enrollment {row.get('id')} created at {row.get('created_at')}, while "
            "the request was in flight" + ("; a later request already returned it" if known else "")
        )
        return _record(db, request, row, CREATED, evidence)
    if before:
        row = before[0]
        evidence = (
            f"Canvas shows enrollment {row.get('id')} created at {row.get('created_at')}, before "
            "the request: it can only have re-enrolled that row"
        )
        return _record(db, request, row, ADOPTED, evidence)
    later = [row.get("id") for created, row in timed if created is not None and created > latest]
    evidence = f"Canvas has no enrollment for {scope[:-1]} {ref}, user {user_ref} made by it"
    if later:
        evidence += f" (enrollments {later} were made later, by something else)"
    for row, why in sis_made:
        evidence += f" (enrollment {row.get('id')} was made meanwhile, but {why})"
    return _fail(db, request, evidence)


def _in_flight_until(request: Mapping[str, Any], started: datetime) -> datetime:
    """When Canvas can last have acted for this request, on Canvas's clock.

    A 5xx answer or the proxy's timeout ends the window when it came (`outcome_at`, the
    proxy's clock, shifted like `started`); a request whose outcome was never written (the
    proxy died) keeps the whole processing window.
    """
    shift = started - (parse_time(request["received_at"]) or started)
    outcome_at = parse_time(request["outcome_at"])
    if request["status"] == UNKNOWN and outcome_at is not None:
        return min(outcome_at + shift, started + PROCESSING_WINDOW)
    return started + PROCESSING_WINDOW


def _sis_explanation(
    canvas: CanvasClient,
    token: str,
    row: Mapping[str, Any],
    started: datetime,
    allowance: timedelta,
) -> tuple[str, str] | None:
    """Could the SIS import the row names have made it? ("after", why) when that import began
    after the request did (so it, not the request, made the row), ("also", why) when it was
    already running (either could have), None when it cannot have (it began after the row
    was made: it only claimed the row) or the row names none."""
    import_id = as_int(row.get("sis_import_id"))
    if import_id is None:
        return None
    try:  # (a Canvas that cannot be reached now leaves the request for the next run)
        job = canvas.get_json(f"/api/v1/accounts/self/sis_imports/{import_id}", token)
    except CanvasRefused:
        job = None
    began = parse_time(job.get("created_at")) if isinstance(job, dict) else None
    if began is None:
        return "also", f"it names SIS import {import_id}, whose start Canvas did not show"
    created = parse_time(row.get("created_at"))
    if created is not None and created + allowance < began:
        return None
    if began > started + allowance:
        return "after", f"SIS import {import_id}, begun at {iso(began)} after the request, made it"
    return "also", f"SIS import {import_id}, begun at {iso(began)}, was running then"


def _settle_change(
    db: sqlite_utils.Database,
    canvas: CanvasClient,
    token: str,
    request: Mapping[str, Any],
    started: datetime,
    options: Options,
) -> Result:
    enrollment_id = as_int(request["enrollment_ref"])
    known = ledger.current_enrollment(db, enrollment_id) if enrollment_id is not None else None
    user_ref = str(known["user_id"]) if known and known["user_id"] is not None else None
    rows = _listing(canvas, token, "courses", request["course_ref"], user_ref)
    row = next((row for row in rows if as_int(row.get("id")) == enrollment_id), None)
    kind = request["kind"]
    if kind == "enrollment_delete":
        task = json.loads(request["params"] or "{}").get("task") or "conclude"
        expected = STATE_AFTER_TASK.get(task, "completed")
        action = ACTION_BY_DELETED_STATE[expected]
    else:
        expected, action = STATE_AFTER[kind], ACTION_BY_KIND[kind]
    if row is None:
        return _fail(db, request, f"Canvas shows no enrollment {request['enrollment_ref']} there")
    if row.get("enrollment_state") != expected:
        return _fail(
            db,
            request,
            f"enrollment {enrollment_id} is {row.get('enrollment_state')}, not {expected}: "
            "the change did not happen",
        )
    evidence = f"Canvas shows enrollment {enrollment_id} {expected}, as the request asked"
    return _record(db, request, row, action, evidence)


def _settle_sis_import(
    db: sqlite_utils.Database,
    canvas: CanvasClient,
    token: str,
    request: Mapping[str, Any],
    started: datetime,
    options: Options,
) -> Result:
    """An SIS import whose answer was lost: Canvas's list of imports says whether it began."""
    earliest, latest = started - options.allowance, started + PROCESSING_WINDOW + options.allowance
    target = (
        f"/api/v1/accounts/{quote(request['account_ref'], safe=':')}/sis_imports"
        f"?created_since={quote(iso(earliest))}&created_before={quote(iso(latest))}&per_page=100"
    )
    document = canvas.get_json(target, token)
    imports = document.get("sis_imports", []) if isinstance(document, dict) else document
    taken = {row["job_id"] for row in ledger.sis_import_jobs(db)}
    candidates = []
    for job in imports if isinstance(imports, list) else []:
        created = parse_time(job.get("created_at"))
        submitter = as_int((job.get("user") or {}).get("id"))
        if created is None or not earliest <= created <= latest or as_int(job.get("id")) in taken:
            continue  # outside the window, or already another request's job
        if request["actor_user_id"] is not None and submitter != request["actor_user_id"]:
            continue
        candidates.append((created, job))
    if candidates:
        # The earliest: a retry's own job comes after the one this request started.
        _, job = min(candidates, key=lambda pair: pair[0])
        submitter = as_int((job.get("user") or {}).get("id"))
        evidence = (
            f"Canvas shows SIS import {job.get('id')} started at {job.get('created_at')} by user "
            f"{submitter}, while the request was in flight"
        )
        ledger.record_async_job(
            db,
            request["id"],
            kind="sis_import",
            job=job,
            account_ref=request["account_ref"],
            integration=request["integration"],
            actor_user_id=request["actor_user_id"],
            http_status=request["http_status"],
            canvas_request_id=request["canvas_request_id"],
            settlement=ledger.Settlement(evidence),
        )
        return Result(request["id"], request["kind"], "submitted", None, evidence)
    return _fail(db, request, "Canvas lists no SIS import started by this request's user then")


SETTLERS = {
    "enrollment_create": _settle_create,
    "enrollment_delete": _settle_change,
    "enrollment_reactivate": _settle_change,
    "enrollment_accept": _settle_change,
    "enrollment_reject": _settle_change,
    "sis_import": _settle_sis_import,
}


def _record(
    db: sqlite_utils.Database,
    request: Mapping[str, Any],
    row: Mapping[str, Any],
    action: str,
    evidence: str,
) -> Result:
    event = ledger.Event.from_canvas(row, action)
    ledger.record_events(
        db,
        request["id"],
        [event],
        integration=request["integration"],
        actor_user_id=request["actor_user_id"],
        http_status=request["http_status"],
        canvas_request_id=request["canvas_request_id"],
        settlement=ledger.Settlement(evidence),
    )
    return Result(request["id"], request["kind"], action, event.enrollment_id, evidence)


def _fail(db: sqlite_utils.Database, request: Mapping[str, Any], evidence: str) -> Result:
    ledger.record_outcome(
        db,
        request["id"],
        FAILED,
        http_status=request["http_status"],
        canvas_request_id=request["canvas_request_id"],
        error=request["error"],
        settlement=ledger.Settlement(evidence),
    )
    return Result(request["id"], request["kind"], "failed", None, evidence)


# One reconciler at a time across every worker process: a lease in the ledger itself.


@contextmanager
def exclusive(db: sqlite_utils.Database, lease: timedelta) -> Iterator[bool]:
    """Yield True if this process holds the reconciliation lease (taken until released or
    expired), False if another one does."""
    holder = uuid.uuid4().hex
    free = ledger.take_lease(db, LOCK, holder, lease)
    try:
        yield free
    finally:
        if free:
            ledger.release_lease(db, LOCK, holder)


class BackgroundReconciler:
    """Reconciles now and then every `interval` in a daemon thread of this process; the
    ledger lease keeps it to one reconciler at a time across all workers."""

    def __init__(
        self,
        database: str,
        canvas: CanvasClient,
        token: str,
        options: Options,
        interval: float,
    ) -> None:
        import threading

        self.database, self.canvas, self.token = database, canvas, token
        self.options, self.interval = options, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="ledger-reconciler", daemon=True)

    def start(self) -> BackgroundReconciler:
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the run in progress, if any (waits up to `timeout` seconds for it)."""
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def run_once(self) -> list[Result]:
        db = ledger.connect(self.database)
        try:
            with exclusive(db, LEASE) as mine:
                return reconcile(db, self.canvas, self.token, self.options) if mine else []
        finally:
            db.close()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                self.run_once()
            except Exception:  # a Canvas outage must not end the loop
                log.exception("automatic reconciliation failed; retrying in %s s", self.interval)
            self.stopped.wait(self.interval)


LEASE = timedelta(minutes=10)
