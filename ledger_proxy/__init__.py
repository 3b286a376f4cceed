"""ledger-proxy: a transparent Canvas API proxy that records who made every enrollment."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Flask is imported when an app is built: ledger_proxy.core stays without it
    from flask import Flask

__version__ = "0.1.0"


def create_app(
    test_config: dict[str, Any] | None = None,
    instance_path: str | None = None,
    *,
    require_canvas: bool = True,
    background: bool = True,
) -> Flask:
    """The one place an app is assembled: settings, ledger, Canvas client, blueprints.

    Settings come from the registry's defaults, then `instance/config.py`, then
    LEDGER_PROXY_* environment variables, then `test_config`. Commands that only read the
    ledger (export, verify, sis-roster) pass `require_canvas=False`. `background=False` (the
    CLI; and `serve`, which builds the app before gunicorn forks) starts no reconciler in
    this process: a serving process starts its own on its first request.
    """
    from flask import Flask, request
    from werkzeug.exceptions import HTTPException
    from werkzeug.wrappers import Response

    from . import config
    from .errors import ProxyError, error_response
    from .runtime import Runtime, close_db
    from .upstream.canvas import CanvasClient
    from .upstream.jwks import LiveEventsVerifier

    settings, instance_path = config.load(test_config, instance_path, require_canvas=require_canvas)
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    app.config.from_mapping(settings)
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"]
    logging.getLogger("ledger_proxy").setLevel(app.config["LOG_LEVEL"])
    config.open_ledger(app.config)
    app.extensions["ledger_proxy"] = Runtime(
        canvas=CanvasClient.configured(app.config),
        token_key=config.token_hash_key(app.config, app.instance_path),
        identity_ttl=app.config["IDENTITY_CACHE_SECONDS"],
        registry=config.integration_registry(app.config, app.instance_path),
        admin_ttl=app.config["ADMIN_CONFIRM_SECONDS"],
        live_events=(
            LiveEventsVerifier(app.config["LIVE_EVENTS_JWKS"])
            if app.config["LIVE_EVENTS_JWKS"]
            else None
        ),
    )
    app.teardown_appcontext(close_db)
    _start_reconciler(app, now=background)

    from .web import audits, dashboard, export, live_events, lookup, proxy

    app.register_blueprint(proxy.bp)
    app.register_blueprint(export.bp)
    app.register_blueprint(audits.bp)
    app.register_blueprint(lookup.bp)
    app.register_blueprint(live_events.bp)  # POST /ledger/v1/live-events

    from .ops import instrument
    from .web import health, openapi

    instrument.init_app(app)  # Prometheus metrics and the JSON access log, for every request
    app.register_blueprint(health.bp)  # /healthz, /readyz, /metrics
    app.register_blueprint(openapi.bp)  # /ledger/v1/openapi.json
    dashboard.init_app(app)  # /ledger/ pages; the session cookie and its key

    app.register_error_handler(ProxyError, lambda exc: exc.response())

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # The proxy's own errors speak Canvas's error shape, like Canvas's do; a missing
        # dashboard page is a page.
        if exc.code == 404:
            path = request.path
            if path.startswith("/ledger/") and not path.startswith("/ledger/v1/"):
                return dashboard.error_page(404, "Not found", "There is no such page.")
            if path == "/ledger" or path.startswith("/ledger/"):
                return error_response(404, "The specified resource does not exist.")
            return proxy.not_found()
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        import traceback

        from .ops.logs import redact_tokens

        # The traceback may quote a URL with ?access_token=: it is redacted before logging.
        logging.getLogger("ledger_proxy").error(
            "unexpected error: %s\n%s", type(exc).__name__, redact_tokens(traceback.format_exc())
        )
        return error_response(
            500, "ledger-proxy hit an internal error", error_code="internal_server_error"
        )

    from .upstream.forwarding import SqueezeSlashes
    from .web import fastpath

    fastpath.init_app(app)  # plain GETs around Flask's dispatch (issue 12), inside these two
    app.wsgi_app = SqueezeSlashes(app.wsgi_app)  # type: ignore[method-assign]
    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )
    return app


def _start_reconciler(app: Flask, *, now: bool) -> None:
    """Automatic reconciliation, when a token for it is configured: at start-up (`now`) and
    every LEDGER_PROXY_RECONCILE_INTERVAL_SECONDS, in each serving process (a forked worker
    starts its own on its first request); a lease in the ledger lets one run at a time."""
    import threading
    from datetime import timedelta

    from .core.reconcile import BackgroundReconciler, Options

    token, interval = app.config["RECONCILE_TOKEN"], app.config["RECONCILE_INTERVAL_SECONDS"]
    if not token or not interval:
        return
    options = Options(
        grace=timedelta(seconds=app.config["RECONCILE_GRACE_SECONDS"]),
        allowance=timedelta(seconds=app.config["CLOCK_SKEW_SECONDS"]),
    )
    started_in: set[int] = set()
    lock = threading.Lock()

    def ensure_running() -> None:
        if os.getpid() in started_in:
            return
        with lock:
            if os.getpid() in started_in:
                return
            started_in.add(os.getpid())
        runtime = app.extensions["ledger_proxy"]
        runtime.background.append(
            BackgroundReconciler(
                app.config["DATABASE"], runtime.canvas, token, options, interval
            ).start()
        )

    if now:
        ensure_running()
    app.before_request(ensure_running)
    app.extensions["ledger_proxy"].per_request.append(ensure_running)  # and the lean path's

