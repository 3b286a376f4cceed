"""The dashboard's sign-in flow at /ledger/: a pasted Canvas token or Canvas OAuth2; sign-out."""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from ..runtime import get_db, runtime
from ..upstream import oauth
from ..upstream.canvas import CANVAS_FAILURES, proxy_error, token_hash
from . import session as web_session
from .dashboard import error_page, install_page_hooks

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__, url_prefix="/ledger")
install_page_hooks(bp)


@bp.get("/login")
def login() -> Response:
    if web_session.signed_in() is not None:
        return redirect(_safe_next(request.args.get("next")))
    return _login_page(request.args.get("next"))


def _login_page(next_url: str | None, error: str | None = None, status: int = 200) -> Response:
    body = render_template(
        "dashboard/login.html",
        oauth=bool(current_app.config["OAUTH_CLIENT_ID"]),
        canvas_url=current_app.config["CANVAS_URL"],
        next_url=next_url or "",
        error=error,
    )
    return Response(body, status=status, content_type="text/html")


@bp.post("/login")
def login_submit() -> Response:
    next_url = request.form.get("next")
    config = current_app.config
    if config["OAUTH_CLIENT_ID"]:
        state = secrets.token_urlsafe(32)
        session["oauth"] = {"state": state, "next": _safe_next(next_url)}
        return redirect(
            oauth.authorize_url(
                config["CANVAS_URL"], config["OAUTH_CLIENT_ID"], _redirect_uri(), state
            )
        )
    token = (request.form.get("token") or "").strip()
    if not token:
        return _login_page(next_url, "Paste a Canvas access token.", 400)
    rt = runtime()
    try:
        # Canvas itself, never the identity cache: a revoked token must not sign in.
        actor = rt.confirmed_actor(get_db(), token, token_hash(rt.token_key, token))
    except CANVAS_FAILURES as exc:
        error = proxy_error(exc)
        return error_page(error.http_status, "Canvas did not answer", error.message)
    if actor is None:
        return _login_page(next_url, "Canvas did not accept this token.", 401)
    web_session.sign_in(token, actor.user_id, actor.name, expires_in=None, oauth=False)
    log.info("dashboard sign-in by Canvas user %s (token)", actor.user_id)
    return redirect(_safe_next(next_url))


@bp.get("/oauth/callback")
def oauth_callback() -> Response:
    pending = session.pop("oauth", None)
    state = request.args.get("state", "")
    if not isinstance(pending, dict) or not secrets.compare_digest(
        str(pending.get("state", "")).encode(), state.encode()
    ):
        return error_page(
            400,
            "Sign-in not recognised",
            "This sign-in did not start here, or it was already used. Sign in again.",
            sign_in=True,
        )
    if request.args.get("error"):
        reason = request.args.get("error_description") or request.args["error"]
        return error_page(
            403, "Sign-in refused", f"Canvas did not sign you in: {reason}", sign_in=True
        )
    config = current_app.config
    try:
        grant = oauth.exchange_code(
            runtime().canvas,
            config["OAUTH_CLIENT_ID"],
            config["OAUTH_CLIENT_SECRET"],
            _redirect_uri(),
            request.args.get("code", ""),
        )
    except oauth.OAuthRefused as refused:
        return error_page(
            400, "Sign-in refused", f"Canvas refused the sign-in: {refused.message}", sign_in=True
        )
    except CANVAS_FAILURES as exc:
        error = proxy_error(exc)
        return error_page(error.http_status, "Canvas did not answer", error.message)
    web_session.sign_in(
        grant.access_token, grant.user_id, grant.user_name, expires_in=grant.expires_in, oauth=True
    )
    log.info("dashboard sign-in by Canvas user %s (OAuth2)", grant.user_id)
    return redirect(_safe_next(pending.get("next")))


@bp.post("/logout")
def logout() -> Response:
    signed = web_session.signed_in()
    if signed is not None and signed.oauth:
        # A token made for this session only: ask Canvas to forget it. A pasted token is the
        # admin's own, and stays theirs.
        oauth.revoke(runtime().canvas, signed.token)
    web_session.sign_out()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def _redirect_uri() -> str:
    return url_for("auth.oauth_callback", _external=True)


def _safe_next(next_url: Any) -> str:
    """Where to go after signing in: a dashboard page of this site, never elsewhere."""
    home = url_for("dashboard.index")
    if not isinstance(next_url, str) or not next_url.startswith(home):
        return home
    if any(ord(char) < 32 or ord(char) == 127 for char in next_url):
        return home  # CR/LF would split the Location header; browsers drop tabs from URLs
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc or "\\" in next_url or "//" in parts.path:
        return home
    return next_url
