"""Page views as Canvas records them, and `GET /api/v1/users/:user_id/page_views` (§4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, request

from ledger_proxy.simulator import errors
from ledger_proxy.simulator.api_enrollments import locked
from ledger_proxy.simulator.models import Context, iso
from ledger_proxy.simulator.pagination import link_header, paginate
from ledger_proxy.simulator.state import SimulatorState
from ledger_proxy.simulator.web import (
    canvas_json,
    endpoint_url,
    query_pairs,
    segment,
    sim_state,
    viewer,
)
from ledger_proxy.simulator.wire import CONTEXT_ID_KEY

bp = Blueprint("canvas_page_views", __name__, url_prefix="/api/v1")
# What people report hosted Canvas shows for a teacher's Add People action (§4).
UI_USER_AGENT = "User-Generated"
SCRIPT_USER_AGENT = "python-requests/2.32.3"


def record(
    state: SimulatorState, user_id: int, *, request_id: str, url: str, http_method: str,
    user_agent: str | None, app_name: str | None, real_user_id: int | None = None,
    context: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """One page view in `user_id`'s trail; its `id` is the request id (§7)."""
    with state.lock:
        seq = len(state.page_view_seq) + 1
        state.page_view_seq.append(request_id)
        view = {
            "id": request_id, "app_name": app_name, "url": url,
            "context_type": context[0] if context else None,
            "asset_type": None, "controller": None, "action": None, "contributed": False,
            "interaction_seconds": 0.0, "created_at": iso(state.now()), "user_request": True,
            "render_time": 0.05, "user_agent": user_agent, "participated": False,
            "http_method": http_method.lower(), "remote_ip": "127.0.0.1",
            "links": {
                "user": user_id, "context": context[1] if context else None, "asset": None,
                "real_user": real_user_id, "account": 1,
            },
            "_seq": seq,
        }
        state.page_views.setdefault(user_id, []).append(view)
        return view


def record_api_request(state: SimulatorState) -> None:
    """The authenticated API request being answered, in its caller's trail."""
    caller = g.get("caller")
    request_id = request.environ.get(CONTEXT_ID_KEY)
    if caller is None or not request_id:
        return
    token = g.get("token")
    client_id = state.oauth_tokens.get(token) if token else None
    key = state.developer_keys.get(client_id) if client_id else None
    real_user = g.get("real_user")
    record(
        state, caller.id, request_id=request_id, url=request.url,
        http_method=request.method, user_agent=request.headers.get("User-Agent"),
        app_name=key["name"] if key else None,
        real_user_id=real_user.id if real_user else None,
    )


def record_direct(state: SimulatorState, ctx: Context, course_id: int) -> None:
    """A UI add or a script's call that did not pass the simulator's own API views."""
    if ctx.actor_user_id is None or not ctx.request_context_id:
        return
    base = ctx.base_url or ""
    if ctx.channel == "ui":
        agent, app_name = UI_USER_AGENT, None
    else:
        agent = ctx.user_agent or SCRIPT_USER_AGENT
        app_name = developer_key_name(state, ctx.developer_key_id)
    record(
        state, ctx.actor_user_id, request_id=ctx.request_context_id,
        url=f"{base}/api/v1/courses/{course_id}/enrollments", http_method="POST",
        user_agent=agent, app_name=app_name, real_user_id=ctx.real_user_id,
        context=("Course", course_id),
    )


def developer_key_name(state: SimulatorState, key_id: str | None) -> str | None:
    key = state.developer_keys.get(key_id) if key_id else None
    return str(key["name"]) if key else None


@bp.get("/users/<user_id>/page_views")
@locked
def list_page_views(user_id: str) -> Response:
    """Newest first; `start_time` inclusive, `end_time` exclusive; admins only (view_statistics)."""
    current = viewer()
    state = sim_state()
    target = state.find_user(segment(user_id), current.user)
    if target is None:
        raise errors.not_found()
    if not current.admin:
        raise errors.ApiError(401, {
            "status": "unauthorized", "errors": [{"message": errors.UNAUTHORIZED_MESSAGE}],
        })
    start = _time_param("start_time")
    end = _time_param("end_time")
    rows = [
        view for view in state.page_views.get(target.id, [])
        if (start is None or view["created_at"] >= start)
        and (end is None or view["created_at"] < end)
    ]
    rows.sort(key=lambda v: (v["created_at"], v["_seq"]), reverse=True)
    page = paginate(
        rows, lambda v: [v["created_at"], v["_seq"]],
        lambda key: _Descending((key[0], key[1])), query_pairs(),
    )
    body = [{k: v for k, v in view.items() if k != "_seq"} for view in page.rows]
    link = link_header(endpoint_url(), request.query_string.decode("latin-1"), page)
    return canvas_json(body, headers={"Link": link})


class _Descending:
    """Orders bookmarks newest first."""

    def __init__(self, key: tuple[str, int]) -> None:
        self.key = (str(key[0]), int(key[1]))

    def __gt__(self, other: _Descending) -> bool:
        return self.key < other.key


def _time_param(name: str) -> str | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise errors.bad_message(f"invalid {name}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso(moment)
