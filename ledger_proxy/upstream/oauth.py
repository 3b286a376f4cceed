"""Canvas OAuth2 for the dashboard: the authorize URL, the code exchange, revocation (no Flask).

Canvas's flow (https://canvas.instructure.com/doc/api/file.oauth.html): send the browser to
`/login/oauth2/auth?client_id&response_type=code&redirect_uri&state`; Canvas sends it back to
`redirect_uri?code&state`; `POST /login/oauth2/token` with `grant_type=authorization_code`
turns the code into an access token; `DELETE /login/oauth2/token` revokes it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from .canvas import USER_AGENT, CanvasClient, CanvasTimeout, CanvasUnreachable, describe


class OAuthRefused(Exception):
    """Canvas answered the code exchange, but not with a token; `message` is Canvas's own."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Grant:
    access_token: str
    user_id: int
    user_name: str | None
    expires_in: float | None


def authorize_url(canvas_url: str, client_id: str, redirect_uri: str, state: str) -> str:
    query = urlencode(
        {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return f"{canvas_url}/login/oauth2/auth?{query}"


def exchange_code(
    canvas: CanvasClient, client_id: str, client_secret: str, redirect_uri: str, code: str
) -> Grant:
    """The access token for `code`. OAuthRefused when Canvas says no; CanvasUnreachable or
    CanvasTimeout when it gives no answer (neither carries the code or the secret)."""
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uri": redirect_uri,
        "code": code,
    }
    try:
        response = canvas.session.post(
            f"{canvas.base_url}/login/oauth2/token",
            data=form,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=canvas.timeout,
            allow_redirects=False,
        )
    except requests.ConnectionError as exc:
        raise CanvasUnreachable(describe(exc)) from None
    except requests.RequestException as exc:
        raise CanvasTimeout(describe(exc)) from None
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        raise OAuthRefused(response.status_code, _oauth_error(body, response.status_code))
    try:
        user = body.get("user") or {}
        expires_in = body.get("expires_in")
        return Grant(
            access_token=str(body["access_token"]),
            user_id=int(user["id"]),
            user_name=user.get("name"),
            expires_in=float(expires_in) if expires_in is not None else None,
        )
    except (KeyError, TypeError, ValueError):
        raise OAuthRefused(502, "Canvas answered the token request without a token") from None


def revoke(canvas: CanvasClient, token: str) -> bool:
    """Ask Canvas to forget an OAuth2 token (sign-out). True when Canvas confirmed it."""
    try:
        response = canvas.session.delete(
            f"{canvas.base_url}/login/oauth2/token",
            headers={"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT},
            timeout=canvas.timeout,
            allow_redirects=False,
        )
    except requests.RequestException:
        return False
    with contextlib.closing(response):
        return response.status_code == 200


def _oauth_error(body: Any, status: int) -> str:
    if isinstance(body, dict):
        description = body.get("error_description") or body.get("error")
        if isinstance(description, str) and description:
            return description
    return f"Canvas refused the sign-in (HTTP {status})"
