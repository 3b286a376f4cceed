"""gunicorn serving wsgi:app in a subprocess, for the tests that need the production server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ledger_proxy.devserver import gunicorn_process


@contextmanager
def gunicorn(
    settings: dict[str, str], *, workers: int = 2, threads: int = 4, app: str = "wsgi:app"
) -> Iterator[str]:
    """`gunicorn wsgi:app` (or `app`) with LEDGER_PROXY_* `settings`; yields its base URL;
    stops it after."""
    with gunicorn_process(settings, workers=workers, threads=threads, app=app) as service:
        yield service.url
