"""Forward /api/ and /i/<label>/api/ to Canvas unchanged; record enrollment changes on the way."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO

import requests
from flask import Blueprint, current_app, request
from werkzeug.wrappers import Response

from .. import ledger
from ..canvas import (
    CanvasConnectionLost,
    CanvasTimeout,
    CanvasUnreachable,
    request_token,
    token_hash,
)
from ..classify import MalformedBody, Operation, classify, may_be_overridden, parse_params, redact
from ..db import get_db
from ..errors import ProxyError, error_response
from ..forwarding import (
    INTEGRATION_HEADER,
    REQUEST_ID_HEADER,
    BadRequestTarget,
    check_label,
    check_request_target,
    request_headers,
    response_headers,
)
from ..runtime import runtime

log = logging.getLogger(__name__)

bp = Blueprint("proxy", __name__)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CHUNK = 64 * 1024


@bp.route("/api", methods=METHODS, provide_automatic_options=False)
@bp.route("/api/<path:rest>", methods=METHODS, provide_automatic_options=False)
@bp.route("/i/<label>/api", methods=METHODS, provide_automatic_options=False)
@bp.route("/i/<label>/api/<path:rest>", methods=METHODS, provide_automatic_options=False)
def forward(rest: str = "", label: str | None = None) -> Response:
    request_id = uuid.uuid4().hex
    try:
        response = _forward(request_id, label)
    except ProxyError as exc:
        response = exc.response()
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _raw_target() -> str:
    """The request target exactly as the client sent it, without the mount prefix."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        query = environ.get("QUERY_STRING", "")
        raw = request.script_root + request.path + (f"?{query}" if query else "")
    script_root = request.script_root
    if script_root and raw.startswith(script_root + "/"):
        raw = raw[len(script_root) :]
    return raw


def _integration(label: str | None) -> str | None:
    header = request.headers.get(INTEGRATION_HEADER)
    try:
        if label is not None:
            check_label(label)
        if header is not None:
            check_label(header)
    except BadRequestTarget as exc:
        raise ProxyError(400, str(exc)) from None
    if label and header and label != header:
        raise ProxyError(
            400, f"the path names integration {label!r} but {INTEGRATION_HEADER} names {header!r}"
        )
    return label or header


def _split_target(label: str | None) -> tuple[str, str]:
    """(path from /api/ on, query) of the raw target, checked."""
    try:
        path, query = check_request_target(_raw_target())
    except BadRequestTarget as exc:
        raise ProxyError(400, str(exc)) from None
    if label is not None:
        prefix = f"/i/{label}"
        if not path.startswith(prefix + "/api"):
            raise ProxyError(400, "the integration label in the path must be plain text")
        path = path[len(prefix) :]
    if not (path == "/api" or path.startswith("/api/")):
        raise ProxyError(404, "ledger-proxy forwards only /api/ and /i/<label>/api/ paths")
    return path, query


def _client_base(label: str | None) -> str:
    base = request.host_url.rstrip("/") + request.script_root
    return f"{base}/i/{label}" if label else base


class _CountedStream:
    """The request body as a file-like object for requests, refusing more than `limit` bytes."""

    def __init__(self, stream: BinaryIO, length: int | None, limit: int) -> None:
        self._stream = stream
        self._length = length
        self._limit = limit
        self._seen = 0

    def __len__(self) -> int:
        return self._length or 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(CHUNK if size is None or size < 0 else size)
        self._seen += len(data)
        if self._seen > self._limit:
            raise ProxyError(413, f"the request body is larger than {self._limit} bytes")
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk


def _body_too_large(limit: int) -> ProxyError:
    return ProxyError(413, f"the request body is larger than {limit} bytes")


