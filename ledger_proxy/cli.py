"""The `ledger-proxy` console script: thin click commands over the package's functions."""

from __future__ import annotations

import contextlib
import errno
import inspect
import logging
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from typing import Any

import click

from . import __version__
from .config import ConfigError


def _keep_examples(help_text: str | None) -> str | None:
    """Mark indented paragraphs (examples) with click's \\b, so they are never rewrapped."""
    if not help_text:
        return help_text
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    return "\n\n".join(
        f"\b\n{paragraph}" if paragraph.startswith("    ") else paragraph
        for paragraph in paragraphs
    )


class _Command(click.Command):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _keep_examples(self.help)


class _Group(click.Group):
    """A user's environment failing (the ledger file, a disk, a port) is `Error: ...`, exit 1."""

    command_class = _Command
    group_class = type  # subgroups are _Group too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _keep_examples(self.help)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except sqlite3.Error as exc:
            raise click.ClickException(f"the ledger cannot be used ({exc})") from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # click handles a closed pipe (| head) itself
                raise
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ledger-proxy")
def main() -> None:
    """ledger-proxy: a transparent Canvas API proxy that records who made every enrollment.

    Point your scripts' Canvas base URL at the proxy; see `ledger-proxy serve --help`.

    Example:

        ledger-proxy demo
    """


def _start_simulator(host: str) -> Any:
    from .devserver import BackgroundServer
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

    if not dev:
        # gunicorn's settings, and PROMETHEUS_MULTIPROC_DIR (given, or a temporary folder
        # removed at exit) set before the app is built: prometheus_client reads it on import.
        from .ops import gunicorn_conf  # noqa: F401
    simulator = None
    if not os.environ.get("LEDGER_PROXY_CANVAS_URL") and not _instance_sets_canvas_url():
        simulator = _start_simulator(host)
        os.environ["LEDGER_PROXY_CANVAS_URL"] = simulator.url
    try:
        app = create_app(background=False)  # workers start their own reconciler
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    base = f"http://{host}:{port}"
    click.echo(f"ledger-proxy {__version__} forwarding to {app.config['CANVAS_URL']}")
    click.echo(f"  give scripts the Canvas base URL {base}  (or {base}/i/<integration-label>)")
    click.echo(f"  ledger: {app.config['DATABASE']}")
    try:
        if dev:
            from .devserver import RedactingRequestHandler

            app.run(host=host, port=port, threaded=True, request_handler=RedactingRequestHandler)
        else:
            from .ops.gunicorn_app import run_gunicorn

            run_gunicorn(app, bind=f"{host}:{port}", workers=workers, threads=threads)
    finally:
        if simulator is not None:
            simulator.stop()


def _instance_sets_canvas_url() -> bool:
    from . import config

    settings = config.instance_settings(os.path.join(config.instance_folder(), "config.py"))
    return bool(settings.get("CANVAS_URL"))


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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=0, type=int, help="Proxy port  [default: a free one]")
@click.option(
    "--simulator-port", default=0, type=int, help="Simulator port  [default: a free one]"
)
@click.option("--no-wait", is_flag=True, help="Exit after printing, instead of serving on.")
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, simulator_port: int, no_wait: bool) -> None:
    """See the point in a minute: a simulated Canvas, the proxy, and a course to look up.

    Starts the bundled Canvas simulator and the proxy in front of it, on free local ports,
    with a temporary ledger (or LEDGER_PROXY_DATABASE). Then an integration enrolls people
    through the proxy with canvasapi, a teacher adds someone in the web UI, an SIS import
    adds more and a script bypasses the proxy; the course's provenance table is printed,
    with the URLs and tokens to try. Both servers run until Ctrl-C.

    With a Canvas URL configured (LEDGER_PROXY_CANVAS_URL or instance/config.py) it makes no
    demo changes in that Canvas: it serves the proxy in front of it, as `serve` does.

    Example:

        ledger-proxy demo --port 8080
    """
    from . import demo as demonstration

    if os.environ.get("LEDGER_PROXY_CANVAS_URL") or _instance_sets_canvas_url():
        click.echo("A Canvas URL is configured: serving the proxy in front of it (no demo data).")
        ctx.invoke(serve, host=host, port=port or 8080)
        return

    try:
        demonstration.run(
            sys.stdout, host=host, port=port, simulator_port=simulator_port, wait=not no_wait
        )
    except demonstration.DemoError as exc:
        raise click.ClickException(str(exc)) from None


