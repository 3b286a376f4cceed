"""GET /ledger/v1/openapi.json: the OpenAPI 3.1 document of the proxy's own API, generated from
its marshmallow schemas."""

from __future__ import annotations

import functools
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify, request
from marshmallow import Schema
from werkzeug.wrappers import Response

from .. import __version__
from . import schemas
from .schemas import AuditArgs, AuditResultArgs, ExportArgs, LookupArgs

bp = Blueprint("openapi", __name__, url_prefix="/ledger/v1")

OPENAPI_VERSION = "3.1.0"

DESCRIPTION = """\
ledger-proxy forwards every request under `/api/` (and `/i/<label>/api/`) to Canvas unchanged
and records, in its ledger, every enrollment Canvas creates or changes through it. Those
forwarded paths are Canvas's own REST API (https://canvas.instructure.com/doc/api/) and are
not repeated here; name the integration with the `/i/<label>` prefix or the
`X-Ledger-Integration` header. Every forwarded answer carries `X-Ledger-Request-Id`.

This document describes the proxy's own endpoints: the provenance lookup, the ledger's export
and history, and the operations endpoints. Errors the proxy answers itself use Canvas's error
shape (`CanvasError`); Canvas's own refusals (401, 403, 404, throttling) pass through as Canvas
sent them.
"""

MODELS: tuple[type[Schema], ...] = (
    schemas.CanvasErrorMessage,
    schemas.CanvasError,
    schemas.UserSummary,
    schemas.LedgerEvidence,
    schemas.PageViewCandidate,
    schemas.Actor,
    schemas.EnrollmentVerdict,
    schemas.ManualVia,
    schemas.LiveEventReceipt,
    schemas.Summary,
    schemas.AttributionReport,
    schemas.LookupResult,
    schemas.LedgerEvent,
    schemas.LedgerEnrollment,
    schemas.EnrollmentHistory,
    schemas.Health,
    schemas.Check,
    schemas.Readiness,
    schemas.NotReady,
    schemas.AuditProblem,
    schemas.AuditSummary,
    schemas.AuditResults,
    schemas.AuditJob,
)

TOKEN_SECURITY: list[dict[str, list[str]]] = [{"canvasToken": []}, {"canvasTokenParameter": []}]


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _canvas_answer(description: str) -> dict[str, Any]:
    """Canvas's own refusal, passed through: usually its JSON error, plain text when throttled."""
    return {
        "description": description,
        "content": {
            "application/json": {"schema": "CanvasError"},
            "text/plain": {"schema": {"type": "string"}},
        },
    }


SHARED_RESPONSES = {
    "BadParameter": _json("CanvasError", "A parameter is malformed or unknown; it is named."),
    "Unauthenticated": _json("CanvasError", "No Canvas token, or one Canvas does not know."),
    "NotAdmin": _json(
        "CanvasError", "The token's Canvas user is not in LEDGER_PROXY_ADMIN_USER_IDS."
    ),
    "CanvasRefused": _canvas_answer(
        "Canvas refused the caller (401, 403, 404) or throttled it (403 Rate Limit Exceeded, "
        "429): Canvas's answer, passed through."
    ),
    "CanvasUnreachable": _json(
        "CanvasError", "Canvas could not be reached, or the connection broke."
    ),
    "CanvasTimeout": _json("CanvasError", "Canvas did not answer within the read timeout."),
}


def _lookup(scope: str, id_name: str) -> dict[str, Any]:
    return {
        "get": {
            "tags": ["provenance"],
            "operationId": f"{scope}_enrollments",
            "summary": f"Who made each enrollment of a {scope.removesuffix('s')}",
            "description": (
                "Lists the enrollments from Canvas with the caller's own token (so nobody sees "
                "a roster Canvas would not show them), every state, every page, and judges "
                "each: integration, sis, manual, pending, unknown or ambiguous, with the evidence. "
                "With attribute=page_views, manual and unknown rows without a Live Events actor "
                "get one read from Canvas page views (LEDGER_PROXY_PAGE_VIEWS_TOKEN), stored in "
                "the ledger and reused unless refresh=true (docs/attribution.md)."
            ),
            "security": TOKEN_SECURITY,
            "parameters": [
                {
                    "in": "path",
                    "name": id_name,
                    "required": True,
                    "schema": {"type": "string"},
                    "description": f"Canvas {scope.removesuffix('s')} id: numeric, or "
                    f"sis_{scope.removesuffix('s')}_id:<id>.",
                },
                {"in": "query", "schema": LookupArgs(exclude=("access_token",))},
            ],
            "responses": {
                "200": _json("LookupResult", "Every enrollment, with its verdict."),
                "400": {"$ref": "#/components/responses/BadParameter"},
                "401": {"$ref": "#/components/responses/Unauthenticated"},
                "403": {"$ref": "#/components/responses/CanvasRefused"},
                "404": {"$ref": "#/components/responses/CanvasRefused"},
                "429": {"$ref": "#/components/responses/CanvasRefused"},
                "502": {"$ref": "#/components/responses/CanvasUnreachable"},
                "504": {"$ref": "#/components/responses/CanvasTimeout"},
            },
        }
    }


