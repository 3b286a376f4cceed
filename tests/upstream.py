"""A recording stand-in for Canvas, for byte-level forwarding tests (not a Canvas model)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wsgi import get_input_stream


@dataclass
class Seen:
    method: str
    raw_target: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Reply:
    status: str = "200 OK"
    headers: list[tuple[str, str]] = field(
        default_factory=lambda: [("Content-Type", "application/json; charset=utf-8")]
    )
    body: bytes = b"{}"


class RecordingUpstream:
    """A WSGI app that remembers every request it gets and answers what it is told to."""

    def __init__(self, keep_bodies: bool = True) -> None:
        self.keep_bodies = keep_bodies  # False: keep only the size and SHA-256 (large uploads)
        self.seen: list[Seen] = []
        self.reply: Callable[[Seen], Reply] = lambda _seen: Reply()
        self._lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        headers = [
            (key[5:].replace("_", "-").title(), value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        ]
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers.append((key.replace("_", "-").title(), environ[key]))
        stream = get_input_stream(environ)
        if self.keep_bodies:
            body = stream.read()
        else:
            digest, size = hashlib.sha256(), 0
            while chunk := stream.read(64 * 1024):
                digest.update(chunk)
                size += len(chunk)
            body = f"{size}:{digest.hexdigest()}".encode()
        seen = Seen(
            environ["REQUEST_METHOD"],
            environ.get("RAW_URI") or environ["REQUEST_URI"],
            headers,
            body,
        )
        with self._lock:
            self.seen.append(seen)
        reply = self.reply(seen)
        start_response(reply.status, reply.headers)
        return [reply.body]

    def header(self, seen: Seen, name: str) -> str | None:
        for key, value in seen.headers:
            if key.lower() == name.lower():
                return value
        return None
