"""The ledger schema as an ordered list of sqlite-utils migrations; never edit an applied one."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("ledger_proxy")


@migrations()
def m001_ledger(db: sqlite_utils.Database) -> None:
    # One row per enrollment-changing request: the intent is written before the request is
    # forwarded and its outcome after, so an unknown outcome stays visible as 'pending'.
    db.execute(
        """
        CREATE TABLE requests (
            id TEXT PRIMARY KEY,               -- the proxy's own request id
            received_at TEXT NOT NULL,         -- proxy clock, ISO 8601 UTC, microseconds
            method TEXT NOT NULL,
            path TEXT NOT NULL,                -- raw path, never the query (it may hold a token)
            kind TEXT NOT NULL,                -- enrollment_create, enrollment_delete, ...
            integration TEXT,
            actor_user_id INTEGER,             -- Canvas user behind the token (users/self)
            actor_name TEXT,
            token_hash TEXT,                   -- HMAC-SHA256 of the token, never the token
            user_agent TEXT,
            course_ref TEXT,                   -- ids as the request named them (maybe sis_*:)
            section_ref TEXT,
            enrollment_ref TEXT,
            account_ref TEXT,
            params TEXT,                       -- JSON of the parsed parameters, tokens removed
            status TEXT NOT NULL,              -- pending, completed, failed, unknown
            http_status INTEGER,
            canvas_request_id TEXT,
            outcome_at TEXT,
            error TEXT
        )
        """
    )
    db.execute("CREATE INDEX requests_status ON requests (status, received_at)")

    # Append-only: one row per enrollment the proxy saw Canvas create or change.
    db.execute(
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL REFERENCES requests (id),
            enrollment_id INTEGER NOT NULL,
            action TEXT NOT NULL,              -- created, adopted, concluded, deleted, ...
            course_id INTEGER,
            course_section_id INTEGER,
            user_id INTEGER,
            type TEXT,
            role TEXT,
            role_id INTEGER,
            enrollment_state TEXT,
            sis_import_id INTEGER,
            canvas_created_at TEXT,
            canvas_updated_at TEXT,
            canvas_request_id TEXT,
            integration TEXT,
            actor_user_id INTEGER,
            recorded_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX events_enrollment ON events (enrollment_id, seq)")
    db.execute("CREATE INDEX events_course ON events (course_id, seq)")
    for operation in ("UPDATE", "DELETE"):
        db.execute(
            f"""
            CREATE TRIGGER events_append_only_{operation.lower()}
            BEFORE {operation} ON events
            BEGIN SELECT RAISE(ABORT, 'ledger events are append-only'); END
            """
        )

    # The current view: one row per enrollment, rebuilt from events by record_events().
    db.execute(
        """
        CREATE TABLE enrollments (
            enrollment_id INTEGER PRIMARY KEY,
            course_id INTEGER,
            course_section_id INTEGER,
            user_id INTEGER,
            type TEXT,
            role TEXT,
            role_id INTEGER,
            enrollment_state TEXT,
            sis_import_id INTEGER,
            canvas_created_at TEXT,
            canvas_updated_at TEXT,
            origin_action TEXT NOT NULL,       -- first action seen: created, adopted, deleted...
            origin_integration TEXT,
            origin_actor_user_id INTEGER,
            origin_request_id TEXT NOT NULL,
            origin_canvas_request_id TEXT,
            first_recorded_at TEXT NOT NULL,
            last_action TEXT NOT NULL,
            last_seq INTEGER NOT NULL,
            last_recorded_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX enrollments_course ON enrollments (course_id)")
    db.execute("CREATE INDEX enrollments_section ON enrollments (course_section_id)")

    # Requests that make enrollments later, in a Canvas job (SIS imports, bulk enrollment).
    db.execute(
        """
        CREATE TABLE async_jobs (
            request_id TEXT PRIMARY KEY REFERENCES requests (id),
            kind TEXT NOT NULL,                -- sis_import or bulk_enrollment
            job_id INTEGER,
            account_ref TEXT,
            integration TEXT,
            actor_user_id INTEGER,
            submitted_at TEXT NOT NULL,
            canvas_request_id TEXT,
            job_state TEXT
        )
        """
    )
    db.execute("CREATE INDEX async_jobs_job ON async_jobs (kind, job_id)")

    # The Canvas user behind each token, keyed by HMAC of the token.
    db.execute(
        """
        CREATE TABLE actors (
            token_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL,
            name TEXT,
            resolved_at TEXT NOT NULL
        )
        """
    )

    # When the ledger began recording: older enrollments were never seen by it.
    db.execute("CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "INSERT INTO ledger_meta (key, value) "
        "VALUES ('recording_since', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
    )


@migrations()
def m002_sis_roster(db: sqlite_utils.Database) -> None:
    # The institution's SIS enrollments.csv, as last loaded by `ledger-proxy sis-roster load`.
    db.execute(
        """
        CREATE TABLE sis_roster (
            line INTEGER NOT NULL,             -- line in the loaded file, for error reports
            course_id TEXT,
            section_id TEXT,
            user_id TEXT,
            user_integration_id TEXT,
            role TEXT,
            role_id TEXT,
            status TEXT NOT NULL,
            associated_user_id TEXT
        )
        """
    )
    db.execute("CREATE INDEX sis_roster_user ON sis_roster (user_id)")


@migrations()
def m003_event_hash_chain(db: sqlite_utils.Database) -> None:
    # Tamper evidence: each event carries the hash of its content and of the event before it
    # (ledger_proxy/export.py, docs/audit.md). Events recorded before this migration are
    # chained now, in seq order; the append-only triggers are lifted for that backfill only.
    from .chain import COLUMNS, GENESIS, HASH_SCHEME, link
    from .ledger import event_pages as pages

    db.execute("ALTER TABLE events ADD COLUMN prev_hash TEXT")
    db.execute("ALTER TABLE events ADD COLUMN hash TEXT")
    for operation in ("UPDATE", "DELETE"):
        db.execute(f"DROP TRIGGER events_append_only_{operation.lower()}")
    prev_hash = GENESIS
    for page in pages(db, ", ".join(COLUMNS)):
        rows = list(link((dict(zip(COLUMNS, row, strict=True)) for row in page), prev_hash))
        db.conn.executemany(
            "UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?",
            [(row["prev_hash"], row["hash"], row["seq"]) for row in rows],
        )
        prev_hash = rows[-1]["hash"]
    for operation in ("UPDATE", "DELETE"):
        db.execute(
            f"""
            CREATE TRIGGER events_append_only_{operation.lower()}
            BEFORE {operation} ON events
            BEGIN SELECT RAISE(ABORT, 'ledger events are append-only'); END
            """
        )
    db.execute("INSERT INTO ledger_meta (key, value) VALUES ('hash_chain', ?)", [HASH_SCHEME])


@migrations()
def m004_settlement_evidence(db: sqlite_utils.Database) -> None:
    # How each request's outcome was learnt: from Canvas's answer, or by reconciliation
    # (`ledger-proxy reconcile`), with the evidence that settled it.
    db.execute("ALTER TABLE requests ADD COLUMN settled_by TEXT")
    db.execute("ALTER TABLE requests ADD COLUMN evidence TEXT")


@migrations()
def m005_live_events(db: sqlite_utils.Database) -> None:
    # Canvas Live Events (docs/live-events.md): who made each enrollment, as Canvas tells it.
    # Append-only and keyed by the event's own identity (`LiveEvent.key`), so a duplicate
    # delivery is ignored; nothing refers to enrollments or requests, so an event may arrive
    # before the proxy records its enrollment, or long after. Ids are local (the REST API's).
    db.execute(
        """
        CREATE TABLE live_events (
            key TEXT PRIMARY KEY,              -- sha256 of the event's identity (any format)
            received_at TEXT NOT NULL,         -- proxy clock, ISO 8601 UTC
            received_via TEXT NOT NULL,        -- https (the receiver) or ingest (the CLI)
            format TEXT NOT NULL,              -- canvas or caliper
            event_name TEXT NOT NULL,
            event_time TEXT,                   -- Canvas's clock, as sent
            kind TEXT NOT NULL,                -- enrollment or sis_batch
            enrollment_id INTEGER,
            course_id INTEGER,
            course_section_id INTEGER,
            user_id INTEGER,                   -- the enrolled user
            user_name TEXT,
            associated_user_id INTEGER,
            type TEXT,
            workflow_state TEXT,
            sis_batch_id INTEGER,
            account_id INTEGER,
            actor_user_id INTEGER,             -- metadata: the acting user
            real_user_id INTEGER,              -- metadata: the masquerading admin
            developer_key_id TEXT,             -- as sent (a global id)
            request_id TEXT,                   -- Canvas's X-Request-Context-Id
            session_id TEXT,
            http_method TEXT,
            url TEXT,
            referrer TEXT,
            user_agent TEXT,
            context_role TEXT,
            job_id TEXT,
            job_tag TEXT,
            document TEXT NOT NULL             -- the decoded event, JSON, as Canvas sent it
        )
        """
    )
    db.execute("CREATE INDEX live_events_enrollment ON live_events (enrollment_id)")
    db.execute("CREATE INDEX live_events_request ON live_events (request_id)")
    db.execute("CREATE INDEX live_events_course_user ON live_events (course_id, user_id)")
    db.execute("CREATE INDEX live_events_sis_batch ON live_events (sis_batch_id)")
    # The join from an event's request id to the proxy's own request.
    db.execute("CREATE INDEX requests_canvas_request_id ON requests (canvas_request_id)")
    for operation in ("UPDATE", "DELETE"):
        db.execute(
            f"""
            CREATE TRIGGER live_events_append_only_{operation.lower()}
            BEFORE {operation} ON live_events
            BEGIN SELECT RAISE(ABORT, 'live events are append-only'); END
            """
        )


@migrations()
def m006_request_identity(db: sqlite_utils.Database) -> None:
    # Whether the integration registry confirmed the request's label (1, 0, or NULL: no
    # registry, self-declared), and the user Canvas acted as when the token's user
    # masqueraded (as_user_id): actor_user_id stays the real user behind the token.
    db.execute("ALTER TABLE requests ADD COLUMN label_verified INTEGER")
    db.execute("ALTER TABLE requests ADD COLUMN acting_as_user_id INTEGER")


@migrations()
def m007_account_audits(db: sqlite_utils.Database) -> None:
    # Account audits run as jobs for admins (core/audit_jobs.py): their state survives a
    # restart of the proxy; `updated_at` is the running worker's heartbeat, so a job whose
    # process died is seen and reported as interrupted. The result is a file (`result`).
    db.execute(
        """
        CREATE TABLE account_audits (
            id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL,          -- as the admin named it (1, self, sis_account_id:X)
            term TEXT,
            provenance TEXT,                   -- keep only this verdict (manual), or NULL
            requested_by INTEGER,              -- the admin's Canvas user id
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            state TEXT NOT NULL,               -- queued, running, complete, failed, interrupted
            phase TEXT,                        -- report (Canvas builds it), judging
            report_id INTEGER,
            report_progress INTEGER,
            characters_read INTEGER NOT NULL DEFAULT 0,
            summary TEXT,                      -- JSON, when complete
            problems TEXT,                     -- JSON list of {line, message}, when complete
            error TEXT,
            result TEXT                        -- path of the NDJSON result, when complete
        )
        """
    )
    db.execute("CREATE INDEX account_audits_created ON account_audits (created_at)")


@migrations()
def m008_page_view_attributions(db: sqlite_utils.Database) -> None:
    # Who made an enrollment, read from Canvas page views on request (issue 14): the latest
    # answer per enrollment with its evidence, so asking again costs Canvas nothing.
    db.execute(
        """
        CREATE TABLE page_view_attributions (
            enrollment_id INTEGER PRIMARY KEY,
            course_id INTEGER NOT NULL,
            asked_at TEXT NOT NULL,            -- proxy clock, ISO 8601 UTC
            actor TEXT,                        -- the actor JSON, or NULL: nobody matched
            evidence TEXT NOT NULL             -- JSON list of the matching page views
        )
        """
    )
