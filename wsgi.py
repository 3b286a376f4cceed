"""The WSGI entry point: `gunicorn wsgi:app` (settings: LEDGER_PROXY_*, instance/config.py)."""

import sys

from ledger_proxy import create_app
from ledger_proxy.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(f"Error: {exc}", file=sys.stderr)
    sys.exit(1)
