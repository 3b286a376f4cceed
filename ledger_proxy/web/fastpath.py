"""The lean path: GET and HEAD without a body that the ledger does not record, forwarded at the
WSGI level, around Flask's request dispatch, with every promise of the Flask view.

Issue 12: Flask's contexts, routing, hooks and response handling cost a plain GET more Python
time than forwarding it. Here the same functions build the same answer (web/proxy.py:
`incoming` checks the target, the label and the headers, `plain_response` forwards and rewrites
Link and Location), with `X-Ledger-Request-Id`, the metrics and the access-log line
(ops/instrument.observe), so the client cannot tell the paths apart (tests/test_fastpath.py).
Whatever the lean path is not sure of goes to Flask untouched: another method, a body, a path
Flask routes otherwise, anything `incoming` refuses (Flask answers the same error), a request
the ledger records, a non-ASCII target. If the app has request hooks beyond the ones known
here (a new one would be skipped), the lean path turns itself off.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request

from ..errors import ProxyError
from ..ops import instrument, metrics
from ..upstream.forwarding import REQUEST_ID_HEADER
from ..upstream.operations import classify
from . import proxy

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

# What Flask routes to the proxy view with a non-empty rest of the path (web/proxy.py's rules:
# the label is one segment, `<path:_rest>` starts with anything but a slash).
_PLAIN_PATH = re.compile(r"/(?:i/([^/]+)/)?api/[^/]")
_METHODS = ("GET", "HEAD")


class PlainForwarding:
    """WSGI middleware in front of Flask's `wsgi_app` (inside SqueezeSlashes and ProxyFix)."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self._checked: bool | None = None  # are the app's hooks the known ones?

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        plain, label = _plain(environ)
        if not plain or not self._hooks_known():
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        runtime = self.app.extensions["ledger_proxy"]
        request = Request(environ)
        try:
            for hook in runtime.per_request:  # the reconciler starts on a first request
                hook()
            request_id = uuid.uuid4().hex
            try:
                call = proxy.incoming(request_id, label, request)
            except ProxyError:  # the Flask view refuses it in the same words
                return self.wsgi_app(environ, start_response)
            if classify(call.method, call.path) is not None:
                return self.wsgi_app(environ, start_response)
            registry = self.app.extensions.get(metrics.EXTENSION_KEY)
            try:
                response = proxy.plain_response(call, None, runtime.canvas, registry)
            except ProxyError as exc:
                response = exc.response()
            response.headers[REQUEST_ID_HEADER] = request_id
        except Exception as exc:  # as Flask answers it: the app's handler, then its hooks
            with self.app.request_context(environ):
                flask_response = self.app.finalize_request(self.app.handle_user_exception(exc))
            return flask_response(environ, start_response)
        instrument.observe(registry, request, response, started, proxied=True, label=label)
        return response(environ, start_response)

    def _hooks_known(self) -> bool:
        if self._checked is None:
            self._checked = _only_known_hooks(self.app)
            if not self._checked:
                log.warning("the app has request hooks the lean path does not run: it is off")
        return self._checked


def _plain(environ: dict[str, Any]) -> tuple[bool, str | None]:
    """(may the lean path take the request?, the path's label or None)."""
    if environ.get("REQUEST_METHOD") not in _METHODS:
        return False, None
    if environ.get("CONTENT_LENGTH") or "HTTP_TRANSFER_ENCODING" in environ:
        return False, None
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    match = _PLAIN_PATH.match(environ.get("PATH_INFO", ""))
    if match is None or not raw.isascii():
        return False, None
    label = match.group(1)
    return (label is None or label.isascii()), label


def _only_known_hooks(app: Flask) -> bool:
    """True when every app-wide hook that would run around the proxy view is one the lean path
    runs itself (the clock and the metrics with the access log, the reconciler's start), or
    one that does nothing for it (closing the request's ledger handle, which it never opens)."""
    from ..runtime import close_db

    runtime = app.extensions["ledger_proxy"]
    known_before = {instrument._start_clock, *runtime.per_request}
    known_after = {instrument._observe}
    hooks: list[tuple[dict[Any, list[Any]], set[Any]]] = [
        (app.before_request_funcs, known_before),
        (app.after_request_funcs, known_after),
        (app.teardown_request_funcs, set()),
        (app.url_value_preprocessors, set()),
        (app.url_default_functions, set()),
    ]
    for registry, known in hooks:
        for scope, functions in registry.items():
            if scope is not None and scope != proxy.bp.name:
                continue
            if any(function not in known for function in functions):
                return False
    if set(app.teardown_appcontext_funcs) - {close_db}:
        return False
    config = app.config
    return not (config.get("SERVER_NAME") or config.get("TRUSTED_HOSTS"))


def init_app(app: Flask) -> None:
    """Put the lean path in front of Flask's dispatch (call before wrapping in middleware
    that rewrites the environ, so that both paths see the same environ)."""
    app.wsgi_app = PlainForwarding(app, app.wsgi_app)  # type: ignore[method-assign]
