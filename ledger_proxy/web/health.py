"""Operations' endpoints: /healthz, /readyz, /metrics (the instrumentation is ops.instrument)."""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

import requests
from flask import Blueprint, current_app, jsonify
from werkzeug.wrappers import Response

from ..core import ledger
from ..errors import error_response
from ..ops import metrics
from ..runtime import runtime
from ..upstream.canvas import SELF, USER_AGENT, describe

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

# A probe must answer well inside a load balancer's or kubelet's own timeout.
READY_TIMEOUT = 2.0


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
    assert registry is not None  # installed by create_app (ops.instrument)
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
            base_url + SELF,
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
