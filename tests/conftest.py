"""Fixtures: every server a test starts listens on a free loopback port and is stopped after."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger_proxy import create_app
from ledger_proxy.devserver import BackgroundServer

from .upstream import RecordingUpstream


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> None:
    """Tests configure the proxy explicitly; settings from the caller's shell never leak in,
    and nothing is written to the checkout's instance/ folder."""
    for name in list(os.environ):
        if name.startswith("LEDGER_PROXY_") or name.lower() in (
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LEDGER_PROXY_INSTANCE_PATH", str(tmp_path_factory.mktemp("instance")))


@pytest.fixture
def upstream() -> Iterator[tuple[RecordingUpstream, BackgroundServer]]:
    app = RecordingUpstream()
    with BackgroundServer(app) as server:
        yield app, server


@pytest.fixture
def make_proxy(tmp_path: Any) -> Iterator[Callable[..., BackgroundServer]]:
    """make_proxy(canvas_url, **settings) -> a running proxy server (app at .app)."""
    servers: list[BackgroundServer] = []

    def make(canvas_url: str, **settings: Any) -> BackgroundServer:
        config = {
            "CANVAS_URL": canvas_url,
            "DATABASE": str(tmp_path / "ledger.sqlite3"),
            "TOKEN_HASH_KEY": "test-token-hash-key",
            **settings,
        }
        server = BackgroundServer(
            create_app(config, instance_path=str(tmp_path / "instance"))
        ).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        server.app.extensions["ledger_proxy"].stop_background()


@pytest.fixture
def proxy(make_proxy: Callable[..., BackgroundServer], sim: Any) -> BackgroundServer:
    """The proxy in front of the simulator, on a socket (Canvas and clients are real HTTP)."""
    return make_proxy(sim.url)


@pytest.fixture
def admin_proxy(make_proxy: Callable[..., BackgroundServer], sim: Any, world: Any) -> BackgroundServer:
    """The proxy, with the world's admin allowed the ledger's export and history."""
    return make_proxy(sim.url, ADMIN_USER_IDS=[world.admin["id"]])


@pytest.fixture
def app(tmp_path: Any) -> Any:
    """An app with its own ledger and no reachable Canvas, for tests where a socket adds
    nothing (flaskr's `app` fixture)."""
    return create_app(
        {
            "CANVAS_URL": "http://127.0.0.1:9",  # the discard port: refused at once
            "DATABASE": str(tmp_path / "ledger.sqlite3"),
            "TOKEN_HASH_KEY": "test-token-hash-key",
        },
        instance_path=str(tmp_path / "instance"),
        background=False,
    )


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()



class World:
    """A simulated Canvas with an admin, a teacher, students and one course with two sections."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.admin = sim.add_user("Ada Admin", admin=True, sis_user_id="ADMIN-1")
        self.teacher = sim.add_user("Terry Teacher", sis_user_id="T-1")
        self.students = [
            sim.add_user(
                f"Student {n:02d}", sortable_name=f"Student, {n:02d}", sis_user_id=f"S-{n:02d}"
            )
            for n in range(1, 9)
        ]
        self.course = sim.add_course("Biology 101", sis_course_id="BIO-101")
        self.section_a = self.course["default_section_id"]
        self.section_b = sim.control(
            "POST",
            f"courses/{self.course['id']}/sections",
            {"name": "Lab B", "sis_section_id": "BIO-101-B"},
        )["id"]
        sim.control(
            "POST",
            "ui/enrollments",
            {
                "course_id": self.course["id"],
                "user_id": self.teacher["id"],
                "type": "TeacherEnrollment",
                "enrollment_state": "active",
                "actor_user_id": self.admin["id"],
            },
        )

    def truth(self, enrollment_id: int) -> dict[str, Any]:
        [row] = [
            e for e in self.sim.enrollments(course_id=self.course["id"]) if e["id"] == enrollment_id
        ]
        return row


@pytest.fixture(scope="session")
def sim_server() -> Iterator[Any]:
    """One simulator for the whole run; each test resets it (records, faults, settings, clock)."""
    from ledger_proxy.simulator.testing import running_simulator

    with running_simulator(seed_demo=False) as client:
        yield client


@pytest.fixture
def sim(sim_server: Any) -> Any:
    """The simulator with an empty world."""
    sim_server.reset(seed_demo=False)
    return sim_server


@pytest.fixture
def demo_sim(sim_server: Any) -> Any:
    """The simulator with the demo world (sim-admin-token, sim-teacher-token, course 1)."""
    sim_server.reset(seed_demo=True)
    return sim_server


@pytest.fixture
def world(sim: Any) -> World:
    return World(sim)
