"""The dashboard's sign-in: a Canvas token kept encrypted inside Flask's signed session cookie.

Flask's session cookie is signed, not encrypted: anyone holding it can read what it carries.
The Canvas token therefore goes in encrypted (Fernet: AES-128-CBC plus HMAC-SHA256, with a
key derived from SECRET_KEY by HKDF), so the cookie is useless to a reader who lacks the key,
and nothing about a signed-in user is stored on the server (the ledger never holds a raw token,
and any worker can serve any request) until they sign out: the ledger then remembers the
session's random id until the session would have expired, so that a copy of the cookie
replayed afterwards is signed out too. The cookie is HttpOnly, SameSite=Lax, Secure unless
LEDGER_PROXY_SESSION_COOKIE_SECURE=false, and scoped to /ledger so that it never reaches the
forwarded /api/ paths (and from there Canvas).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app, request, session
from flask.sessions import SecureCookieSessionInterface

from .. import config
from ..core import ledger
from ..runtime import get_db, runtime
from ..upstream.canvas import token_hash

# A sign-in lasts at most this long (less when Canvas says its OAuth token expires sooner).
SESSION_LIFETIME = timedelta(hours=8)
COOKIE_NAME = "ledger_session"
_KEY_INFO = b"ledger-proxy dashboard session: Canvas token encryption v1"


@dataclass(frozen=True)
class SignedIn:
    token: str
    user_id: int
    user_name: str | None
    expires_at: float
    oauth: bool  # obtained through OAuth2 (so the dashboard may revoke it on sign-out)
    session_id: str = ""


def configure(app: Flask) -> None:
    """Session settings: signing key (configured or generated once), cookie flags and scope."""
    app.config["SECRET_KEY"] = config.secret_key(app.config, app.instance_path)
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.session_interface = _LedgerSessionInterface()
    if bool(app.config["OAUTH_CLIENT_ID"]) != bool(app.config["OAUTH_CLIENT_SECRET"]):
        raise config.ConfigError(
            "LEDGER_PROXY_OAUTH_CLIENT_ID and LEDGER_PROXY_OAUTH_CLIENT_SECRET go together: "
            "set both (a Canvas developer key) or neither (the dashboard then asks for a token)"
        )


class _LedgerSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the cookie scoped to <mount point>/ledger."""

    def get_cookie_path(self, app: Flask) -> str:
        # request.script_root follows a prefix set by a reverse proxy (TRUSTED_PROXIES).
        return request.script_root + "/ledger"


def _fernet() -> Fernet:
    secret = current_app.secret_key
    raw = secret.encode() if isinstance(secret, str) else bytes(secret or b"")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(raw)
    return Fernet(base64.urlsafe_b64encode(key))


def sign_in(
    token: str, user_id: int, user_name: str | None, *, expires_in: float | None, oauth: bool
) -> None:
    """Start a fresh session for this Canvas user (a new CSRF token: no session fixation)."""
    lifetime = SESSION_LIFETIME.total_seconds()
    if expires_in is not None and expires_in > 0:
        lifetime = min(lifetime, expires_in)
    secret = {
        "token": token,
        "expires_at": time.time() + lifetime,
        "oauth": oauth,
        "sid": secrets.token_urlsafe(16),
    }
    session.clear()
    session.permanent = True
    session["canvas"] = _fernet().encrypt(json.dumps(secret).encode()).decode()
    session["user"] = {"id": user_id, "name": user_name}
    session["csrf"] = secrets.token_urlsafe(32)


def signed_in() -> SignedIn | None:
    """The signed-in Canvas user and token, or None (no session, expired, or a stale key)."""
    sealed = session.get("canvas")
    user = session.get("user")
    if not isinstance(sealed, str) or not isinstance(user, dict):
        return None
    try:
        secret: dict[str, Any] = json.loads(
            _fernet().decrypt(sealed.encode(), ttl=int(SESSION_LIFETIME.total_seconds()))
        )
    except (InvalidToken, ValueError):
        return None
    if secret["expires_at"] <= time.time():
        return None
    session_id = secret.get("sid")
    if not isinstance(session_id, str) or ledger.session_ended(get_db(), session_id):
        return None  # signed out (or a cookie from before sessions had ids)
    return SignedIn(
        secret["token"],
        int(user["id"]),
        user.get("name"),
        secret["expires_at"],
        secret["oauth"],
        session_id,
    )


def session_token() -> str | None:
    return found.token if (found := signed_in()) else None


def sign_out() -> None:
    """End the session for good: its id is remembered as signed out until it would have
    expired, and the token's identity cache entries are dropped."""
    found = signed_in()
    if found is not None:
        db = get_db()
        ledger.end_session(db, found.session_id, datetime.fromtimestamp(found.expires_at, UTC))
        rt = runtime()
        rt.forget(db, token_hash(rt.token_key, found.token))
    session.clear()


def csrf_token() -> str:
    """This session's CSRF token, for the hidden field of every form that changes state."""
    if not isinstance(session.get("csrf"), str):
        session["csrf"] = secrets.token_urlsafe(32)
    token: str = session["csrf"]
    return token


def csrf_ok(submitted: str | None) -> bool:
    expected = session.get("csrf")
    return (
        isinstance(expected, str)
        and isinstance(submitted, str)
        and secrets.compare_digest(expected.encode(), submitted.encode())
    )
