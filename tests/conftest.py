"""Fixtures: every server a test starts listens on a free loopback port and is stopped after."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger_proxy import create_app
from ledger_proxy.serving import BackgroundServer

from .upstream import RecordingUpstream


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure the proxy explicitly; settings from the caller's shell never leak in."""
    for name in list(os.environ):
        if name.startswith("LEDGER_PROXY_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)


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
        server = BackgroundServer(create_app(config, instance_path=str(tmp_path / "instance"))).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
