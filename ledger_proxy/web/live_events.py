"""POST /ledger/v1/live-events: the Canvas Data Services HTTPS subscription's endpoint.

Each body is one JWT signed by Instructure; its signature is the authentication (no Canvas
token is asked for: Canvas sends none), so nothing is stored unless it verifies against the
JWKS of LEDGER_PROXY_LIVE_EVENTS_JWKS. docs/live-events.md and docs/security.md say more.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from ..core import live_store
from ..core.live_events import MalformedEvent
from ..errors import ProxyError
from ..runtime import recording_db, runtime
from ..upstream.jwks import (
    InvalidEventSignature,
    JwksUnavailable,
    MalformedEventToken,
    read_event_body,
)

bp = Blueprint("live_events", __name__, url_prefix="/ledger/v1")

# Canvas's enrollment events are a few kilobytes; anything far larger is not one of them, and
# reading it would only cost memory (docs/security.md).
MAX_EVENT_BYTES = 256 * 1024


@bp.post("/live-events")
def receive() -> tuple[Response, int]:
    verifier = runtime().live_events
    if verifier is None:
        # 404, not 503: nothing is down, the endpoint is simply not in use on this proxy.
        raise ProxyError(
            404,
            "Live Events are not configured on this proxy: set LEDGER_PROXY_LIVE_EVENTS_JWKS "
            "to the JWKS that signs them (docs/live-events.md)",
            error_code="live_events_not_configured",
        )
    body = _body()
    try:
        document = read_event_body(body, verifier)
        outcome = live_store.receive(recording_db(), document, live_store.HTTPS)
    except InvalidEventSignature as exc:
        raise ProxyError(401, f"the event was not accepted: {exc}") from None
    except (MalformedEventToken, MalformedEvent) as exc:
        raise ProxyError(400, f"the event could not be read: {exc}") from None
    except JwksUnavailable as exc:
        raise ProxyError(503, f"the event could not be verified now: {exc}") from None
    return jsonify({"status": outcome}), 200


def _body() -> bytes:
    length = request.content_length
    if length is not None and length > MAX_EVENT_BYTES:
        raise ProxyError(413, f"a Live Event is at most {MAX_EVENT_BYTES} bytes")
    try:
        body = request.stream.read(MAX_EVENT_BYTES + 1)
    except Exception as exc:  # the server's own parse errors, a dropped client
        raise ProxyError(400, f"the request body broke off ({type(exc).__name__})") from None
    if len(body) > MAX_EVENT_BYTES:
        raise ProxyError(413, f"a Live Event is at most {MAX_EVENT_BYTES} bytes")
    if length is not None and len(body) < length:
        raise ProxyError(400, f"the request body ended after {len(body)} of its {length} bytes")
    return body