def _read_body(limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise _body_too_large(limit)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise _body_too_large(limit)
    return data


def _streamed_body(limit: int) -> _CountedStream | None:
    length = request.content_length
    if length is not None and length > limit:
        raise _body_too_large(limit)
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not length and not chunked:
        return None
    stream = _CountedStream(request.stream, length, limit)
    return stream if length else iter(stream)  # type: ignore[return-value]


def _forward(request_id: str, label: str | None) -> Response:
    rt = runtime()
    config = current_app.config
    integration = _integration(label)
    path, query = _split_target(label)
    target = path + (f"?{query}" if query else "")
    method = request.method

    operation = classify(method, path)
    overridable = operation is None and may_be_overridden(method, path)
    body: Any
    params: dict[str, Any] = {}
    if (operation and operation.reads_body) or overridable:
        body = _read_body(config["MAX_PARSED_BODY_BYTES"])
        try:
            params = parse_params(query, request.content_type, body)
        except MalformedBody as exc:
            raise ProxyError(400, f"{exc}; nothing was sent to Canvas") from None
        if overridable:
            override = request.headers.get("X-HTTP-Method-Override") or params.get("_method")
            if isinstance(override, str):
                operation = classify(override.upper(), path)
    else:
        body = _streamed_body(config["MAX_BODY_BYTES"])
        if operation is not None:
            try:
                params = parse_params(query, None, b"")
            except MalformedBody as exc:
                raise ProxyError(400, f"{exc}; nothing was sent to Canvas") from None

    headers = request_headers(request.headers.items())
    canvas_base = rt.canvas.base_url
    client_base = _client_base(label)

    if operation is None:
        upstream = _send(method, target, headers, body)
        return _streamed_response(upstream, canvas_base, client_base)
    return _forward_recorded(
        request_id, operation, method, path, target, headers, body, params, integration,
        canvas_base, client_base,
    )


class UpstreamFailure(ProxyError):
    """Canvas gave no answer; `may_have_acted` tells whether the request reached it."""

    def __init__(self, status: int, message: str, *, may_have_acted: bool) -> None:
        super().__init__(status, message)
        self.may_have_acted = may_have_acted


def _send(method: str, target: str, headers: Any, body: Any) -> requests.Response:
    try:
        return runtime().canvas.send(method, target, headers, body)
    except CanvasUnreachable:
        raise UpstreamFailure(
            502, "Canvas could not be reached; the request was not sent", may_have_acted=False
        ) from None
    except CanvasTimeout:
        raise UpstreamFailure(
            504, "Canvas did not answer in time; it may still have acted", may_have_acted=True
        ) from None
    except CanvasConnectionLost:
        raise UpstreamFailure(
            502,
            "the connection to Canvas broke before it answered; it may have acted",
            may_have_acted=True,
        ) from None


def _streamed_response(
    upstream: requests.Response, canvas_base: str, client_base: str
) -> Response:
    def body() -> Iterator[bytes]:
        try:
            yield from upstream.raw.stream(CHUNK, decode_content=False)
        finally:
            upstream.close()

    return Response(
        body(),
        status=upstream.status_code,
        headers=response_headers(upstream.raw.headers.items(), canvas_base, client_base),
        direct_passthrough=True,
    )


def _forward_recorded(
    request_id: str,
    operation: Operation,
    method: str,
    path: str,
    target: str,
    headers: Any,
    body: Any,
    params: dict[str, Any],
    integration: str | None,
    canvas_base: str,
    client_base: str,
) -> Response:
    rt = runtime()
    db = get_db()
    received_at = ledger.utcnow()
    token = request_token(request.headers.get("Authorization"), params)
    hashed = token_hash(rt.token_key, token) if token else None
    actor = rt.actor_for(db, token, hashed) if token and hashed else None
    ledger.record_intent(
        db,
        ledger.Intent(
            request_id=request_id,
            received_at=received_at,
            method=method,
            path=path,
            kind=operation.kind,
            integration=integration,
            actor=actor,
            token_hash=hashed,
            user_agent=request.headers.get("User-Agent"),
            course_ref=operation.course_ref,
            section_ref=operation.section_ref,
            enrollment_ref=operation.enrollment_ref,
            account_ref=operation.account_ref,
            params=redact(params),
        ),
    )
    started = time.monotonic()
    try:
        upstream = _send(method, target, headers, body)
    except UpstreamFailure as exc:
        status = ledger.UNKNOWN if exc.may_have_acted else ledger.FAILED
        ledger.record_outcome(db, request_id, status, error=exc.message)
        raise
    except ProxyError as exc:  # the streamed body broke off: Canvas got a truncated request
        ledger.record_outcome(db, request_id, ledger.FAILED, error=exc.message)
        raise
    try:
        content = upstream.raw.read(decode_content=False)
    except Exception as exc:  # the connection broke while the answer was being read
        ledger.record_outcome(db, request_id, ledger.UNKNOWN, http_status=upstream.status_code, error=type(exc).__name__)
        raise ProxyError(502, "the connection to Canvas broke while it answered; it may have acted") from None
    finally:
        upstream.close()
    elapsed = time.monotonic() - started
    response = Response(
        content,
        status=upstream.status_code,
        headers=response_headers(upstream.raw.headers.items(), canvas_base, client_base),
    )
    try:
        _record(db, request_id, operation, upstream, content, integration, actor, received_at, elapsed)
    except Exception:
        # Canvas acted and the client must hear so; the intent stays pending for reconciliation.
        log.exception("request %s: the outcome could not be written to the ledger", request_id)
    return response


def _decoded_json(upstream: requests.Response, content: bytes) -> Any:
    encoding = (upstream.headers.get("Content-Encoding") or "identity").lower()
    if encoding == "gzip":
        import gzip

        content = gzip.decompress(content)
    elif encoding == "deflate":
        import zlib

        content = zlib.decompress(content)
    elif encoding != "identity":
        raise ValueError(f"unsupported Content-Encoding {encoding}")
    text = content.decode("utf-8")
    text = text.removeprefix("while(1);")
    return json.loads(text)


def _canvas_clock_start(upstream: requests.Response, elapsed: float, received_at: Any) -> Any:
    """When the request started, on Canvas's clock when its Date header says, else ours."""
    dates = upstream.raw.headers.getlist("Date")
    if dates:
        date = dates[-1]  # a server behind a framework may send two: the app's comes last
        try:
            canvas_now = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            pass
        else:
            if canvas_now.tzinfo is None:  # "-0000" and "GMT" both mean UTC in HTTP dates
                canvas_now = canvas_now.replace(tzinfo=UTC)
            return canvas_now - timedelta(seconds=elapsed)
    return received_at


def _record(
    db: Any,
    request_id: str,
    operation: Operation,
    upstream: requests.Response,
    content: bytes,
    integration: str | None,
    actor: ledger.Actor | None,
    received_at: Any,
    elapsed: float,
) -> None:
    status = upstream.status_code
    canvas_request_id = upstream.headers.get("X-Request-Context-Id")
    if status >= 500:
        ledger.record_outcome(db, request_id, ledger.UNKNOWN, http_status=status, canvas_request_id=canvas_request_id)
        return
    if not 200 <= status < 300:
        ledger.record_outcome(db, request_id, ledger.FAILED, http_status=status, canvas_request_id=canvas_request_id)
        return
    try:
        document = _decoded_json(upstream, content)
        events = _events(db, operation, document, upstream, elapsed, received_at)
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("request %s: Canvas's answer could not be read: %s", request_id, exc)
        ledger.record_outcome(
            db, request_id, ledger.UNKNOWN, http_status=status,
            canvas_request_id=canvas_request_id, error=f"unreadable answer: {type(exc).__name__}",
        )
        return
    actor_user_id = actor.user_id if actor else None
    if operation.kind in ("sis_import", "bulk_enrollment"):
        if not isinstance(document, dict):
            raise ValueError("expected a job object")
        ledger.record_async_job(
            db, request_id, kind=operation.kind, job=document, account_ref=operation.account_ref,
            integration=integration, actor_user_id=actor_user_id, http_status=status,
            canvas_request_id=canvas_request_id,
        )
        return
    ledger.record_events(
        db, request_id, events, integration=integration, actor_user_id=actor_user_id,
        http_status=status, canvas_request_id=canvas_request_id,
    )
    log.info(
        "request %s recorded %s (integration=%s actor=%s canvas_request=%s)",
        request_id, ", ".join(f"{e.action} {e.enrollment_id}" for e in events),
        integration, actor_user_id, canvas_request_id,
    )


def _events(
    db: Any,
    operation: Operation,
    document: Any,
    upstream: requests.Response,
    elapsed: float,
    received_at: Any,
) -> list[ledger.Event]:
    kind = operation.kind
    if kind in ("sis_import", "bulk_enrollment"):
        return []
    if kind in ("enrollment_accept", "enrollment_reject"):
        if not (isinstance(document, dict) and document.get("success")):
            return []
        enrollment_id = ledger.as_int(operation.enrollment_ref)
        if enrollment_id is None:
            raise ValueError("accept/reject of an enrollment named by a non-numeric id")
        return [
            ledger.Event(
                enrollment_id=enrollment_id,
                action=ledger.ACTION_BY_KIND[kind],
                enrollment_state=ledger.STATE_AFTER[kind],
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
            started_at=_canvas_clock_start(upstream, elapsed, received_at),
            allowance=timedelta(seconds=current_app.config["CLOCK_SKEW_SECONDS"]),
            known_to_ledger=ledger.is_known(db, enrollment_id),
        )
    elif kind == "enrollment_delete":
        action = ledger.ACTION_BY_DELETED_STATE.get(document.get("enrollment_state", ""), "updated")
    else:
        action = ledger.ACTION_BY_KIND[kind]
    return [ledger.Event.from_canvas(document, action)]


@bp.errorhandler(ProxyError)
def _proxy_error(exc: ProxyError) -> Response:
    return exc.response()


def not_found(_exc: Exception) -> Response:
    return error_response(404, "ledger-proxy forwards only /api/ and /i/<label>/api/ paths")
