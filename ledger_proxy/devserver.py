"""Run servers on free loopback ports: a WSGI app in a thread, or the simulator and gunicorn as
processes (tests, demo, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .ops.logs import redact_tokens


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


# Separate processes: the simulator and gunicorn, for tests and benchmarks.

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # where wsgi.py is, in a checkout
BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0
SIMULATOR_LISTENING = re.compile(r"Canvas simulator listening on (http://\S+)")
GUNICORN_LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")


def clean_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This environment without LEDGER_PROXY_* or proxy variables, plus `settings`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if (not name.startswith("LEDGER_PROXY_") or name == "LEDGER_PROXY_INSTANCE_PATH")
        and name.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(settings)
    return env


@dataclass
class Service:
    """A started process: its base URL and what it has written to the watched stream."""

    url: str
    log: list[str]
    process: subprocess.Popen[str]


@contextlib.contextmanager
def running_process(
    argv: list[str], env: Mapping[str, str], ready: re.Pattern[str], stream: str, probe: str
) -> Iterator[Service]:
    """Start `argv`, wait for `ready` on its stdout or stderr (group 1: its base URL), then
    poll until `probe` (a path) answers HTTP; yield it; always stop the process."""
    import requests

    proc = subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
        stderr=subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL,
        text=True,
    )
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    log: list[str] = []
    found: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in pipe:  # keep draining, so the child never blocks on a full pipe
            log.append(line)
            match = ready.search(line)
            if match and not found:
                found.append(match.group(1))
                seen.set()
        seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not seen.wait(START_TIMEOUT) or not found:
            raise RuntimeError(f"{argv[0]} did not start:\n" + "".join(log))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                requests.get(found[0] + probe, timeout=5)
                break
            # A worker still booting on a loaded machine may not answer within the probe's
            # timeout: that is not yet, like a refused connection, until the deadline.
            except (requests.ConnectionError, requests.Timeout):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} does not answer:\n" + "".join(log)) from None
                time.sleep(0.05)
        yield Service(found[0], log, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)
        pipe.close()


def simulator_process() -> contextlib.AbstractContextManager[Service]:
    """`ledger-proxy simulator --port 0 --empty` (the kernel picks the port; it prints it)."""
    argv = [str(BIN / "ledger-proxy"), "simulator", "--port", "0", "--empty"]
    return running_process(
        argv, clean_environment({}), SIMULATOR_LISTENING, "stdout", "/_sim/settings"
    )


def gunicorn_process(
    settings: Mapping[str, str],
    *,
    workers: int | None = 2,
    threads: int | None = 4,
    app: str = "wsgi:app",
) -> contextlib.AbstractContextManager[Service]:
    """`gunicorn wsgi:app` (or another `app`) on a free loopback port with LEDGER_PROXY_*
    `settings` and the project's gunicorn settings (gunicorn.conf.py; `None` keeps its workers
    or threads), answering (its workers have booted) by the time it is yielded."""
    argv = [str(BIN / "gunicorn"), "--bind", "127.0.0.1:0", "--graceful-timeout", "5"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    argv.append(app)
    env = clean_environment(settings)
    return running_process(argv, env, GUNICORN_LISTENING, "stderr", "/healthz")


def plain_gunicorn_process(
    settings: Mapping[str, str], gunicorn_args: str = ""
) -> contextlib.AbstractContextManager[Service]:
    """Exactly `gunicorn wsgi:app` in the project folder, as the README says to run it; the
    free loopback port (and any `gunicorn_args`) through GUNICORN_CMD_ARGS."""
    env = clean_environment(
        {**settings, "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:0 {gunicorn_args}".strip()}
    )
    argv = [str(BIN / "gunicorn"), "wsgi:app"]
    return running_process(argv, env, GUNICORN_LISTENING, "stderr", "/healthz")
