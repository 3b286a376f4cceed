"""Canvas's OAuth2 endpoints (`/login/oauth2/...`) and their test controls (`/_sim/oauth/...`).

The flow and error bodies follow Canvas's `Canvas::Oauth::RequestError`; there is no Canvas
login page: a test picks the approving user through `/_sim/oauth/approve_as` (or `login_as`
on the authorize URL), and otherwise a bare page lets whoever runs the simulator choose one.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, jsonify, request
from markupsafe import escape

from ledger_proxy.simulator.models import User
from ledger_proxy.simulator.state import SimulatorState
from ledger_proxy.simulator.web import sim_state

bp = Blueprint("canvas_simulator_oauth", __name__)

CODE_LIFETIME = timedelta(minutes=10)
TOKEN_EXPIRES_IN = 3600  # what Canvas says of tokens from developer keys; not enforced here
ERRORS = {
    "unknown_client": (401, "invalid_client", "unknown client"),
    "bad_secret": (401, "invalid_client", "invalid client"),
    "bad_redirect": (400, "invalid_request", "redirect_uri does not match client settings"),
    "bad_code": (400, "invalid_grant", "authorization_code not found"),
    "wrong_client": (400, "invalid_grant", "incorrect client"),
    "no_code": (400, "invalid_request",
                "You must provide the code parameter when using the authorization_code grant type"),
    "bad_grant": (400, "unsupported_grant_type",
                  "The grant_type you requested is not currently supported"),
    "bad_response_type": (400, "unsupported_response_type",
                          "Only response_type=code is permitted"),
}


class OAuthError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.status, self.error, self.description = ERRORS[kind]


@bp.errorhandler(OAuthError)
def oauth_error(exc: OAuthError) -> tuple[Response, int]:
    return jsonify({"error": exc.error, "error_description": exc.description}), exc.status


# -- Canvas's endpoints ---------------------------------------------------------------------


@bp.route("/login/oauth2/auth", methods=["GET", "POST"])
def authorize() -> Response:
    """GET: approve as the chosen test user at once, or show the choice; POST: the choice."""
    state = sim_state()
    params = request.values
    with state.lock:
        key = _authorize_checks(state, params)
        approve = state.oauth_approve
        if request.method == "POST":
            choice: Any = params.get("user_id") if params.get("decision") == "approve" else "deny"
        elif params.get("login_as"):
            choice = params["login_as"]
        elif approve["deny"]:
            choice = "deny"
        else:
            choice = approve["user_id"]
        if choice is None:
            return _choice_page(state, key)
        redirect_uri = params["redirect_uri"]
        if choice == "deny":
            return _back(redirect_uri, error="access_denied",
                         error_description="the user denied the request")
        user = state.find_user(str(choice))
        if user is None:
            raise ValueError(f"no user {choice} to approve as")
        code = secrets.token_urlsafe(24)
        state.oauth_codes[code] = {
            "client_id": key["client_id"], "redirect_uri": redirect_uri, "user_id": user.id,
            "expires_at": state.now() + CODE_LIFETIME,
        }
        return _back(redirect_uri, code=code)


@bp.post("/login/oauth2/token")
def token() -> Response:
    """authorization_code -> an access token that the simulated API accepts (single use)."""
    state = sim_state()
    params = request.values
    with state.lock:
        if params.get("grant_type") != "authorization_code":
            raise OAuthError("bad_grant")
        key = state.developer_keys.get(params.get("client_id", ""))
        if key is None:
            raise OAuthError("unknown_client")
        if not secrets.compare_digest(key["client_secret"], params.get("client_secret", "")):
            raise OAuthError("bad_secret")
        if not params.get("code"):
            raise OAuthError("no_code")
        grant = state.oauth_codes.pop(params["code"], None)
        if grant is None or grant["expires_at"] <= state.now():
            raise OAuthError("bad_code")
        if grant["client_id"] != key["client_id"]:
            raise OAuthError("wrong_client")
        if params.get("redirect_uri") != grant["redirect_uri"]:
            raise OAuthError("bad_redirect")
        user = state.users[grant["user_id"]]
        access_token = f"sim-oauth-{secrets.token_hex(16)}"
        state.tokens[access_token] = user.id
        state.oauth_tokens[access_token] = key["client_id"]
        return jsonify({
            "access_token": access_token, "token_type": "Bearer",
            "user": {"id": user.id, "name": user.name}, "expires_in": TOKEN_EXPIRES_IN,
        })


@bp.delete("/login/oauth2/token")
def revoke() -> Response | tuple[Response, int]:
    """Log out: forget the OAuth token this request is made with."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    token = credentials.strip() if scheme == "Bearer" else request.values.get("access_token", "")
    state = sim_state()
    with state.lock:
        if not token or token not in state.oauth_tokens:
            return jsonify({"errors": [{"message": "Invalid access token."}]}), 401
        del state.oauth_tokens[token]
        state.tokens.pop(token, None)
        return jsonify({})


