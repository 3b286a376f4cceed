"""`ledger-proxy demo`: the simulator, the proxy in front of it, and enrollments made every way."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, TextIO

import click

from .devserver import BackgroundServer

INTEGRATION = "roster-sync"
COURSE_ID = 1  # the demo world's "Demo Course" (sis_course_id DEMO-101)
SECTION_B = 2
ADMIN_TOKEN = "sim-admin-token"  # user 1, Sim Admin
TEACHER_TOKEN = "sim-teacher-token"  # user 2, Terry Teacher
ADMIN_ID, TEACHER_ID = 1, 2
# Users of the demo world (3-6) and a few more, with their SIS ids.
NEW_USERS = (
    ("Barbara Liskov", "Liskov, Barbara", "S-005"),
    ("Donald Knuth", "Knuth, Donald", "S-006"),
    ("Katherine Johnson", "Johnson, Katherine", "S-007"),
)
BYPASS_USER_AGENT = "enroll-from-spreadsheet.py/0.3"


class DemoError(Exception):
    """The demo could not start (a port in use, a bad setting); the message says which."""


@dataclass
class Story:
    """Who enrolled whom, in the order it happened, for the printed summary."""

    lines: list[str] = field(default_factory=list)


class Demo:
    """A running simulator and proxy; `populate()` makes the story, `lookup()` judges it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, simulator_port: int = 0) -> None:
        from . import create_app
        from .config import ConfigError
        from .simulator import create_simulator_app
        from .simulator.testing import SimulatorClient

        self._workdir = tempfile.mkdtemp(prefix="ledger-proxy-demo-")
        self._servers: list[BackgroundServer] = []
        try:
            simulator_app = create_simulator_app(seed_demo=True)
            self.simulator = self._serve(simulator_app, host, simulator_port, "the simulator")
            self.sim = SimulatorClient(self.simulator.url, simulator_app)
            settings: dict[str, Any] = {
                "CANVAS_URL": self.simulator.url,
                "ADMIN_USER_IDS": [ADMIN_ID],  # the admin token may export the ledger
                "SESSION_COOKIE_SECURE": False,  # the dashboard over plain http on loopback
                # Tokens configured for a real Canvas are never sent to the simulator.
                "RECONCILE_TOKEN": None,
                "SIS_READER_TOKEN": None,
                # Canvas Live Events: the simulator signs them, the proxy checks its JWKS.
                "LIVE_EVENTS_JWKS": self.sim.live_events_jwks_url,
            }
            self.temporary_ledger = not os.environ.get("LEDGER_PROXY_DATABASE")
            if self.temporary_ledger:
                settings["DATABASE"] = os.path.join(self._workdir, "ledger.sqlite3")
            try:
                self.app = create_app(settings, instance_path=self._workdir)
            except ConfigError as exc:
                raise DemoError(str(exc)) from None
            self.proxy = self._serve(self.app, host, port, "the proxy")
            # The simulator posts every enrollment's Live Event to the proxy's receiver, as a
            # Canvas Data Services HTTPS subscription would (docs/live-events.md).
            self.sim.live_events(url=f"{self.proxy.url}/ledger/v1/live-events")
        except BaseException:
            self.stop()
            raise
        self.story = Story()

    def _serve(self, app: Any, host: str, port: int, what: str) -> BackgroundServer:
        try:
            server = BackgroundServer(app, host=host, port=port).start()
        except OSError as exc:
            raise DemoError(f"{what} cannot listen on {host}:{port} ({exc.strerror})") from None
        except SystemExit:  # werkzeug's answer to a port in use, after saying so on stderr
            raise DemoError(f"{what} cannot listen on {host}:{port} (in use)") from None
        self._servers.append(server)
        return server

    @property
    def database(self) -> str:
        return str(self.app.config["DATABASE"])

    def stop(self) -> None:
        if getattr(self, "sim", None) is not None and self._servers:
            self.sim.state.live_events.configure(None)  # nothing more to post anywhere
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if getattr(self, "sim", None) is not None:
            self.sim.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # The story

    def populate(self) -> None:
        """Enroll people in course 1 every way Canvas allows, only one of them through us."""
        sim = self.sim
        new = {
            sis: sim.add_user(name, sortable_name=sortable, sis_user_id=sis)
            for name, sortable, sis in NEW_USERS
        }
        self._through_the_proxy()
        sim.control(
            "POST",
            "ui/enrollments",
            {
                "actor_user_id": TEACHER_ID,
                "course_id": COURSE_ID,
                "user_id": 5,  # Grace Hopper
                "type": "StudentEnrollment",
                "enrollment_state": "active",
            },
        )
        self.story.lines.append("the teacher Terry Teacher added Grace Hopper in the web UI")
        sim.control(
            "POST",
            "sis_imports",
            {
                "rows": [
                    {"course_id": "DEMO-101", "user_id": "S-004", "role": "student",
                     "status": "active"},
                    {"course_id": "DEMO-101", "user_id": "S-005", "role": "student",
                     "section_id": "DEMO-101-B", "status": "active"},
                    {"course_id": "DEMO-101", "user_id": "S-006", "role": "ta",
                     "status": "active"},
                ]
            },
        )
        self.story.lines.append(
            "the nightly SIS import added Edsger Dijkstra, Barbara Liskov and Donald Knuth (TA)"
        )
        sim.control(
            "POST",
            "api_bypass/enrollments",
            {
                "actor_user_id": ADMIN_ID,
                "course_id": COURSE_ID,
                "user_id": new["S-007"]["id"],
                "type": "StudentEnrollment",
                "enrollment_state": "active",
                "user_agent": BYPASS_USER_AGENT,
            },
        )
        self.story.lines.append(
            "a script added Katherine Johnson by calling Canvas directly, bypassing the proxy"
        )
        sim.flush_live_events()  # Canvas's Live Events about all of it have reached the proxy

    def _through_the_proxy(self) -> None:
        from canvasapi import Canvas

        with warnings.catch_warnings():  # canvasapi warns about http:// base URLs
            warnings.simplefilter("ignore", UserWarning)
            canvas = Canvas(f"{self.proxy.url}/i/{INTEGRATION}", ADMIN_TOKEN)
        # Loopback traffic must not go to an HTTP_PROXY from the environment.
        session = getattr(getattr(canvas, "_Canvas__requester", None), "_session", None)
        if session is not None:
            session.trust_env = False
        course = canvas.get_course(COURSE_ID)
        course.enroll_user(3, enrollment={"type": "StudentEnrollment",
                                          "enrollment_state": "active"})
        course.enroll_user(4, enrollment={"type": "StudentEnrollment",
                                          "enrollment_state": "active",
                                          "course_section_id": SECTION_B})
        self.story.lines.append(
            f'the integration "{INTEGRATION}" enrolled Ada Lovelace and Alan Turing through '
            "the proxy (canvasapi)"
        )

    def lookup(self) -> dict[str, Any]:
        """The provenance lookup of course 1, as GET /ledger/v1/courses/1/enrollments answers."""
        from .core import lookup
        from .web.lookup import sources

        with self.app.app_context():
            query = lookup.Query("courses", str(COURSE_ID))
            return lookup.run(token=ADMIN_TOKEN, query=query, **sources())

    # What is printed

    def report(self, out: TextIO, result: dict[str, Any], *, colour: bool) -> None:
        from . import audit_output

        proxy, sim = self.proxy.url, self.simulator.url
        ledger = self.database + (" (temporary)" if self.temporary_ledger else "")
        echo = _echo(out)
        echo(click.style("ledger-proxy demo", bold=True) if colour else "ledger-proxy demo")
        echo(f"  Canvas simulator  {sim}")
        echo(f"  ledger-proxy      {proxy}  (forwarding to the simulator)")
        echo(f"  ledger            {ledger}")
        echo("")
        echo(f"What happened in course {COURSE_ID} (\"Demo Course\"):")
        echo("  - Sim Admin made Terry Teacher the teacher in the web UI, before the proxy ran")
        for line in self.story.lines:
            echo(f"  - {line}")
        echo("")
        echo("Who made each enrollment, as the proxy's provenance lookup tells it:")
        echo("")
        audit_output.write(result, "table", out, colour=colour)
        echo("")
        lookup = f"{proxy}/ledger/v1/courses/{COURSE_ID}/enrollments"
        auth = f'-H "Authorization: Bearer {ADMIN_TOKEN}"'
        echo("Try it:")
        echo(f"  proxy base URL     {proxy}  (label scripts: {proxy}/i/<integration>)")
        echo(f'  canvasapi          Canvas("{proxy}/i/{INTEGRATION}", "{ADMIN_TOKEN}")')
        echo(f"  lookup             curl {auth} {lookup}")
        echo(f"  only the manual    curl {auth} '{lookup}?provenance=manual'")
        echo(f"  dashboard          {proxy}/ledger/")
        echo(f"  ledger export      curl {auth} '{proxy}/ledger/v1/export?format=ndjson'")
        echo(f"  OpenAPI document   {proxy}/ledger/v1/openapi.json")
        echo(f"  operations         {proxy}/healthz  {proxy}/readyz  {proxy}/metrics")
        echo(f"  demo tokens        {ADMIN_TOKEN} (admin, user 1), {TEACHER_TOKEN} "
             "(teacher, user 2)")
        echo(f"  simulator control  {sim}/_sim/enrollments  (ground truth; docs/simulator.md)")

    def wait(self, out: TextIO) -> None:
        echo = _echo(out)
        echo("")
        echo("Both servers run until Ctrl-C. Requests through the proxy are logged below "
             "(JSON, on stderr).")
        while True:
            time.sleep(1)


def _echo(out: TextIO) -> Any:
    return lambda text: click.echo(text, file=out)


def _stop_on_sigterm() -> None:
    """`kill` stops the demo as Ctrl-C does: servers stopped, temporary ledger removed."""
    if threading.current_thread() is threading.main_thread():

        def interrupt(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)


def run(
    out: TextIO,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    simulator_port: int = 0,
    wait: bool = True,
) -> dict[str, Any]:
    """The whole demo: start, populate, print; then serve until interrupted (unless `wait` is
    false). Returns the lookup's answer."""
    access = logging.getLogger("ledger_proxy.access")
    level = access.level
    access.setLevel(logging.WARNING)  # the demo's own set-up requests are not news
    try:
        with Demo(host, port, simulator_port) as demo:
            demo.populate()
            result = demo.lookup()
            demo.report(out, result, colour=out.isatty())
            if wait:
                access.setLevel(level)
                _stop_on_sigterm()
                try:
                    demo.wait(out)
                except KeyboardInterrupt:
                    click.echo("\nStopped.", file=out)
            return result
    finally:
        access.setLevel(level)
