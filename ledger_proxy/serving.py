"""Run a WSGI app on a free loopback port in a background thread (tests, demo, benchmarks)."""

from __future__ import annotations

import re
import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

_TOKEN_PARAM = re.compile(r"((?:access_token|api_key)=)[^&\s]*", re.IGNORECASE)


def redact_tokens(text: str) -> str:
    """`text` with the values of access_token/api_key parameters replaced by [REDACTED]."""
    return _TOKEN_PARAM.sub(r"\1[REDACTED]", text)


class RedactingRequestHandler(WSGIRequestHandler):
    """werkzeug's request log line, without tokens sent as query parameters."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.requestline = redact_tokens(self.requestline)
        super().log_request(code, size)


class QuietRequestHandler(WSGIRequestHandler):
    """No request log lines (tests and benchmarks)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class BackgroundServer:
    """A threaded werkzeug server for `app`, listening as soon as it is constructed.

    The socket is bound in ``__init__`` (port 0 asks the kernel for a free port), so the
    server accepts connections before ``start()`` returns: no sleeping, no polling.
    Use it as a context manager so that it is always stopped.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=QuietRequestHandler
        )
        self.host = host
        self.port: int = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"server-{self.port}",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
