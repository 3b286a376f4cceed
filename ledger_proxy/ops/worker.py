"""The gunicorn worker of `gunicorn wsgi:app`: gthread, made Canvas-exact and hard to tie up.

- **Reception off the thread pool.** A request's line, headers and the first
  `RECEPTION_BUFFER` bytes of its body are read by the worker's event loop, without blocking:
  a client that trickles its request (one byte every two seconds) holds no thread, so
  `/healthz` and every other request keep being answered. Only a request whose head is in and
  whose body is larger than the buffer reaches a thread before it has arrived whole.
- **A deadline for receiving.** A request must arrive within LEDGER_PROXY_RECEIVE_TIMEOUT
  seconds plus one second per LEDGER_PROXY_RECEIVE_MIN_RATE bytes received: checked by the
  event loop while it receives, then on every recv() of a thread that reads the rest. A
  client cannot stretch it by sending each byte just before a per-read timeout.
- **The server's own errors in Canvas's error shape** (`{"errors": [{"message": ...}]}`):
  414, 431, 400 for a malformed request line or header, 408 for a request that did not
  arrive in time, instead of gunicorn's HTML. Their log lines carry no token.
- **Canvas's headers unchanged.** Canvas's `Date` and `Server` replace gunicorn's (which are
  kept for the proxy's own answers); an answer given while the request body is still unread
  (beyond what has been received) says `Connection: close` instead of promising keep-alive.
"""

from __future__ import annotations

import json
import re
import selectors
import socket
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http.wsgi import Response
from gunicorn.workers.gthread import ThreadWorker

from ..config import SETTINGS_BY_NAME
from ..errors import JSON_CONTENT_TYPE, error_body
from .logs import redact_tokens

# Bytes of a request received by the event loop before a thread takes over: any head within
# gunicorn's limits' usual sizes and every small body (enrollment changes) arrive whole.
RECEPTION_BUFFER = 64 * 1024

_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d{1,18})[ \t]*\r\n", re.I)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked", re.I)
_EXPECT = re.compile(rb"\r\nexpect[ \t]*:", re.I)
_LAST_CHUNK = re.compile(rb"(?:^|\r\n)0[ \t;]*[^\r\n]*\r\n")


class ReceiveTimeout(Exception):
    """The client did not send its request in time (408).

    Deliberately not an OSError: gthread then hands it to handle_error, which answers it."""


class Deadline:
    """When a request must have arrived: a fixed allowance plus some per byte received."""

    def __init__(self, timeout: float, min_rate: float) -> None:
        self.start = time.monotonic()
        self.timeout = timeout
        self.min_rate = min_rate
        self.received = 0

    def add(self, count: int) -> None:
        self.received += count

    def remaining(self) -> float:
        return self.start + self.timeout + self.received / self.min_rate - time.monotonic()


