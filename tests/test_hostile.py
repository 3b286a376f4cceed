"""Hostile and broken input: a clear 4xx or faithful forwarding, never a 5xx of the proxy's own,
never a request to any host but Canvas. Run against both servers the proxy ships with."""

from __future__ import annotations

import json

import pytest

from ledger_proxy import create_app
from ledger_proxy.devserver import BackgroundServer

from .helpers import raw_request
from .processes import gunicorn
from .upstream import RecordingUpstream


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """(canvas, canvas_server, other, other_server): `other` must never see a request."""
    canvas, other = RecordingUpstream(), RecordingUpstream()
    with BackgroundServer(canvas) as canvas_server, BackgroundServer(other) as other_server:
        yield canvas, canvas_server, other, other_server


@pytest.fixture(scope="module", params=["werkzeug", "gunicorn"])
def proxy_port(request, hosts, tmp_path_factory):
    _, canvas_server, _, _ = hosts
    tmp = tmp_path_factory.mktemp(request.param)
    settings = {
        "CANVAS_URL": canvas_server.url,
        "DATABASE": str(tmp / "ledger.sqlite3"),
        "TOKEN_HASH_KEY": "k",
        "MAX_BODY_BYTES": 100_000,
        "MAX_PARSED_BODY_BYTES": 10_000,
    }
    if request.param == "werkzeug":
        with BackgroundServer(create_app(settings, instance_path=str(tmp / "i"))) as server:
            yield server.port
    else:
        # Module-scoped: set up before conftest's per-test instance folder; give it its own.
        settings["INSTANCE_PATH"] = str(tmp / "i")
        with gunicorn({f"LEDGER_PROXY_{k}": str(v) for k, v in settings.items()}, workers=1, threads=4) as base:
            yield int(base.rsplit(":", 1)[1])


def cases(other_port):
    other = f"127.0.0.1:{other_port}"
    big = "x" * 200_000
    return {
        "absolute-uri-to-another-host": f"GET http://{other}/api/v1/users/self HTTP/1.1\r\nHost: {other}\r\n\r\n",
        "absolute-uri-post": f"POST http://{other}/api/v1/courses/1/enrollments HTTP/1.1\r\nHost: {other}\r\nContent-Length: 0\r\n\r\n",
        "connect": f"CONNECT {other} HTTP/1.1\r\nHost: {other}\r\n\r\n",
        "host-header-elsewhere": f"GET /api/v1/users/self HTTP/1.1\r\nHost: {other}\r\n\r\n",
        "forwarded-host-elsewhere": f"GET /api/v1/users/self HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: {other}\r\n\r\n",
        "dot-dot": "GET /api/v1/../../login HTTP/1.1\r\nHost: x\r\n\r\n",
        "encoded-dot-dot": "GET /api/v1/%2e%2e/%2e%2e/login HTTP/1.1\r\nHost: x\r\n\r\n",
        "backslash-dot-dot": "GET /api/v1/..%5c..%5clogin HTTP/1.1\r\nHost: x\r\n\r\n",
        "outside-api": "GET /login/oauth2/auth HTTP/1.1\r\nHost: x\r\n\r\n",
        "outside-api-post": "POST /courses/1/enroll_users HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "unknown-method": "BREW /api/v1/users/self HTTP/1.1\r\nHost: x\r\n\r\n",
        "oversized-body": "POST /api/v1/courses/1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n",
        "oversized-enrollment-body": "POST /api/v1/courses/1/enrollments HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20000\r\n\r\n" + "a" * 20000,
        "malformed-json": 'POST /api/v1/courses/1/enrollments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{"enrollment":',
        "json-array": "POST /api/v1/courses/1/enrollments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]",
        "malformed-multipart": "POST /api/v1/courses/1/enrollments HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\nContent-Length: 9\r\n\r\n--zz\r\nbad",
        "multipart-without-boundary": "POST /api/v1/courses/1/enrollments HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data\r\nContent-Length: 3\r\n\r\nabc",
        "invalid-utf8-form": "POST /api/v1/courses/1/enrollments HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 22\r\n\r\nenrollment[user_id]=%ff",
        "invalid-utf8-query-on-enrollment": "POST /api/v1/courses/1/enrollments?x=%ff%fe HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "invalid-utf8-in-path": "GET /api/v1/courses/%ff%fe/enrollments HTTP/1.1\r\nHost: x\r\n\r\n",
        "raw-bytes-in-path": "GET /api/v1/courses/\xff/enrollments HTTP/1.1\r\nHost: x\r\n\r\n",
        "lf-only-header-injection": "GET /api/v1/users/self HTTP/1.1\r\nHost: x\r\nX-A: 1\nX-Injected: 2\r\n\r\n",
        "cr-in-header-value": "GET /api/v1/users/self HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-Injected: 2\r\n\r\n",
        "duplicated-content-length": "POST /api/v1/courses/1/enrollments HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        "duplicated-authorization": "GET /api/v1/users/self HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
        "conflicting-integration-labels": "GET /i/a/api/v1/users/self HTTP/1.1\r\nHost: x\r\nX-Ledger-Integration: b\r\n\r\n",
        "bad-integration-label": "GET /i/%3Cscript%3E/api/v1/users/self HTTP/1.1\r\nHost: x\r\n\r\n",
        "enormous-query": f"GET /api/v1/users/self?q={big} HTTP/1.1\r\nHost: x\r\n\r\n",
        "transfer-encoding-and-length": "POST /api/v1/courses/1/enrollments HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        "bad-chunked": "POST /api/v1/courses/1/files HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "ledger-api-without-token": "GET /ledger/v1/courses/1/enrollments HTTP/1.1\r\nHost: x\r\n\r\n",
        "ledger-api-unknown-path": "GET /ledger/v1/../../api/v1/users/self HTTP/1.1\r\nHost: x\r\n\r\n",
    }


CASE_NAMES = list(cases(1))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_hostile_input(hosts, proxy_port, case):
    canvas, _, other, other_server = hosts
    request = cases(other_server.port)[case]
    before = len(canvas.seen)
    try:
        status, headers, body = raw_request(proxy_port, request.encode("latin-1") + b"")
    except (ConnectionError, OSError):
        status, headers, body = None, {}, b""  # the server closed the connection: also a refusal
    assert other.seen == [], "a request reached a host that is not Canvas"
    if status is None:
        return
    assert status < 500, (status, body[:300])
    if status >= 400 and headers.get("content-type", "").startswith("application/json"):
        assert json.loads(body)["errors"][0]["message"]
    if len(canvas.seen) > before:  # forwarded: then faithfully, to Canvas only, within /api/
        assert all(seen.raw_target.startswith("/api/") for seen in canvas.seen[before:])
        assert status == 200