def _settings(require_canvas: bool = True) -> dict[str, Any]:
    """The settings (config.load) with the ledger created or migrated, or a clear
    `Error: ...` for bad settings. No app is built: these commands serve nothing."""
    from . import config

    try:
        settings, _ = config.load(require_canvas=require_canvas)
        config.open_ledger(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logging.getLogger("ledger_proxy").setLevel(settings["LOG_LEVEL"])
    return settings


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
    from datetime import timedelta

    from . import audit_output
    from .core import ledger, lookup
    from .core.vocab import MANUAL
    from .upstream.canvas import CanvasClient

    settings = _settings()
    query = lookup.Query(
        "sections" if section else "courses",
        course_id,
        include_deleted,
        MANUAL if manual_only else None,
    )
    progress = audit_output.Progress(sys.stderr)
    db = ledger.connect(settings["DATABASE"])
    try:
        with canvas_answers():
            result = lookup.run(
                db,
                CanvasClient.configured(settings),
                token,
                query,
                sis_reader=settings["SIS_READER_TOKEN"],
                allowance=timedelta(seconds=settings["CLOCK_SKEW_SECONDS"]),
                on_page=progress.update,
            )
    finally:
        progress.done()
        db.close()
    audit_output.write(result, output_format, sys.stdout, colour=sys.stdout.isatty())


@main.command("audit-account")
@click.argument("account_id")
@click.option("--term", help="Only this enrollment term (its Canvas id, or sis_term_id:X).")
@click.option("--manual-only", is_flag=True, help="Only the enrollments judged manual.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["csv", "ndjson"]),
    default="csv",
    show_default=True,
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not standard output."
)
@click.option(
    "--from-report",
    type=click.Path(exists=True, dir_okay=False),
    help="Judge a provisioning report already downloaded (Canvas is not asked).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=3600,
    show_default=True,
    help="Seconds Canvas may take to build the report.",
)
@click.option(
    "--token",
    envvar="CANVAS_TOKEN",
    help="Canvas token that may run account reports (or CANVAS_TOKEN).",
)
def audit_account(
    account_id: str,
    term: str | None,
    manual_only: bool,
    output_format: str,
    output: str | None,
    from_report: str | None,
    timeout: float,
    token: str | None,
) -> None:
    """Classify every enrollment of an account from Canvas's provisioning report.

    Starts the provisioning_csv report (enrollments, with completed rows) with your token,
    waits for Canvas to build it, streams the file and judges each row with the same rules
    as `ledger-proxy audit`; a summary per verdict closes the run. The report has no
    created_at, and deleted rows only when SIS touched them: see README.

    Example:

        CANVAS_TOKEN=... ledger-proxy audit-account 1 --term 7 --manual-only -o manual.csv
    """
    from datetime import timedelta

    from . import audit_output
    from .core import account_audit, ledger
    from .core.vocab import MANUAL
    from .upstream.canvas import CANVAS_FAILURES, CanvasAnswerCut, CanvasClient, CanvasRefused
    from .upstream.reports import ReportFailed

    if not token and not from_report:
        raise click.ClickException("a Canvas token is needed: --token or CANVAS_TOKEN")
    settings = _settings(require_canvas=not from_report)
    request = account_audit.Request(
        account_id, term, MANUAL if manual_only else None, output_format, timeout, from_report
    )
    progress = audit_output.AccountProgress(sys.stderr, from_report)
    db = ledger.connect(settings["DATABASE"])
    try:
        with audit_output.output_file(output) as out:
            tally = account_audit.run(
                db,
                CanvasClient.configured(settings),
                token or "",
                request,
                out,
                allowance=timedelta(seconds=settings["CLOCK_SKEW_SECONDS"]),
                watchers=progress.watchers(),
            )
    except (ReportFailed, account_audit.ReportUnreadable) as exc:
        raise click.ClickException(str(exc)) from None
    except CanvasRefused as refusal:
        raise click.ClickException(audit_output.refusal_message(refusal)) from None
    except (*CANVAS_FAILURES, CanvasAnswerCut) as exc:
        raise click.ClickException(f"Canvas gave no answer ({type(exc).__name__})") from None
    finally:
        progress.done()
        db.close()
    for problem in tally.problems:
        click.echo(f"malformed report row: {problem}", err=True)
    click.echo(tally.text(), err=True)


@main.command()
@click.argument("course_id")
@click.option("--section", is_flag=True, help="COURSE_ID is a section id.")
@click.option("--refresh", is_flag=True, help="Ask Canvas again instead of the stored answers.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--token",
    envvar="CANVAS_TOKEN",
    required=True,
    help="Canvas token to list the course with (or CANVAS_TOKEN); only the rows it sees are "
    "attributed.",
)
def attribute(
    course_id: str, section: bool, refresh: bool, output_format: str, token: str
) -> None:
    """Name who made each manual enrollment nobody recorded, from Canvas page views.

    Reads the page views of the course's teachers, TAs and designers, the admins, the
    integrations' users and each enrolled user with LEDGER_PROXY_PAGE_VIEWS_TOKEN, around
    each row's created_at; stores the answers (--refresh asks Canvas again).

    Example:

        CANVAS_TOKEN=... ledger-proxy attribute 517
    """
    import json
    from datetime import timedelta

    from . import audit_output
    from .core import attribution, ledger, lookup
    from .upstream.canvas import CanvasClient

    settings = _settings()
    query = lookup.Query("sections" if section else "courses", course_id)
    bar = audit_output.QueryProgress(sys.stderr)
    db = ledger.connect(settings["DATABASE"])
    try:
        with canvas_answers():
            result = attribution.attribute(
                db, CanvasClient.configured(settings), token, query,
                attribution.Options.configured(settings, refresh=refresh),
                sis_reader=settings["SIS_READER_TOKEN"],
                lookup_allowance=timedelta(seconds=settings["CLOCK_SKEW_SECONDS"]),
                on_progress=bar.update,
            )
    finally:
        bar.done()
        db.close()
    report = result["attribution"]
    if output_format == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        for item in result["enrollments"]:
            actor = item.get("actor") or {}
            if actor.get("source") != "page_views":
                continue
            who = (
                ", ".join(str(c["user_id"]) for c in actor["candidates"])
                if actor["confidence"] == "ambiguous"
                else f"{actor.get('name') or ''} (user {actor['user_id']}) via {actor['via']}"
            )
            click.echo(
                f"enrollment {item['id']} user {item['user_id']}: {actor['confidence']}: {who}"
            )
    click.echo(
        f"{report['rows']} manual or unknown rows; {report.get('from_ledger', 0)} answered from "
        f"the ledger; {report.get('canvas_requests', 0)} Canvas requests "
        f"({report.get('throttled', 0)} throttled)",
        err=True,
    )
    if report["status"] == "unavailable":
        raise click.ClickException(report["message"])


@contextlib.contextmanager
def canvas_answers() -> Iterator[None]:
    """Canvas's refusal, or its silence, as the command's error message."""
    from . import audit_output
    from .upstream.canvas import CANVAS_FAILURES, CanvasRefused

    try:
        yield
    except CanvasRefused as refusal:
        raise click.ClickException(audit_output.refusal_message(refusal)) from None
    except CANVAS_FAILURES as exc:
        raise click.ClickException(f"Canvas gave no answer ({type(exc).__name__})") from None


@main.group("sis-roster")
def sis_roster() -> None:
    """The institution's SIS roster (enrollments.csv) that lookups match enrollments against.

    Example:

        ledger-proxy sis-roster load exports/enrollments.csv
    """


@sis_roster.command("load")
@click.argument("file", type=click.File("rb"))
def sis_roster_load(file: Any) -> None:
    """Load an SIS enrollments.csv, replacing the roster loaded before (all or nothing).

    Example:

        ledger-proxy sis-roster load exports/enrollments.csv
    """
    from .core import ledger
    from .core import sis_roster as roster

    try:
        rows = roster.parse(file.read())
    except roster.RosterError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise click.ClickException(
            f"{len(exc.problems)} bad line(s) in {file.name}; nothing was loaded"
        ) from None
    db = ledger.connect(_settings(require_canvas=False)["DATABASE"])
    try:
        count = roster.load(db, rows, source=str(file.name))
    finally:
        db.close()
    click.echo(f"Loaded {count} SIS enrollment rows from {file.name}")



@main.group("events")
def events() -> None:
    """Canvas Live Events: who made each enrollment (docs/live-events.md).

    Example:

        ledger-proxy events ingest events.ndjson
    """


@events.command("ingest")
@click.argument("file", type=click.File("rb"))
def events_ingest(file: Any) -> None:
    """Store the Live Events of an NDJSON file (or - for standard input), one per line.

    Each line is a Canvas-format event as an SQS consumer writes it (JSON), or a signed JWT
    (verified against LEDGER_PROXY_LIVE_EVENTS_JWKS). Events already stored count as
    duplicates; types other than enrollment and SIS-batch events are ignored. A bad line is
    reported by its number and skipped, the rest are stored; the exit status is then 1, so a
    pipeline notices (ingesting the file again is safe: nothing is stored twice).

    Example:

        ledger-proxy events ingest canvas-live-events.ndjson
    """
    from .core import ledger, live_store
    from .upstream.jwks import LiveEventsVerifier, read_event_body

    settings = _settings(require_canvas=False)
    source = settings["LIVE_EVENTS_JWKS"]
    verifier = LiveEventsVerifier(source) if source else None

    def decode(line: str) -> dict[str, Any]:
        return read_event_body(line, verifier, allow_unsigned=True)

    size = _size(file)
    db = ledger.connect(settings["DATABASE"])
    try:
        lines = (raw.decode("utf-8", errors="replace") for raw in file)
        if size and sys.stderr.isatty():  # a progress bar on a terminal, for a file
            with click.progressbar(length=size, label="ingesting", file=sys.stderr) as bar:
                summary = live_store.ingest(db, _ticking(lines, bar.update), decode)
        else:
            summary = live_store.ingest(db, lines, decode)
    finally:
        db.close()
    for number, problem in summary.bad:
        click.echo(f"line {number}: {problem}", err=True)
    click.echo(
        f"{summary.stored} stored, {summary.duplicates} duplicates, {summary.ignored} ignored, "
        f"{len(summary.bad)} bad ({summary.lines} lines of {getattr(file, 'name', '-')})"
    )
    if summary.bad:
        raise click.ClickException(f"{len(summary.bad)} bad line(s) skipped; the rest stored")


def _size(file: Any) -> int | None:
    """The size of a regular file, None for a pipe or standard input."""
    try:
        info = os.fstat(file.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _ticking(lines: Any, tick: Any) -> Any:
    for line in lines:
        tick(len(line.encode("utf-8", errors="replace")))
        yield line


@main.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "ndjson"]),
    default="csv",
    show_default=True,
    help="File format.",
)
@click.option("--since", help="Only events recorded at or after this ISO 8601 time.")
@click.option("--until", help="Only events recorded at or before this ISO 8601 time.")
@click.option("--course-id", help="Only events of this Canvas course id.")
@click.option("--integration", help="Only events recorded under this integration label.")
@click.option("--action", help="Only events with this action (created, adopted, deleted, ...).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not standard output."
)
def export_command(fmt: str, output: str | None, **filters: str | None) -> None:
    """Export the ledger's events, with their chain hashes, as CSV or NDJSON.

    The same bytes as GET /ledger/v1/export with the same filters, read from the ledger file
    (LEDGER_PROXY_DATABASE). See docs/audit.md for verifying the file offline.

    Example:

        ledger-proxy export --format ndjson --since 2025-01-01T00:00:00Z -o ledger.ndjson
    """
    from marshmallow import ValidationError

    from .core import export, ledger
    from .web.schemas import ExportArgs

    given = {name: value for name, value in filters.items() if value is not None}
    try:
        args = ExportArgs(exclude=("format", "access_token")).load(given)
    except ValidationError as exc:
        name, problems = sorted(exc.normalized_messages().items())[0]
        raise click.ClickException(f"--{name.replace('_', '-')}: {problems[0]}") from None
    db = ledger.connect(_settings(require_canvas=False)["DATABASE"])
    selection = export.Filters(**args)
    try:
        with click.open_file(output or "-", "wb") as sink:
            chunks = export.export(db, selection, fmt)
            if output in (None, "-") or not sys.stderr.isatty():
                for chunk in chunks:
                    sink.write(chunk)
            else:  # a progress bar on a terminal while a file is written
                total = export.count(db, selection)
                with click.progressbar(length=total, label="exporting", file=sys.stderr) as bar:
                    for chunk in chunks:
                        sink.write(chunk)
                        bar.update(min(export.PAGE_SIZE, total - bar.pos))
    finally:
        db.close()