def _authorize_checks(state: SimulatorState, params: Any) -> dict[str, Any]:
    key = state.developer_keys.get(params.get("client_id", ""))
    if key is None:
        raise OAuthError("unknown_client")
    redirect_uri = params.get("redirect_uri", "")
    if not _redirect_allowed(key.get("redirect_uri"), redirect_uri):
        raise OAuthError("bad_redirect")
    if params.get("response_type") != "code":
        raise OAuthError("bad_response_type")
    return key


def _redirect_allowed(registered: str | None, given: str) -> bool:
    """Canvas: the redirect_uri's host is the developer key's, or a subdomain of it."""
    host = urlsplit(given).hostname
    if not host or urlsplit(given).scheme not in ("http", "https"):
        return False
    if not registered:
        return True
    allowed = urlsplit(registered).hostname or ""
    return host == allowed or host.endswith("." + allowed)


def _back(redirect_uri: str, **params: str) -> Response:
    state_param = request.values.get("state")
    if state_param is not None:
        params["state"] = state_param
    joiner = "&" if urlsplit(redirect_uri).query else "?"
    return Response(status=302, headers={"Location": f"{redirect_uri}{joiner}{urlencode(params)}"})


def _choice_page(state: SimulatorState, key: dict[str, Any]) -> Response:
    hidden = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(request.values[name])}">'
        for name in ("client_id", "redirect_uri", "response_type", "state")
        if name in request.values
    )
    options = "".join(
        f'<option value="{user.id}">{escape(user.name)} (user {user.id})</option>'
        for user in state.users.values()
    )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Authorize - Simulated Canvas</title></head><body>"
        f"<h1>{escape(key['name'])} wants to access your Canvas account</h1>"
        '<form method="post" action="/login/oauth2/auth">'
        f'{hidden}<label for="user_id">Sign in as</label> '
        f'<select id="user_id" name="user_id">{options}</select> '
        '<button name="decision" value="approve">Authorize</button> '
        '<button name="decision" value="deny">Cancel</button></form></body></html>'
    )
    return Response(page, content_type="text/html; charset=utf-8")


# -- test controls --------------------------------------------------------------------------


@bp.errorhandler(ValueError)
def bad_control_request(exc: Exception) -> tuple[Response, int]:
    return jsonify({"error": str(exc)}), 400


@bp.post("/_sim/oauth/developer_keys")
def add_developer_key() -> tuple[Response, int]:
    data = request.get_json(silent=True) or {}
    state = sim_state()
    with state.lock:
        client_id = str(data.get("client_id") or 10000000000000 + len(state.developer_keys) + 1)
        if client_id in state.developer_keys:
            raise ValueError(f"developer key {client_id} exists")
        key = {
            "client_id": client_id,
            "client_secret": str(data.get("client_secret") or secrets.token_urlsafe(32)),
            "name": str(data.get("name") or "Developer key"),
            "redirect_uri": data.get("redirect_uri"),
        }
        state.developer_keys[client_id] = key
        return jsonify(key), 201


@bp.get("/_sim/oauth/developer_keys")
def list_developer_keys() -> Response:
    with sim_state().lock:
        return jsonify(list(sim_state().developer_keys.values()))


@bp.post("/_sim/oauth/approve_as")
def approve_as() -> Response:
    """`{"user_id": N}` approves every authorize request as user N at once; `{"deny": true}`
    refuses them (access_denied); `{"user_id": null}` shows the choice page again."""
    data = request.get_json(silent=True) or {}
    state = sim_state()
    with state.lock:
        user_id = data.get("user_id")
        if user_id is not None and _user(state, user_id) is None:
            raise ValueError(f"no user {user_id}")
        state.oauth_approve = {"user_id": user_id, "deny": bool(data.get("deny", False))}
        return jsonify(state.oauth_approve)


def _user(state: SimulatorState, user_id: Any) -> User | None:
    return state.find_user(str(user_id))
