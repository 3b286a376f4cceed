"""Run an assembled app under gunicorn from the CLI (`ledger-proxy serve`)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from .metrics import child_exit


class _Application(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._app


def run_gunicorn(app: Any, *, bind: str, workers: int, threads: int) -> None:
    """gunicorn with threads (the proxy mostly waits on Canvas) and a timeout above Canvas's."""
    read_timeout = float(app.config["READ_TIMEOUT"]) + float(app.config["CONNECT_TIMEOUT"])
    _Application(
        app,
        {
            "bind": bind,
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "timeout": int(read_timeout) + 30,
            "graceful_timeout": 30,
            # No access log: a request line can carry ?access_token=. The app writes its
            # own, one JSON line per request without the query (ledger_proxy/logs.py).
            "accesslog": None,
            "child_exit": child_exit,  # metrics of a dead worker (ledger_proxy/metrics.py)
        },
    ).run()
