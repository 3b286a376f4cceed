"""The admin's overview on the dashboard's home: the latest account audit, the integrations the
ledger has seen, and the requests not yet settled (no Flask; read from the ledger only)."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from . import audit_jobs, ledger


def overview(db: sqlite_utils.Database) -> dict[str, Any]:
    latest = ledger.latest_audits(db, 1)
    unsettled = ledger.unsettled_requests(db)
    return {
        "audit": audit_jobs.status(db, latest[0]["id"]) if latest else None,
        "integrations": ledger.integration_activity(db),
        "unsettled": len(unsettled),
        "oldest_unsettled": min((row["received_at"] for row in unsettled), default=None),
    }
