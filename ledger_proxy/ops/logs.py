"""One JSON access-log line per request (logger ``ledger_proxy.access``), never a token.

A line names the method, the path without its query string (where Canvas tokens travel), the
status, the duration, the proxy's request id, Canvas's request id and the integration. No
header or parameter value is logged, so a token cannot reach the log by any of the three ways
Canvas accepts one (``Authorization``, ``?access_token=``, a form field).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from werkzeug.wrappers import Request, Response

from ..upstream.forwarding import INTEGRATION_HEADER, LABEL_PATTERN, REQUEST_ID_HEADER

ACCESS_LOGGER = "ledger_proxy.access"
CANVAS_REQUEST_ID_HEADER = "X-Request-Context-Id"
MAX_PATH = 2048

access_log = logging.getLogger(ACCESS_LOGGER)

_TOKEN_PARAM = re.compile(r"((?:access_token|api_key)=)[^&\s]*", re.IGNORECASE)


def redact_tokens(text: str) -> str:
    """`text` with the values of access_token/api_key parameters replaced by [REDACTED]."""
    return _TOKEN_PARAM.sub(r"\1[REDACTED]", text)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class RedactTokens(logging.Filter):
    """Removes access_token values from a record's text: urllib3 logs each upstream URL, query
    included, at DEBUG, so an operator's DEBUG root logger would otherwise write tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:  # formatters use exc_text when it is set
            record.exc_text = redact_tokens(logging.Formatter().formatException(record.exc_info))
        return True


# Loggers of libraries that may write a forwarded URL (with its query string); gunicorn's
# error log quotes a malformed request line whole.
URL_LOGGERS = ("urllib3.connectionpool", "werkzeug", "gunicorn.error")


def init_app() -> None:
    """Give the access logger its own handler once per process: each line is already JSON.

    It does not propagate, so a root handler (gunicorn's, an operator's) never doubles it; to
    send the lines elsewhere, configure the ``ledger_proxy.access`` logger itself.
    """
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactTokens) for existing in logger.filters):
            logger.addFilter(RedactTokens())
    if not any(getattr(handler, "_ledger_proxy", False) for handler in access_log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._ledger_proxy = True  # type: ignore[attr-defined]
        access_log.addHandler(handler)
    access_log.propagate = False


def raw_path(request: Request) -> str:
    """The path as the client sent it, without the query string (and never a token)."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or (
        request.script_root + request.path
    )
    path = str(raw).split("?", 1)[0].split("#", 1)[0]
    return redact_tokens(path)[:MAX_PATH]


def integration(request: Request, label: str | None = None) -> str | None:
    """The integration label the request named (path or header), if it is a valid one. The
    path's label comes from Flask's view arguments, or is given (the lean path has none)."""
    if label is None:
        label = (getattr(request, "view_args", None) or {}).get("label")
    for given in (label, request.headers.get(INTEGRATION_HEADER)):
        if isinstance(given, str) and LABEL_PATTERN.fullmatch(given):
            return given
    return None


def access_fields(
    request: Request, response: Response, label: str | None = None
) -> dict[str, Any]:
    """The line's fields, taken while the request is at hand; the duration is set when sent."""
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "logger": ACCESS_LOGGER,
        "method": request.method,
        "path": raw_path(request),
        "status": response.status_code,
        "duration_ms": None,
        "request_id": response.headers.get(REQUEST_ID_HEADER),
        "canvas_request_id": response.headers.get(CANVAS_REQUEST_ID_HEADER),
        "integration": integration(request, label),
        "remote_addr": request.remote_addr,
    }


_to_json = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps' bytes, built once


def write_access_line(fields: dict[str, Any], duration: float) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields["duration_ms"] = round(duration * 1000, 3)
    # The record is made here and handed to the logger's handlers and filters as info() would,
    # without its walk up the stack for the caller's file and line, which no access line
    # prints: that walk was most of the line's cost (issue 12).
    record = access_log.makeRecord(
        access_log.name, logging.INFO, __file__, 0, _to_json(fields), (), None
    )
    access_log.handle(record)
