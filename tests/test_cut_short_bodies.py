"""A request body the client did not finish never reaches Canvas as a complete request.

Raw sockets send what no HTTP library would: a body shorter than its Content-Length, a chunked
body without its last chunk, bytes beyond the declared length. Each case runs under werkzeug's
development server and under gunicorn (which hands a short body to the application without
complaint), and is judged on the simulator's own record of what it received and made.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from ledger_proxy.devserver import gunicorn_process

from .helpers import ledger_rows

ENROLLMENTS = r"/courses/\d+/enrollments$"
SIS_IMPORTS = r"/sis_imports$"


@pytest.fixture
def gunicorn_proxy(sim: Any, tmp_path: Any) -> Iterator[tuple[str, str, list[str]]]:
    database = str(tmp_path / "gunicorn-ledger.sqlite3")
    settings = {
        "LEDGER_PROXY_CANVAS_URL": sim.url,
        "LEDGER_PROXY_DATABASE": database,
        "LEDGER_PROXY_TOKEN_HASH_KEY": "test-token-hash-key",
        "LEDGER_PROXY_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    with gunicorn_process(settings, workers=1, threads=4) as service:
        yield service.url, database, service.log


@pytest.fixture(params=["werkzeug", "gunicorn"])
def proxy(request: Any, sim: Any, make_proxy: Callable[..., Any]) -> tuple[str, str, str, list[str]]:
    """(base URL, ledger path, server, server log) of a proxy in front of the (freshly reset)
    simulator."""
    if request.param == "gunicorn":
        url, database, log = request.getfixturevalue("gunicorn_proxy")
        return url, database, "gunicorn", log
    server = make_proxy(sim.url)
    return server.url, server.app.config["DATABASE"], "werkzeug", []


# Raw requests


def connect(base: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=10)


def request_head(path: str, token: str, content_type: str, framing: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: proxy.test\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {content_type}\r\n{framing}\r\n"
    ).encode()


def enrollment_head(world: Any, framing: str) -> bytes:
    return request_head(
        f"/i/roster-sync/api/v1/courses/{world.course['id']}/enrollments",
        world.admin["token"],
        "application/x-www-form-urlencoded",
        framing,
    )


def form_body(student: dict[str, Any]) -> bytes:
    # The user id last, as in the defect: without its final digit it names another user.
    return f"enrollment[type]=StudentEnrollment&enrollment[user_id]={student['id']}".encode()


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def assert_canvas_error_bytes(raw: bytes, status: int, fragment: str) -> None:
    import json

    got, headers, body = parse_response(raw)
    assert got == status, raw
    assert headers["content-type"].startswith("application/json")
    assert fragment in json.loads(body)["errors"][0]["message"]


# Observing the proxy and the simulator


def proxy_errors_answered(base: str) -> int:
    """How many POSTs under /api/ the proxy has answered 400 (its metrics, all workers)."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    found = re.search(
        r'^ledger_proxy_forwarded_requests_total\{method="POST",status="400"\} (\S+)$', text, re.M
    )
    return int(float(found.group(1))) if found else 0


def wait_until(probe: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return result


def everyone(world: Any) -> list[int]:
    return [s["id"] for s in world.students] + [world.admin["id"], world.teacher["id"]]


def assert_canvas_made_nothing(sim: Any, world: Any, database: str) -> None:
    """No complete enrollment request reached Canvas, it made no student enrollment, and the
    ledger holds no event for anyone in this world."""
    complete = [e for e in sim.requests_log(ENROLLMENTS) if e["complete"]]
    assert complete == []
    made = [e for e in sim.enrollments(course_id=world.course["id"]) if e["type"] == "StudentEnrollment"]
    assert made == []
    ids = everyone(world)
    marks = ",".join("?" * len(ids))
    assert ledger_rows(database, f"SELECT seq FROM events WHERE user_id IN ({marks})", tuple(ids)) == []


def assert_nothing_sent_and_still_serving(base: str, sim: Any, world: Any, database: str) -> None:
    """Nothing reached Canvas or the ledger for the cut request, and the next client is served."""
    assert_canvas_made_nothing(sim, world, database)
    assert sim.requests_log(ENROLLMENTS) == []  # not even an incomplete request was sent
    assert ledger_rows(database, "SELECT id FROM requests") == []
    assert_still_serving(base, sim, world, database)


def send_then_half_close(base: str, data: bytes) -> bytes:
    """Send `data`, close the sending half (the client can still hear), read the answer."""
    with connect(base) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock)


