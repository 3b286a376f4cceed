"""Shared test helpers: the one check of Canvas's error shape, and raw HTTP requests."""

from __future__ import annotations

import http.client
import socket
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
