"""Who may call the proxy's own API (/ledger/v1/): a Canvas token, resolved by Canvas itself."""

from __future__ import annotations

from flask import current_app, request

from ..core import ledger
from ..errors import forbidden, invalid_token, unauthenticated
from ..runtime import get_db, runtime
from ..upstream.canvas import CANVAS_FAILURES, bearer_token, proxy_error, token_hash
from . import session as web_session


def caller_token() -> str:
    """The caller's Canvas token: `Authorization: Bearer`, else an access_token parameter,
    else (reads only, so a signed-in browser can follow the dashboard's export link) the
    dashboard's session."""
    token = bearer_token(request.headers.get("Authorization")) or request.args.get("access_token")
    if not token and request.method in ("GET", "HEAD"):
        token = web_session.session_token()
    if not token:
        raise unauthenticated()
    return token


def caller(*, confirmed: bool = False) -> tuple[str, ledger.Actor]:
    """(token, the Canvas user behind it), asking Canvas once and caching as the proxy does;
    `confirmed`: as Canvas says now (seconds of cache at most, see Runtime.confirmed_actor)."""
    token = caller_token()
    rt = runtime()
    resolve = rt.confirmed_actor if confirmed else rt.actor_for
    try:
        actor = resolve(get_db(), token, token_hash(rt.token_key, token))
    except CANVAS_FAILURES as exc:
        raise proxy_error(exc) from None
    if actor is None:
        raise invalid_token()
    return token, actor


def require_admin() -> ledger.Actor:
    """The caller, if their Canvas user id is in LEDGER_PROXY_ADMIN_USER_IDS; else 403.
    Canvas confirms the token (a revoked one loses admin access at once)."""
    _, actor = caller(confirmed=True)
    if actor.user_id not in current_app.config["ADMIN_USER_IDS"]:
        raise forbidden()
    return actor