class DeadlineUnreader(SocketUnreader):  # type: ignore[misc]
    """gunicorn's socket reader, each recv() bounded by the request's deadline."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.deadline: Deadline | None = None

    def chunk(self, size_hint: int | None = None) -> bytes:
        deadline = self.deadline
        if deadline is None:
            return super().chunk(size_hint)  # type: ignore[no-any-return]
        remaining = deadline.remaining()
        if remaining <= 0:
            raise ReceiveTimeout()
        prior = self.sock.gettimeout()  # gunicorn's body drain sets one of its own
        self.sock.settimeout(remaining if not prior else min(prior, remaining))
        try:
            data: bytes = super().chunk(size_hint)
        except TimeoutError:
            if deadline.remaining() <= 0:
                raise ReceiveTimeout() from None
            raise
        finally:
            self.sock.settimeout(prior)
        deadline.add(len(data))
        return data


class Reception:
    """The bytes of one request received so far by the event loop, and its deadline."""

    def __init__(self, pending: bytes, deadline: Deadline, max_body: int) -> None:
        self.buf = bytearray(pending)
        self.deadline = deadline
        self.max_body = max_body
        self.registered = False
        self.continue_due = False  # the client waits for "100 Continue" before its body
        self.continue_sent = False

    def complete(self) -> bool:
        """Whether a thread can take over: the head and whole body are in, the buffer is
        full (the rest is read by the thread, under the same deadline), or the head alone
        declares a body the app refuses at once (413)."""
        buf = self.buf
        if len(buf) >= RECEPTION_BUFFER:
            return True
        end = buf.find(_HEAD_END)
        if end < 0:
            return False
        head = bytes(buf[: end + 2])
        body = bytes(buf[end + 4 :])
        if _CHUNKED.search(head):
            done = _LAST_CHUNK.search(body) is not None and body.endswith(b"\r\n\r\n")
        else:
            match = _CONTENT_LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            if length > self.max_body:
                return True
            done = len(body) >= length
        self.continue_due = (
            not done and not body and not self.continue_sent and _EXPECT.search(head) is not None
        )
        return done


def _setting(config: Any, name: str) -> float:
    value = config.get(name) if hasattr(config, "get") else None
    return float(value if value is not None else SETTINGS_BY_NAME[name].default)


class CanvasWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with reception off the thread pool, a receive deadline and Canvas's error shape."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receiving: dict[int, Any] = {}  # id(conn) -> conn, in the event loop's care
        self.stopping_at: float | None = None
        self.max_body = int(SETTINGS_BY_NAME["MAX_BODY_BYTES"].default)
        self.receive_timeout = float(SETTINGS_BY_NAME["RECEIVE_TIMEOUT"].default)
        self.receive_min_rate = float(SETTINGS_BY_NAME["RECEIVE_MIN_RATE"].default)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        config = getattr(self.wsgi, "config", None)  # type: ignore[has-type]  # wsgi:app's Flask app
        self.receive_timeout = _setting(config, "RECEIVE_TIMEOUT")
        self.receive_min_rate = _setting(config, "RECEIVE_MIN_RATE")
        self.max_body = int(_setting(config, "MAX_BODY_BYTES"))
        self.wsgi = partial(canvas_exact, self.wsgi)  # type: ignore[has-type]

    @property
    def _receives(self) -> bool:
        # TLS and HTTP/2 connections keep gthread's own handling.
        return not self.cfg.is_ssl and getattr(self.cfg, "http2_cleartext", "off") == "off"

    # The event loop's part: receive a request without a thread.

    def enqueue_req(self, conn: Any) -> None:
        if not self._receives:
            super().enqueue_req(conn)
            return
        pending = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        deadline = Deadline(self.receive_timeout, self.receive_min_rate)
        deadline.add(len(pending))
        conn.reception = Reception(pending, deadline, self.max_body)
        conn.sock.setblocking(False)
        if not self._receive_available(conn):
            conn.reception.registered = True
            self.receiving[id(conn)] = conn
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: Any, _fileobj: Any) -> None:
        self._receive_available(conn)

    def _receive_available(self, conn: Any) -> bool:
        """Read what the socket has; True once the request went to a thread or was dropped."""
        reception: Reception = conn.reception
        while not reception.complete():
            if reception.continue_due:  # gunicorn would say it only once a thread took over
                reception.continue_due, reception.continue_sent = False, True
                try:
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    pass
            try:
                data = conn.sock.recv(RECEPTION_BUFFER)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self._drop(conn)
                return True
            if not data:  # the client closed the connection (or its sending half)
                self._drop(conn, self._cut_short(conn, reception))
                return True
            reception.buf += data
            reception.deadline.add(len(data))
        self._stop_receiving(conn)
        conn.data_ready = True
        super().enqueue_req(conn)
        return True

    def _cut_short(self, conn: Any, reception: Reception) -> bytes:
        """The answer to a request whose client stopped sending before its end: never handed
        to the app, so nothing reaches Canvas; a client that only half-closed still hears a
        400 (issue 16). An idle connection closed between requests gets nothing."""
        if _HEAD_END not in reception.buf:
            return b""
        received = len(reception.buf)
        self.log.info(
            "request cut short: the client stopped sending after %d bytes; answered 400, "
            "nothing was sent to Canvas", received,
        )
        return error_bytes(
            400,
            "Bad Request",
            "the request body ended before its declared end (Content-Length, or the last "
            "chunk)" + _NOTHING_SENT,
        )

    def _stop_receiving(self, conn: Any) -> None:
        reception: Reception = conn.reception
        if reception.registered:
            reception.registered = False
            self.receiving.pop(id(conn), None)
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _drop(self, conn: Any, answer: bytes = b"") -> None:
        self._stop_receiving(conn)
        conn.reception = None
        if answer:
            try:
                conn.sock.send(answer)  # non-blocking, best effort: the client is slow
            except OSError:
                pass
        self.nr_conns -= 1
        conn.close()

    def murder_keepalived(self, force: bool = False) -> None:
        super().murder_keepalived(force)
        if not self.alive and self.stopping_at is None:
            self.stopping_at = time.monotonic()
        # A stopping worker gives requests still arriving as long as kept-alive connections.
        stopped = self.stopping_at is not None and time.monotonic() > self.stopping_at + 2
        for conn in list(self.receiving.values()):
            if force or stopped or conn.reception.deadline.remaining() <= 0:
                started = bool(conn.reception.buf)
                answer = error_bytes(*describe(ReceiveTimeout(), self.cfg)) if started else b""
                self._drop(conn, answer)

    # The thread's part.

    def handle(self, conn: Any) -> Any:
        reception: Reception | None = getattr(conn, "reception", None)
        if reception is not None:
            conn.reception = None
            conn.sock.setblocking(True)
            conn.init()
            unreader = conn.parser.unreader
            if not isinstance(unreader, DeadlineUnreader):
                unreader = conn.parser.unreader = DeadlineUnreader(conn.sock)
            unreader.deadline = reception.deadline
            unreader.unread(bytes(reception.buf))
        return super().handle(conn)

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        try:
            return bool(super()._keepalive_after(conn, keepalive))
        except ReceiveTimeout:  # draining an unread body ran out of time: close
            return False

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status, reason, message = describe(exc, self.cfg)
        if status >= 500:
            target = f"{req.method} {req.path}" if req is not None and req.path else "(no request)"
            self.log.exception("Error handling request %s", redact_tokens(target))
        else:
            ip = (addr or ("",))[0]
            detail = redact_tokens(f"{type(exc).__name__}: {exc}")[:300]
            self.log.warning("Invalid request from ip=%s: %s", ip, detail)
        try:
            util.write_nonblock(client, error_bytes(status, reason, message))
        except Exception:
            self.log.debug("Failed to send error message.")


# What the server answers itself, in Canvas's error shape. Nothing of the request is echoed.

_NOTHING_SENT = "; nothing was sent to Canvas"


def describe(exc: BaseException, cfg: Any) -> tuple[int, str, str]:
    """(status, reason, message) for an error found before the app saw the request."""
    e = http_errors
    if isinstance(exc, ReceiveTimeout):
        return 408, "Request Timeout", (
            "the request did not arrive in time (LEDGER_PROXY_RECEIVE_TIMEOUT)" + _NOTHING_SENT
        )
    if isinstance(exc, e.LimitRequestLine):
        return 414, "URI Too Long", (
            f"the request line is longer than {cfg.limit_request_line} bytes" + _NOTHING_SENT
        )
    if isinstance(exc, e.LimitRequestHeaders):
        return 431, "Request Header Fields Too Large", (
            f"the request headers are too large (at most {cfg.limit_request_fields} fields "
            f"of {cfg.limit_request_field_size} bytes each)" + _NOTHING_SENT
        )
    if isinstance(exc, (e.InvalidRequestLine, e.InvalidRequestMethod, e.InvalidHTTPVersion)):
        return 400, "Bad Request", (
            "malformed request line: it must be `METHOD /target HTTP/1.1`, the target "
            "printable ASCII without spaces (percent-encode other bytes)" + _NOTHING_SENT
        )
    if isinstance(exc, (e.InvalidHeader, e.InvalidHeaderName, e.ObsoleteFolding)):
        return 400, "Bad Request", "malformed request header" + _NOTHING_SENT
    if isinstance(exc, (e.InvalidChunkSize, e.ChunkMissingTerminator, e.InvalidChunkExtension)):
        return 400, "Bad Request", "malformed chunked request body" + _NOTHING_SENT
    if isinstance(exc, e.UnsupportedTransferCoding):
        return 501, "Not Implemented", "unsupported Transfer-Encoding" + _NOTHING_SENT
    if isinstance(exc, e.ExpectationFailed):
        return 417, "Expectation Failed", "unsupported Expect header" + _NOTHING_SENT
    if isinstance(exc, e.ForbiddenProxyRequest):
        return 403, "Forbidden", "request forbidden" + _NOTHING_SENT
    if isinstance(exc, (e.InvalidProxyLine, e.InvalidSchemeHeaders, e.InvalidH2CPreface)):
        return 400, "Bad Request", "malformed request" + _NOTHING_SENT
    return 500, "Internal Server Error", "ledger-proxy hit an internal error"


def error_bytes(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer in Canvas's error shape, closing the connection."""
    error_code = "internal_server_error" if status >= 500 else None
    body = json.dumps(error_body(message, error_code)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Date: {util.http_date()}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {JSON_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


# Canvas's headers, unchanged.


class CanvasResponse(Response):  # type: ignore[misc]
    """gunicorn's response, with the app's (Canvas's) Date and Server in place of gunicorn's.

    gunicorn counts both as hop-by-hop and drops them from what the app gives; it keeps its
    own for the proxy's own answers, which have none."""

    kept: dict[str, tuple[str, str]] = {}  # noqa: RUF012 - replaced per instance

    def process_headers(self, headers: list[tuple[str, str]]) -> None:
        headers = list(headers)
        super().process_headers(headers)  # validates every value first
        self.kept = {
            name.lower(): (name, value.strip(" \t"))
            for name, value in headers
            if name.lower() in ("date", "server")
        }

    def default_headers(self) -> list[str]:
        lines = []
        for line in super().default_headers():
            kept = self.kept.get(line.split(":", 1)[0].lower())
            lines.append(f"{kept[0]}: {kept[1]}\r\n" if kept else line)
        return lines


def _body_unread(body: Any) -> bool:
    """Whether part of the request body is neither read nor already received."""
    if body is None:
        return False
    if getattr(body, "failed", False):
        return True
    reader = getattr(body, "reader", None)
    if isinstance(reader, LengthReader):
        return bool(reader.length > len(reader.unreader.buf.getvalue()))
    if isinstance(reader, ChunkedReader):
        return reader.parser is not None
    return False


def canvas_exact(
    app: Callable[..., Iterable[bytes]], environ: dict[str, Any], start_response: Any
) -> Iterable[bytes]:
    """`app` with gunicorn's header rules bent to a transparent proxy's (see the module)."""

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        response = getattr(start_response, "__self__", None)
        if type(response) is Response:
            response.__class__ = CanvasResponse  # before it reads the app's headers
        write = start_response(status, headers, exc_info)
        if isinstance(response, Response) and _body_unread(environ.get("wsgi.input")):
            response.force_close()
        return write

    return app(environ, start)
