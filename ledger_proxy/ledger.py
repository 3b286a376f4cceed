"""Record and read the ledger: intents, outcomes, append-only events, current view (no Flask)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from .db import write_transaction
from .export import event_hash, next_link

# Request statuses. 'pending': forwarded, outcome not yet written (the proxy may have died);
# 'unknown': Canvas's answer was lost or was a 5xx, so Canvas may have acted; both wait for
# reconciliation. 'completed' and 'failed' are settled.
PENDING, COMPLETED, FAILED, UNKNOWN = "pending", "completed", "failed", "unknown"

# The action an enrollment-changing request's kind records (creates are decided apart).
ACTION_BY_KIND = {
    "enrollment_reactivate": "reactivated",
    "enrollment_accept": "accepted",
    "enrollment_reject": "rejected",
}
ACTION_BY_DELETED_STATE = {
    "completed": "concluded",
    "deleted": "deleted",
    "inactive": "deactivated",
}
STATE_AFTER = {"enrollment_accept": "active", "enrollment_reject": "rejected"}
# The action of an event reconciliation records when a row fits more than one explanation
# (this request, or an SIS import running meanwhile): it names the candidate request without
# crediting its integration with the row.
AMBIGUOUS = "ambiguous"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass(frozen=True)
class Actor:
    user_id: int
    name: str | None = None


@dataclass(frozen=True)
class Intent:
    request_id: str
    received_at: datetime
    method: str
    path: str
    kind: str
    integration: str | None
    actor: Actor | None
    token_hash: str | None
    user_agent: str | None
    course_ref: str | None = None
    section_ref: str | None = None
    enrollment_ref: str | None = None
    account_ref: str | None = None
    params: Mapping[str, Any] | None = None


def record_intent(db: sqlite_utils.Database, intent: Intent) -> None:
    """Written before the request is forwarded: if nothing follows, it stays 'pending'."""
    with write_transaction(db):
        db.execute(
            """
            INSERT INTO requests (id, received_at, method, path, kind, integration,
                actor_user_id, actor_name, token_hash, user_agent, course_ref, section_ref,
                enrollment_ref, account_ref, params, status)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                intent.request_id,
                iso(intent.received_at),
                intent.method,
                intent.path,
                intent.kind,
                intent.integration,
                intent.actor.user_id if intent.actor else None,
                intent.actor.name if intent.actor else None,
                intent.token_hash,
                intent.user_agent,
                intent.course_ref,
                intent.section_ref,
                intent.enrollment_ref,
                intent.account_ref,
                json.dumps(dict(intent.params or {}), sort_keys=True),
                PENDING,
            ],
        )


class AlreadySettled(Exception):
    """Reconciliation found the request settled by someone else meanwhile."""


@dataclass(frozen=True)
class Settlement:
    """How an outcome was learnt when not from Canvas's answer: by reconciliation, and why."""

    evidence: str
    settled_by: str = "reconcile"


def _settle(
    db: sqlite_utils.Database,
    request_id: str,
    status: str,
    http_status: int | None,
    canvas_request_id: str | None,
    error: str | None,
    settlement: Settlement | None = None,
) -> None:
    # A reconciliation settles only what is still unsettled: if another reconciler (a lease
    # that expired mid-run) got there first, the whole transaction is rolled back.
    guard = f" AND status IN ('{PENDING}', '{UNKNOWN}')" if settlement else ""
    cursor = db.execute(
        f"""
        UPDATE requests SET status = ?, http_status = ?, canvas_request_id = ?,
            outcome_at = ?, error = ?, settled_by = ?, evidence = ?
        WHERE id = ?{guard}
        """,
        [
            status,
            http_status,
            canvas_request_id,
            iso(utcnow()),
            error,
            settlement.settled_by if settlement else "response",
            settlement.evidence if settlement else None,
            request_id,
        ],
    )
    if settlement and cursor.rowcount == 0:
        raise AlreadySettled(request_id)


def record_outcome(
    db: sqlite_utils.Database,
    request_id: str,
    status: str,
    *,
    http_status: int | None = None,
    canvas_request_id: str | None = None,
    error: str | None = None,
    settlement: Settlement | None = None,
) -> None:
    """The outcome of a request that changed no enrollment the proxy can name."""
    with write_transaction(db):
        _settle(db, request_id, status, http_status, canvas_request_id, error, settlement)


def create_action(
    enrollment: Mapping[str, Any],
    *,
    started_at: datetime,
    allowance: timedelta,
    known_to_ledger: bool,
) -> str:
    """'created' when Canvas made the row for this request, 'adopted' when it already existed.

    Canvas reuses an existing row on re-enrollment (same id, old created_at). `started_at`
    is the request's start on Canvas's clock where known; timestamps have whole seconds.
    """
    if known_to_ledger:
        return "adopted"
    created_at = parse_time(enrollment.get("created_at"))
    if created_at is not None and created_at < started_at - allowance:
        return "adopted"
    return "created"


