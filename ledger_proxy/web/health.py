"""Operations: /healthz, /readyz, /metrics, and the per-request metrics and access log."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from typing import Any, cast

import requests
from flask import Blueprint, Flask, current_app, g, jsonify, request
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response

from ..core import ledger
from ..ops import logs, metrics
from ..upstream.canvas import USER_AGENT, describe
from ..errors import error_response
from ..runtime import runtime

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

# A probe must answer well inside a load balancer's or kubelet's own timeout.
READY_TIMEOUT = 2.0


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    metrics.init_app(cast(Flask, state.app))
    logs.init_app()


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and serving (nothing else is checked)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready for traffic: the ledger takes a write, and Canvas answers HTTP at all."""
    checks = {
        "ledger": ledger_writable(current_app.config["DATABASE"]),
        "canvas": canvas_answers(
            runtime().canvas.base_url, min(READY_TIMEOUT, current_app.config["CONNECT_TIMEOUT"])
        ),
    }
    failing = [name for name, check in checks.items() if not check["ok"]]
    if failing:
        message = "not ready: " + "; ".join(f"{name}: {checks[name]['error']}" for name in failing)
        return error_response(503, message, status="unavailable", failing=failing, checks=checks)
    return jsonify(status="ok", checks=checks)


@bp.get("/metrics")
def metrics_view() -> Response:
    registry = metrics.current()
    assert registry is not None  # installed with this blueprint
    return Response(registry.exposition(), content_type=metrics.CONTENT_TYPE)


def ledger_writable(database: str) -> dict[str, Any]:
    """A write transaction on the ledger, rolled back: the file, its lock and schema work."""
    started = time.perf_counter()
    try:
        ledger.check_writable(database, timeout=READY_TIMEOUT)
    except sqlite3.Error as exc:
        return {"ok": False, "error": f"the ledger cannot be written ({exc})"}
    return {"ok": True, "duration_ms": _ms_since(started)}


def canvas_answers(base_url: str, timeout: float) -> dict[str, Any]:
    """GET /api/v1/users/self without a token: any HTTP answer (401 is usual) means reachable."""
    started = time.perf_counter()
    session = requests.Session()
    session.trust_env = False  # as for forwarded traffic: never through an environment proxy
    try:
        response = session.get(
            f"{base_url}/api/v1/users/self",
            headers={"User-Agent": USER_AGENT},
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        )
        response.close()
    except requests.RequestException as exc:
        return {"ok": False, "error": f"Canvas gave no HTTP answer ({describe(exc)})"}
    finally:
        session.close()
    return {"ok": True, "http_status": response.status_code, "duration_ms": _ms_since(started)}


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


# Every request: metrics and one access-log line


@bp.before_app_request
def _start_clock() -> None:
    g.ledger_proxy_started = time.perf_counter()


@bp.after_app_request
def _observe(response: Response) -> Response:
    try:
        _count(response)
        _log_when_sent(response)
    except Exception:  # instrumentation must never cost a client its answer
        log.exception("metrics or access log failed for one request")
    return response


def _count(response: Response) -> None:
    registry = metrics.current()
    if registry is None:
        return
    status = response.status_code
    if request.blueprint == "proxy":
        registry.forwarded.labels(request.method, str(status)).inc()
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


def _log_when_sent(response: Response) -> None:
    started = g.pop("ledger_proxy_started", None) or time.perf_counter()
    fields = logs.access_fields(request, response)
    status = response.status_code
    if response.is_sequence or request.method == "HEAD" or status < 200 or status in (204, 304):
        # Built in full, or no body will be sent: the time so far is the request's time.
        logs.write_access_line(fields, time.perf_counter() - started)
        return

    def write() -> None:  # streamed: once the server has sent the body (or given up)
        logs.write_access_line(fields, time.perf_counter() - started)

    response.call_on_close(write)
