"""gunicorn settings: read by plain `gunicorn wsgi:app` through the checkout's
gunicorn.conf.py, by `gunicorn -c python:ledger_proxy.ops.gunicorn_conf wsgi:app` (or the
older `ledger_proxy.gunicorn_conf`) and by `ledger-proxy serve` (docs/deploy.md).

Any of them can be overridden on gunicorn's command line (`--workers 4`) or in
GUNICORN_CMD_ARGS, except that gunicorn refuses to start with a worker timeout that does not
exceed the proxy's connect plus read timeouts.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

from ledger_proxy.ops.server_settings import (
    WorkerTimeoutTooShort,
    canvas_wait,
    check_worker_timeout,
    runtime_dir,
    worker_timeout,
)

# Nothing here may import prometheus_client: it decides between in-memory and multiprocess
# counting when first imported, which must happen after PROMETHEUS_MULTIPROC_DIR is set.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


# The proxy mostly waits on Canvas: threads, not processes, carry the concurrency. The worker
# is gthread receiving requests off its thread pool under a deadline, answering the server's
# own errors in Canvas's error shape and passing Canvas's Date and Server on
# (ledger_proxy/ops/worker.py).
worker_class = "ledger_proxy.ops.worker.CanvasWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = 8
# A worker is killed after `timeout` seconds of silence; a request may legitimately wait for
# Canvas up to the connect plus read timeouts, so stay well above them (on_starting checks).
timeout = worker_timeout(canvas_wait(), 0)
graceful_timeout = 30
keepalive = 5
# Request lines as long as Canvas's front end takes (8 KB; canvasapi's list parameters make
# long ones): 8190 is the most gunicorn accepts short of no limit at all. Headers likewise.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# gunicorn's control socket (gunicornc) in this instance's own runtime folder, never the
# default shared by every gunicorn of the user (~/.gunicorn/gunicorn.ctl).
_runtime = runtime_dir()
if _runtime:
    control_socket = os.path.join(_runtime, "gunicorn.ctl")
    control_socket_mode = 0o600
else:
    control_socket_disable = True
# No gunicorn access log: its request line carries ?access_token=. The app writes its own JSON
# line per request, without the query string (ledger_proxy/ops/logs.py).
accesslog = None

_created_metrics_dir: str | None = None
if not os.environ.get(MULTIPROC_ENV):
    _created_metrics_dir = tempfile.mkdtemp(prefix="ledger-proxy-metrics-")
    os.environ[MULTIPROC_ENV] = _created_metrics_dir


def on_starting(server: Any) -> None:
    """Refuse a worker timeout that would cut Canvas's answers short; empty the metrics folder
    of a previous run's counts before any worker starts."""
    from ledger_proxy.ops.metrics import prepare_multiprocess_dir

    try:
        check_worker_timeout(server.cfg.timeout)
    except WorkerTimeoutTooShort as exc:
        server.log.error("Error: %s", exc)
        if server.cfg.errorlog != "-":  # say it where the operator is looking, too
            print(f"Error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    prepare_multiprocess_dir(os.environ[MULTIPROC_ENV])


def child_exit(server: Any, worker: Any) -> None:
    from ledger_proxy.ops.metrics import child_exit as forget_worker

    forget_worker(server, worker)


def on_exit(_server: Any) -> None:
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