def is_known(db: sqlite_utils.Database, enrollment_id: int) -> bool:
    rows = db.execute(
        "SELECT 1 FROM enrollments WHERE enrollment_id = ?", [enrollment_id]
    ).fetchall()
    return bool(rows)


@dataclass(frozen=True)
class Event:
    enrollment_id: int
    action: str
    course_id: int | None = None
    course_section_id: int | None = None
    user_id: int | None = None
    type: str | None = None
    role: str | None = None
    role_id: int | None = None
    enrollment_state: str | None = None
    sis_import_id: int | None = None
    canvas_created_at: str | None = None
    canvas_updated_at: str | None = None

    @classmethod
    def from_canvas(cls, enrollment: Mapping[str, Any], action: str) -> Event:
        """From Canvas's Enrollment JSON (ids may be strings with canvas-string-ids)."""
        enrollment_id = as_int(enrollment.get("id"))
        if enrollment_id is None:
            raise ValueError("Canvas's answer has no enrollment id")
        return cls(
            enrollment_id=enrollment_id,
            action=action,
            course_id=as_int(enrollment.get("course_id")),
            course_section_id=as_int(enrollment.get("course_section_id")),
            user_id=as_int(enrollment.get("user_id")),
            type=enrollment.get("type"),
            role=enrollment.get("role"),
            role_id=as_int(enrollment.get("role_id")),
            enrollment_state=enrollment.get("enrollment_state"),
            sis_import_id=as_int(enrollment.get("sis_import_id")),
            canvas_created_at=enrollment.get("created_at"),
            canvas_updated_at=enrollment.get("updated_at"),
        )


EVENT_FIELDS = (
    "course_id",
    "course_section_id",
    "user_id",
    "type",
    "role",
    "role_id",
    "enrollment_state",
    "sis_import_id",
    "canvas_created_at",
    "canvas_updated_at",
)


def _complete_from_view(db: sqlite_utils.Database, event: Event) -> dict[str, Any]:
    """An event's fields, with those Canvas did not return (accept/reject) from the view."""
    values = {field: getattr(event, field) for field in EVENT_FIELDS}
    if all(values[field] is not None for field in ("course_id", "user_id", "type")):
        return values
    rows = list(
        db.query("SELECT * FROM enrollments WHERE enrollment_id = ?", [event.enrollment_id])
    )
    if rows:
        for field in EVENT_FIELDS:
            if values[field] is None and field != "enrollment_state":
                values[field] = rows[0][field]
    return values


