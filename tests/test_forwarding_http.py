"""Forwarding over real HTTP: bytes, headers and errors, against a recording upstream."""

from __future__ import annotations

import gzip
import json
import socket

import pytest
import requests

from .helpers import assert_canvas_error, raw_request
from .upstream import Reply


def test_raw_path_query_and_body_reach_canvas_unchanged(upstream, make_proxy):
    app, server = upstream
    proxy = make_proxy(server.url)
    target = "/api/v1/courses/sis_course_id:BIO%2F101/enrollments?per_page=10&per_page=100&state%5B%5D=active"
    status, _, _ = raw_request(
        proxy.port,
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\nAuthorization: Bearer t0k\r\n"
        "User-Agent: python-canvasapi/3.6.0\r\nConnection: close\r\n\r\n".encode(),
    )
    assert status == 200
    seen = app.seen[-1]
    assert seen.raw_target == target
    assert app.header(seen, "Authorization") == "Bearer t0k"
    assert app.header(seen, "User-Agent") == "python-canvasapi/3.6.0"


def test_form_body_bytes_and_content_type_are_forwarded(upstream, make_proxy):
    app, server = upstream
    proxy = make_proxy(server.url)
    body = b"enrollment%5Btype%5D=StudentEnrollment&enrollment%5Buser_id%5D=5&zz=%E2%9C%93"
    requests.put(
        f"{proxy.url}/api/v1/courses/1/front_page",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    seen = app.seen[-1]
    assert (seen.method, seen.body) == ("PUT", body)
    assert app.header(seen, "Content-Type") == "application/x-www-form-urlencoded"
    assert app.header(seen, "Content-Length") == str(len(body))


def test_hop_by_hop_headers_are_dropped_both_ways(upstream, make_proxy):
    app, server = upstream
    app.reply = lambda _seen: Reply(
        headers=[
            ("Content-Type", "application/json"),
            ("Connection", "X-Upstream-Private"),
            ("X-Upstream-Private", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("X-Request-Context-Id", "ctx-1"),
            ("X-Rate-Limit-Remaining", "599.5"),
        ]
    )
    proxy = make_proxy(server.url)
    response = requests.get(
        f"{proxy.url}/api/v1/users/self",
        headers={"Connection": "keep-alive, X-Client-Private", "X-Client-Private": "1", "TE": "trailers", "X-Other": "kept"},
        timeout=10,
    )
    seen = app.seen[-1]
    assert app.header(seen, "X-Client-Private") is None
    assert app.header(seen, "Te") is None
    assert app.header(seen, "X-Other") == "kept"
    assert "X-Upstream-Private" not in response.headers
    assert "Keep-Alive" not in response.headers
    assert response.headers["X-Request-Context-Id"] == "ctx-1"
    assert response.headers["X-Rate-Limit-Remaining"] == "599.5"
    assert response.headers["X-Ledger-Request-Id"]


def test_link_header_urls_are_moved_to_the_proxy_base_and_label(upstream, make_proxy):
    app, server = upstream
    canvas = server.url
    link = (
        f'<{canvas}/api/v1/courses/1/enrollments?page=first&per_page=10>; rel="current",'
        f'<{canvas}/api/v1/courses/1/enrollments?page=bookmark:WyJTIiwxXQ&per_page=10>; rel="next",'
        '<https://elsewhere.example/x>; rel="other"'
    )
    app.reply = lambda _seen: Reply(headers=[("Content-Type", "application/json"), ("Link", link)])
    proxy = make_proxy(canvas)
    response = requests.get(f"{proxy.url}/i/roster-sync/api/v1/courses/1/enrollments", timeout=10)
    assert response.headers["Link"] == (
        f'<{proxy.url}/i/roster-sync/api/v1/courses/1/enrollments?page=first&per_page=10>; rel="current",'
        f'<{proxy.url}/i/roster-sync/api/v1/courses/1/enrollments?page=bookmark:WyJTIiwxXQ&per_page=10>; rel="next",'
        '<https://elsewhere.example/x>; rel="other"'
    )
    assert app.seen[-1].raw_target == "/api/v1/courses/1/enrollments"


def test_compressed_answers_pass_through_undecoded(upstream, make_proxy):
    app, server = upstream
    payload = gzip.compress(json.dumps({"id": 1}).encode())
    app.reply = lambda _seen: Reply(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip"), ("Content-Length", str(len(payload)))],
        body=payload,
    )
    proxy = make_proxy(server.url)
    response = requests.get(f"{proxy.url}/api/v1/courses/1", timeout=10)
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.json() == {"id": 1}


@pytest.mark.parametrize(
    "method", [pytest.param(m, id=m) for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")]
)
def test_every_method_is_forwarded(upstream, make_proxy, method):
    app, server = upstream
    proxy = make_proxy(server.url)
    response = requests.request(method, f"{proxy.url}/api/v1/courses/7", timeout=10)
    assert response.status_code == 200
    assert (app.seen[-1].method, app.seen[-1].raw_target) == (method, "/api/v1/courses/7")


def test_canvas_errors_pass_through_byte_for_byte(upstream, make_proxy):
    app, server = upstream
    body = b'{"errors":[{"message":"Invalid access token."}]}'
    app.reply = lambda _seen: Reply(
        status="401 Unauthorized",
        headers=[("Content-Type", "application/json; charset=utf-8"), ("WWW-Authenticate", 'Bearer realm="canvas-lms"')],
        body=body,
    )
    proxy = make_proxy(server.url)
    response = requests.get(f"{proxy.url}/api/v1/users/self", timeout=10)
    assert (response.status_code, response.content) == (401, body)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="canvas-lms"'


def test_unreachable_canvas_is_a_502_in_canvas_shape(make_proxy):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proxy = make_proxy(dead)
    response = requests.get(f"{proxy.url}/api/v1/users/self", timeout=10)
    assert_canvas_error(response, 502, "could not be reached")


def test_slow_canvas_is_a_504_in_canvas_shape(upstream, make_proxy):
    import time

    app, server = upstream

    def slow(_seen):
        time.sleep(1.0)
        return Reply()

    app.reply = slow
    proxy = make_proxy(server.url, READ_TIMEOUT=0.2)
    response = requests.get(f"{proxy.url}/api/v1/users/self", timeout=10)
    assert_canvas_error(response, 504, "did not answer in time")


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        pytest.param("GET http://evil.example/api/v1/users/self HTTP/1.1", 400, id="absolute-uri"),
        pytest.param("GET /api/v1/../../login HTTP/1.1", 400, id="dot-dot"),
        pytest.param("GET /api/v1/%2e%2e/%2E%2E/login HTTP/1.1", 400, id="encoded-dot-dot"),
        pytest.param("GET /api/v1/%252e%252e/login HTTP/1.1", 400, id="double-encoded-dot-dot"),
        # Not under /api/ at all as far as routing is concerned.
        pytest.param("GET //evil.example/api/v1 HTTP/1.1", 404, id="network-path"),
    ],
)
def test_hostile_request_targets_get_a_clear_4xx_and_reach_nobody(
    upstream, make_proxy, request_line, expected
):
    app, server = upstream
    proxy = make_proxy(server.url)
    status, headers, body = raw_request(
        proxy.port, f"{request_line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    )
    assert status == expected, body
    assert json.loads(body)["errors"][0]["message"]
    assert app.seen == []


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=p) for p in ("/", "/login", "/courses/1", "/apix/v1/users/self")]
)
def test_paths_outside_api_are_404_and_not_forwarded(upstream, make_proxy, path):
    app, server = upstream
    proxy = make_proxy(server.url)
    response = requests.get(proxy.url + path, timeout=10)
    assert_canvas_error(response, 404, "forwards only /api/")
    assert app.seen == []


