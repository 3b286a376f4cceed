"""Flask glue shared by the simulator's blueprints: state, auth, params, Canvas JSON."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, unquote

from flask import Response, current_app, g, request
from werkzeug.http import http_date

from ledger_proxy.simulator import errors
from ledger_proxy.simulator.live_events import DEFAULT_DEVELOPER_KEY_ID
from ledger_proxy.simulator.models import Context, User
from ledger_proxy.simulator.params import Params, flatten_json
from ledger_proxy.simulator.serialize import Viewer, stringify_ids
from ledger_proxy.simulator.state import SimulatorState
from ledger_proxy.simulator.wire import (
    CONTEXT_ID_KEY,
    METHOD_OVERRIDE_ORIGINAL,
    RAW_PATH_KEY,
    ruby_float,
)

EXTENSION_KEY = "canvas_simulator"
JSON_TYPE = "application/json; charset=utf-8"
STRING_IDS = "application/json+canvas-string-ids"


def sim_state() -> SimulatorState:
    state: SimulatorState = current_app.extensions[EXTENSION_KEY]
    return state


def canvas_json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact JSON as Rails renders it, with ids stringified when the client asked for that."""
    if STRING_IDS in request.headers.get("Accept", ""):
        data = stringify_ids(data)
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status=status, headers=headers or {}, content_type=JSON_TYPE)


def error_response(error: errors.ApiError) -> Response:
    return canvas_json(error.body, error.status, error.headers)


def add_canvas_headers(response: Response) -> Response:
    """Per-request headers every Canvas API answer carries, and Canvas's Date: its own clock
    (the simulator's, which tests may set), which the proxy reads to tell a re-enrollment
    from a new row. werkzeug's server adds its own real-time Date first; Canvas's comes last."""
    settings = sim_state().settings
    response.headers["Date"] = http_date(sim_state().now())
    context_id = request.environ.get(CONTEXT_ID_KEY)
    if context_id:
        response.headers["X-Request-Context-Id"] = context_id
    response.headers["X-Request-Cost"] = ruby_float(settings.request_cost)
    response.headers["X-Rate-Limit-Remaining"] = ruby_float(settings.rate_limit_remaining)
    caller: User | None = g.get("caller")
    if caller is not None:
        response.headers["X-Canvas-User-Id"] = str(caller.id)
    real_user: User | None = g.get("real_user")
    if real_user is not None:
        response.headers["X-Canvas-Real-User-Id"] = str(real_user.id)
    return response


JSON_MIMETYPES = ("application/json", "text/x-json", "application/jsonrequest")


def request_params() -> Params:
    """Rails' `params`: the body's pairs, then the query string's over them.

    Rails merges `request_parameters.merge(query_parameters)`, a shallow merge: a top-level
    name in the query string (`enrollment`) replaces that whole name from the body. JSON is
    read only for Rails' JSON MIME types; a POST body without a Content-Type is a form, as
    Rack reads it; any other body gives no parameters.
    """
    if "params" in g:
        cached: Params = g.params
        return cached
    raw_query = request.query_string.decode("utf-8", errors="replace")
    query = parse_qsl(raw_query, keep_blank_values=True)
    body: list[tuple[str, Any]] = []
    if request.mimetype in JSON_MIMETYPES:
        try:
            document = json.loads(request.get_data(cache=True) or b"null")
        except (ValueError, RecursionError):
            document = None
        if isinstance(document, dict):
            body = flatten_json(document)
    elif request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        body = list(request.form.items(multi=True))
    elif not request.mimetype and rack_original_method() == "POST":
        raw = request.get_data(cache=True).decode("utf-8", errors="replace")
        body = parse_qsl(raw, keep_blank_values=True)
    shadowed = {name.split("[", 1)[0] for name, _ in query}
    params = Params([(k, v) for k, v in body if k.split("[", 1)[0] not in shadowed])
    params.extend(query)
    g.params = params
    return params


def rack_original_method() -> str:
    return str(request.environ.get(METHOD_OVERRIDE_ORIGINAL, request.method))


def query_pairs() -> list[tuple[str, str]]:
    return parse_qsl(request.query_string.decode("utf-8", errors="replace"), keep_blank_values=True)


def authenticate() -> User:
    """Bearer header first, else an `access_token` parameter (§9); sets `g.caller`."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    token = credentials.strip() if scheme == "Bearer" else ""
    if not token:
        value = request_params().get("access_token")
        token = str(value).strip() if value is not None else ""
    if not token:
        raise errors.unauthenticated()
    user = sim_state().user_for_token(token)
    if user is None:
        raise errors.invalid_token()
    g.token = token
    g.caller = _masquerade(user)
    return g.caller


def _masquerade(user: User) -> User:
    """`as_user_id` (§9): an admin acts as another user; anyone else gets Canvas's 401."""
    ref = request_params().get("as_user_id")
    if ref is None or str(ref).strip() == "":
        return user
    target = sim_state().find_user(str(ref).strip(), user) if user.admin else None
    if target is None:
        raise errors.ApiError(401, {"errors": "Invalid as_user_id"})
    if target.id != user.id:
        g.real_user = user
    return target


def base_url() -> str:
    """Scheme and Host exactly as this request arrived, for absolute `html_url`s and Links."""
    return f"{request.scheme}://{request.host}"


def endpoint_url() -> str:
    return base_url() + request.environ.get(RAW_PATH_KEY, request.path)


def viewer() -> Viewer:
    if "viewer" not in g:
        g.viewer = Viewer(sim_state(), authenticate(), base_url())
    found: Viewer = g.viewer
    return found


def segment(value: str) -> str:
    """A path id as the client meant it (`sis_course_id:a%2Fb` -> `sis_course_id:a/b`)."""
    return unquote(value)


def request_context(channel: str = "api") -> Context:
    caller: User | None = g.get("caller")
    real_user: User | None = g.get("real_user")
    token: str | None = g.get("token")
    return Context(
        channel=channel,
        actor_user_id=caller.id if caller else None,
        request_context_id=request.environ.get(CONTEXT_ID_KEY),
        user_agent=request.headers.get("User-Agent"),
        real_user_id=real_user.id if real_user else None,
        developer_key_id=developer_key_id(token) if token else None,
        http_method=request.method,
        url=request.url,
        base_url=base_url(),
    )


def developer_key_id(token: str) -> str:
    """OAuth tokens carry their developer key's id; personal tokens the shared default (§1.3)."""
    return sim_state().oauth_tokens.get(token) or DEFAULT_DEVELOPER_KEY_ID