@main.command("verify")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False),
    help="Verify a complete export file (CSV or NDJSON) instead of the ledger.",
)
def verify_command(path: str | None) -> None:
    """Walk the hash chain; report the first edited, deleted, inserted or reordered event.

    Exit status 0 with the event count and head hash when the chain is whole; 1 with
    `Error: ledger chain broken at seq N: <kind> (...)` at the first break.

    Example:

        ledger-proxy verify
    """
    from .core import export, ledger

    try:
        if path:
            try:
                head = export.verify(export.file_events(path))
            except (ValueError, KeyError) as exc:
                raise click.ClickException(f"{path} is not a ledger export ({exc})") from None
        else:
            path = _settings(require_canvas=False)["DATABASE"]
            db = ledger.connect(path)
            try:
                if sys.stderr.isatty():  # a progress bar on a terminal, quiet when piped
                    total = ledger.event_count(db)
                    with click.progressbar(length=total, label="verifying", file=sys.stderr) as bar:
                        head = export.verify_ledger(db, tick=bar.update)
                else:
                    head = export.verify_ledger(db)
            finally:
                db.close()
    except export.ChainBroken as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"ledger chain intact: {head.count} events, head seq {head.seq} ({path})")
    click.echo(f"head hash {head.hash}")


@main.command()
@click.option(
    "--token",
    envvar="CANVAS_TOKEN",
    help="Canvas token able to list the courses' enrollments (or CANVAS_TOKEN; default: "
    "LEDGER_PROXY_RECONCILE_TOKEN).",
)
@click.option(
    "--grace",
    type=click.IntRange(min=0),
    help="Leave requests younger than this many seconds alone "
    "(default: LEDGER_PROXY_RECONCILE_GRACE_SECONDS).",
)
def reconcile(token: str | None, grace: int | None) -> None:
    """Settle requests whose outcome is unknown by asking Canvas what it really did.

    Each one becomes created, adopted or failed, with the evidence. Safe beside running
    workers: one reconciliation runs at a time.

    Example:

        CANVAS_TOKEN=... ledger-proxy reconcile --grace 60
    """
    from datetime import timedelta

    from .core import ledger
    from .core import reconcile as reconciliation
    from .upstream.canvas import CANVAS_FAILURES, CanvasClient, CanvasRefused

    settings = _settings()
    token = token or settings["RECONCILE_TOKEN"]
    if not token:
        raise click.ClickException(
            "a Canvas token is needed: --token, CANVAS_TOKEN or LEDGER_PROXY_RECONCILE_TOKEN"
        )
    options = reconciliation.Options(
        grace=timedelta(seconds=settings["RECONCILE_GRACE_SECONDS"] if grace is None else grace),
        allowance=timedelta(seconds=settings["CLOCK_SKEW_SECONDS"]),
    )
    db = ledger.connect(settings["DATABASE"])
    try:
        with reconciliation.exclusive(db, reconciliation.LEASE) as mine:
            if not mine:
                raise click.ClickException("another reconciliation is running; try again later")
            canvas = CanvasClient.configured(settings)
            results = reconciliation.reconcile(db, canvas, token, options)
    except CanvasRefused as refusal:
        from .audit_output import refusal_message

        raise click.ClickException(refusal_message(refusal)) from None
    except CANVAS_FAILURES as exc:
        raise click.ClickException(f"Canvas gave no answer ({type(exc).__name__})") from None
    finally:
        db.close()
    for result in results:
        target = f" enrollment {result.enrollment_id}" if result.enrollment_id else ""
        click.echo(
            f"{result.request_id} {result.kind}: {result.outcome}{target} ({result.evidence})"
        )
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    click.echo(f"Reconciled {len(results)} request(s){': ' + summary if summary else ''}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
