"""gunicorn settings: `gunicorn -c python:ledger_proxy.ops.gunicorn_conf wsgi:app` (docs/deploy.md).

The choices `ledger-proxy serve` makes, for those who run gunicorn themselves; any of them can
be overridden on gunicorn's command line (`--workers 4`) or in GUNICORN_CMD_ARGS.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from ledger_proxy.config import SETTINGS_BY_NAME

# Nothing here may import prometheus_client: it decides between in-memory and multiprocess
# counting when first imported, which must happen after PROMETHEUS_MULTIPROC_DIR is set.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _seconds(name: str) -> float:
    setting = SETTINGS_BY_NAME[name]
    try:
        return float(setting.parse(os.environ.get(setting.env_name, setting.default)))
    except ValueError:
        return float(setting.default)  # the app itself reports the bad value at start-up


def worker_timeout(connect_timeout: float, read_timeout: float) -> int:
    """A worker is killed after `timeout` seconds of silence; a request may legitimately wait
    for Canvas up to the connect plus read timeouts, so stay well above them."""
    return int(float(connect_timeout) + float(read_timeout)) + 30


# The proxy mostly waits on Canvas: threads, not processes, carry the concurrency.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = 8
timeout = worker_timeout(_seconds("CONNECT_TIMEOUT"), _seconds("READ_TIMEOUT"))
graceful_timeout = 30
keepalive = 5
# No gunicorn access log: its request line carries ?access_token=. The app writes its own JSON
# line per request, without the query string (ledger_proxy/ops/logs.py).
accesslog = None

# prometheus_client's multiprocess folder: the given one (emptied in on_starting), else a
# temporary one made here, before any worker (or `ledger-proxy serve`'s app) imports it.
_created_metrics_dir: str | None = None
if not os.environ.get(MULTIPROC_ENV):
    _created_metrics_dir = tempfile.mkdtemp(prefix="ledger-proxy-metrics-")
    os.environ[MULTIPROC_ENV] = _created_metrics_dir


def on_starting(_server: Any) -> None:
    """Empty the metrics folder of a previous run's counts before any worker starts."""
    from ledger_proxy.ops.metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir(os.environ[MULTIPROC_ENV])


def child_exit(server: Any, worker: Any) -> None:
    from ledger_proxy.ops.metrics import child_exit as forget_worker

    forget_worker(server, worker)


def on_exit(_server: Any) -> None:
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
