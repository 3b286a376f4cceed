"""POST/GET /ledger/v1/accounts/<account_id>/audits: the account audit as a job, admins only."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.wrappers import Response

from ..core import account_audit, audit_jobs
from ..core.vocab import MANUAL
from ..errors import ProxyError
from ..runtime import get_db, runtime
from .access import caller_token, require_admin
from .schemas import AuditArgs, AuditResultArgs, load_args

bp = Blueprint("audits", __name__, url_prefix="/ledger/v1")

NOT_FOUND = "The specified resource does not exist."
# Canvas's forms of an account id; anything else could not name an account.
ACCOUNT_ID = re.compile(r"[0-9]{1,19}|self|sis_account_id:[^\x00-\x1f/]{1,255}")
AUDIT_ID = re.compile(r"[0-9a-f]{32}")
FORMATS = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


@bp.post("/accounts/<account_id>/audits")
def start_audit(account_id: str) -> tuple[Response, int, dict[str, str]]:
    admin = require_admin()
    _account(account_id)
    args = load_args(AuditArgs(), request.values)
    config = current_app.config
    job = audit_jobs.start(
        get_db(),
        database=config["DATABASE"],
        canvas=runtime().canvas,
        token=caller_token(),
        request=account_audit.Request(
            account_id, args["term"], MANUAL if args["manual_only"] else None, "ndjson"
        ),
        folder=os.path.join(current_app.instance_path, "audits"),
        allowance=timedelta(seconds=config["CLOCK_SKEW_SECONDS"]),
        requested_by=admin.user_id,
        on_worker=runtime().background.append,
    )
    url = _urls(job)["url"]
    return jsonify({**job, **_urls(job)}), 202, {"Location": url}


@bp.get("/accounts/<account_id>/audits/<audit_id>")
def audit_status(account_id: str, audit_id: str) -> Response:
    require_admin()
    job = _job(account_id, audit_id)
    return jsonify({**job, **_urls(job)})


@bp.get("/accounts/<account_id>/audits/<audit_id>/result")
def audit_result(account_id: str, audit_id: str) -> Response:
    require_admin()
    job = _job(account_id, audit_id)
    args = load_args(AuditResultArgs(), request.args)
    fmt = args["format"]
    path = audit_jobs.result_path(get_db(), audit_id)
    if path is None or not os.path.exists(path):
        raise ProxyError(409, f"the audit has no result: it is {job['state']}")
    return Response(
        _chunks(path, fmt, args["provenance"]),
        content_type=FORMATS[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="account-audit-{audit_id}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )


def _chunks(path: str, fmt: str, provenance: str | None) -> Iterator[bytes]:
    # Read from the file alone, outside the request's context: nothing to push again.
    yield from audit_jobs.result_chunks(path, fmt, provenance)


def _account(account_id: str) -> None:
    if not ACCOUNT_ID.fullmatch(account_id):
        raise ProxyError(404, NOT_FOUND)


def _job(account_id: str, audit_id: str) -> dict[str, Any]:
    _account(account_id)
    job = audit_jobs.status(get_db(), audit_id) if AUDIT_ID.fullmatch(audit_id) else None
    if job is None or job["account_id"] != account_id:
        raise ProxyError(404, NOT_FOUND)
    return job


def _urls(job: dict[str, Any]) -> dict[str, Any]:
    ids = {"account_id": job["account_id"], "audit_id": job["id"]}
    results = (
        {
            fmt: url_for("audits.audit_result", **ids, format=fmt, _external=True)
            for fmt in FORMATS
        }
        if job["state"] == audit_jobs.COMPLETE
        else None
    )
    return {"url": url_for("audits.audit_status", **ids, _external=True), "results": results}
