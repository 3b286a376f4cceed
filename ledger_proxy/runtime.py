"""Per-process state of one app (the Canvas client, the token key, the actor cache) and the
request's ledger handle on `g`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlite_utils
from flask import current_app, g

from .core import ledger
from .upstream.canvas import CanvasClient
from .upstream.jwks import LiveEventsVerifier


@dataclass
class Runtime:
    canvas: CanvasClient
    token_key: bytes
    identity_ttl: float
    registry: Any = None  # core.integrations.Registry: who may act under which label
    # Admin access asks Canvas again after this many seconds (never from the `actors` table).
    admin_ttl: float = 5.0
    # Verifies Live Events JWTs (LEDGER_PROXY_LIVE_EVENTS_JWKS); None when not configured.
    live_events: LiveEventsVerifier | None = None
    _actors: dict[str, tuple[ledger.Actor, float]] = field(default_factory=dict)
    _confirmed: dict[str, tuple[ledger.Actor, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Background work of this process (the reconciler), stopped by stop_background().
    background: list[Any] = field(default_factory=list)
    # Run before every request, also on the lean path (web/fastpath.py), which runs no Flask
    # hook: what must happen on a process's first request (the reconciler's start).
    per_request: list[Callable[[], None]] = field(default_factory=list)
    # Called between Canvas's answer to an enrollment-changing request and the outcome's write:
    # None in production; the fault tests set it (tests/crash_wsgi.py kills the worker there).
    after_canvas: Callable[[], None] | None = None

    def stop_background(self) -> None:
        for worker in self.background:
            worker.stop()

    def actor_for(self, db: sqlite_utils.Database, token: str, hashed: str) -> ledger.Actor | None:
        """The Canvas user behind `token`: from memory, then the ledger's cache, then Canvas.

        None when Canvas refuses the token; CanvasUnreachable & co. when Canvas gives no answer.
        """
        now = time.monotonic()
        with self._lock:
            cached = self._actors.get(hashed)
        if cached and cached[1] > now:
            return cached[0]
        actor = ledger.cached_actor(db, hashed, timedelta(seconds=self.identity_ttl))
        if actor is None:
            actor = self.canvas.whoami(token)
            if actor is None:
                return None
            ledger.store_actor(db, hashed, actor)
        with self._lock:
            self._actors[hashed] = (actor, now + self.identity_ttl)
        return actor

    def confirmed_actor(
        self, db: sqlite_utils.Database, token: str, hashed: str
    ) -> ledger.Actor | None:
        """The Canvas user behind `token` as Canvas says now, for admin-only access: a token
        revoked in Canvas loses it within `admin_ttl` seconds (memory only, this process).

        None when Canvas refuses the token (its cache entries are dropped too).
        """
        now = time.monotonic()
        with self._lock:
            cached = self._confirmed.get(hashed)
        if cached and cached[1] > now:
            return cached[0]
        actor = self.canvas.whoami(token)
        if actor is None:
            self.forget(db, hashed)
            return None
        with self._lock:
            for key in [key for key, (_, until) in self._confirmed.items() if until <= now]:
                del self._confirmed[key]
            if self.admin_ttl > 0:
                self._confirmed[hashed] = (actor, now + self.admin_ttl)
        return actor

    def forget(self, db: sqlite_utils.Database, hashed: str) -> None:
        """Drop every cache entry of a token (signed out, or refused by Canvas)."""
        with self._lock:
            self._actors.pop(hashed, None)
            self._confirmed.pop(hashed, None)
        ledger.forget_actor(db, hashed)


def runtime() -> Runtime:
    return current_app.extensions["ledger_proxy"]  # type: ignore[no-any-return]


def get_db() -> sqlite_utils.Database:
    """The ledger handle of the current app context, opened on first use."""
    if "ledger_db" not in g:
        g.ledger_db = ledger.connect(current_app.config["DATABASE"])
    return g.ledger_db  # type: ignore[no-any-return]


def recording_db() -> sqlite_utils.Database:
    """This thread's long-lived ledger handle, for the proxy's recording path: never closed
    at teardown (closing the last handle of a WAL file checkpoints it; issue 12)."""
    return ledger.thread_handle(current_app.config["DATABASE"])


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("ledger_db", None)
    if db is not None:
        db.close()
