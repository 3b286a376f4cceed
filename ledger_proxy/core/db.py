"""SQLite handles: WAL, busy timeout, short IMMEDIATE write transactions, migrations at start-up."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from .migrations import migrations

BUSY_TIMEOUT_MS = 10_000


def connect(path: str) -> sqlite_utils.Database:
    """A new handle on the ledger; one per thread (sqlite3 handles are not shared)."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    db = sqlite_utils.Database(conn, execute_plugins=False)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA foreign_keys = ON")
    return db


def initialise(path: str) -> None:
    """Create the file if needed, switch it to WAL and apply pending migrations (idempotent)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = connect(path)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        # Several workers may start at once: take the write lock before looking at which
        # migrations are pending, so exactly one of them applies each.
        with write_transaction(db):
            migrations.apply(db)
    finally:
        db.close()


@contextlib.contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """BEGIN IMMEDIATE ... COMMIT: take the write lock up front so that concurrent writers
    wait on busy_timeout instead of failing with 'database is locked' on lock upgrade."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")


def get_db() -> sqlite_utils.Database:
    """The ledger handle of the current app context, opened on first use."""
    from flask import current_app, g

    if "ledger_db" not in g:
        g.ledger_db = connect(current_app.config["DATABASE"])
    return g.ledger_db


def close_db(_exc: BaseException | None = None) -> None:
    from flask import g

    db = g.pop("ledger_db", None)
    if db is not None:
        db.close()
