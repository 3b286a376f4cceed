"""Run an assembled app under gunicorn from the CLI (`ledger-proxy serve`), with the settings
of ops/gunicorn_conf.py: one place for them, whether gunicorn is started by us or by hand."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from . import gunicorn_conf
from .server_settings import worker_timeout


class _Application(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        # As `gunicorn -c python:ledger_proxy.ops.gunicorn_conf` reads it, then our options.
        for key, value in vars(gunicorn_conf).items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._app


def run_gunicorn(app: Any, *, bind: str, workers: int, threads: int) -> None:
    """gunicorn_conf's settings, listening on `bind`; the worker timeout follows the app's
    own Canvas timeouts (which instance/config.py may set, beyond gunicorn_conf's sight)."""
    config = app.config
    timeout = worker_timeout(config["CONNECT_TIMEOUT"], config["READ_TIMEOUT"])
    options = {"bind": bind, "workers": workers, "threads": threads, "timeout": timeout}
    _Application(app, options).run()
