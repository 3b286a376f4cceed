"""`wsgi:app` whose worker kills itself (SIGKILL) after Canvas answered an enrollment-changing
request and before the outcome is written: the fault tests serve it with gunicorn."""

import os
import signal

from wsgi import app

app.extensions["ledger_proxy"].after_canvas = lambda: os.kill(os.getpid(), signal.SIGKILL)
