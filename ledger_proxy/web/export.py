"""GET /ledger/v1/export and /ledger/v1/enrollments/<id>: the ledger for auditors, admins only."""

from __future__ import annotations

import re
from collections.abc import Iterator

from flask import Blueprint, jsonify, request, stream_with_context
from werkzeug.wrappers import Response

from ..core import export, ledger
from ..errors import ProxyError
from ..runtime import get_db
from .access import require_admin
from .schemas import ExportArgs, load_args

bp = Blueprint("export", __name__, url_prefix="/ledger/v1")

NOT_FOUND = "The specified resource does not exist."
MAX_ID = 2**63 - 1


@bp.get("/export")
def export_ledger() -> Response:
    require_admin()
    args = load_args(ExportArgs(), request.args)
    fmt = args.pop("format")
    args.pop("access_token")
    return Response(
        stream_with_context(_chunks(export.Filters(**args), fmt)),
        content_type=export.content_type(fmt),
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename(fmt)}"',
            "Cache-Control": "no-store",
        },
    )


def _chunks(filters: export.Filters, fmt: str) -> Iterator[bytes]:
    # The view's app context is torn down (closing its ledger handle) before the body is
    # sent; stream_with_context pushes it again, so the handle is opened here, in the stream.
    yield from export.export(get_db(), filters, fmt)


@bp.get("/enrollments/<path:enrollment_id>")
def enrollment_history(enrollment_id: str) -> Response:
    require_admin()
    # Canvas answers 404 for an id it cannot parse; so does the ledger.
    if not re.fullmatch(r"[0-9]{1,19}", enrollment_id) or int(enrollment_id) > MAX_ID:
        raise ProxyError(404, NOT_FOUND)
    db = get_db()
    events = ledger.enrollment_history(db, int(enrollment_id))
    current = ledger.current_enrollment(db, int(enrollment_id))
    if not events and current is None:
        raise ProxyError(404, NOT_FOUND)
    return jsonify(
        enrollment_id=int(enrollment_id),
        current=export.outward(current) if current is not None else None,
        events=[export.outward(event) for event in events],
    )