def record_events(
    db: sqlite_utils.Database,
    request_id: str,
    events: Iterable[Event],
    *,
    integration: str | None,
    actor_user_id: int | None,
    http_status: int | None,
    canvas_request_id: str | None,
    settlement: Settlement | None = None,
) -> None:
    """Append the events, update the current view and settle the request, atomically."""
    recorded_at = iso(utcnow())
    with write_transaction(db):
        for event in events:
            values = _complete_from_view(db, event)
            # The hash chain links each event to the one before; the write lock keeps it linear.
            seq, prev_hash = next_link(db)
            row = {
                "seq": seq,
                "request_id": request_id,
                "enrollment_id": event.enrollment_id,
                "action": event.action,
                **values,
                "canvas_request_id": canvas_request_id,
                "integration": integration,
                "actor_user_id": actor_user_id,
                "recorded_at": recorded_at,
                "prev_hash": prev_hash,
            }
            row["hash"] = event_hash(row)
            db.execute(
                f"INSERT INTO events ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
            _update_view(
                db,
                event,
                values,
                seq=seq,
                request_id=request_id,
                integration=integration,
                actor_user_id=actor_user_id,
                canvas_request_id=canvas_request_id,
                recorded_at=recorded_at,
            )
        _settle(db, request_id, COMPLETED, http_status, canvas_request_id, None, settlement)


def _update_view(
    db: sqlite_utils.Database,
    event: Event,
    values: dict[str, Any],
    *,
    seq: int,
    request_id: str,
    integration: str | None,
    actor_user_id: int | None,
    canvas_request_id: str | None,
    recorded_at: str,
) -> None:
    # The origin columns are written by the first event the ledger sees, and replaced only by
    # a later-recorded `created`: reconciliation can find that an earlier request whose answer
    # was lost made the row that a retry then saw as existing (adopted). A reconciled
    # `ambiguous` replaces anything but `created` the same way (it may have made the row).
    upgrade = (
        "(excluded.origin_action = 'created' AND enrollments.origin_action <> 'created') OR "
        f"(excluded.origin_action = '{AMBIGUOUS}' "
        f"AND enrollments.origin_action NOT IN ('created', '{AMBIGUOUS}'))"
    )
    origin = ", ".join(
        f"{column} = CASE WHEN {upgrade} THEN excluded.{column} ELSE enrollments.{column} END"
        for column in (
            "origin_integration",
            "origin_actor_user_id",
            "origin_request_id",
            "origin_canvas_request_id",
            "origin_action",  # (SQLite evaluates every SET expression on the old row)
        )
    )
    db.execute(
        f"""
        INSERT INTO enrollments (enrollment_id, {", ".join(EVENT_FIELDS)}, origin_action,
            origin_integration, origin_actor_user_id, origin_request_id,
            origin_canvas_request_id, first_recorded_at, last_action, last_seq, last_recorded_at)
        VALUES (?, {", ".join("?" for _ in EVENT_FIELDS)}, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (enrollment_id) DO UPDATE SET
            {", ".join(f"{field} = coalesce(excluded.{field}, {field})" for field in EVENT_FIELDS)},
            {origin},
            last_action = excluded.last_action,
            last_seq = excluded.last_seq,
            last_recorded_at = excluded.last_recorded_at
        """,
        [event.enrollment_id]
        + [values[field] for field in EVENT_FIELDS]
        + [
            event.action,
            integration,
            actor_user_id,
            request_id,
            canvas_request_id,
            recorded_at,
            event.action,
            seq,
            recorded_at,
        ],
    )


def record_async_job(
    db: sqlite_utils.Database,
    request_id: str,
    *,
    kind: str,
    job: Mapping[str, Any],
    account_ref: str | None,
    integration: str | None,
    actor_user_id: int | None,
    http_status: int | None,
    canvas_request_id: str | None,
    settlement: Settlement | None = None,
) -> None:
    """A request whose enrollments Canvas makes later, in a job: who submitted which job."""
    with write_transaction(db):
        db.execute(
            """
            INSERT INTO async_jobs (request_id, kind, job_id, account_ref, integration,
                actor_user_id, submitted_at, canvas_request_id, job_state)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                request_id,
                kind,
                as_int(job.get("id")),
                account_ref,
                integration,
                actor_user_id,
                iso(utcnow()),
                canvas_request_id,
                job.get("workflow_state"),
            ],
        )
        _settle(db, request_id, COMPLETED, http_status, canvas_request_id, None, settlement)


# Readers


def unsettled_requests(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT * FROM requests WHERE status IN (?, ?) ORDER BY received_at",
            [PENDING, UNKNOWN],
        )
    )


def enrollment_history(db: sqlite_utils.Database, enrollment_id: int) -> list[dict[str, Any]]:
    return list(
        db.query("SELECT * FROM events WHERE enrollment_id = ? ORDER BY seq", [enrollment_id])
    )


def current_enrollment(db: sqlite_utils.Database, enrollment_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM enrollments WHERE enrollment_id = ?", [enrollment_id]))
    return rows[0] if rows else None


# The token -> Canvas user cache


def cached_actor(db: sqlite_utils.Database, token_hash: str, max_age: timedelta) -> Actor | None:
    rows = list(db.query("SELECT * FROM actors WHERE token_hash = ?", [token_hash]))
    if not rows:
        return None
    resolved_at = parse_time(rows[0]["resolved_at"])
    if resolved_at is None or utcnow() - resolved_at > max_age:
        return None
    return Actor(rows[0]["user_id"], rows[0]["name"])


def store_actor(db: sqlite_utils.Database, token_hash: str, actor: Actor) -> None:
    with write_transaction(db):
        db.execute(
            """
            INSERT INTO actors (token_hash, user_id, name, resolved_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (token_hash) DO UPDATE SET user_id = excluded.user_id,
                name = excluded.name, resolved_at = excluded.resolved_at
            """,
            [token_hash, actor.user_id, actor.name, iso(utcnow())],
        )


def forget_actor(db: sqlite_utils.Database, token_hash: str) -> None:
    """Drop a token's cache entry (signed out, or refused by Canvas)."""
    with write_transaction(db):
        db.execute("DELETE FROM actors WHERE token_hash = ?", [token_hash])


# Dashboard sessions signed out before they expire: the cookie cannot be taken back from a
# browser (or from whoever copied it), so the ledger remembers its session id until it expires.

SIGNED_OUT = "signed_out:"


def end_session(db: sqlite_utils.Database, session_id: str, until: datetime) -> None:
    with write_transaction(db):
        db.execute(
            "DELETE FROM ledger_meta WHERE substr(key, 1, ?) = ? AND value < ?",
            [len(SIGNED_OUT), SIGNED_OUT, iso(utcnow())],
        )
        db.execute(
            "INSERT INTO ledger_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [SIGNED_OUT + session_id, iso(until)],
        )


def session_ended(db: sqlite_utils.Database, session_id: str) -> bool:
    rows = db.execute("SELECT 1 FROM ledger_meta WHERE key = ?", [SIGNED_OUT + session_id])
    return bool(rows.fetchall())