def _audit_paths() -> dict[str, dict[str, Any]]:
    base = "/ledger/v1/accounts/{account_id}/audits"
    account = {
        "in": "path",
        "name": "account_id",
        "required": True,
        "schema": {"type": "string"},
        "description": "Canvas account id: numeric, self, or sis_account_id:<id>.",
    }
    audit = {"in": "path", "name": "audit_id", "required": True, "schema": {"type": "string"}}
    admin_errors = {
        "401": {"$ref": "#/components/responses/Unauthenticated"},
        "403": {"$ref": "#/components/responses/NotAdmin"},
        "502": {"$ref": "#/components/responses/CanvasUnreachable"},
    }
    no_job = _json("CanvasError", "No such audit job for this account.")
    return {
        base: {
            "post": {
                "tags": ["provenance"],
                "operationId": "start_account_audit",
                "summary": "Audit every enrollment of an account from Canvas's provisioning "
                "report, as a job (admins only)",
                "description": (
                    "Starts Canvas's provisioning_csv report with the caller's token, judges "
                    "each row as the course lookup does, and keeps the result. Poll the job's "
                    "URL (Location). The job survives a restart of the proxy as `interrupted`."
                ),
                "security": TOKEN_SECURITY,
                "parameters": [
                    account,
                    {"in": "query", "schema": AuditArgs(exclude=("access_token",))},
                ],
                "responses": {
                    "202": {
                        **_json("AuditJob", "Started; Location is the job's URL."),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "400": {"$ref": "#/components/responses/BadParameter"},
                    "404": _json("CanvasError", "Not a form of Canvas account id."),
                    **admin_errors,
                },
            }
        },
        base + "/{audit_id}": {
            "get": {
                "tags": ["provenance"],
                "operationId": "account_audit",
                "summary": "An account audit job: its state, progress and summary",
                "security": TOKEN_SECURITY,
                "parameters": [account, audit],
                "responses": {
                    "200": _json("AuditJob", "The job."),
                    "404": no_job,
                    **admin_errors,
                },
            }
        },
        base + "/{audit_id}/result": {
            "get": {
                "tags": ["provenance"],
                "operationId": "account_audit_result",
                "summary": "A complete account audit's rows, as CSV or NDJSON (streamed)",
                "security": TOKEN_SECURITY,
                "parameters": [
                    account,
                    audit,
                    {"in": "query", "schema": AuditResultArgs(exclude=("access_token",))},
                ],
                "responses": {
                    "200": {
                        "description": "One row per enrollment with its verdict.",
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "400": {"$ref": "#/components/responses/BadParameter"},
                    "404": no_job,
                    "409": _json("CanvasError", "The job is not complete (its state is named)."),
                    **admin_errors,
                },
            }
        },
    }


PATHS: dict[str, dict[str, Any]] = {
    "/ledger/v1/courses/{course_id}/enrollments": _lookup("courses", "course_id"),
    "/ledger/v1/sections/{section_id}/enrollments": _lookup("sections", "section_id"),
    "/ledger/v1/export": {
        "get": {
            "tags": ["ledger"],
            "operationId": "export",
            "summary": "Every ledger event, or a slice, as CSV or NDJSON (admins only)",
            "description": (
                "Streamed, oldest first, with each event's chain hash so that the file can be "
                "verified offline (`ledger-proxy verify --file`)."
            ),
            "security": TOKEN_SECURITY,
            "parameters": [{"in": "query", "schema": ExportArgs(exclude=("access_token",))}],
            "responses": {
                "200": {
                    "description": "The events; Content-Disposition names a file.",
                    "headers": {
                        "Content-Disposition": {
                            "schema": {"type": "string"},
                            "description": 'attachment; filename="ledger-export-<time>.<format>"',
                        }
                    },
                    "content": {
                        "text/csv": {
                            "schema": {
                                "type": "string",
                                "description": "A header row, then one LedgerEvent per row.",
                            },
                        },
                        "application/x-ndjson": {
                            "schema": {
                                "type": "string",
                                "description": "One LedgerEvent JSON object per line.",
                            },
                            "x-item-schema": "LedgerEvent",
                        },
                    },
                },
                "400": {"$ref": "#/components/responses/BadParameter"},
                "401": {"$ref": "#/components/responses/Unauthenticated"},
                "403": {"$ref": "#/components/responses/NotAdmin"},
                "502": {"$ref": "#/components/responses/CanvasUnreachable"},
            },
        }
    },
    "/ledger/v1/enrollments/{enrollment_id}": {
        "get": {
            "tags": ["ledger"],
            "operationId": "enrollment_history",
            "summary": "The whole recorded history of one enrollment (admins only)",
            "security": TOKEN_SECURITY,
            "parameters": [
                {
                    "in": "path",
                    "name": "enrollment_id",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
            ],
            "responses": {
                "200": _json(
                    "EnrollmentHistory", "Every event, oldest first, and the current view."
                ),
                "401": {"$ref": "#/components/responses/Unauthenticated"},
                "403": {"$ref": "#/components/responses/NotAdmin"},
                "404": _json("CanvasError", "The ledger has never seen this enrollment."),
                "502": {"$ref": "#/components/responses/CanvasUnreachable"},
            },
        }
    },
    **_audit_paths(),
    "/ledger/v1/live-events": {
        "post": {
            "tags": ["provenance"],
            "operationId": "live_events",
            "summary": "Receive one Canvas Live Event (a Canvas Data Services HTTPS subscription)",
            "description": (
                "The body is one JWT signed by Instructure, verified against the JWKS of "
                "LEDGER_PROXY_LIVE_EVENTS_JWKS: the signature is the authentication, no token is "
                "asked for. Enrollment and SIS-batch events are stored once each (a duplicate "
                "delivery is acknowledged as such); other event types are acknowledged and "
                "dropped. Nothing is stored on any error. docs/live-events.md."
            ),
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/jwt": {"schema": {"type": "string"}},
                    "text/plain": {"schema": {"type": "string"}},
                },
            },
            "responses": {
                "200": _json("LiveEventReceipt", "Accepted: stored, duplicate or ignored."),
                "400": _json("CanvasError", "Not a JWT, or not a Live Event."),
                "401": _json(
                    "CanvasError",
                    "Not signed by a trusted key: bad signature, unknown key, refused "
                    "algorithm, expired.",
                ),
                "404": _json(
                    "CanvasError", "Live Events are not configured (LEDGER_PROXY_LIVE_EVENTS_JWKS)."
                ),
                "413": _json("CanvasError", "Larger than any Live Event (256 KiB)."),
                "503": _json("CanvasError", "The JWKS cannot be read now: nothing was stored."),
            },
        }
    },
    "/ledger/v1/openapi.json": {
        "get": {
            "tags": ["operations"],
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/healthz": {
        "get": {
            "tags": ["operations"],
            "operationId": "healthz",
            "summary": "Liveness: the process is up",
            "security": [],
            "responses": {"200": _json("Health", "Always, while the process serves.")},
        }
    },
    "/readyz": {
        "get": {
            "tags": ["operations"],
            "operationId": "readyz",
            "summary": "Readiness: the ledger takes a write and Canvas answers",
            "description": (
                "The ledger check runs a write transaction and rolls it back; the Canvas check "
                "asks GET /api/v1/users/self without a token and accepts any HTTP answer."
            ),
            "security": [],
            "responses": {
                "200": _json("Readiness", "Ready."),
                "503": _json("NotReady", "Not ready; `failing` names the checks that failed."),
            },
        }
    },
    "/metrics": {
        "get": {
            "tags": ["operations"],
            "operationId": "metrics",
            "summary": "Prometheus metrics (all gunicorn workers together)",
            "security": [],
            "responses": {
                "200": {
                    "description": "The Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}


@functools.cache
def document() -> dict[str, Any]:
    """The document (built once per process; `servers` is added per request by the view)."""
    spec = APISpec(
        title="ledger-proxy",
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={
            "description": DESCRIPTION,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        tags=[
            {"name": "provenance", "description": "Who made each enrollment."},
            {"name": "ledger", "description": "What the ledger recorded, for auditors."},
            {"name": "operations", "description": "Health, readiness, metrics."},
        ],
    )
    spec.components.security_scheme(
        "canvasToken",
        {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A Canvas access token, as Canvas takes it. The proxy asks Canvas who it "
                "belongs to; lookups list Canvas with it, so Canvas decides what is visible."
            ),
        },
    )
    spec.components.security_scheme(
        "canvasTokenParameter",
        {
            "type": "apiKey",
            "in": "query",
            "name": "access_token",
            "description": "The same token as a query parameter, as Canvas also accepts it.",
        },
    )
    for model in MODELS:
        spec.components.schema(model.__name__, schema=model)
    for name, response in SHARED_RESPONSES.items():
        spec.components.response(name, _resolve(response))
    for path, operations in PATHS.items():
        spec.path(path=path, operations=_resolve(operations))
    result: dict[str, Any] = spec.to_dict()
    return result


def _resolve(value: Any) -> Any:
    """Model names (strings under "schema" / "x-item-schema") to references to components."""
    if isinstance(value, dict):
        resolved = {}
        for key, item in value.items():
            if key in ("schema", "x-item-schema") and isinstance(item, str):
                resolved[key] = {"$ref": f"#/components/schemas/{item}"}
            else:
                resolved[key] = _resolve(item)
        return resolved
    if isinstance(value, list):
        return [_resolve(item) for item in value]
    return value


@bp.get("/openapi.json")
def openapi_document() -> Response:
    # The server is the base URL this client used, so tools can try the calls as they are.
    server = {"url": request.host_url.rstrip("/") + request.script_root}
    return jsonify({**document(), "servers": [server]})
