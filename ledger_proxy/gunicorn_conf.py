"""Deprecated path, kept working: use `gunicorn -c python:ledger_proxy.ops.gunicorn_conf`."""

from ledger_proxy.ops.gunicorn_conf import *  # noqa: F403  (gunicorn reads this module's names)
