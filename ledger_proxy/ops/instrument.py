"""The per-request instrumentation: Prometheus counters and one JSON access-log line.

create_app installs it explicitly (`init_app`); nothing is instrumented as a side effect of
registering a blueprint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import cast

from flask import Flask, g, request
from werkzeug.wrappers import Request, Response

from . import logs, metrics

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Metrics for this app, the access log's handler, and the hooks that feed both."""
    metrics.init_app(app)
    logs.init_app()
    app.before_request(_start_clock)
    app.after_request(_observe)


# Every request: metrics and one access-log line


def _start_clock() -> None:
    g.ledger_proxy_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("ledger_proxy_started", None) or time.perf_counter()
    observe(metrics.current(), request, response, started, proxied=request.blueprint == "proxy")
    return response


def observe(
    registry: metrics.Metrics | None,
    request: Request,
    response: Response,
    started: float,
    *,
    proxied: bool,
    label: str | None = None,
) -> None:
    """Count the response and write its access-log line (once it is sent, when streamed).

    Called by the Flask hook above and by the lean path (web/fastpath.py), which has no
    request context: everything it needs is given.
    """
    try:
        _count(registry, request.method, response, proxied=proxied)
        _log_when_sent(request, response, started, label)
    except Exception:  # instrumentation must never cost a client its answer
        log.exception("metrics or access log failed for one request")


def _count(
    registry: metrics.Metrics | None, method: str, response: Response, *, proxied: bool
) -> None:
    if registry is None:
        return
    status = response.status_code
    if proxied:
        registry.forwarded.labels(method, str(status)).inc()
    # The proxy never answers 429 or "Rate Limit Exceeded" itself: these are Canvas's.
    if status == 429:
        registry.throttled.labels("429").inc()
    elif status == 403:
        encoding = response.headers.get("Content-Encoding")
        if response.is_sequence:
            if metrics.says_rate_limited(response.get_data()[: metrics.SNIFF_BYTES], encoding):
                registry.throttled.labels("403").inc()
        else:  # streamed through: look at the body as it goes by
            body = cast(Iterable[bytes], response.response)
            response.response = metrics.sniff_throttled(body, encoding, registry)


def _log_when_sent(
    request: Request, response: Response, started: float, label: str | None
) -> None:
    fields = logs.access_fields(request, response, label)
    status = response.status_code
    if response.is_sequence or request.method == "HEAD" or status < 200 or status in (204, 304):
        # Built in full, or no body will be sent: the time so far is the request's time.
        logs.write_access_line(fields, time.perf_counter() - started)
        return

    def write() -> None:  # streamed: once the server has sent the body (or given up)
        logs.write_access_line(fields, time.perf_counter() - started)

    response.call_on_close(write)