def test_body_over_the_maximum_is_413_and_not_forwarded(upstream, make_proxy):
    app, server = upstream
    proxy = make_proxy(server.url, MAX_BODY_BYTES=1000)
    response = requests.post(f"{proxy.url}/api/v1/courses/1/files", data=b"x" * 5000, timeout=10)
    assert_canvas_error(response, 413, "larger than 1000 bytes")
    assert app.seen == []


def test_integration_label_conflict_is_a_400(upstream, make_proxy):
    app, server = upstream
    proxy = make_proxy(server.url)
    response = requests.get(
        f"{proxy.url}/i/alpha/api/v1/users/self", headers={"X-Ledger-Integration": "beta"}, timeout=10
    )
    assert_canvas_error(response, 400, "names integration")
    assert app.seen == []


def test_integration_header_is_not_forwarded(upstream, make_proxy):
    app, server = upstream
    proxy = make_proxy(server.url)
    requests.get(f"{proxy.url}/api/v1/users/self", headers={"X-Ledger-Integration": "beta"}, timeout=10)
    assert app.header(app.seen[-1], "X-Ledger-Integration") is None


def test_a_large_upload_streams_through_without_being_held_in_memory(make_proxy):
    """60 MB through the proxy while Python's own allocations stay far below the body size."""
    import hashlib
    import tracemalloc

    from ledger_proxy.devserver import BackgroundServer

    from .upstream import RecordingUpstream

    app = RecordingUpstream(keep_bodies=False)
    chunk = bytes(range(256)) * 4096  # 1 MiB
    total = 60
    digest = hashlib.sha256(chunk * total).hexdigest()
    with BackgroundServer(app) as server:
        proxy = make_proxy(server.url)

        def body():
            for _ in range(total):
                yield chunk

        tracemalloc.start()
        try:
            response = requests.post(
                f"{proxy.url}/api/v1/accounts/1/sis_imports?extension=zip",
                data=body(),
                headers={"Content-Type": "application/zip"},
                timeout=60,
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 200
    assert app.seen[-1].body == f"{total * len(chunk)}:{digest}".encode()
    # The test's own chunk (1 MiB) and the server threads' buffers, not 60 MiB.
    assert peak < 12 * 1024 * 1024, peak


def test_no_header_is_added_that_the_client_did_not_send(upstream, make_proxy):
    app, server = upstream
    proxy = make_proxy(server.url)
    status, _, _ = raw_request(
        proxy.port,
        b"GET /api/v1/users/self HTTP/1.1\r\nHost: proxy.example\r\nConnection: close\r\n\r\n",
    )
    assert status == 200
    names = {name.lower() for name, _ in app.seen[-1].headers}
    assert "user-agent" not in names
    assert "authorization" not in names
    assert names == {"host"}  # Host for Canvas; not even urllib3's "Accept-Encoding: identity"


def test_an_unexpected_error_is_a_canvas_shaped_500_and_logs_no_token(upstream, make_proxy, caplog, monkeypatch):
    app, server = upstream
    proxy = make_proxy(server.url)
    secret = "SECRET-in-the-query"

    def explode(*_args, **_kwargs):
        raise RuntimeError(f"boom while sending /api/v1/users/self?access_token={secret}")

    # `send` (requests) and `forward` (the urllib3 pool, for requests without a body: issue 12)
    monkeypatch.setattr(proxy.app.extensions["ledger_proxy"].canvas, "send", explode)
    monkeypatch.setattr(proxy.app.extensions["ledger_proxy"].canvas, "forward", explode)
    response = requests.get(f"{proxy.url}/api/v1/users/self?access_token={secret}", timeout=10)
    assert_canvas_error(response, 500, "internal error")
    assert response.json()["errors"][0]["error_code"] == "internal_server_error"
    assert "RuntimeError" in caplog.text
    assert secret not in caplog.text
    assert secret not in response.text


def test_forwarding_headers_meant_for_the_proxy_never_reach_canvas(upstream, make_proxy):
    """Canvas builds Link URLs from X-Forwarded-*: sent on, they would lead clients astray."""
    app, server = upstream
    proxy = make_proxy(server.url)
    requests.get(
        f"{proxy.url}/api/v1/courses/1/enrollments",
        headers={
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Port": "443",
            "X-Forwarded-Prefix": "/x",
            "Forwarded": "host=evil.example;proto=https",
            "X-Forwarded-For": "203.0.113.9",
        },
        timeout=10,
    )
    names = {name.lower() for name, _ in app.seen[-1].headers}
    assert not names & {"x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix", "forwarded"}
    assert "x-forwarded-for" in names  # the client's address is not a URL part: it goes on
