"""Turn Canvas's answer to an enrollment-changing request into ledger events (no Flask)."""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from . import ledger, vocab
from ..upstream.canvas import http_date
from ..upstream.operations import Operation

log = logging.getLogger(__name__)

ASYNC_KINDS = frozenset({"sis_import", "bulk_enrollment"})


@dataclass(frozen=True)
class Answer:
    """Canvas's answer: status, headers (name, value) as sent, undecoded body, time taken."""

    status: int
    headers: list[tuple[str, str]]
    content: bytes
    elapsed: float

    def header(self, name: str) -> str | None:
        values = self.headers_named(name)
        return values[-1] if values else None

    def headers_named(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        content = self.content
        encoding = (self.header("Content-Encoding") or "identity").lower()
        if encoding == "gzip":
            content = gzip.decompress(content)
        elif encoding == "deflate":
            content = zlib.decompress(content)
        elif encoding != "identity":
            raise ValueError(f"unsupported Content-Encoding {encoding}")
        # Canvas may prefix JSON with while(1); for session-style requests.
        return json.loads(content.decode("utf-8").removeprefix("while(1);"))

    def canvas_started_at(self, fallback: datetime) -> datetime:
        """When the request started on Canvas's clock (its Date header), else `fallback`.

        A server behind a framework may send two Date headers; the application's comes last.
        """
        date = self.header("Date")
        canvas_now = http_date(date) if date else None
        if canvas_now is None:
            return fallback
        return canvas_now - timedelta(seconds=self.elapsed)


def settle(
    db: sqlite_utils.Database,
    intent: ledger.Intent,
    operation: Operation,
    answer: Answer,
    *,
    allowance: timedelta,
) -> list[ledger.Event]:
    """Write the outcome of `intent` from Canvas's `answer`; return the events recorded."""
    canvas_request_id = answer.header("X-Request-Context-Id")
    if not 200 <= answer.status < 300:
        # A 5xx may come after Canvas acted: unknown until reconciled. Other refusals failed.
        status = vocab.UNKNOWN if answer.status >= 500 else vocab.FAILED
        ledger.record_outcome(
            db,
            intent.request_id,
            status,
            http_status=answer.status,
            canvas_request_id=canvas_request_id,
        )
        return []
    actor_user_id = intent.actor.user_id if intent.actor else None
    try:
        document = answer.json()
        if operation.kind in ASYNC_KINDS:
            if not isinstance(document, dict):
                raise ValueError("expected a job object")
            ledger.record_async_job(
                db,
                intent.request_id,
                kind=operation.kind,
                job=document,
                account_ref=operation.account_ref,
                integration=intent.integration,
                actor_user_id=actor_user_id,
                http_status=answer.status,
                canvas_request_id=canvas_request_id,
            )
            return []
        events = _events(db, intent, operation, document, answer, allowance)
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("request %s: Canvas's answer could not be read: %s", intent.request_id, exc)
        ledger.record_outcome(
            db,
            intent.request_id,
            vocab.UNKNOWN,
            error=f"unreadable answer: {type(exc).__name__}",
            http_status=answer.status,
            canvas_request_id=canvas_request_id,
        )
        return []
    ledger.record_events(
        db,
        intent.request_id,
        events,
        integration=intent.integration,
        actor_user_id=actor_user_id,
        http_status=answer.status,
        canvas_request_id=canvas_request_id,
    )
    return events


def _events(
    db: sqlite_utils.Database,
    intent: ledger.Intent,
    operation: Operation,
    document: Any,
    answer: Answer,
    allowance: timedelta,
) -> list[ledger.Event]:
    kind = operation.kind
    if kind in ("enrollment_accept", "enrollment_reject"):
        # Canvas answers {"success": true}: the enrollment is the one the path names.
        if not (isinstance(document, dict) and document.get("success")):
            return []
        enrollment_id = ledger.as_int(operation.enrollment_ref)
        if enrollment_id is None:
            raise ValueError("accept/reject of an enrollment named by a non-numeric id")
        return [
            ledger.Event(
                enrollment_id=enrollment_id,
                action=vocab.ACTION_BY_KIND[kind],
                course_id=ledger.as_int(operation.course_ref),
                enrollment_state=vocab.STATE_AFTER[kind],
            )
        ]
    if not isinstance(document, dict):
        raise ValueError("expected an Enrollment object")
    if kind == "enrollment_create":
        enrollment_id = ledger.as_int(document.get("id"))
        if enrollment_id is None:
            raise ValueError("the Enrollment has no id")
        action = ledger.create_action(
            document,
            started_at=answer.canvas_started_at(fallback=intent.received_at),
            allowance=allowance,
            known_to_ledger=ledger.is_known(db, enrollment_id),
        )
    elif kind == "enrollment_delete":
        action = vocab.ACTION_BY_DELETED_STATE.get(document.get("enrollment_state", ""), "updated")
    else:
        action = vocab.ACTION_BY_KIND[kind]
    return [ledger.Event.from_canvas(document, action)]
