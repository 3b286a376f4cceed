"""GET /ledger/v1/{courses,sections}/<id>/enrollments: who made each enrollment, with evidence."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.wrappers import Response

from ..core import lookup, provenance
from ..runtime import get_db, runtime
from ..upstream.canvas import CANVAS_FAILURES, CanvasRefused, proxy_error
from ..upstream.forwarding import end_to_end
from .access import caller_token
from .schemas import LookupArgs, load_args

bp = Blueprint("lookup", __name__, url_prefix="/ledger/v1")


@bp.get("/courses/<path:course_id>/enrollments")
def course_enrollments(course_id: str) -> Response:
    return _lookup("courses", course_id)


@bp.get("/sections/<path:section_id>/enrollments")
def section_enrollments(section_id: str) -> Response:
    return _lookup("sections", section_id)


def _lookup(scope: str, scope_id: str) -> Response:
    token = caller_token()
    args = load_args(LookupArgs(), request.args)
    query = lookup.Query(scope, scope_id, args["include_deleted"], args["provenance"])
    try:
        provider = _compact_provider()
        if provider is not None:
            return _answer(provider, token, query)
        result = lookup.run(token=token, query=query, **sources())
    except CanvasRefused as refusal:
        return refused(refusal)
    except CANVAS_FAILURES as exc:
        raise proxy_error(exc) from None
    return jsonify(result)


def sources() -> dict[str, Any]:
    """Where this app's lookup reads: the request's ledger handle, the Canvas client, the SIS
    reader token and the clock allowance (the arguments of core.lookup.run after the query)."""
    return {
        "db": get_db(),
        "canvas": runtime().canvas,
        "sis_reader": current_app.config["SIS_READER_TOKEN"],
        "allowance": timedelta(seconds=current_app.config["CLOCK_SKEW_SECONDS"]),
    }


def _compact_provider() -> DefaultJSONProvider | None:
    """Flask's own JSON provider when jsonify would answer compact JSON (not in debug)."""
    provider = current_app.json
    if not isinstance(provider, DefaultJSONProvider):
        return None
    if provider.compact is False or (provider.compact is None and current_app.debug):
        return None
    return provider


def _answer(provider: DefaultJSONProvider, token: str, query: lookup.Query) -> Response:
    """The same bytes as jsonify(run(...)), but each page is encoded as soon as it is judged,
    while Canvas serves the next one: encoding a large answer at the end would add to the
    lookup's time what the wait on Canvas can hide."""

    def dumps(value: Any) -> str:
        return provider.dumps(value, separators=(",", ":"))

    verdicts: list[Any] = []
    judged = lookup.judged(token=token, query=query, verdicts=verdicts, **sources())
    pages = [dumps(page)[1:-1] for page in judged if page]
    body = (
        '{"enrollments":['
        + ",".join(pages)
        + '],"summary":'
        + dumps(provenance.summary(verdicts))
        + "}\n"
    )
    return current_app.response_class(body, mimetype=provider.mimetype)


def refused(refusal: CanvasRefused) -> Response:
    """Canvas's own answer (401, 403, 404, throttled...), passed on as it came."""
    headers = [
        (name, value)
        for name, value in end_to_end(refusal.headers)
        if name.lower() not in ("content-length", "content-encoding", "link")
    ]
    return Response(refusal.content, status=refusal.status, headers=headers)
