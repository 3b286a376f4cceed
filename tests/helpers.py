"""Shared test helpers: the one check of Canvas's error shape, raw HTTP requests, a free port,
and rows read straight from a ledger file."""

from __future__ import annotations

import http.client
import socket
import sqlite3
from typing import Any


def raw_request(port: int, request_bytes: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (requests would normalise them) and read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_bytes)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def assert_canvas_error(response: Any, status: int, fragment: str) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["errors"], list) and body["errors"]
    assert fragment in body["errors"][0]["message"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ledger_rows(ledger: Any, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    """The rows of `sql` on a ledger file: a path, or a running proxy (whose app names one).

    Tests read the file directly, as an auditor would, not through the code under test."""
    path = ledger.app.config["DATABASE"] if hasattr(ledger, "app") else ledger
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, params)]
