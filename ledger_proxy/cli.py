"""The `ledger-proxy` console script: thin click commands over the package's functions."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from . import __version__
from .config import ConfigError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ledger-proxy")
def main() -> None:
    """ledger-proxy: a transparent Canvas API proxy that records who made every enrollment.

    Point your scripts' Canvas base URL at the proxy; see `ledger-proxy serve --help`.
    """


def _start_simulator(host: str) -> Any:
    from .serving import BackgroundServer
    from .simulator import create_simulator_app

    server = BackgroundServer(create_simulator_app(seed_demo=True), host=host).start()
    click.echo(
        f"LEDGER_PROXY_CANVAS_URL is not set: started the bundled Canvas simulator at {server.url}"
    )
    click.echo("  demo tokens: sim-admin-token (admin), sim-teacher-token (teacher)")
    return server


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--workers", default=2, show_default=True, type=int, help="gunicorn worker processes."
)
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per worker.")
@click.option("--dev", is_flag=True, help="Use Flask's development server instead of gunicorn.")
def serve(host: str, port: int, workers: int, threads: int, dev: bool) -> None:
    """Run the proxy (gunicorn). Without LEDGER_PROXY_CANVAS_URL, in front of the simulator.

    Example:

        LEDGER_PROXY_CANVAS_URL=https://school.instructure.com ledger-proxy serve --port 8080

    then give scripts the base URL http://127.0.0.1:8080 (or http://127.0.0.1:8080/i/roster-sync
    to label their enrollments with the integration "roster-sync").
    """
    from . import create_app

    simulator = None
    if not os.environ.get("LEDGER_PROXY_CANVAS_URL") and not _instance_sets_canvas_url():
        simulator = _start_simulator(host)
        os.environ["LEDGER_PROXY_CANVAS_URL"] = simulator.url
    try:
        app = create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    base = f"http://{host}:{port}"
    click.echo(f"ledger-proxy {__version__} forwarding to {app.config['CANVAS_URL']}")
    click.echo(f"  give scripts the Canvas base URL {base}  (or {base}/i/<integration-label>)")
    click.echo(f"  ledger: {app.config['DATABASE']}")
    try:
        if dev:
            from .serving import RedactingRequestHandler

            app.run(host=host, port=port, threaded=True, request_handler=RedactingRequestHandler)
        else:
            from .gunicorn_app import run_gunicorn

            run_gunicorn(app, bind=f"{host}:{port}", workers=workers, threads=threads)
    finally:
        if simulator is not None:
            simulator.stop()


def _instance_sets_canvas_url() -> bool:
    from flask import Flask

    probe = Flask("ledger_proxy", instance_relative_config=True)
    probe.config.from_pyfile("config.py", silent=True)
    return bool(probe.config.get("CANVAS_URL"))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8081, show_default=True, type=int, help="Port to listen on.")
@click.option("--empty", is_flag=True, help="Start with no demo users and courses.")
def simulator(host: str, port: int, empty: bool) -> None:
    """Run the bundled Canvas simulator, for tests and demos (never expose it).

    Example:

        ledger-proxy simulator --port 8081

    It serves the Canvas enrollments API under /api/v1 and test controls under /_sim/
    (see docs/simulator.md).
    """
    from .simulator import run_simulator

    run_simulator(host, port, seed_demo=not empty)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
