"""The lean path for plain GET and HEAD (issue 12, web/fastpath.py) answers exactly as the
Flask view does: the same bytes to Canvas, the same status, headers and body to the client,
the same access-log line and the same metrics."""

from __future__ import annotations

import http.client
import json
import logging
import time
from urllib.parse import urlsplit

import pytest

from ledger_proxy.ops import metrics

from .upstream import Reply

CANVAS_REPLIES = {
    "/api/v1/courses/7/users": Reply(
        headers=[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Link", '<CANVAS/api/v1/courses/7/users?page=2&per_page=10>; rel="next", '
                     '<https://elsewhere.example/x>; rel="last"'),
            ("X-Request-Context-Id", "ctx-7"),
            ("X-Rate-Limit-Remaining", "700.0"),
            ("Set-Cookie", "_csrf_token=abc; path=/"),
            ("Set-Cookie", "_normandy_session=def; path=/; HttpOnly"),
        ],
        body=b'[{"id": 1}]',
    ),
    "/api/v1/moved": Reply(status="302 Found", headers=[("Location", "CANVAS/api/v1/courses/8?x=%7e")], body=b""),
    "/api/v1/empty": Reply(status="204 No Content", headers=[], body=b""),
    "/api/v1/cached": Reply(status="304 Not Modified", headers=[("ETag", '"v1"'), ("Content-Type", "text/plain")], body=b""),
    "/api/v1/throttled": Reply(status="403 Forbidden", headers=[("Content-Type", "text/plain")], body=b"403 Forbidden (Rate Limit Exceeded)\n"),
    "/api/v1/slow-down": Reply(status="429 Too Many Requests", headers=[("Retry-After", "3")], body=b"{}"),
    "/api/v1/missing": Reply(status="404 Not Found", body=b'{"errors":[{"message":"The specified resource does not exist."}]}'),
    "/api/v1/no-type": Reply(headers=[("Connection", "X-Hop"), ("X-Hop", "dropped"), ("Keep-Alive", "timeout=5")], body=b"plain"),
    "/api/v1/odd-status": Reply(status="599 Whatever", headers=[], body=b"?"),
}

REQUESTS = [
    pytest.param("GET", "/api/v1/courses/7/users?per_page=10&access_token=SECRET", {}, id="link-rewritten"),
    pytest.param("GET", "/i/roster-sync/api/v1/courses/7/users", {"X-Ledger-Integration": "roster-sync"}, id="label-and-header"),
    pytest.param("HEAD", "/api/v1/courses/7/users", {}, id="head"),
    pytest.param("GET", "/api/v1/moved", {}, id="location-rewritten"),
    pytest.param("GET", "/api/v1/empty", {}, id="204"),
    pytest.param("GET", "/api/v1/cached", {"If-None-Match": '"v1"'}, id="304"),
    pytest.param("GET", "/api/v1/throttled", {}, id="403-rate-limited"),
    pytest.param("GET", "/api/v1/slow-down", {}, id="429"),
    pytest.param("GET", "/api/v1/missing", {"Authorization": "Bearer t0k3n"}, id="canvas-404"),
    pytest.param("GET", "/api/v1/no-type", {"Connection": "X-Mine", "X-Mine": "hop", "X-Forwarded-Host": "evil"}, id="hop-by-hop"),
    pytest.param("GET", "/api/v1/odd-status", {}, id="unknown-status"),
    pytest.param("GET", "/api/v1/courses/sis_course_id:BIO%2F101/users?state[]=active&q=%7e%", {}, id="raw-target"),
    pytest.param("GET", "//api/v1//courses/7/users", {}, id="squeezed-slashes"),
    pytest.param("GET", "/i/a/api/v1/x", {"X-Ledger-Integration": "b"}, id="label-conflict-400"),
    pytest.param("GET", "/i/bad%20label/api/v1/x", {}, id="bad-label-400"),
    pytest.param("GET", "/api/v1/courses/%2e%2e/users", {}, id="dot-segment-400"),
    pytest.param("GET", "/api/v1/courses/7/enrollments", {}, id="a-read-the-ledger-ignores"),
]


