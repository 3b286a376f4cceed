"""WSGI layer in front of the simulator's API: raw request log, latency, faults and throttling."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote

from ledger_proxy.simulator.errors import internal_error_body
from ledger_proxy.simulator.models import iso
from ledger_proxy.simulator.state import FaultRule, SimulatorState

API_PREFIX = "/api/"
CONTEXT_ID_KEY = "canvas_simulator.request_context_id"
RAW_PATH_KEY = "canvas_simulator.raw_path"
METHOD_OVERRIDE_ORIGINAL = "rack.methodoverride.original_method"
RACK_METHODS = frozenset(
    {"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "LINK", "UNLINK"}
)
THROTTLE_BODIES = {
    403: b"403 Forbidden (Rate Limit Exceeded)\n",
    429: b"429 Too Many Requests (Rate Limit Exceeded)\n",
}
STATUS_TEXT = {403: "Forbidden", 429: "Too Many Requests", 500: "Internal Server Error"}

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Response = tuple[str, list[tuple[str, str]], bytes]


class ConnectionDropped(ConnectionAbortedError):
    """Raised after the socket is shut down, so the server writes nothing at all."""


def ruby_float(value: float) -> str:
    """Ruby `Float#to_s` for the rate-limit headers: `600.0`, `-3.2`, `1.0e-05`."""
    text = repr(float(value))
    if "e" in text:
        mantissa, exponent = text.split("e")
        mantissa = mantissa if "." in mantissa else f"{mantissa}.0"
        return f"{mantissa}e{exponent}"
    return text


class SimulatorMiddleware:
    """Wraps the Flask app; only `/api/` requests are logged, slowed, faulted or throttled."""

    def __init__(self, app: WsgiApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raw_path, _, _ = _raw_target(environ).partition("?")
        if not raw_path.startswith(API_PREFIX):
            return self.app(environ, start_response)
        body, complete = _read_body(environ)
        context_id = str(uuid.uuid4())
        environ[CONTEXT_ID_KEY] = context_id
        environ[RAW_PATH_KEY] = raw_path
        environ["PATH_INFO"] = raw_path  # keep %2F inside SIS ids; the views unquote segments
        entry = _log_entry(environ, raw_path, body, context_id)
        entry["at"] = iso(self.state.now())
        entry["complete"] = complete
        if complete:
            _method_override(environ, body)
            status, headers, payload = self._respond(environ, raw_path, entry)
        else:
            # Canvas's front end never hands a request whose body was cut short to Rails.
            status, headers, payload = _incomplete_body(context_id)
        entry["status"] = int(status.split()[0])
        self.state.log_request(entry)
        start_response(status, headers)
        return [payload]

    def _respond(self, environ: dict[str, Any], path: str, entry: dict[str, Any]) -> Response:
        method = environ.get("REQUEST_METHOD", "GET")
        context_id = environ[CONTEXT_ID_KEY]
        settings = self.state.settings
        if settings.latency_seconds > 0:
            time.sleep(settings.latency_seconds)
        early = self._apply_faults(environ, method, path, "before", entry, None)
        if early is not None:
            return early
        if settings.throttle in THROTTLE_BODIES:
            entry["fault"] = "throttle_mode"
            return self._throttled(settings.throttle, context_id)
        response = _call(self.app, environ)
        late = self._apply_faults(environ, method, path, "after", entry, response)
        return late if late is not None else response

    def _apply_faults(
        self, environ: dict[str, Any], method: str, path: str, when: str,
        entry: dict[str, Any], response: Response | None,
    ) -> Response | None:
        for rule in self.state.take_faults(method, path, when):
            entry.setdefault("faults", []).append(f"{rule.action}:{when}")
            if rule.action == "delay":
                time.sleep(max(rule.seconds, 0.0))
            elif rule.action == "drop":
                self.state.log_request(entry)  # before the client can notice the drop
                _drop_connection(environ)
            elif rule.action == "error":
                return self._error(rule, environ[CONTEXT_ID_KEY])
            elif rule.action == "throttle":
                return self._throttled(rule.status or 403, environ[CONTEXT_ID_KEY])
        return response

    def _error(self, rule: FaultRule, context_id: str) -> Response:
        status = rule.status or 500
        body = json.dumps(internal_error_body(self.state.next_error_report_id()))
        headers = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *self._rate_headers(context_id, include_cost=True),
        ]
        return f"{status} {STATUS_TEXT.get(status, 'Error')}", headers, body.encode()

    def _throttled(self, status: int, context_id: str) -> Response:
        body = THROTTLE_BODIES.get(status, THROTTLE_BODIES[403])
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("X-Request-Context-Id", context_id),
            ("X-Rate-Limit-Remaining", ruby_float(self.state.settings.throttled_remaining)),
        ]
        return f"{status} {STATUS_TEXT.get(status, 'Forbidden')}", headers, body

    def _rate_headers(self, context_id: str, include_cost: bool) -> list[tuple[str, str]]:
        headers = [("X-Request-Context-Id", context_id)]
        if include_cost:
            headers.append(("X-Request-Cost", ruby_float(self.state.settings.request_cost)))
        remaining = ruby_float(self.state.settings.rate_limit_remaining)
        return [*headers, ("X-Rate-Limit-Remaining", remaining)]


def _call(app: WsgiApp, environ: dict[str, Any]) -> Response:
    """Run the inner app to completion and buffer its response."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, list(headers)
        return lambda data: None

    result = app(environ, start_response)
    try:
        payload = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return captured["status"], captured["headers"], payload