def assert_still_serving(base: str, sim: Any, world: Any, database: str) -> None:
    """Another client, right after, is served and recorded as usual."""
    student = world.students[-1]
    response = requests.post(
        f"{base}/i/roster-sync/api/v1/courses/{world.course['id']}/enrollments",
        data={"enrollment[user_id]": student["id"], "enrollment[type]": "StudentEnrollment"},
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    made = response.json()["id"]
    assert [e["id"] for e in sim.enrollments(user_id=student["id"])] == [made]
    rows = ledger_rows(database, "SELECT action, integration FROM events WHERE enrollment_id = ?", (made,))
    assert rows == [{"action": "created", "integration": "roster-sync"}]


# The cases


def cut_short_seen(log: list[str]) -> int:
    """How many requests the gunicorn worker dropped as cut short before any thread saw them."""
    return sum("request cut short" in line for line in log)


def test_a_body_one_byte_short_then_the_client_closes(world, sim, proxy):
    base, database, _, log = proxy
    answered, dropped = proxy_errors_answered(base), cut_short_seen(log)
    body = form_body(world.students[0])
    with connect(base) as sock:
        sock.sendall(enrollment_head(world, f"Content-Length: {len(body)}\r\n") + body[:-1])
    # The client cannot hear the answer. The app's count of its own 400s, or (under gunicorn,
    # whose worker receives small requests whole before a thread takes them) the worker's log
    # line, says the proxy is done with the request.
    wait_until(lambda: proxy_errors_answered(base) > answered or cut_short_seen(log) > dropped)
    assert_nothing_sent_and_still_serving(base, sim, world, database)


def test_a_short_body_then_a_half_close_is_told_400(world, sim, proxy):
    base, database, _, _ = proxy
    body = form_body(world.students[1])
    raw = send_then_half_close(base, enrollment_head(world, f"Content-Length: {len(body) + 40}\r\n") + body)
    # The app says how much arrived; gunicorn's worker, which receives small requests whole
    # before a thread takes them, refuses it before the app ever sees it.
    assert_canvas_error_bytes(raw, 400, "nothing was sent to Canvas")
    assert_nothing_sent_and_still_serving(base, sim, world, database)


def test_a_chunked_body_cut_before_its_last_chunk(world, sim, proxy):
    base, database, _, _ = proxy
    body = form_body(world.students[2])
    raw = send_then_half_close(
        base,
        enrollment_head(world, "Transfer-Encoding: chunked\r\n")
        + f"{len(body):x}\r\n".encode() + body + b"\r\n",  # no terminating 0 chunk
    )
    assert_canvas_error_bytes(raw, 400, "nothing was sent to Canvas")
    assert_nothing_sent_and_still_serving(base, sim, world, database)


def sis_import_body(world: Any) -> tuple[bytes, str]:
    boundary = "ledger-proxy-test-boundary"
    # Larger than what gunicorn's worker receives before a thread takes over (64 KiB), so that
    # the proxy really streams it on and must abandon the upload to Canvas half-way.
    rows = "".join(f"BIO-101,{s['sis_user_id']},student,,active\n" for s in world.students) * 1000
    csv = ("course_id,user_id,role,section_id,status\n" + rows).encode()
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"attachment\"; "
        f"filename=\"enrollments.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    ).encode() + csv + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_streamed_sis_import_cut_half_way(world, sim, proxy, framing):
    base, database, _, _ = proxy
    body, content_type = sis_import_body(world)
    half = body[: len(body) // 2]
    head = request_head(
        "/i/sis-feed/api/v1/accounts/1/sis_imports",
        world.admin["token"],
        content_type,
        f"Content-Length: {len(body)}\r\n" if framing == "content-length" else "Transfer-Encoding: chunked\r\n",
    )
    sent = half if framing == "content-length" else f"{len(half):x}\r\n".encode() + half + b"\r\n"
    raw = send_then_half_close(base, head + sent)
    assert_canvas_error_bytes(raw, 400, "the request to Canvas was abandoned before its end")
    # Canvas's side of the story: whatever reached it was never a complete request, and it made
    # no import and no enrollment. A Content-Length body reached it in part before the proxy cut
    # the connection: wait for the simulator to have seen (and refused) that much.
    if framing == "content-length":
        seen = wait_until(lambda: sim.requests_log(SIS_IMPORTS))
        assert [(e["complete"], e["status"]) for e in seen] == [(False, 400)]
    assert [e for e in sim.requests_log(SIS_IMPORTS) if e["complete"]] == []
    listed = sim.api("GET", "accounts/1/sis_imports", world.admin["token"])
    assert listed.status_code == 200 and listed.json()["sis_imports"] == []
    assert_canvas_made_nothing(sim, world, database)
    # The proxy wrote its intent before streaming; the outcome is failed, never pending.
    rows = ledger_rows(database, "SELECT kind, status FROM requests")
    assert rows == [{"kind": "sis_import", "status": "failed"}]
    assert ledger_rows(database, "SELECT job_id FROM async_jobs") == []
    assert_still_serving(base, sim, world, database)


def test_bytes_beyond_the_content_length_are_never_a_second_request(world, sim, proxy):
    base, database, server, _ = proxy
    body = form_body(world.students[3])
    smuggled = (
        f"POST /api/v1/courses/{world.course['id']}/enrollments HTTP/1.1\r\nHost: proxy.test\r\n"
        f"Authorization: Bearer {world.admin['token']}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form_body(world.students[4]))}\r\n\r\n"
    ).encode() + form_body(world.students[4])
    with connect(base) as sock:
        sock.sendall(enrollment_head(world, f"Content-Length: {len(body)}\r\n") + body + smuggled)
        raw = read_until_closed(sock)  # the proxy closes the connection after one answer
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    smuggled_user = world.students[4]["id"]
    assert [e for e in sim.enrollments(course_id=world.course["id"]) if e["user_id"] == smuggled_user] == []
    assert [e for e in sim.requests_log(ENROLLMENTS) if f"={smuggled_user}" in e["body"]] == []
    if server == "gunicorn":
        # gunicorn would read the extra bytes as a request of their own: the whole is refused.
        assert_canvas_error_bytes(raw, 400, "bytes after its body")
        assert_canvas_made_nothing(sim, world, database)
    else:
        # werkzeug's development server reads one request per connection and closes it: the
        # declared body is the request, the rest is never read.
        assert parse_response(raw)[0] == 200
    assert_still_serving(base, sim, world, database)
