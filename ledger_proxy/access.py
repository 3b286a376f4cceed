"""Who may call the proxy's own API (/ledger/v1/): a Canvas token, resolved by Canvas itself."""

from __future__ import annotations

from flask import current_app, request

from . import ledger
from .canvas import (
    CanvasConnectionLost,
    CanvasTimeout,
    CanvasUnreachable,
    bearer_token,
    token_hash,
)
from .db import get_db
from .errors import ProxyError, forbidden, invalid_token, unauthenticated
from .runtime import runtime


def caller_token() -> str:
    """The caller's Canvas token: `Authorization: Bearer`, else an access_token parameter."""
    token = bearer_token(request.headers.get("Authorization")) or request.args.get("access_token")
    if not token:
        raise unauthenticated()
    return token


def caller() -> tuple[str, ledger.Actor]:
    """(token, the Canvas user behind it), asking Canvas once and caching as the proxy does."""
    token = caller_token()
    rt = runtime()
    try:
        actor = rt.actor_for(get_db(), token, token_hash(rt.token_key, token))
    except CanvasUnreachable:
        raise ProxyError(502, "Canvas could not be reached to check the token") from None
    except (CanvasTimeout, CanvasConnectionLost):
        raise ProxyError(504, "Canvas did not answer in time to check the token") from None
    if actor is None:
        raise invalid_token()
    return token, actor


def require_admin() -> ledger.Actor:
    """The caller, if their Canvas user id is in LEDGER_PROXY_ADMIN_USER_IDS; else 403."""
    _, actor = caller()
    if actor.user_id not in current_app.config["ADMIN_USER_IDS"]:
        raise forbidden()
    return actor
