"""The recording transaction: intent -> send to Canvas -> outcome, every ledger status decided here.

`record` writes the intent before anything is sent (if the process dies, it stays `pending`
for reconciliation), sends through the caller's `send`, reads Canvas's answer and settles the
request from it. No Flask: the proxy view parses the request and answers the client.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests
import sqlite_utils

from ..errors import ProxyError
from ..upstream.canvas import (
    CANVAS_FAILURES,
    CanvasAnswerCut,
    CanvasUnreachable,
    Forwarded,
    http_date,
    proxy_error,
    read_answer,
)
from . import ledger, vocab
from .live_events import SHARD_FACTOR
from .util import as_int, parse_time

if TYPE_CHECKING:  # (its request parsing uses Werkzeug; the core only reads an Operation)
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


@dataclass(frozen=True)
class Recorded:
    """What `record` hands back: Canvas's answer, and the events written (None when the
    outcome could not be written: the intent then stays pending for reconciliation)."""

    answer: Answer
    events: list[ledger.Event] | None = field(default=None)


def record(
    db: sqlite_utils.Database,
    intent: ledger.Intent,
    operation: Operation,
    send: Callable[[], requests.Response | Forwarded],
    *,
    allowance: timedelta,
    after_canvas: Callable[[], None] | None = None,
) -> Recorded:
    """Write `intent`, send the request with `send()`, and settle the request's outcome.

    No answer from Canvas: `failed` when the request was never sent, `unknown` when it may
    have reached Canvas; the Canvas failure (CANVAS_FAILURES, CanvasAnswerCut) is raised on
    for the caller to answer with `proxy_error`. A ProxyError raised by `send` (the client's
    own body broke off, so Canvas got a truncated request) is `failed` and raised on. With an
    answer: `settle` decides. `after_canvas` runs between Canvas's answer and the outcome's
    write (the fault tests kill the process there).
    """
    ledger.record_intent(db, intent)
    started = time.monotonic()
    try:
        upstream = send()
    except CANVAS_FAILURES as exc:
        status = vocab.FAILED if isinstance(exc, CanvasUnreachable) else vocab.UNKNOWN
        ledger.record_outcome(db, intent.request_id, status, error=proxy_error(exc).message)
        raise
    except ProxyError as exc:
        ledger.record_outcome(db, intent.request_id, vocab.FAILED, error=exc.message)
        raise
    try:
        content = read_answer(upstream)
    except CanvasAnswerCut as exc:
        ledger.record_outcome(
            db, intent.request_id, vocab.UNKNOWN, http_status=upstream.status_code, error=str(exc)
        )
        raise
    finally:
        upstream.close()
    if after_canvas is not None:
        after_canvas()
    answer = Answer(
        upstream.status_code,
        list(upstream.raw.headers.items()),
        content,
        time.monotonic() - started,
    )
    try:
        events = settle(db, intent, operation, answer, allowance=allowance)
    except Exception:
        # Canvas acted and the client must hear so; the intent stays pending for reconciliation.
        log.exception(
            "request %s: the outcome could not be written to the ledger", intent.request_id
        )
        return Recorded(answer)
    if events:
        log.info(
            "request %s recorded %s (integration=%s actor=%s canvas_request=%s)",
            intent.request_id,
            ", ".join(f"{event.action} {event.enrollment_id}" for event in events),
            intent.integration,
            intent.actor.user_id if intent.actor else None,
            answer.header("X-Request-Context-Id"),
        )
    return Recorded(answer, events)


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
        acting_as_user_id=acting_as(intent, answer),
    )
    return events


def acting_as(intent: ledger.Intent, answer: Answer) -> int | None:
    """The user Canvas acted as when the token's user masqueraded (as_user_id), else None.

    Canvas names the acting user in X-Canvas-User-Id (a global id: shard x 10^13 + local id);
    a numeric as_user_id stands in when the header is missing.
    """
    wanted = (intent.params or {}).get("as_user_id")
    if wanted in (None, ""):
        return None
    header = answer.header("X-Canvas-User-Id")
    user_id = as_int(header) if header else as_int(wanted)
    if user_id is not None:
        user_id %= SHARD_FACTOR
    real = intent.actor.user_id if intent.actor else None
    return user_id if user_id != real else None


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
        enrollment_id = as_int(operation.enrollment_ref)
        if enrollment_id is None:
            raise ValueError("accept/reject of an enrollment named by a non-numeric id")
        return [
            ledger.Event(
                enrollment_id=enrollment_id,
                action=vocab.ACTION_BY_KIND[kind],
                course_id=as_int(operation.course_ref),
                enrollment_state=vocab.STATE_AFTER[kind],
            )
        ]
    if not isinstance(document, dict):
        raise ValueError("expected an Enrollment object")
    if kind == "enrollment_create":
        enrollment_id = as_int(document.get("id"))
        if enrollment_id is None:
            raise ValueError("the Enrollment has no id")
        action = create_action(
            document,
            started_at=answer.canvas_started_at(fallback=intent.received_at),
            allowance=allowance,
            known_to_ledger=ledger.is_known(db, enrollment_id),
        )
    elif kind == "enrollment_delete":
        state = document.get("enrollment_state", "")
        action = vocab.ACTION_BY_DELETED_STATE.get(state, vocab.UPDATED)
    else:
        action = vocab.ACTION_BY_KIND[kind]
    return [ledger.Event.from_canvas(document, action)]


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
        return vocab.ADOPTED
    created_at = parse_time(enrollment.get("created_at"))
    if created_at is not None and created_at < started_at - allowance:
        return vocab.ADOPTED
    return vocab.CREATED
