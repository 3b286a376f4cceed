"""GET /ledger/v1/{courses,sections}/<id>/enrollments: who made each enrollment, with evidence."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.wrappers import Response

from .. import lookup
from ..access import caller_token
from ..canvas import CANVAS_FAILURES, CanvasRefused, proxy_error
from ..db import get_db
from ..forwarding import end_to_end
from ..runtime import runtime
from ..schemas import LookupArgs, load_args

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
        result = run(token, query)
    except CanvasRefused as refusal:
        return refused(refusal)
    except CANVAS_FAILURES as exc:
        raise proxy_error(exc) from None
    return jsonify(result)


def run(
    token: str, query: lookup.Query, on_page: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """The lookup for the current app: Canvas with the caller's token, then the ledger."""
    canvas = runtime().canvas
    rows = lookup.fetch(canvas, token, query, on_page)
    reader = current_app.config["SIS_READER_TOKEN"]
    if reader and any("sis_import_id" not in row for row in rows):
        lookup.add_sis_fields(rows, lookup.fetch(canvas, reader, query))
    return lookup.classify_rows(
        get_db(),
        rows,
        allowance=timedelta(seconds=current_app.config["CLOCK_SKEW_SECONDS"]),
        provenance_filter=query.provenance,
    )


def refused(refusal: CanvasRefused) -> Response:
    """Canvas's own answer (401, 403, 404, throttled...), passed on as it came."""
    headers = [
        (name, value)
        for name, value in end_to_end(refusal.headers)
        if name.lower() not in ("content-length", "content-encoding", "link")
    ]
    return Response(refusal.content, status=refusal.status, headers=headers)
