"""The admin's overview on the dashboard's home: the latest account audit, the integrations the
ledger has seen, the requests not yet settled, and the enrollments made per week (no Flask;
read from the ledger only)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import sqlite_utils

from . import audit_jobs, ledger
from .util import utcnow
from .vocab import INTEGRATION, PENDING

CHART_WEEKS = 12
# What the weekly chart can count, and from where: the ledger knows when the proxy saw Canvas
# create an enrollment (Integration) and when a create request is still unsettled (Pending).
# The provisioning report has no created_at, so the audit's other verdicts have no week.
CHART_VERDICTS = (INTEGRATION, PENDING)


def overview(db: sqlite_utils.Database, today: date | None = None) -> dict[str, Any]:
    latest = ledger.latest_audits(db, 1)
    unsettled = ledger.unsettled_requests(db)
    days = [
        (row["day"], INTEGRATION, row["enrollments"])
        for row in ledger.enrollments_created_per_day(db)
    ]
    days += [(row["received_at"][:10], PENDING, 1) for row in ledger.unsettled_creates(db)]
    return {
        "weekly": weekly_counts(days, today or utcnow().date()),
        "audit": audit_jobs.status(db, latest[0]["id"]) if latest else None,
        "integrations": ledger.integration_activity(db),
        "unsettled": len(unsettled),
        "oldest_unsettled": min((row["received_at"] for row in unsettled), default=None),
    }


def week_start(day: date) -> date:
    """The Monday of `day`'s ISO week."""
    return day - timedelta(days=day.weekday())


def weekly_counts(
    days: Iterable[tuple[str, str, int]], today: date, weeks: int = CHART_WEEKS,
    verdicts: tuple[str, ...] = CHART_VERDICTS,
) -> list[dict[str, Any]]:  # fmt: skip
    """(ISO day, verdict, count) triples summed into the last `weeks` ISO weeks up to `today`,
    oldest first, every week present (zero when nothing happened): [{"week": Monday's date,
    "label": "2026-W48", "counts": {verdict: n}, "total": n}]. Days outside the window, an
    unreadable day or a verdict not charted are left out."""
    last = week_start(today)
    starts = [last - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    counts = {start: dict.fromkeys(verdicts, 0) for start in starts}
    for day, verdict, count in days:
        try:
            start = week_start(date.fromisoformat(day))
        except (TypeError, ValueError):
            continue
        if start in counts and verdict in counts[start]:
            counts[start][verdict] += count
    return [
        {
            "week": start.isoformat(),
            "label": "{}-W{:02d}".format(*start.isocalendar()[:2]),
            "counts": counts[start],
            "total": sum(counts[start].values()),
        }
        for start in starts
    ]
