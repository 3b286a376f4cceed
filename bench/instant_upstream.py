"""An instant stand-in for Canvas, for bench/hotpath.py (run under gunicorn: `instant_upstream:app`).

- `GET /api/v1/users/self`: the token's user (ledger-proxy resolves the actor with it);
- any other `GET /api/...`: a small JSON document;
- `POST /api/v1/courses/<id>/enrollments`: a Canvas-shaped Enrollment with a fresh id each
  time, `created_at` now, `X-Request-Context-Id`; gunicorn adds the `Date` header, as
  Canvas's front end does. ledger-proxy records it as `created`.

Nothing is stored: every answer is computed in microseconds.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid

from flask import Flask, Response, request

app = Flask(__name__)

SMALL = json.dumps({"id": 1, "name": "Bench course", "workflow_state": "available"}).encode()
SELF = json.dumps({"id": 17, "name": "Bench Admin"}).encode()
_ids = itertools.count(1)


def _json(body: bytes, status: int = 200) -> Response:
    response = Response(body, status=status, content_type="application/json; charset=utf-8")
    response.headers["X-Request-Context-Id"] = uuid.uuid4().hex
    return response


@app.get("/api/v1/users/self")
def users_self() -> Response:
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return _json(b'{"errors":[{"message":"Invalid access token."}]}', 401)
    return _json(SELF)


@app.get("/api/<path:_rest>")
def small(_rest: str) -> Response:
    return _json(SMALL)


@app.post("/api/v1/courses/<int:course_id>/enrollments")
def enroll(course_id: int) -> Response:
    form = request.form
    # Unique across gunicorn's worker processes: the pid in the high bits.
    enrollment_id = (os.getpid() << 32) | next(_ids)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    user_id = int(form.get("enrollment[user_id]") or 1000)
    enrollment = {
        "id": enrollment_id,
        "course_id": course_id,
        "course_section_id": course_id * 10,
        "user_id": user_id,
        "type": form.get("enrollment[type]", "StudentEnrollment"),
        "role": form.get("enrollment[type]", "StudentEnrollment"),
        "role_id": 3,
        "enrollment_state": "active",
        "root_account_id": 1,
        "sis_import_id": None,
        "created_at": now,
        "updated_at": now,
    }
    return _json(json.dumps(enrollment).encode())
