"""Read by plain `gunicorn wsgi:app` started in this folder: the project's gunicorn settings,
whose one source is ledger_proxy/ops/gunicorn_conf.py (docs/deploy.md)."""

from ledger_proxy.ops.gunicorn_conf import *  # noqa: F403