def canvas_reply(upstream_url):
    def reply(seen):
        found = CANVAS_REPLIES.get(seen.raw_target.split("?")[0].replace("//", "/"), Reply())
        headers = [(name, value.replace("CANVAS", upstream_url)) for name, value in found.headers]
        return Reply(found.status, headers, found.body)

    return reply


def exchange(base_url, method, target, headers):
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        kept = [
            (n, v.replace(base_url, "PROXY"))  # Link and Location name each proxy's own URL
            for n, v in response.getheaders()
            if n.lower() not in ("date", "x-ledger-request-id", "server")
        ]
        return response.status, response.reason, kept, body, response.getheader("X-Ledger-Request-Id")
    finally:
        connection.close()


class AccessLines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        line = json.loads(record.getMessage())
        for varying in ("time", "duration_ms", "request_id"):
            line.pop(varying)
        self.lines.append(line)


@pytest.fixture
def both(upstream, make_proxy):
    """The same app twice: the lean path on (as shipped), and off (an extra hook)."""
    app, server = upstream
    app.reply = canvas_reply(server.url)
    lean = make_proxy(server.url)
    flask_only = make_proxy(server.url)
    flask_only.app.before_request(lambda: None)  # a hook the lean path does not know: off
    dispatched = {"lean": 0}
    middleware = lean.app.wsgi_app.app  # SqueezeSlashes -> PlainForwarding
    inner = middleware.wsgi_app

    def counting(environ, start_response):
        dispatched["lean"] += 1
        return inner(environ, start_response)

    middleware.wsgi_app = counting
    return app, lean, flask_only, dispatched


@pytest.mark.parametrize(("method", "target", "headers"), REQUESTS)
def test_the_lean_path_answers_as_the_flask_view_does(both, method, target, headers):
    canvas, lean, flask_only, dispatched = both
    log = AccessLines()
    logging.getLogger("ledger_proxy.access").addHandler(log)
    try:
        answers = []
        for proxy in (lean, flask_only):
            canvas.seen.clear()
            answers.append((exchange(proxy.url, method, target, headers), list(canvas.seen)))
            # A streamed answer's line is written once the server is done sending it.
            deadline = time.monotonic() + 5
            while len(log.lines) < len(answers) and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        logging.getLogger("ledger_proxy.access").removeHandler(log)
    (lean_answer, lean_seen), (flask_answer, flask_seen) = answers
    assert lean_answer[:4] == flask_answer[:4]
    assert [(s.method, s.raw_target, s.headers, s.body) for s in lean_seen] == [
        (s.method, s.raw_target, s.headers, s.body) for s in flask_seen
    ]
    assert bool(lean_answer[4]) == bool(flask_answer[4])  # X-Ledger-Request-Id when forwarded
    assert log.lines[0] == log.lines[1]
    samples = [
        sorted(
            (sample.name, tuple(sorted(sample.labels.items())), sample.value)
            for family in proxy.app.extensions[metrics.EXTENSION_KEY].registry.collect()
            if family.name != "ledger_proxy_canvas_request_duration_seconds"
            for sample in family.samples
        )
        for proxy in (lean, flask_only)
    ]
    assert samples[0] == samples[1]


def test_plain_gets_take_the_lean_path_and_the_rest_goes_to_flask(both):
    canvas, lean, _flask_only, dispatched = both
    exchange(lean.url, "GET", "/api/v1/courses/7/users", {})
    exchange(lean.url, "HEAD", "/i/roster-sync/api/v1/courses/7/users", {})
    assert dispatched["lean"] == 0
    exchange(lean.url, "GET", "/i/a/api/v1/x", {"X-Ledger-Integration": "b"})  # refused: Flask says why
    exchange(lean.url, "GET", "/ledger/v1/openapi.json", {})
    assert dispatched["lean"] == 2


def test_a_canvas_failure_on_the_lean_path_is_the_same_canvas_shaped_502(make_proxy, upstream):
    _app, server = upstream
    lean = make_proxy("http://127.0.0.1:9")  # nothing listens there
    flask_only = make_proxy("http://127.0.0.1:9")
    flask_only.app.before_request(lambda: None)
    answers = [exchange(proxy.url, "GET", "/api/v1/users/self", {}) for proxy in (lean, flask_only)]
    assert answers[0][:4] == answers[1][:4]
    assert answers[0][0] == 502 and b"could not be reached" in answers[0][3]
