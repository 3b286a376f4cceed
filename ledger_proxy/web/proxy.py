"""Forward /api/ and /i/<label>/api/ to Canvas unchanged; record enrollment changes on the way."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

import requests
from flask import Blueprint, current_app, request
from werkzeug.wrappers import Request, Response

from ..core import integrations, ledger, recording
from ..core.util import utcnow
from ..errors import ProxyError, error_response
from ..ops import metrics
from ..runtime import recording_db, runtime
from ..upstream.canvas import (
    CANVAS_FAILURES,
    CanvasAnswerCut,
    CanvasClient,
    Forwarded,
    bearer_token,
    proxy_error,
    release,
    request_token,
    token_hash,
)
from ..upstream.forwarding import (
    INTEGRATION_HEADER,
    REQUEST_ID_HEADER,
    BadRequestTarget,
    check_label,
    check_request_target,
    connection_tokens,
    request_headers,
    response_headers,
)
from ..upstream.operations import (
    MalformedBody,
    Operation,
    RequestParams,
    classify,
    may_be_overridden,
    redact,
    request_params,
)

log = logging.getLogger(__name__)

bp = Blueprint("proxy", __name__)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CHUNK = 64 * 1024
OUTSIDE_API = "ledger-proxy forwards only /api/ and /i/<label>/api/ paths"


@bp.route("/api", methods=METHODS, provide_automatic_options=False)
@bp.route("/api/<path:_rest>", methods=METHODS, provide_automatic_options=False)
@bp.route("/i/<label>/api", methods=METHODS, provide_automatic_options=False)
@bp.route("/i/<label>/api/<path:_rest>", methods=METHODS, provide_automatic_options=False)
def forward(_rest: str = "", label: str | None = None) -> Response:
    request_id = uuid.uuid4().hex
    body: Any
    parsed: RequestParams | None
    try:
        call = incoming(request_id, label, request)
        operation = classify(call.method, call.path)
        overridable = operation is None and may_be_overridden(call.method, call.path)
        if overridable or (operation and operation.reads_body):
            body, parsed = _parsed_body(call)
            if overridable:  # Rails' Rack::MethodOverride: POST with _method=DELETE and kin
                override = parsed.method_override(call.header("X-HTTP-Method-Override"))
                if override:
                    operation = classify(override, call.path)
        else:
            body = _streamed_body(current_app.config["MAX_BODY_BYTES"])
            parsed = _parse(call, None, b"") if operation else None
        if operation is None or parsed is None:
            response = plain_response(call, body, runtime().canvas, metrics.current())
        else:
            response = _forward_recorded(call, operation, body, parsed)
    except ProxyError as exc:
        response = exc.response()
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


@dataclass(frozen=True)
class Call:
    """One incoming request, as it will be sent on to Canvas."""

    request_id: str
    method: str
    path: str  # raw, from /api on
    query: str  # raw
    integration: str | None
    client_base: str  # what the client used as its Canvas base URL
    headers: list[tuple[str, str]]  # exactly the headers sent on to Canvas

    @property
    def target(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")

    def header(self, name: str) -> str | None:
        """A header as Canvas will receive it (None when absent or not forwarded)."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


def incoming(request_id: str, label: str | None, request: Request) -> Call:
    """The request as it will go to Canvas; ProxyError (before anything is sent) when it may
    not go. `request` is Flask's, or werkzeug's on the lean path (web/fastpath.py)."""
    integration = _integration(label, request)
    try:
        path, query = check_request_target(_raw_target(request))
    except BadRequestTarget as exc:
        raise ProxyError(400, str(exc)) from None
    if label is not None:
        prefix = f"/i/{label}"
        if not path.startswith(prefix + "/api"):
            raise ProxyError(400, "the integration label in the path must be plain text")
        path = path[len(prefix) :]
    if not (path == "/api" or path.startswith("/api/")):
        raise ProxyError(404, OUTSIDE_API)
    client_base = request.host_url.rstrip("/") + request.script_root
    if label:
        client_base += f"/i/{label}"
    headers = request_headers(request.headers.items())
    return Call(request_id, request.method, path, query, integration, client_base, headers)


