"""The hot-path benchmark's comparison forwarders forward correctly (bench/hotpath.py).

Behaviour only, in-process: no timing is asserted anywhere; the benchmark measures speed.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
from pathlib import Path
from types import ModuleType

from ledger_proxy.devserver import BackgroundServer

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _call(port: int, method: str, target: str, body: bytes | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": "Bearer t"}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, target, body, headers)
    response = conn.getresponse()
    answer = (response.status, dict(response.getheaders()), response.read())
    conn.close()
    return answer


def test_floor_and_naive_forwarders_pass_requests_and_answers_through() -> None:
    upstream_app = _load("instant_upstream").app
    with BackgroundServer(upstream_app) as upstream:
        for name in ("floor_forwarder", "naive_forwarder"):
            app = _load(name).make_app(upstream.url)
            with BackgroundServer(app) as forwarder:
                status, headers, body = _call(forwarder.port, "GET", "/api/v1/courses/1?x=1")
                assert status == 200, name
                assert json.loads(body)["name"] == "Bench course", name
                assert headers.get("X-Request-Context-Id"), name

                status, _, body = _call(forwarder.port, "GET", "/api/v1/users/self")
                assert (status, json.loads(body)["id"]) == (200, 17), name

                ids = set()
                for user in (4031, 4032):
                    status, _, body = _call(
                        forwarder.port,
                        "POST",
                        "/api/v1/courses/517/enrollments",
                        f"enrollment%5Buser_id%5D={user}".encode(),
                    )
                    enrollment = json.loads(body)
                    assert status == 200, name
                    assert (enrollment["course_id"], enrollment["user_id"]) == (517, user), name
                    ids.add(enrollment["id"])
                assert len(ids) == 2, f"{name}: each enrollment gets a fresh id"

                status, _, _ = _call(forwarder.port, "GET", "/nothing-here")
                assert status == 404, name
