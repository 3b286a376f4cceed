"""The server's edges under gunicorn: plain `gunicorn wsgi:app` with the project's settings,
request lines and errors the way Canvas takes and gives them, Canvas's headers unchanged,
keep-alive kept honest, and slow clients that cannot tie the workers up."""

from __future__ import annotations

import http.client
import json
import os
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from canvasapi import Canvas

from ledger_proxy.devserver import (
    BIN,
    PROJECT_ROOT,
    clean_environment,
    gunicorn_process,
    plain_gunicorn_process,
)

from .helpers import assert_canvas_error

pytestmark = pytest.mark.slow

CANVAS_DATE = "Tue, 01 Jan 2030 00:00:00 GMT"
CANVAS_SERVER = "Apache"
SECRET = "7~s3cr3t-t0k3n"


class RawResponse:
    """What assert_canvas_error needs, read off a raw socket."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status_code = response.status
        self.header_list = response.getheaders()
        self.headers = requests.structures.CaseInsensitiveDict(self.header_list)
        self.content = response.read()

    def json(self) -> Any:
        return json.loads(self.content)

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.header_list if key.lower() == name.lower()]


class Connection:
    """One client connection sending exactly the bytes given, reading one response at a time."""

    def __init__(self, base: str, timeout: float = 15) -> None:
        host, port = base.rsplit("/", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, method: str = "GET") -> RawResponse:
        response = http.client.HTTPResponse(self.sock, method=method)
        response.begin()
        return RawResponse(response)

    def exchange(self, data: bytes) -> RawResponse:
        self.send(data)
        return self.response()

    def close(self) -> None:
        self.sock.close()


def exchange(base: str, data: bytes) -> RawResponse:
    conn = Connection(base)
    try:
        return conn.exchange(data)
    finally:
        conn.close()


@dataclass
class Seen:
    method: str
    raw_target: str
    headers: list[tuple[str, str]]


class CannedCanvas(socketserver.ThreadingTCPServer):
    """A stand-in Canvas answering exactly the bytes a real one would, with one Date and one
    Server of its own (werkzeug's server would add its own beside them); it records each
    request's line and headers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.seen: list[Seen] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _CannedHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(65536).decode("latin-1").rstrip("\r\n")
        headers = []
        while (header := self.rfile.readline(65536).decode("latin-1").rstrip("\r\n")):
            name, _, value = header.partition(":")
            headers.append((name, value.strip()))
        method, target, _ = line.split(" ", 2)
        length = int(dict((k.lower(), v) for k, v in headers).get("content-length", 0))
        self.rfile.read(length)
        self.server.seen.append(Seen(method, target, headers))  # type: ignore[attr-defined]
        body = b'{"id": 1, "name": "Course"}' if target == "/api/v1/courses/1" else b"[]"
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nDate: %s\r\nServer: %s\r\nConnection: close\r\n"
            b"Content-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
            % (CANVAS_DATE.encode(), CANVAS_SERVER.encode(), len(body), body)
        )


@pytest.fixture(scope="module")
def canvas() -> Iterator[CannedCanvas]:
    server = CannedCanvas()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def edges(canvas: CannedCanvas, tmp_path_factory: Any) -> Iterator[Any]:
    """gunicorn with the project's settings in front of it; a short receive deadline."""
    folder = tmp_path_factory.mktemp("edges")
    settings = {
        "LEDGER_PROXY_CANVAS_URL": canvas.url,
        "LEDGER_PROXY_DATABASE": str(folder / "ledger.sqlite3"),
        "LEDGER_PROXY_INSTANCE_PATH": str(folder / "instance"),
        "LEDGER_PROXY_TOKEN_HASH_KEY": "k",
        "LEDGER_PROXY_MAX_PARSED_BODY_BYTES": "1000",
        "LEDGER_PROXY_RECEIVE_TIMEOUT": "2",
        # Bodies sent fast do not buy the trickling tests below much time.
        "LEDGER_PROXY_RECEIVE_MIN_RATE": "1000000",
    }
    with gunicorn_process(settings, workers=1, threads=None) as service:
        service.instance = folder / "instance"  # type: ignore[attr-defined]
        yield service


# Issue 10 item 2: plain `gunicorn wsgi:app`.


