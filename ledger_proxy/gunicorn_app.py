"""Run an assembled app under gunicorn from the CLI (`ledger-proxy serve`)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.config import Config


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
    """gunicorn with the project's settings (ledger_proxy/gunicorn_conf.py, the one source
    that plain `gunicorn wsgi:app` reads too), listening where the command line says."""
    from . import gunicorn_conf  # after the metrics folder is set (see gunicorn_conf)

    known = Config().settings
    options = {
        name: value
        for name, value in vars(gunicorn_conf).items()
        if not name.startswith("_") and name in known
    }
    read_timeout = float(app.config["READ_TIMEOUT"]) + float(app.config["CONNECT_TIMEOUT"])
    options.update(bind=bind, workers=workers, threads=threads, timeout=int(read_timeout) + 30)
    _Application(app, options).run()