def _raw_target(request: Request) -> str:
    """The request target exactly as the client sent it, without the mount prefix."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        query = environ.get("QUERY_STRING", "")
        raw = request.script_root + request.path + (f"?{query}" if query else "")
    script_root = request.script_root
    if script_root and raw.startswith(script_root + "/"):
        raw = raw[len(script_root) :]
    return str(raw)


def _integration(label: str | None, request: Request) -> str | None:
    header = request.headers.get(INTEGRATION_HEADER)
    try:
        for given in (label, header):
            if given is not None:
                check_label(given)
    except BadRequestTarget as exc:
        raise ProxyError(400, str(exc)) from None
    if label and header and label != header:
        raise ProxyError(
            400, f"the path names integration {label!r} but {INTEGRATION_HEADER} names {header!r}"
        )
    return label or header


# Request bodies


def _too_large(limit: int) -> ProxyError:
    return ProxyError(413, f"the request body is larger than {limit} bytes")


def _parse(call: Call, content_type: str | None, body: bytes) -> RequestParams:
    try:
        return request_params(call.query, content_type, body, call.method)
    except MalformedBody as exc:
        raise ProxyError(400, f"{exc}; nothing was sent to Canvas") from None


def _parsed_body(call: Call) -> tuple[bytes, RequestParams]:
    """The whole (small) body of a request the ledger reads, and its parameters."""
    limit = current_app.config["MAX_PARSED_BODY_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    body = _read_client(request.stream, limit + 1)
    if len(body) > limit:
        raise _too_large(limit)
    length = request.content_length
    if length is not None and len(body) < length:
        raise _cut_short(len(body), length)
    _refuse_extra_bytes()
    return body, _parse(call, call.header("Content-Type"), body)


NOTHING_SENT = "nothing was sent to Canvas"
ABANDONED = "the request to Canvas was abandoned before its end, so Canvas did not act on it"


def _read_client(stream: IO[bytes], size: int, consequence: str = NOTHING_SENT) -> bytes:
    """Read the client's body; a broken one (bad chunking, a dropped client) is a 400."""
    try:
        return stream.read(size)
    except Exception as exc:  # the WSGI server's own parse errors, OSError, ...
        _close_after_response()
        raise ProxyError(
            400,
            f"the request body broke off before it was complete ({type(exc).__name__}); "
            f"{consequence}",
        ) from None


# gunicorn hands a body shorter than its Content-Length over without complaint when the
# client goes away: every read is counted against the declared length, so that a request the
# client did not finish is never sent to Canvas as if it were complete.


def _cut_short(received: int, declared: int, consequence: str = NOTHING_SENT) -> ProxyError:
    _close_after_response()
    return ProxyError(
        400,
        f"the request body ended after {received} of its {declared} bytes (Content-Length); "
        f"{consequence}",
    )


def _refuse_extra_bytes(consequence: str = NOTHING_SENT) -> None:
    """Bytes already waiting behind a complete body are refused, never a second request.

    A client that sends more than its Content-Length (request smuggling, or a body whose length
    was miscounted) gets 400 for the whole request and the connection is closed, so the extra
    bytes are not read as a request of their own. Bytes that arrive later, after the answer,
    are an ordinary next request on a kept-alive connection.
    """
    pending = _pending_bytes(request.environ)
    if pending:
        _close_after_response()
        raise ProxyError(
            400,
            f"the request carried {pending} or more bytes after its body (Content-Length "
            f"{request.content_length}); {consequence}",
        )