def test_plain_gunicorn_answers_a_slow_canvas_with_the_proxys_504(sim, tmp_path):
    settings = {
        "LEDGER_PROXY_CANVAS_URL": sim.url,
        "LEDGER_PROXY_DATABASE": str(tmp_path / "ledger.sqlite3"),
        "LEDGER_PROXY_INSTANCE_PATH": os.environ["LEDGER_PROXY_INSTANCE_PATH"],
        "LEDGER_PROXY_CONNECT_TIMEOUT": "1",
        "LEDGER_PROXY_READ_TIMEOUT": "2",
    }
    sim.set_faults({"method": "GET", "path": "/accounts", "action": "delay", "seconds": 4})
    with plain_gunicorn_process(settings) as service:
        response = requests.get(f"{service.url}/api/v1/accounts", timeout=30)
        log = "".join(service.log)
    assert_canvas_error(response, 504, "Canvas did not answer in time")
    # The project's worker, not gunicorn's sync worker and its 30 s kill.
    assert "Using worker: ledger_proxy.ops.worker.CanvasWorker" in log
    assert "sync" not in log


@pytest.mark.parametrize(
    "config", [pytest.param([], id="gunicorn.conf.py"), pytest.param(["-c", "python:ledger_proxy.gunicorn_conf"], id="-c python:...")]
)
def test_gunicorn_refuses_a_worker_timeout_within_the_proxys_timeouts(config, tmp_path):
    env = clean_environment({
        "LEDGER_PROXY_CANVAS_URL": "http://127.0.0.1:9",
        "LEDGER_PROXY_DATABASE": str(tmp_path / "ledger.sqlite3"),
        "LEDGER_PROXY_INSTANCE_PATH": str(tmp_path / "instance"),
        "LEDGER_PROXY_CONNECT_TIMEOUT": "1",
        "LEDGER_PROXY_READ_TIMEOUT": "2",
        "GUNICORN_CMD_ARGS": "--bind 127.0.0.1:0 --timeout 3",
    })
    done = subprocess.run(
        [str(BIN / "gunicorn"), *config, "wsgi:app"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert (
        "gunicorn's worker timeout (3 s) must exceed LEDGER_PROXY_CONNECT_TIMEOUT + "
        "LEDGER_PROXY_READ_TIMEOUT (3 s)"
    ) in done.stderr
    assert "Booting worker" not in done.stderr


# Issue 10 item 3: request lines Canvas accepts; the server's own errors in Canvas's shape.


def test_canvasapi_long_list_parameters_reach_canvas(edges, canvas):
    ids = [f"sis-user-{n:05d}" for n in range(199)]
    course = Canvas(edges.url, "token").get_course(1)
    assert list(course.get_enrollments(sis_user_id=ids)) == []
    seen = canvas.seen[-1]
    assert len(f"GET {seen.raw_target} HTTP/1.1") > 4094
    assert seen.raw_target.count("sis_user_id") == 199


def test_a_request_line_of_8190_bytes_is_forwarded(edges, canvas):
    target = "/api/v1/courses/1/enrollments?x="
    target += "a" * (8190 - len(f"GET {target} HTTP/1.1"))
    response = exchange(edges.url, f"GET {target} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode())
    assert response.status_code == 200
    assert canvas.seen[-1].raw_target == target


@pytest.mark.parametrize(
    ("request_bytes", "status", "fragment"),
    [
        pytest.param(
            b"GET /api/v1/courses?access_token=" + SECRET.encode() + b"&q=" + b"a" * 9000
            + b" HTTP/1.1\r\nHost: proxy\r\n\r\n",
            414, "the request line is longer than 8190 bytes", id="414",
        ),
        pytest.param(
            b"GET /api/v1/courses/\xff?access_token=" + SECRET.encode() + b" HTTP/1.1\r\nHost: proxy\r\n\r\n",
            400, "malformed request line", id="non-ascii-target",
        ),
        pytest.param(
            b"GET /api/v1/courses?access_token=" + SECRET.encode() + b" HTTP/1.1 extra\r\nHost: proxy\r\n\r\n",
            400, "malformed request line", id="malformed-line",
        ),
        pytest.param(
            b"GET /api/v1/courses HTTP/1.1\r\nHost: proxy\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431, "the request headers are too large", id="431-field",
        ),
        pytest.param(
            b"GET /api/v1/courses HTTP/1.1\r\nHost: proxy\r\n"
            + b"".join(b"X-H%d: 1\r\n" % n for n in range(120)) + b"\r\n",
            431, "the request headers are too large", id="431-count",
        ),
        pytest.param(
            b"GET /api/v1/courses HTTP/1.1\r\nHost: proxy\r\nBad Header: 1\r\n\r\n",
            400, "malformed request header", id="bad-header",
        ),
    ],
)
def test_the_servers_own_errors_are_in_canvas_error_shape_and_log_no_token(
    edges, request_bytes, status, fragment
):
    response = exchange(edges.url, request_bytes)
    assert_canvas_error(response, status, fragment)
    assert response.headers["Connection"] == "close"
    time.sleep(0.2)  # the worker's log line is written after the answer
    log = "".join(edges.log)
    assert SECRET not in log


# Issue 10 item 6: Canvas's headers unchanged; keep-alive honest.


def test_canvas_date_and_server_reach_the_client_once(edges):
    response = exchange(edges.url, b"GET /api/v1/courses HTTP/1.1\r\nHost: proxy\r\n\r\n")
    assert response.status_code == 200
    assert response.all("Date") == [CANVAS_DATE]
    assert response.all("Server") == [CANVAS_SERVER]
    # The proxy's own answers still carry a Date.
    own = exchange(edges.url, b"GET /nowhere HTTP/1.1\r\nHost: proxy\r\n\r\n")
    assert own.status_code == 404 and len(own.all("Date")) == 1


def test_no_accept_encoding_is_added_upstream(edges, canvas):
    exchange(edges.url, b"GET /api/v1/users/self HTTP/1.1\r\nHost: proxy\r\n\r\n")
    names = {name.lower() for name, _ in canvas.seen[-1].headers}
    assert "accept-encoding" not in names and "user-agent" not in names


@pytest.mark.parametrize(
    ("head", "size", "status"),
    [
        pytest.param(b"POST /nowhere", 5_000, 404, id="404-small-body"),
        pytest.param(b"POST /nowhere", 300_000, 404, id="404-large-body"),
        pytest.param(b"POST /api/v1/courses/1/enrollments", 5_000, 413, id="413-small-body"),
        pytest.param(b"POST /api/v1/courses/1/enrollments", 300_000, 413, id="413-large-body"),
    ],
)
def test_keep_alive_after_an_answer_with_the_body_unread(edges, head, size, status):
    conn = Connection(edges.url)
    try:
        conn.send(
            head + b" HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % size
        )
        sender = threading.Thread(target=lambda: _send_quietly(conn, b"a" * size), daemon=True)
        sender.start()
        first = conn.response()
        assert first.status_code == status
        sender.join(15)
        if first.headers.get("Connection", "").lower() == "close":
            return  # said so: the client opens a new connection
        second = conn.exchange(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
        assert second.status_code == 200
        assert size < 64 * 1024  # a body that was not received whole is never kept alive
    finally:
        conn.close()


def _send_quietly(conn: Connection, data: bytes) -> None:
    try:
        conn.send(data)
    except OSError:
        pass  # the server closed after answering: allowed, it said Connection: close


def test_a_client_waiting_for_100_continue_gets_it_and_is_answered(edges, canvas):
    conn = Connection(edges.url)
    try:
        conn.send(
            b"POST /api/v1/accounts/1/things HTTP/1.1\r\nHost: proxy\r\nExpect: 100-continue\r\n"
            b"Content-Length: 5\r\n\r\n"
        )
        assert conn.sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        response = conn.exchange(b"hello")  # http.client skips further 100s
    finally:
        conn.close()
    assert response.status_code == 200
    assert canvas.seen[-1].raw_target == "/api/v1/accounts/1/things"


def test_a_body_the_proxy_refuses_on_its_head_is_refused_at_once(edges):
    response = exchange(
        edges.url,
        b"POST /api/v1/courses/1/files HTTP/1.1\r\nHost: proxy\r\nContent-Length: 999999999999\r\n\r\n",
    )
    assert_canvas_error(response, 413, "larger than")
    assert response.headers["Connection"] == "close"


# Issue 11 item 5: slow clients.


def test_a_trickling_client_is_cut_off_with_408(edges):
    conn = Connection(edges.url, timeout=30)
    started = time.monotonic()
    try:
        conn.send(b"POST /api/v1/courses/1/enrollments HTTP/1.1\r\nHost: proxy\r\nContent-Length: 100\r\n\r\n")
        cut = None
        for _ in range(60):  # a byte every 0.5 s: each read would meet any per-recv timeout
            try:
                conn.send(b"a")
            except OSError:
                break
            time.sleep(0.5)
            conn.sock.setblocking(False)
            try:
                cut = conn.sock.recv(65536, socket.MSG_PEEK)
            except BlockingIOError:
                cut = None
            finally:
                conn.sock.setblocking(True)
            if cut is not None:
                break
        response = conn.response()
    finally:
        conn.close()
    assert_canvas_error(response, 408, "did not arrive in time")
    assert time.monotonic() - started < 20


def test_a_trickling_large_body_is_cut_off_too(edges, canvas):
    """Past the first 64 KiB a thread reads the body: its reads have the same deadline."""
    conn = Connection(edges.url, timeout=30)
    try:
        conn.send(
            b"POST /api/v1/accounts/1/sis_imports HTTP/1.1\r\nHost: proxy\r\n"
            b"Content-Type: text/csv\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 100_000
        )
        for _ in range(60):
            time.sleep(0.5)
            try:
                conn.send(b"a")
            except OSError:
                break
        conn.sock.settimeout(10)
        try:
            response = conn.response()
        except (OSError, http.client.HTTPException):
            response = None
    finally:
        conn.close()
    # Either the proxy's own answer, or the connection cut; never a wait without end.
    if response is not None:
        assert response.status_code in (400, 408)
        assert response.headers["Connection"] == "close"


def test_healthz_answers_while_32_slow_uploads_are_in_progress(tmp_path):
    settings = {
        "LEDGER_PROXY_CANVAS_URL": "http://127.0.0.1:9",
        "LEDGER_PROXY_DATABASE": str(tmp_path / "ledger.sqlite3"),
        "LEDGER_PROXY_INSTANCE_PATH": os.environ["LEDGER_PROXY_INSTANCE_PATH"],
        "LEDGER_PROXY_TOKEN_HASH_KEY": "k",
    }
    with gunicorn_process(settings, workers=None, threads=None) as service:  # 2 × 8 threads
        stop = threading.Event()
        conns = [Connection(service.url, timeout=30) for _ in range(32)]

        def trickle(conn: Connection, index: int) -> None:
            # Half send their headers at once and trickle the body; half trickle it all.
            head = (
                b"POST /api/v1/accounts/1/sis_imports HTTP/1.1\r\nHost: proxy\r\n"
                b"Content-Length: 1000\r\n\r\n"
            )
            if index % 2 == 0:
                conn.send(head)
                head = b""
            data = head + b"a" * 1000
            for byte in range(len(data)):
                if stop.wait(2 if byte else 0):
                    return
                try:
                    conn.send(data[byte : byte + 1])
                except OSError:
                    return

        threads = [threading.Thread(target=trickle, args=(c, i), daemon=True) for i, c in enumerate(conns)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(2.5)  # every upload has started and sent bytes
            slowest = 0.0
            for _ in range(6):
                started = time.monotonic()
                try:
                    response = requests.get(f"{service.url}/healthz", timeout=10)
                except requests.RequestException as exc:
                    raise AssertionError("".join(service.log[-40:])) from exc
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 200
                time.sleep(0.3)
        finally:
            stop.set()
            for conn in conns:
                conn.close()
            for thread in threads:
                thread.join(5)
    assert slowest < 2, slowest


# Issue 11 item 8: gunicorn's control socket stays in the instance's own runtime folder.


def test_the_control_socket_is_in_the_instances_runtime_folder(edges):
    runtime = edges.instance / "run"
    assert (runtime / "gunicorn.ctl").exists()
    assert runtime.stat().st_mode & 0o777 == 0o700
    assert f"Control socket listening at {runtime / 'gunicorn.ctl'}" in "".join(edges.log)


def test_gunicorns_error_log_is_redacted_once_the_app_is_built(tmp_path):
    """The app's redaction sits on `gunicorn.error` too: any line gunicorn writes there about
    a request (a malformed request line, a failed request) loses its token."""
    import logging

    from ledger_proxy import create_app

    create_app(
        {"CANVAS_URL": "http://canvas.invalid", "DATABASE": str(tmp_path / "l.sqlite3"), "TOKEN_HASH_KEY": "k"},
        instance_path=str(tmp_path / "i"),
        background=False,
    )
    logger = logging.getLogger("gunicorn.error")
    record = logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, "Invalid request: %s", (f"GET /api?access_token={SECRET} HTTP/1.1",), None
    )
    assert all(check.filter(record) for check in logger.filters)
    assert SECRET not in record.getMessage()
    assert "access_token=[REDACTED]" in record.getMessage()
