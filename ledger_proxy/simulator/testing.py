"""Helpers for tests that run against the simulator over real HTTP (pytest-independent)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from flask import Flask

from ledger_proxy.devserver import BackgroundServer
from ledger_proxy.simulator import world
from ledger_proxy.simulator.app import create_simulator_app
from ledger_proxy.simulator.state import SimulatorState
from ledger_proxy.simulator.web import EXTENSION_KEY


class SimulatorClient:
    """A running simulator: its base URL, the control API, and raw Canvas API calls."""

    def __init__(self, url: str, app: Flask) -> None:
        self.url = url
        self.app = app
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only: never route through an env proxy

    @property
    def state(self) -> SimulatorState:
        state: SimulatorState = self.app.extensions[EXTENSION_KEY]
        return state

    def close(self) -> None:
        self.http.close()

    def reset(self, seed_demo: bool = True) -> None:
        """Back to a fresh world (the demo one by default), keeping the server running."""
        self.state.reset()
        if seed_demo:
            world.seed_demo(self.state)

    # -- control API -------------------------------------------------------------------------

    def control(
        self, method: str, endpoint: str, payload: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """Call `/_sim/<endpoint>` and return its JSON, raising on any non-2xx answer."""
        response = self.http.request(
            method, f"{self.url}/_sim/{endpoint.lstrip('/')}", json=payload, params=params,
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def add_user(self, name: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.control("POST", "users", {"name": name, **fields})
        return result

    def add_course(self, name: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.control("POST", "courses", {"name": name, **fields})
        return result

    def enrollments(self, **filters: Any) -> list[dict[str, Any]]:
        """Ground truth: every enrollment with origin and history (`GET /_sim/enrollments`)."""
        result: list[dict[str, Any]] = self.control("GET", "enrollments", params=filters)
        return result

    def requests_log(self, path: str | None = None) -> list[dict[str, Any]]:
        params = {"path": path} if path else None
        result: list[dict[str, Any]] = self.control("GET", "requests", params=params)
        return result

    def set_faults(self, *rules: dict[str, Any]) -> None:
        self.control("POST", "faults", {"rules": list(rules)})

    def settings(self, **values: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.control("POST", "settings", values)
        return result

    def live_events(self, **config: Any) -> dict[str, Any]:
        """Turn Live Events on (`url=`, `format=`, `ndjson_path=`, faults; docs/simulator.md),
        or off with `enabled=False`; returns the status."""
        result: dict[str, Any] = self.control("POST", "live_events", config)
        return result

    def flush_live_events(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until every emitted event is delivered or failed; raises if that takes longer."""
        status: dict[str, Any] = self.control("POST", "live_events/flush", {"timeout": timeout})
        if not status["idle"]:
            raise TimeoutError(f"Live Events still in flight after {timeout} s: {status}")
        return status

    def live_events_log(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", "live_events/log")
        return result

    @property
    def live_events_jwks_url(self) -> str:
        return f"{self.url}/_sim/live_events/jwks.json"

    # -- Canvas API --------------------------------------------------------------------------

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any,
    ) -> requests.Response:
        """A raw Canvas API request to `/api/v1/<path>` with an optional Bearer token."""
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 10)
        return self.http.request(
            method, f"{self.url}/api/v1/{path.lstrip('/')}", headers=headers, **kwargs,
        )


@contextmanager
def running_simulator(seed_demo: bool = True) -> Iterator[SimulatorClient]:
    """Start a simulator on a free loopback port; stop it when the block ends."""
    app = create_simulator_app(seed_demo=seed_demo)
    with BackgroundServer(app) as server:
        client = SimulatorClient(server.url, app)
        try:
            yield client
        finally:
            client.close()