def _pending_bytes(environ: dict[str, Any]) -> int:
    """How many bytes the client has sent beyond the current request (gunicorn; else 0).

    werkzeug's development server closes every connection after one response, so nothing the
    client sends after a body is ever read there.
    """
    reader = getattr(environ.get("wsgi.input"), "reader", None)
    unreader = getattr(reader, "unreader", None)
    buffered = getattr(unreader, "buf", None)
    if buffered is None:
        return 0
    held = len(buffered.getvalue())
    if held:
        return held
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return 0
    try:
        return len(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return 0
    except OSError:
        return 0


def _close_after_response() -> None:
    """Have the server close the client's connection once it has answered.

    After a broken or overlong body, where the next request starts on the connection is
    unknown. gunicorn drops a Connection header set by the application, but closes the
    connection when the body's `failed` flag is set; werkzeug's development server always
    closes.
    """
    body = request.environ.get("wsgi.input")
    if body is not None and hasattr(body, "failed"):
        body.failed = True


class _LimitedBody:
    """The request body as a file-like object for requests, refusing more than `limit` bytes."""

    def __init__(self, stream: IO[bytes], length: int | None, limit: int) -> None:
        self._stream = stream
        self._length = length
        self._limit = limit
        self._seen = 0

    def __len__(self) -> int:  # lets requests send Content-Length instead of chunks
        return self._length or 0

    def read(self, size: int = -1) -> bytes:
        """The next piece; raises (so that the upstream request is aborted before its end)
        when the client's body breaks off, ends early, or carries bytes beyond its length."""
        data = _read_client(self._stream, CHUNK if size is None or size < 0 else size, ABANDONED)
        self._seen += len(data)
        if self._seen > self._limit:
            raise _too_large(self._limit)
        if self._length:
            if not data and self._seen < self._length:
                raise _cut_short(self._seen, self._length, ABANDONED)
            if data and self._seen >= self._length:
                _refuse_extra_bytes(ABANDONED)  # before the last byte goes to Canvas
        return data

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk


def _streamed_body(limit: int) -> _LimitedBody | Iterator[bytes] | None:
    """A body that streams through without being held in memory (None when there is none)."""
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not length and not chunked:
        return None
    body = _LimitedBody(request.stream, length, limit)
    return body if length else body.chunks()


# Upstream


def _send(call: Call, body: Any) -> requests.Response | Forwarded:
    canvas = runtime().canvas
    with metrics.canvas_timer(call.method):
        if body is None or isinstance(body, bytes):  # on the urllib3 pool (issue 12)
            return Forwarded(canvas.forward(call.method, call.target, call.headers, body))
        return canvas.send(call.method, call.target, call.headers, body)


def _client_headers(
    call: Call, headers: Iterable[tuple[str, str]], canvas_base: str
) -> list[tuple[str, str]]:
    return response_headers(headers, canvas_base, call.client_base)


def plain_response(
    call: Call, body: Any, canvas: CanvasClient, registry: metrics.Metrics | None
) -> Response:
    """Forward a request the ledger does not record; stream Canvas's answer back as is.

    The Flask view and the lean path (web/fastpath.py) both answer with this; a Canvas
    failure raises the ProxyError to answer with.
    """
    try:
        with metrics.canvas_timer(call.method, registry):
            if body is None or isinstance(body, bytes):
                upstream = canvas.forward(call.method, call.target, call.headers, body)
                close: Callable[[], None] = lambda: release(upstream)  # noqa: E731
            else:
                sent = canvas.send(call.method, call.target, call.headers, body)
                upstream, close = sent.raw, sent.close
    except CANVAS_FAILURES as exc:
        raise proxy_error(exc) from None
    response = Response(
        upstream.stream(CHUNK, decode_content=False),
        status=upstream.status,
        headers=_client_headers(call, upstream.headers.items(), canvas.base_url),
    )
    # Called when the server is done with the response, even one whose body it never reads
    # (HEAD, 204, 304): the pooled connection to Canvas is always given back.
    response.call_on_close(close)
    return response


def _actor(db: Any, token: str | None, hashed: str | None) -> ledger.Actor | None:
    """Who is behind the token; None if unknown (the request goes to Canvas all the same)."""
    if not (token and hashed):
        return None
    try:
        return runtime().actor_for(db, token, hashed)
    except CANVAS_FAILURES as exc:
        log.warning("the token's Canvas user could not be resolved: %s", exc)
        return None


# Headers a client may name in Connection so that the proxy drops them, though they decide
# who Canvas acts as or how it reads the body: on a recorded request that is refused.
GUARDED_HEADERS = frozenset({"authorization", "content-type", "content-length"})


def _token(call: Call, parsed: RequestParams) -> str | None:
    """The token Canvas will act with, from exactly what is forwarded: the Bearer header,
    else the access_token parameter (query string over body). Conflicting sources are refused,
    so that the ledger can never name another user than the one Canvas acted as."""
    dropped = connection_tokens(request.headers.items()) & GUARDED_HEADERS
    if dropped:
        raise ProxyError(
            400,
            f"the Connection header names {', '.join(sorted(dropped))}, which decide whom "
            "Canvas acts as or how it reads the body; nothing was sent to Canvas",
        )
    header = bearer_token(call.header("Authorization"))
    given = ([header] if header else []) + parsed.tokens()
    if len(set(given)) > 1:
        raise ProxyError(
            400,
            "the request carries different access tokens (Authorization header, access_token "
            "in the query string or the body); nothing was sent to Canvas",
        )
    return request_token(call.header("Authorization"), parsed.params)


def _intent(db: Any, call: Call, operation: Operation, parsed: RequestParams) -> ledger.Intent:
    """The request as the ledger records it, before it is sent."""
    token = _token(call, parsed)
    hashed = token_hash(runtime().token_key, token) if token else None
    actor = _actor(db, token, hashed)
    label = integrations.check_label(
        runtime().registry, call.integration, actor.user_id if actor else None
    )
    if label.refused:
        raise ProxyError(403, f"{label.reason}; nothing was sent to Canvas")
    return ledger.Intent(
        request_id=call.request_id,
        received_at=utcnow(),
        method=call.method,
        path=call.path,
        kind=operation.kind,
        integration=call.integration,
        actor=actor,
        token_hash=hashed,
        user_agent=call.header("User-Agent"),
        course_ref=operation.course_ref,
        section_ref=operation.section_ref,
        enrollment_ref=operation.enrollment_ref,
        account_ref=operation.account_ref,
        params=redact(parsed.params),
        label_verified=label.verified,
    )


def _forward_recorded(
    call: Call, operation: Operation, body: Any, parsed: RequestParams
) -> Response:
    """Parse the request into an intent, let recording.record run the transaction, answer."""
    db = recording_db()
    try:
        recorded = recording.record(
            db,
            _intent(db, call, operation, parsed),
            operation,
            lambda: _send(call, body),
            allowance=timedelta(seconds=current_app.config["CLOCK_SKEW_SECONDS"]),
            after_canvas=runtime().after_canvas,
        )
    except (*CANVAS_FAILURES, CanvasAnswerCut) as exc:
        raise proxy_error(exc) from None
    if recorded.events is not None:
        metrics.count_recorded(recorded.events)
    answer = recorded.answer
    return Response(
        answer.content,
        status=answer.status,
        headers=_client_headers(call, answer.headers, runtime().canvas.base_url),
    )


def not_found() -> Response:
    return error_response(404, OUTSIDE_API)
