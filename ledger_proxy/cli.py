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


def _app(require_canvas: bool = True) -> Any:
    """The configured app (settings, ledger), or a clear `Error: ...` for bad settings."""
    from . import create_app

    try:
        return create_app(require_canvas=require_canvas)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("course_id")
@click.option("--section", is_flag=True, help="COURSE_ID is a section id: audit that section.")
@click.option("--manual-only", is_flag=True, help="Only the enrollments judged manual.")
@click.option("--include-deleted", is_flag=True, help="Also deleted enrollments.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--token",
    envvar="CANVAS_TOKEN",
    required=True,
    help="Canvas token to list the course with (or CANVAS_TOKEN); Canvas decides what it sees.",
)
def audit(
    course_id: str,
    section: bool,
    manual_only: bool,
    include_deleted: bool,
    output_format: str,
    token: str,
) -> None:
    """Classify every enrollment of a course as integration, sis or manual, with the evidence.

    The same lookup as GET /ledger/v1/courses/<id>/enrollments, run against Canvas directly.

    Example:

        CANVAS_TOKEN=... ledger-proxy audit 517 --manual-only --format csv > manual.csv
    """
    from . import audit_output
    from .blueprints.lookup import run
    from .canvas import CANVAS_FAILURES, CanvasRefused
    from .lookup import Query

    app = _app()
    query = Query(
        "sections" if section else "courses",
        course_id,
        include_deleted,
        "manual" if manual_only else None,
    )
    progress = audit_output.Progress(sys.stderr)
    with app.app_context():
        try:
            result = run(token, query, on_page=progress.update)
        except CanvasRefused as refusal:
            raise click.ClickException(audit_output.refusal_message(refusal)) from None
        except CANVAS_FAILURES as exc:
            raise click.ClickException(f"Canvas gave no answer ({type(exc).__name__})") from None
        finally:
            progress.done()
    audit_output.write(result, output_format, sys.stdout, colour=sys.stdout.isatty())


@main.group("sis-roster")
def sis_roster() -> None:
    """The institution's SIS roster (enrollments.csv) that lookups match enrollments against."""


@sis_roster.command("load")
@click.argument("file", type=click.File("rb"))
def sis_roster_load(file: Any) -> None:
    """Load an SIS enrollments.csv, replacing the roster loaded before (all or nothing).

    Example:

        ledger-proxy sis-roster load exports/enrollments.csv
    """
    from . import sis_roster as roster
    from .db import connect

    try:
        rows = roster.parse(file.read())
    except roster.RosterError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise click.ClickException(
            f"{len(exc.problems)} bad line(s) in {file.name}; nothing was loaded"
        ) from None
    db = connect(_app(require_canvas=False).config["DATABASE"])
    try:
        count = roster.load(db, rows, source=str(file.name))
    finally:
        db.close()
    click.echo(f"Loaded {count} SIS enrollment rows from {file.name}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
