"""The ledger store: the only code that opens the SQLite file or runs SQL on its tables.

Intents, outcomes, append-only events and the current view; the actor cache, the SIS roster,
the reconciliation lease, signed-out dashboard sessions and the readers the lookup, the export
and the probes use. No Flask.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from .chain import GENESIS, HASHED_KEYS, event_hash
from .migrations import migrations
from .util import as_int, iso, parse_time, utcnow
from .vocab import AMBIGUOUS, COMPLETED, CREATED, PENDING, UNKNOWN

BUSY_TIMEOUT_MS = 10_000
PAGE_SIZE = 1000


# Opening the file


# WAL with synchronous=NORMAL: a COMMIT has written its pages to the WAL file (the operating
# system holds them) before it returns, so it survives the death of any process, SIGKILL
# included; the WAL is synced to the disk at each checkpoint, not at each COMMIT, so a power
# loss or an OS crash may take back the last transactions since then (docs/deploy.md). FULL
# would add one fsync per COMMIT; with group commit that is one per batch of waiting writes.
SYNCHRONOUS = "NORMAL"
# Long-lived handles per thread: at most this many ledger files per thread (the tests make
# many apps; a served process has one).
THREAD_HANDLES = 4


def connect(
    path: str,
    *,
    timeout: float = BUSY_TIMEOUT_MS / 1000,
    synchronous: str = SYNCHRONOUS,
    sync_each_commit: bool | None = None,
    shared: bool = False,
) -> sqlite_utils.Database:
    """A new handle on the ledger; one per thread (sqlite3 handles are not shared), unless
    `shared`: then the caller serialises every use itself.

    `synchronous` is NORMAL unless asked otherwise (see SYNCHRONOUS); `sync_each_commit`
    True asks FULL, False NORMAL (Live Events' store asks False: an fsync per event would
    cap the receiver at the disk's sync rate, docs/benchmarks.md).
    """
    if sync_each_commit is not None:
        synchronous = "FULL" if sync_each_commit else "NORMAL"
    if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
    conn = sqlite3.connect(path, timeout=timeout, check_same_thread=not shared)
    db = sqlite_utils.Database(conn, execute_plugins=False)
    db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    _group_of[db] = _group_commit(path)
    return db


_handles = threading.local()


def thread_handle(path: str, *, synchronous: str = SYNCHRONOUS) -> sqlite_utils.Database:
    """This thread's long-lived handle on the ledger at `path`, opened on first use.

    Never closed per request: closing the last handle of a WAL database checkpoints and
    truncates the WAL, which cost a request-scoped handle about a tenth of an enrollment's
    time (issue 12). A handle is never used across fork(): a child opens its own.
    """
    if getattr(_handles, "pid", None) != os.getpid():
        _handles.pid, _handles.by_path = os.getpid(), {}
    by_path: dict[tuple[str, str], sqlite_utils.Database] = _handles.by_path
    key = (path, synchronous.upper())
    db = by_path.pop(key, None)
    if db is None:
        while len(by_path) >= THREAD_HANDLES:
            by_path.pop(next(iter(by_path))).close()
        db = connect(path, synchronous=synchronous)
    elif db.conn.in_transaction:  # a previous request broke off mid-transaction
        db.conn.rollback()
    by_path[key] = db  # the most recently used last
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


class _Write:
    """One caller's write, waiting to be committed in the next group."""

    __slots__ = ("write", "done", "result", "error")

    def __init__(self, write: Callable[[sqlite_utils.Database], Any]) -> None:
        self.write = write
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """Group commit: one transaction (and one COMMIT, one sync) for every write waiting.

    Each caller queues its write and waits for the commit lock. Whoever holds it (the
    leader) takes every write waiting at that moment into one BEGIN IMMEDIATE ... COMMIT,
    each inside its own SAVEPOINT so that one failing write is rolled back alone and raised
    to its own caller. A caller returns only after the COMMIT that holds its write: nothing
    is acknowledged before it is as durable as the synchronous mode makes it. Threads queue
    on a lock instead of sleeping in SQLite's busy handler; other processes still take
    turns through SQLite's write lock (busy_timeout).
    """

    def __init__(self, path: str) -> None:
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._queue: list[_Write] = []
        # The processes serving one ledger (gunicorn's workers) take turns on a lock file
        # beside it: a waiting leader wakes as soon as the other commits, where SQLite's busy
        # handler sleeps 1, 2, 5, 10... ms between tries (issue 12). SQLite's own lock still
        # decides; this only queues the group's leaders. flock, never fcntl: SQLite's POSIX
        # locks on the ledger file are left alone.
        self._lock_path = f"{path}-writer.lock"
        self._lock_fd: int | None = None

    def run(
        self, db: sqlite_utils.Database, write: Callable[[sqlite_utils.Database], Any]
    ) -> Any:
        """Run `write(handle)` inside a committed transaction; its result once committed."""
        job = _Write(write)
        with self._queue_lock:
            self._queue.append(job)
        with self._commit_lock:
            if not job.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                with self._between_processes():
                    _commit(db, batch)
        if job.error is not None:
            raise job.error
        return job.result

    @contextlib.contextmanager
    def _between_processes(self) -> Iterator[None]:
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(
                    self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
            except OSError:  # a read-only folder: SQLite's busy handler alone
                yield
                return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)


def _commit(db: sqlite_utils.Database, batch: list[_Write]) -> None:
    conn = db.conn
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                conn.execute("SAVEPOINT ledger_write")
                try:
                    job.result = job.write(db)
                except Exception as exc:
                    conn.execute("ROLLBACK TO ledger_write")
                    job.error = exc
                conn.execute("RELEASE ledger_write")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except BaseException as exc:  # nothing of this batch was committed: each caller hears
        for job in batch:
            job.result, job.error = None, job.error or exc
        if not isinstance(exc, Exception):
            raise
    finally:
        for job in batch:
            job.done = True


_groups: dict[tuple[int, str], GroupCommit] = {}
_groups_lock = threading.Lock()
# Which group each handle made by connect() writes through (per process and file).
_group_of: weakref.WeakKeyDictionary[sqlite_utils.Database, GroupCommit] = (
    weakref.WeakKeyDictionary()
)


def _group_commit(path: str) -> GroupCommit:
    key = (os.getpid(), os.path.realpath(path))
    with _groups_lock:
        group = _groups.get(key)
        if group is None:
            group = _groups[key] = GroupCommit(path)
        return group


def committed(db: sqlite_utils.Database, write: Callable[[sqlite_utils.Database], Any]) -> Any:
    """`write(handle)` in a committed write transaction, grouped with the writes of other
    threads of this process that are waiting (handles not made by `connect`: on their own)."""
    group = _group_of.get(db)
    if group is None:
        with write_transaction(db):
            return write(db)
    return group.run(db, write)


def check_writable(path: str, timeout: float) -> None:
    """A write transaction on an existing ledger, rolled back: the file, its lock and schema
    work. Raises sqlite3.Error when they do not (a missing file is an error, not a new one)."""
    uri = Path(path).resolve().as_uri() + "?mode=rw"
    connection = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT INTO ledger_meta (key, value) VALUES ('readyz', 'probe') "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        connection.execute("ROLLBACK")
    finally:
        connection.close()


@dataclass(frozen=True)
class Actor:
    user_id: int
    name: str | None = None


@dataclass(frozen=True)
class Intent:
    request_id: str
    received_at: datetime
    method: str
    path: str
    kind: str
    integration: str | None
    actor: Actor | None
    token_hash: str | None
    user_agent: str | None
    course_ref: str | None = None
    section_ref: str | None = None
    enrollment_ref: str | None = None
    account_ref: str | None = None
    params: Mapping[str, Any] | None = None
    label_verified: bool | None = None  # None: no integration registry (self-declared)


_INSERT_INTENT = """
INSERT INTO requests (id, received_at, method, path, kind, integration,
    actor_user_id, actor_name, token_hash, user_agent, course_ref, section_ref,
    enrollment_ref, account_ref, params, status, label_verified)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def record_intent(db: sqlite_utils.Database, intent: Intent) -> None:
    """Written before the request is forwarded: if nothing follows, it stays 'pending'.

    Committed (grouped with other threads' writes) before this returns, so before anything
    is sent: a process that dies while Canvas acts leaves it for reconciliation."""
    values = [
        intent.request_id,
        iso(intent.received_at),
        intent.method,
        intent.path,
        intent.kind,
        intent.integration,
        intent.actor.user_id if intent.actor else None,
        intent.actor.name if intent.actor else None,
        intent.token_hash,
        intent.user_agent,
        intent.course_ref,
        intent.section_ref,
        intent.enrollment_ref,
        intent.account_ref,
        json.dumps(dict(intent.params or {}), sort_keys=True),
        PENDING,
        intent.label_verified,
    ]
    committed(db, lambda handle: handle.execute(_INSERT_INTENT, values))


class AlreadySettled(Exception):
    """Reconciliation found the request settled by someone else meanwhile."""


@dataclass(frozen=True)
class Settlement:
    """How an outcome was learnt when not from Canvas's answer: by reconciliation, and why."""

    evidence: str
    settled_by: str = "reconcile"


def _settle(
    db: sqlite_utils.Database,
    request_id: str,
    status: str,
    http_status: int | None,
    canvas_request_id: str | None,
    error: str | None,
    settlement: Settlement | None = None,
    acting_as_user_id: int | None = None,
) -> None:
    # A reconciliation settles only what is still unsettled: if another reconciler (a lease
    # that expired mid-run) got there first, the whole transaction is rolled back.
    guard = f" AND status IN ('{PENDING}', '{UNKNOWN}')" if settlement else ""
    cursor = db.execute(
        f"""
        UPDATE requests SET status = ?, http_status = ?, canvas_request_id = ?,
            outcome_at = ?, error = ?, settled_by = ?, evidence = ?,
            acting_as_user_id = COALESCE(?, acting_as_user_id)
        WHERE id = ?{guard}
        """,
        [
            status,
            http_status,
            canvas_request_id,
            iso(utcnow()),
            error,
            settlement.settled_by if settlement else "response",
            settlement.evidence if settlement else None,
            acting_as_user_id,
            request_id,
        ],
    )
    if settlement and cursor.rowcount == 0:
        raise AlreadySettled(request_id)


def record_outcome(
    db: sqlite_utils.Database,
    request_id: str,
    status: str,
    *,
    http_status: int | None = None,
    canvas_request_id: str | None = None,
    error: str | None = None,
    settlement: Settlement | None = None,
) -> None:
    """The outcome of a request that changed no enrollment the proxy can name."""
    committed(
        db,
        lambda handle: _settle(
            handle, request_id, status, http_status, canvas_request_id, error, settlement
        ),
    )


def is_known(db: sqlite_utils.Database, enrollment_id: int) -> bool:
    rows = db.execute(
        "SELECT 1 FROM enrollments WHERE enrollment_id = ?", [enrollment_id]
    ).fetchall()
    return bool(rows)


@dataclass(frozen=True)
class Event:
    enrollment_id: int
    action: str
    course_id: int | None = None
    course_section_id: int | None = None
    user_id: int | None = None
    type: str | None = None
    role: str | None = None
    role_id: int | None = None
    enrollment_state: str | None = None
    sis_import_id: int | None = None
    canvas_created_at: str | None = None
    canvas_updated_at: str | None = None

    @classmethod
    def from_canvas(cls, enrollment: Mapping[str, Any], action: str) -> Event:
        """From Canvas's Enrollment JSON (ids may be strings with canvas-string-ids)."""
        enrollment_id = as_int(enrollment.get("id"))
        if enrollment_id is None:
            raise ValueError("Canvas's answer has no enrollment id")
        return cls(
            enrollment_id=enrollment_id,
            action=action,
            course_id=as_int(enrollment.get("course_id")),
            course_section_id=as_int(enrollment.get("course_section_id")),
            user_id=as_int(enrollment.get("user_id")),
            type=enrollment.get("type"),
            role=enrollment.get("role"),
            role_id=as_int(enrollment.get("role_id")),
            enrollment_state=enrollment.get("enrollment_state"),
            sis_import_id=as_int(enrollment.get("sis_import_id")),
            canvas_created_at=enrollment.get("created_at"),
            canvas_updated_at=enrollment.get("updated_at"),
        )


EVENT_FIELDS = (
    "course_id",
    "course_section_id",
    "user_id",
    "type",
    "role",
    "role_id",
    "enrollment_state",
    "sis_import_id",
    "canvas_created_at",
    "canvas_updated_at",
)


def _complete_from_view(db: sqlite_utils.Database, event: Event) -> dict[str, Any]:
    """An event's fields, with those Canvas did not return (accept/reject) from the view."""
    values = {field: getattr(event, field) for field in EVENT_FIELDS}
    if all(values[field] is not None for field in ("course_id", "user_id", "type")):
        return values
    rows = list(
        db.query("SELECT * FROM enrollments WHERE enrollment_id = ?", [event.enrollment_id])
    )
    if rows:
        for field in EVENT_FIELDS:
            if values[field] is None and field != "enrollment_state":
                values[field] = rows[0][field]
    return values


def record_events(
    db: sqlite_utils.Database,
    request_id: str,
    events: Iterable[Event],
    *,
    integration: str | None,
    actor_user_id: int | None,
    http_status: int | None,
    canvas_request_id: str | None,
    settlement: Settlement | None = None,
    acting_as_user_id: int | None = None,
) -> None:
    """Append the events, update the current view and settle the request, atomically."""
    recorded_at = iso(utcnow())

    def write(handle: sqlite_utils.Database) -> None:
        for event in events:
            values = _complete_from_view(handle, event)
            # The hash chain links each event to the one before; the write lock keeps it linear.
            seq, prev_hash = next_link(handle)
            row = {
                "seq": seq,
                "request_id": request_id,
                "enrollment_id": event.enrollment_id,
                "action": event.action,
                **values,
                "canvas_request_id": canvas_request_id,
                "integration": integration,
                "actor_user_id": actor_user_id,
                "recorded_at": recorded_at,
                "prev_hash": prev_hash,
            }
            row["hash"] = event_hash(row)
            handle.execute(
                f"INSERT INTO events ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
            _update_view(
                handle,
                event,
                values,
                seq=seq,
                request_id=request_id,
                integration=integration,
                actor_user_id=actor_user_id,
                canvas_request_id=canvas_request_id,
                recorded_at=recorded_at,
            )
        _settle(
            handle, request_id, COMPLETED, http_status, canvas_request_id, None, settlement,
            acting_as_user_id,
        )

    committed(db, write)


def _update_view(
    db: sqlite_utils.Database,
    event: Event,
    values: dict[str, Any],
    *,
    seq: int,
    request_id: str,
    integration: str | None,
    actor_user_id: int | None,
    canvas_request_id: str | None,
    recorded_at: str,
) -> None:
    # The origin columns are written by the first event the ledger sees, and replaced only by
    # a later-recorded `created`: reconciliation can find that an earlier request whose answer
    # was lost made the row that a retry then saw as existing (adopted). A reconciled
    # `ambiguous` replaces anything but `created` the same way (it may have made the row).
    upgrade = (
        f"(excluded.origin_action = '{CREATED}' AND enrollments.origin_action <> '{CREATED}') OR "
        f"(excluded.origin_action = '{AMBIGUOUS}' "
        f"AND enrollments.origin_action NOT IN ('{CREATED}', '{AMBIGUOUS}'))"
    )
    origin = ", ".join(
        f"{column} = CASE WHEN {upgrade} THEN excluded.{column} ELSE enrollments.{column} END"
        for column in (
            "origin_integration",
            "origin_actor_user_id",
            "origin_request_id",
            "origin_canvas_request_id",
            "origin_action",  # (SQLite evaluates every SET expression on the old row)
        )
    )
    db.execute(
        f"""
        INSERT INTO enrollments (enrollment_id, {", ".join(EVENT_FIELDS)}, origin_action,
            origin_integration, origin_actor_user_id, origin_request_id,
            origin_canvas_request_id, first_recorded_at, last_action, last_seq, last_recorded_at)
        VALUES (?, {", ".join("?" for _ in EVENT_FIELDS)}, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (enrollment_id) DO UPDATE SET
            {", ".join(f"{field} = coalesce(excluded.{field}, {field})" for field in EVENT_FIELDS)},
            {origin},
            last_action = excluded.last_action,
            last_seq = excluded.last_seq,
            last_recorded_at = excluded.last_recorded_at
        """,
        [event.enrollment_id]
        + [values[field] for field in EVENT_FIELDS]
        + [
            event.action,
            integration,
            actor_user_id,
            request_id,
            canvas_request_id,
            recorded_at,
            event.action,
            seq,
            recorded_at,
        ],
    )


def record_async_job(
    db: sqlite_utils.Database,
    request_id: str,
    *,
    kind: str,
    job: Mapping[str, Any],
    account_ref: str | None,
    integration: str | None,
    actor_user_id: int | None,
    http_status: int | None,
    canvas_request_id: str | None,
    settlement: Settlement | None = None,
) -> None:
    """A request whose enrollments Canvas makes later, in a job: who submitted which job."""

    def write(handle: sqlite_utils.Database) -> None:
        handle.execute(
            """
            INSERT INTO async_jobs (request_id, kind, job_id, account_ref, integration,
                actor_user_id, submitted_at, canvas_request_id, job_state)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                request_id,
                kind,
                as_int(job.get("id")),
                account_ref,
                integration,
                actor_user_id,
                iso(utcnow()),
                canvas_request_id,
                job.get("workflow_state"),
            ],
        )
        _settle(handle, request_id, COMPLETED, http_status, canvas_request_id, None, settlement)

    committed(db, write)


# Readers


def unsettled_requests(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT * FROM requests WHERE status IN (?, ?) ORDER BY received_at",
            [PENDING, UNKNOWN],
        )
    )


def enrollment_history(db: sqlite_utils.Database, enrollment_id: int) -> list[dict[str, Any]]:
    return list(
        db.query("SELECT * FROM events WHERE enrollment_id = ? ORDER BY seq", [enrollment_id])
    )


def current_enrollment(db: sqlite_utils.Database, enrollment_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM enrollments WHERE enrollment_id = ?", [enrollment_id]))
    return rows[0] if rows else None


# The token -> Canvas user cache


def cached_actor(db: sqlite_utils.Database, token_hash: str, max_age: timedelta) -> Actor | None:
    rows = list(db.query("SELECT * FROM actors WHERE token_hash = ?", [token_hash]))
    if not rows:
        return None
    resolved_at = parse_time(rows[0]["resolved_at"])
    if resolved_at is None or utcnow() - resolved_at > max_age:
        return None
    return Actor(rows[0]["user_id"], rows[0]["name"])


def store_actor(db: sqlite_utils.Database, token_hash: str, actor: Actor) -> None:
    with write_transaction(db):
        db.execute(
            """
            INSERT INTO actors (token_hash, user_id, name, resolved_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (token_hash) DO UPDATE SET user_id = excluded.user_id,
                name = excluded.name, resolved_at = excluded.resolved_at
            """,
            [token_hash, actor.user_id, actor.name, iso(utcnow())],
        )


def forget_actor(db: sqlite_utils.Database, token_hash: str) -> None:
    """Drop a token's cache entry (signed out, or refused by Canvas)."""
    with write_transaction(db):
        db.execute("DELETE FROM actors WHERE token_hash = ?", [token_hash])


# The events, for the hash chain and the export


def next_link(db: sqlite_utils.Database) -> tuple[int, str | None]:
    """(seq, prev_hash) of the next event; call inside the write transaction that inserts it.

    The seq continues after any seq ever used, so deleted tail events leave a visible gap.
    """
    last = db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    used = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    seq = max(last[0] if last else 0, used[0] if used else 0) + 1
    return seq, (last[1] if last else GENESIS)


@dataclass(frozen=True)
class Filters:
    """A slice of the events; `since` and `until` bound recorded_at, both inclusive."""

    since: datetime | None = None
    until: datetime | None = None
    course_id: int | None = None
    integration: str | None = None
    action: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.since is not None:
            clauses.append("recorded_at >= ?")
            params.append(_recorded_at(self.since))
        if self.until is not None:
            clauses.append("recorded_at <= ?")
            params.append(_recorded_at(self.until))
        for column in ("course_id", "integration", "action"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return "".join(f" AND {clause}" for clause in clauses), params


def _recorded_at(moment: datetime) -> str:
    """In recorded_at's own format, so that text order is time order (naive means UTC; a
    four-digit year even before 1000, which strftime's %Y would shorten)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def event_count(db: sqlite_utils.Database, filters: Filters = Filters()) -> int:
    where, params = filters.where()
    return int(db.execute(f"SELECT count(*) FROM events WHERE 1{where}", params).fetchone()[0])


def event_pages(
    db: sqlite_utils.Database,
    select: str,
    filters: Filters = Filters(),
    page_size: int = PAGE_SIZE,
) -> Iterator[list[tuple[Any, ...]]]:
    """Pages of `select` (whose first column is seq) by keyset on seq, up to today's head.

    Stopping at the head seen at the start gives a consistent export without holding a read
    transaction open while a slow client downloads it: events are only ever appended.
    """
    head = db.execute("SELECT max(seq) FROM events").fetchone()[0]
    if head is None:
        return
    where, params = filters.where()
    sql = f"SELECT {select} FROM events WHERE seq > ? AND seq <= ?{where} ORDER BY seq LIMIT ?"
    after = -(2**63)  # SQLite's smallest integer: forged events may have seq 0 or below
    while True:
        rows = db.conn.execute(sql, [after, head, *params, page_size]).fetchall()
        if rows:
            yield rows
        if len(rows) < page_size:
            return
        after = rows[-1][0]


# An event whose every hashed column is NULL, an integer or text: for it, SQLite's
# json_object of the columns as text is the canonical JSON Python writes (chain.canonical:
# sorted keys, no spaces, NULL as ""; both escape '"', '\' and the control characters
# alike, \n or \u001f), unless the text holds non-ASCII characters or DEL, which Python
# escapes and SQLite does not: chain.walk_links looks for those in the text. A float or a
# blob (forged, or a future column) is left to Python. (tests/test_verify.py)
_PLAIN_EVENT = " AND ".join(
    f"typeof({column}) IN ('null', 'integer', 'text')" for _, column in HASHED_KEYS
)
_CANONICAL = "json_object({})".format(
    ", ".join(f"'{name}', coalesce(CAST({column} AS TEXT), '')" for name, column in HASHED_KEYS)
)


def chain_links(db: sqlite_utils.Database) -> Iterator[tuple[Any, Any, Any, str | None]]:
    """Every event's (seq, prev_hash, hash, canonical JSON text, or None where Python must
    write it), in seq order, by keyset pages up to today's head (for `verify`)."""
    select = f"seq, prev_hash, hash, CASE WHEN {_PLAIN_EVENT} THEN {_CANONICAL} END"
    for page in event_pages(db, select):
        yield from page


def event_at(db: sqlite_utils.Database, seq: Any, columns: str) -> tuple[Any, ...]:
    """`columns` of the event at `seq`."""
    row = db.conn.execute(f"SELECT {columns} FROM events WHERE seq = ?", [seq]).fetchone()
    return tuple(row)


def chain_ends(db: sqlite_utils.Database) -> tuple[int | None, int | None]:
    """(the highest seq ever used, the highest seq the current view names): the evidence of
    deleted tail events that only the database holds."""
    used = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    recorded_head = db.execute("SELECT max(last_seq) FROM enrollments").fetchone()[0]
    return (used[0] if used else None), recorded_head


# Metadata, and the reconciliation lease kept in it

ROSTER_LOADED_AT = "sis_roster_loaded_at"
RECORDING_SINCE = "recording_since"


def meta(db: sqlite_utils.Database, key: str) -> str | None:
    for row in db.query("SELECT value FROM ledger_meta WHERE key = ?", [key]):
        return str(row["value"])
    return None


def _set_meta(db: sqlite_utils.Database, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO ledger_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )


def take_lease(db: sqlite_utils.Database, key: str, holder: str, lease: timedelta) -> bool:
    """Take the lease `key` for `holder` until `lease` from now, unless another holder's has
    not expired; True if taken."""
    with write_transaction(db):
        current_value = meta(db, key)
        current = json.loads(current_value) if current_value is not None else None
        free = current is None or (parse_time(current["until"]) or utcnow()) <= utcnow()
        if free:
            _set_meta(db, key, json.dumps({"holder": holder, "until": iso(utcnow() + lease)}))
    return free


def release_lease(db: sqlite_utils.Database, key: str, holder: str) -> None:
    with write_transaction(db):
        db.execute(
            "DELETE FROM ledger_meta WHERE key = ? AND json_extract(value, '$.holder') = ?",
            [key, holder],
        )


# The SIS roster


def replace_roster(
    db: sqlite_utils.Database,
    columns: tuple[str, ...],
    rows: Iterable[tuple[Any, ...]],
    source: str,
) -> int:
    """Replace the loaded roster with `rows` (line, then `columns`), all or nothing."""
    rows = list(rows)
    with write_transaction(db):
        db.execute("DELETE FROM sis_roster")
        db.conn.executemany(
            f"INSERT INTO sis_roster (line, {', '.join(columns)}) "
            f"VALUES (?, {', '.join('?' for _ in columns)})",
            rows,
        )
        for key, value in (
            (ROSTER_LOADED_AT, iso(utcnow())),
            ("sis_roster_source", source),
            ("sis_roster_rows", str(len(rows))),
        ):
            _set_meta(db, key, value)
    return len(rows)


def roster_entries(
    db: sqlite_utils.Database, sis_user_ids: Iterable[str] | None = None
) -> Iterator[dict[str, Any]]:
    """The loaded roster's rows for these SIS users (every row naming a user, when None)."""
    if sis_user_ids is None:
        yield from db.query("SELECT * FROM sis_roster WHERE user_id IS NOT NULL")
    else:
        yield from _where_in(db, "SELECT * FROM sis_roster WHERE user_id IN", list(sis_user_ids))


# What the lookup reads


def enrollments_by_id(db: sqlite_utils.Database, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The current view's rows for these enrollment ids, with what the originating request
    says of its label (label_verified) and of masquerading (acting_as_user_id)."""
    sql = (
        "SELECT e.*, r.label_verified AS origin_label_verified, "
        "r.acting_as_user_id AS origin_acting_as_user_id "
        "FROM enrollments e LEFT JOIN requests r ON r.id = e.origin_request_id "
        "WHERE e.enrollment_id IN"
    )
    return {record["enrollment_id"]: record for record in _where_in(db, sql, ids, "e.rowid")}


def unsettled_creates(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Enrollment-creating requests whose outcome is not settled."""
    return list(
        db.query(
            "SELECT id, course_ref, section_ref, params, received_at FROM requests "
            "WHERE status IN (?, ?) AND kind = 'enrollment_create'",
            [PENDING, UNKNOWN],
        )
    )


def sis_import_jobs(
    db: sqlite_utils.Database, job_ids: Iterable[int] | None = None
) -> list[dict[str, Any]]:
    """The SIS imports sent through the proxy (those with these job ids), in rowid order, so
    that a job id recorded twice keeps its last record."""
    sql = (
        "SELECT job_id, integration, actor_user_id FROM async_jobs "
        "WHERE kind = 'sis_import'"
    )
    if job_ids is None:
        return list(db.query(sql + " ORDER BY rowid"))
    return list(_where_in(db, sql + " AND job_id IN", list(job_ids)))


def _where_in(
    db: sqlite_utils.Database, sql: str, values: list[Any], order: str = "rowid"
) -> Iterator[dict[str, Any]]:
    """The rows of `sql` (ending in "... IN") for all `values`, in `order` (rowid), asked in
    chunks that stay under SQLite's limit on bound parameters."""
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        yield from db.query(f"{sql} ({', '.join('?' * len(chunk))}) ORDER BY {order}", chunk)


# Canvas Live Events (core/live_store.py decides what is stored; docs/live-events.md)

LIVE_EVENT_COLUMNS = (
    "key", "received_at", "received_via", "format", "event_name", "event_time", "kind",
    "enrollment_id", "course_id", "course_section_id", "user_id", "user_name",
    "associated_user_id", "type", "workflow_state", "sis_batch_id", "account_id",
    "actor_user_id", "real_user_id", "developer_key_id", "request_id", "session_id",
    "http_method", "url", "referrer", "user_agent", "context_role", "job_id", "job_tag",
    "document",
)
_INSERT_LIVE_EVENT = (
    f"INSERT OR IGNORE INTO live_events ({', '.join(LIVE_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in LIVE_EVENT_COLUMNS)})"
)


def store_live_events(db: sqlite_utils.Database, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append these events (dicts of LIVE_EVENT_COLUMNS) in one transaction; an event whose
    key is already stored is skipped (a duplicate delivery). Returns how many were new."""
    values = [[row.get(column) for column in LIVE_EVENT_COLUMNS] for row in rows]
    if not values:
        return 0
    with write_transaction(db):
        before = db.conn.total_changes
        db.conn.executemany(_INSERT_LIVE_EVENT, values)
        return db.conn.total_changes - before


def insert_live_event(db: sqlite_utils.Database, row: Mapping[str, Any]) -> bool:
    """Append one event inside the caller's transaction (`committed`); False when its key was
    already stored (a duplicate delivery)."""
    values = [row.get(column) for column in LIVE_EVENT_COLUMNS]
    return bool(db.conn.execute(_INSERT_LIVE_EVENT, values).rowcount == 1)


def live_events_for(db: sqlite_utils.Database, enrollment_ids: list[int]) -> list[dict[str, Any]]:
    """The stored enrollment events of these enrollments, and every event that shares a
    Canvas request with one of them (a side effect shows only beside its cause)."""
    found: dict[str, dict[str, Any]] = {}
    request_ids: set[str] = set()
    for row in _where_in(
        db, "SELECT * FROM live_events WHERE kind = 'enrollment' AND enrollment_id IN",
        enrollment_ids,
    ):
        found[row["key"]] = row
        if row["request_id"]:
            request_ids.add(row["request_id"])
    for row in _where_in(db, "SELECT * FROM live_events WHERE request_id IN", sorted(request_ids)):
        found.setdefault(row["key"], row)
    return list(found.values())


def proxied_canvas_requests(db: sqlite_utils.Database, request_ids: Iterable[str]) -> set[str]:
    """Which of these Canvas request ids (X-Request-Context-Id) answered a request the proxy
    forwarded and recorded."""
    rows = _where_in(
        db, "SELECT canvas_request_id FROM requests WHERE canvas_request_id IN",
        sorted(set(request_ids)),
    )
    return {row["canvas_request_id"] for row in rows}


def live_event_user_names(
    db: sqlite_utils.Database, course_id: int, user_ids: Iterable[int]
) -> dict[int, str]:
    """Canvas's name of each of these users, from a stored event of their own enrollment in
    this course (the body's user_name), the latest first."""
    names: dict[int, str] = {}
    rows = _where_in(
        db,
        "SELECT user_id, user_name FROM live_events WHERE kind = 'enrollment' "
        f"AND course_id = {int(course_id)} AND user_name IS NOT NULL AND user_id IN",
        sorted(set(user_ids)),
    )
    for row in rows:
        names[row["user_id"]] = row["user_name"]  # rowid order: the last stored wins
    return names


def sis_batch_events(db: sqlite_utils.Database, batch_ids: Iterable[int]) -> list[dict[str, Any]]:
    """The stored sis_batch_* events of these SIS imports, in the order they were stored."""
    return list(
        _where_in(
            db, "SELECT * FROM live_events WHERE kind = 'sis_batch' AND sis_batch_id IN",
            sorted(set(batch_ids)),
        )
    )


def live_event_count(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT count(*) FROM live_events").fetchone()[0])


# What the metrics read


def unsettled_summary(path: str, timeout: float) -> dict[str, tuple[int, str | None]]:
    """{status: (how many, the oldest received_at)} of unsettled requests, on a handle of its
    own (a scrape may come from any thread). Raises sqlite3.Error."""
    db = connect(path, timeout=timeout)
    try:
        rows = db.execute(
            "SELECT status, count(*), min(received_at) FROM requests "
            "WHERE status IN (?, ?) GROUP BY status",
            [PENDING, UNKNOWN],
        ).fetchall()
    finally:
        db.close()
    return {status: (number, first) for status, number, first in rows}


# Dashboard sessions signed out before they expire: the cookie cannot be taken back from a
# browser (or from whoever copied it), so the ledger remembers its session id until it expires.

SIGNED_OUT = "signed_out:"


def end_session(db: sqlite_utils.Database, session_id: str, until: datetime) -> None:
    with write_transaction(db):
        db.execute(
            "DELETE FROM ledger_meta WHERE substr(key, 1, ?) = ? AND value < ?",
            [len(SIGNED_OUT), SIGNED_OUT, iso(utcnow())],
        )
        db.execute(
            "INSERT INTO ledger_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [SIGNED_OUT + session_id, iso(until)],
        )


def session_ended(db: sqlite_utils.Database, session_id: str) -> bool:
    rows = db.execute("SELECT 1 FROM ledger_meta WHERE key = ?", [SIGNED_OUT + session_id])
    return bool(rows.fetchall())


# Account audits run as jobs (core/audit_jobs.py)

AUDIT_FIELDS = (
    "state", "phase", "report_id", "report_progress", "characters_read", "summary",
    "problems", "error", "result",
)  # fmt: skip


def create_audit(db: sqlite_utils.Database, audit: Mapping[str, Any]) -> None:
    now = iso(utcnow())
    with write_transaction(db):
        db.execute(
            "INSERT INTO account_audits (id, account_id, term, provenance, requested_by, "
            "created_at, updated_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [audit["id"], audit["account_id"], audit.get("term"), audit.get("provenance"),
             audit.get("requested_by"), now, now, audit["state"]],
        )  # fmt: skip


def update_audit(
    db: sqlite_utils.Database, audit_id: str, only_if: Iterable[str] = (), **values: Any
) -> bool:
    """Set `values` (and the heartbeat, updated_at) on a job, if its state is one of `only_if`
    (any, when empty); True if it was updated."""
    names = [name for name in values if name in AUDIT_FIELDS]
    assert len(names) == len(values), f"not an audit field: {sorted(set(values) - set(names))}"
    sets = ", ".join([*(f"{name} = ?" for name in names), "updated_at = ?"])
    where, states = "id = ?", list(only_if)
    if states:
        where += f" AND state IN ({', '.join('?' * len(states))})"
    with write_transaction(db):
        cursor = db.execute(
            f"UPDATE account_audits SET {sets} WHERE {where}",
            [*(values[name] for name in names), iso(utcnow()), audit_id, *states],
        )
    return bool(cursor.rowcount)


def interrupt_stale_audit(
    db: sqlite_utils.Database, audit_id: str, unfinished: Iterable[str], before: datetime,
    error: str,
) -> None:  # fmt: skip
    """Mark the job interrupted if it is unfinished and its heartbeat is older than `before`."""
    states = list(unfinished)
    with write_transaction(db):
        db.execute(
            "UPDATE account_audits SET state = 'interrupted', error = ? WHERE id = ? AND "
            f"state IN ({', '.join('?' * len(states))}) AND updated_at < ?",
            [error, audit_id, *states, iso(before)],
        )


def audit(db: sqlite_utils.Database, audit_id: str) -> dict[str, Any] | None:
    for row in db.query("SELECT * FROM account_audits WHERE id = ?", [audit_id]):
        return dict(row)
    return None


def latest_audits(db: sqlite_utils.Database, limit: int = 10) -> list[dict[str, Any]]:
    return list(
        db.query("SELECT * FROM account_audits ORDER BY created_at DESC, rowid DESC LIMIT ?",
                 [limit])
    )  # fmt: skip


def integration_activity(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Each integration label the ledger has seen (None: unlabelled): the enrollments it made
    or touched first, how many it made, and its latest recorded activity."""
    return list(
        db.query(
            "SELECT origin_integration AS integration, count(*) AS enrollments, "
            "sum(origin_action = 'created') AS made, max(last_recorded_at) AS last_activity "
            "FROM enrollments GROUP BY origin_integration ORDER BY last_activity DESC"
        )
    )


def page_view_attributions(
    db: sqlite_utils.Database, enrollment_ids: Iterable[int]
) -> dict[int, dict[str, Any]]:
    """The stored page-views answers of these enrollments (issue 14), by enrollment id."""
    rows = _where_in(
        db, "SELECT * FROM page_view_attributions WHERE enrollment_id IN",
        sorted(set(enrollment_ids)),
    )
    return {
        row["enrollment_id"]: {
            "asked_at": row["asked_at"],
            "actor": json.loads(row["actor"]) if row["actor"] else None,
            "evidence": json.loads(row["evidence"]),
        }
        for row in rows
    }


def store_page_view_attributions(
    db: sqlite_utils.Database, course_id: int, asked_at: str,
    answers: Iterable[tuple[int, dict[str, Any] | None, list[dict[str, Any]]]],
) -> None:
    """Replace the stored answers of these enrollments, in one transaction."""
    with write_transaction(db):
        db.conn.executemany(
            "INSERT OR REPLACE INTO page_view_attributions "
            "(enrollment_id, course_id, asked_at, actor, evidence) VALUES (?, ?, ?, ?, ?)",
            [
                (enrollment_id, course_id, asked_at,
                 json.dumps(actor) if actor is not None else None, json.dumps(evidence))
                for enrollment_id, actor, evidence in answers
            ],
        )


def known_request_ids(
    db: sqlite_utils.Database, request_ids: Iterable[str]
) -> dict[str, int | None]:
    """Which of these Canvas request ids the proxy forwarded or a stored Live Event carries,
    each with the enrollment it is known to have touched (None: not known)."""
    wanted = sorted(set(request_ids))
    found: dict[str, int | None] = {}
    sql = (
        "SELECT r.canvas_request_id AS rid, e.enrollment_id AS eid FROM requests r "
        "LEFT JOIN events e ON e.request_id = r.id WHERE r.canvas_request_id IN"
    )
    for row in _where_in(db, sql, wanted, order="r.rowid"):
        found[row["rid"]] = row["eid"] if row["eid"] is not None else found.get(row["rid"])
    sql = "SELECT request_id AS rid, enrollment_id AS eid FROM live_events WHERE request_id IN"
    for row in _where_in(db, sql, wanted):
        found[row["rid"]] = row["eid"] if row["eid"] is not None else found.get(row["rid"])
    return found


def integration_user_ids(db: sqlite_utils.Database) -> list[int]:
    """The Canvas users behind the tokens of the requests the proxy recorded."""
    rows = db.execute(
        "SELECT DISTINCT actor_user_id FROM requests WHERE actor_user_id IS NOT NULL"
    ).fetchall()
    return [row[0] for row in rows]


def enrollments_created_per_day(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """How many enrollments the ledger saw Canvas create for a request through the proxy, per
    UTC day of the ledger's recording (`first_recorded_at`, its own clock)."""
    return list(
        db.query(
            "SELECT substr(first_recorded_at, 1, 10) AS day, count(*) AS enrollments "
            "FROM enrollments WHERE origin_action = 'created' GROUP BY day ORDER BY day"
        )
    )
