"""GET /ledger/v1/openapi.json: the OpenAPI 3.1 document of the proxy's own API."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from . import openapi_document as openapi

bp = Blueprint("openapi", __name__, url_prefix="/ledger/v1")


@bp.get("/openapi.json")
def openapi_document() -> Response:
    # The server is the base URL this client used, so tools can try the calls as they are.
    server = {"url": request.host_url.rstrip("/") + request.script_root}
    return jsonify({**openapi.document(), "servers": [server]})
