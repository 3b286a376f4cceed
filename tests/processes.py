"""Start gunicorn serving wsgi:app on a free port, read its port from its log, stop it after."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


@contextmanager
def gunicorn(settings: dict[str, str], *, workers: int = 2, threads: int = 4) -> Iterator[str]:
    """`gunicorn wsgi:app` with LEDGER_PROXY_* `settings`; yields its base URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_PROXY_")}
    env.update(settings)
    gunicorn_bin = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [
            gunicorn_bin,
            "--bind",
            "127.0.0.1:0",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--graceful-timeout",
            "5",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    port: list[int] = []
    ready = threading.Event()

    def read_log() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            match = LISTENING.search(line)
            if match:
                port.append(int(match.group(1)))
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        if not ready.wait(30) or not port:
            raise RuntimeError("gunicorn did not start:\n" + "".join(log))
        booted = time.monotonic()
        while (
            sum("Booting worker" in line for line in log) < workers
            and time.monotonic() - booted < 30
        ):
            time.sleep(0.05)  # polling gunicorn's own log for the workers, not sleeping blind
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
        if proc.stderr:
            proc.stderr.close()