def _drop_connection(environ: dict[str, Any]) -> None:
    """Close the client's TCP connection without writing any HTTP response."""
    sock = environ.get("werkzeug.socket") or environ.get("gunicorn.socket")
    if sock is None:
        raise RuntimeError("drop faults need a server that exposes its socket (werkzeug)")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    raise ConnectionDropped("connection dropped by a /_sim/faults rule")


def _raw_target(environ: dict[str, Any]) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if "://" in raw.split("?", 1)[0]:  # absolute-form request target
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        return str(raw)
    query = environ.get("QUERY_STRING", "")
    path = quote(environ.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=-._~")
    return f"{path}?{query}" if query else path


def _read_body(environ: dict[str, Any]) -> tuple[bytes, bool]:
    """Read the whole request body once and put a re-readable copy back for the app.

    The flag is False when the body ended before its Content-Length or its chunked encoding
    broke off (the client went away mid-request): such a request is logged, never acted on.
    """
    stream = environ.get("wsgi.input")
    if stream is None:
        return b"", True
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    complete = True
    try:
        if environ.get("wsgi.input_terminated"):
            body = stream.read()
        else:
            body = stream.read(length) if length > 0 else b""
    except Exception:  # the server's own error for a broken chunked body or a lost client
        body, complete = b"", False
    if length and len(body) < length:
        complete = False
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)
    return body, complete


def _method_override(environ: dict[str, Any], body: bytes) -> None:
    """Rack::MethodOverride, which Rails runs before routing: a POST becomes the method named
    by `_method` in its form body (form, multipart, or no Content-Type), else by the
    X-HTTP-Method-Override header."""
    if environ.get("REQUEST_METHOD") != "POST":
        return
    mimetype = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    override = None
    if mimetype in ("", "application/x-www-form-urlencoded"):
        pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        override = next((value for key, value in reversed(pairs) if key == "_method"), None)
    elif mimetype == "multipart/form-data":
        override = _multipart_method(environ, body)
    override = override or environ.get("HTTP_X_HTTP_METHOD_OVERRIDE")
    if override and override.upper() in RACK_METHODS:
        environ[METHOD_OVERRIDE_ORIGINAL] = "POST"
        environ["REQUEST_METHOD"] = override.upper()


def _multipart_method(environ: dict[str, Any], body: bytes) -> str | None:
    from werkzeug.formparser import parse_form_data

    copy = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
    try:
        _, form, files = parse_form_data(copy, silent=True)
    except Exception:
        return None
    for upload in files.values():
        upload.close()
    value = form.get("_method")
    return str(value) if value else None


def _incomplete_body(context_id: str) -> Response:
    body = json.dumps({"errors": [{"message": "the request body was incomplete"}]}).encode()
    headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("X-Request-Context-Id", context_id),
    ]
    return "400 Bad Request", headers, body


def request_headers(environ: dict[str, Any]) -> list[list[str]]:
    """The request headers in arrival order; names are rebuilt from the WSGI environ."""
    pairs = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        pairs.append(["-".join(part.capitalize() for part in name.split("_")), str(value)])
    return pairs


def _log_entry(
    environ: dict[str, Any], raw_path: str, body: bytes, context_id: str,
) -> dict[str, Any]:
    raw_target = _raw_target(environ)
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    return {
        "at": None,
        "method": environ.get("REQUEST_METHOD", "GET"),
        "path": raw_path,
        "query_string": raw_target.partition("?")[2],
        "headers": request_headers(environ),
        "body": text,
        "body_base64": encoded,
        "request_context_id": context_id,
        "status": None,
    }
