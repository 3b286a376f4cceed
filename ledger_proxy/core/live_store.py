"""Canvas Live Events into the ledger (receiver and `events ingest`), and back out as actors.

Storage is append-only and idempotent: each event is keyed by `LiveEvent.key`, the same for
every delivery of one event in either format, so a duplicate is skipped, and nothing joins at
write time, so any order works (an event may come before the proxy records its enrollment, or
long after). The joins happen when the lookup reads: by enrollment id, and by Canvas's request
id to the proxy's own requests. Event types other than enrollment and SIS-batch events are
dropped. No Flask.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from . import ledger
from .live_events import LiveEvent, actor_event, parse_event
from .util import iso, utcnow

STORED, DUPLICATE, IGNORED = "stored", "duplicate", "ignored"
HTTPS, INGEST = "https", "ingest"
BATCH_SIZE = 500


def row(event: LiveEvent, document: Mapping[str, Any], received_via: str) -> dict[str, Any]:
    """The `live_events` row of one parsed event (ledger.LIVE_EVENT_COLUMNS)."""
    actor = event.actor
    return {
        "key": event.key,
        "received_at": iso(utcnow()),
        "received_via": received_via,
        "format": event.format,
        "event_name": event.event_name,
        "event_time": event.event_time,
        "kind": event.kind,
        "enrollment_id": event.enrollment_id,
        "course_id": event.course_id,
        "course_section_id": event.course_section_id,
        "user_id": event.user_id,
        "user_name": event.user_name,
        "associated_user_id": event.associated_user_id,
        "type": event.type,
        "workflow_state": event.workflow_state,
        "sis_batch_id": event.sis_batch_id,
        "account_id": event.account_id,
        "actor_user_id": actor.user_id,
        "real_user_id": actor.real_user_id,
        "developer_key_id": actor.developer_key_id,
        "request_id": actor.request_id,
        "session_id": actor.session_id,
        "http_method": actor.http_method,
        "url": actor.url,
        "referrer": actor.referrer,
        "user_agent": actor.user_agent,
        "context_role": actor.context_role,
        "job_id": actor.job_id,
        "job_tag": actor.job_tag,
        "document": json.dumps(document, separators=(",", ":"), sort_keys=True),
    }


def receive(db: sqlite_utils.Database, document: Mapping[str, Any], received_via: str) -> str:
    """Store one decoded event: `STORED`, `DUPLICATE` (already stored) or `IGNORED` (a type
    the ledger does not keep). Raises `MalformedEvent` before anything is written.

    The write goes through the ledger's group commit (`ledger.committed`): on a handle made by
    `ledger.connect`, events arriving at once on several threads share one transaction, and
    each caller hears its answer only once its row is committed."""
    event = parse_event(document)
    if event.ignored:
        return IGNORED
    new_row = row(event, document, received_via)
    stored = ledger.committed(db, lambda handle: ledger.insert_live_event(handle, new_row))
    return STORED if stored else DUPLICATE


@dataclass
class IngestSummary:
    """What `ingest` did: counts, and each bad line's number and why."""

    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return self.stored + self.duplicates + self.ignored + len(self.bad)


def ingest(
    db: sqlite_utils.Database,
    lines: Iterable[str],
    decode: Callable[[str], dict[str, Any]],
    *,
    on_line: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Store the events of NDJSON `lines` (one event per line; `decode` turns a line into the
    event's document, verifying it if it is a JWT, and raises ValueError or the verifier's
    errors on a bad one). Bad lines are counted with their number and skipped; blank lines
    are skipped silently. Writes in batches of `BATCH_SIZE` events, each one transaction."""
    summary = IngestSummary()
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        stored = ledger.store_live_events(db, batch)
        summary.stored += stored
        summary.duplicates += len(batch) - stored
        batch.clear()

    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                document = decode(line)
                event = parse_event(document)
            except Exception as exc:  # MalformedEvent, bad JSON, a refused signature: a bad line
                summary.bad.append((number, f"{type(exc).__name__}: {exc}"))
            else:
                if event.ignored:
                    summary.ignored += 1
                else:
                    batch.append(row(event, document, INGEST))
                    if len(batch) >= BATCH_SIZE:
                        flush()
        if on_line:
            on_line(number)
    flush()
    return summary


@dataclass(frozen=True)
class Found:
    """The Live Event that says who made one enrollment, with what its judgement needs."""

    event: LiveEvent
    same_request: tuple[LiveEvent, ...]  # other events of the same Canvas request
    proxied: bool  # its request id is one the proxy recorded for a request it forwarded


def actors(db: sqlite_utils.Database, enrollment_ids: list[int]) -> dict[int, Found]:
    """For each of these enrollments that a stored Live Event names, the event that says who
    made it (`live_events.actor_event`), in a few queries."""
    stored = ledger.live_events_for(db, enrollment_ids)
    events = [parse_event(json.loads(item["document"])) for item in stored]
    if not events:
        return {}
    by_enrollment: dict[int, list[LiveEvent]] = {}
    by_request: dict[str, list[LiveEvent]] = {}
    for event in events:
        if event.enrollment_id is not None:
            by_enrollment.setdefault(event.enrollment_id, []).append(event)
        if event.actor.request_id:
            by_request.setdefault(event.actor.request_id, []).append(event)
    proxied = ledger.proxied_canvas_requests(db, by_request)
    found: dict[int, Found] = {}
    for enrollment_id in enrollment_ids:
        chosen = actor_event(by_enrollment.get(enrollment_id, ()))
        if chosen is None:
            continue
        request_id = chosen.actor.request_id
        others = tuple(e for e in by_request.get(request_id or "", ()) if e is not chosen)
        found[enrollment_id] = Found(chosen, others, request_id in proxied)
    return found


def sis_batches(db: sqlite_utils.Database, batch_ids: Iterable[int]) -> list[LiveEvent]:
    """The stored sis_batch_* events of these SIS imports, earliest first."""
    events = [
        parse_event(json.loads(item["document"])) for item in ledger.sis_batch_events(db, batch_ids)
    ]
    return sorted(events, key=lambda event: event.event_time or "")
