"""The admin's overview on the dashboard's home: the latest account audit, the integrations the
ledger has seen, the requests not yet settled, and the enrollments made per week (no Flask;
read from the ledger only)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import sqlite_utils

from . import audit_jobs, ledger
from .util import utcnow
from .vocab import INTEGRATION, PENDING, VERDICTS

CHART_WEEKS = 12
# What the weekly chart can count, and from where. The ledger knows when the proxy saw Canvas
# create an enrollment (Integration) and when a create request is still unsettled (Pending).
# The provisioning report has no created_at, so the latest audit's other verdicts are charted
# only for the rows whose creation time is known all the same: Canvas's created_at as the
# ledger recorded it, or the time of the Live Event that made the row.
LEDGER_VERDICTS = (INTEGRATION, PENDING)
AUDIT_VERDICTS = tuple(verdict for verdict in VERDICTS if verdict not in LEDGER_VERDICTS)


def overview(db: sqlite_utils.Database, today: date | None = None) -> dict[str, Any]:
    latest = ledger.latest_audits(db, 1)
    audit = audit_jobs.status(db, latest[0]["id"]) if latest else None
    unsettled = ledger.unsettled_requests(db)
    days = [
        (row["day"], INTEGRATION, row["enrollments"])
        for row in ledger.enrollments_created_per_day(db)
    ]
    days += [(row["received_at"][:10], PENDING, 1) for row in ledger.unsettled_creates(db)]
    dated = _dated_audit_rows(db, audit)
    verdicts: tuple[str, ...] = LEDGER_VERDICTS
    if dated is not None:
        days += dated[0]
        verdicts = VERDICTS  # every verdict, in the page's order
    return {
        "weekly": weekly_counts(days, today or utcnow().date(), verdicts=verdicts),
        "chart_verdicts": verdicts,
        # The audit's rows left out of the chart for want of a creation time, per verdict
        # (None: no completed audit with its result at hand).
        "chart_undated": dated[1] if dated is not None else None,
        "audit": audit,
        "integrations": ledger.integration_activity(db),
        "unsettled": len(unsettled),
        "oldest_unsettled": min((row["received_at"] for row in unsettled), default=None),
    }


def _dated_audit_rows(
    db: sqlite_utils.Database, audit: dict[str, Any] | None
) -> tuple[list[tuple[str, str, int]], dict[str, int]] | None:
    """The latest audit's rows by (day, verdict), read once per result file (it never changes
    once the job is complete); None when there is no completed result to read."""
    path = audit_jobs.result_path(db, audit["id"]) if audit else None
    if not path:
        return None
    try:
        stat = os.stat(path)
        return _read_dated(path, stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=4)
def _read_dated(
    path: str, mtime_ns: int, size: int
) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
    return audit_days(audit_jobs.result_items(path))


def audit_days(
    items: Iterable[Mapping[str, Any]],
) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
    """(day, verdict, count) triples of the audit's rows of AUDIT_VERDICTS whose creation time
    is known (created_at, else the Live Event's time), and how many of each had none. Integration
    and Pending rows are left to the ledger, which dates every one of them."""
    dated: Counter[tuple[str, str]] = Counter()
    undated: Counter[str] = Counter()
    for item in items:
        verdict = item.get("provenance")
        if verdict not in AUDIT_VERDICTS:
            continue
        moment = item.get("created_at") or (item.get("actor") or {}).get("event_time")
        try:
            day = date.fromisoformat(moment[:10]).isoformat() if isinstance(moment, str) else None
        except ValueError:
            day = None
        if day is None:
            undated[verdict] += 1
        else:
            dated[(day, verdict)] += 1
    return (
        [(day, verdict, count) for (day, verdict), count in sorted(dated.items())],
        {verdict: undated[verdict] for verdict in AUDIT_VERDICTS if undated[verdict]},
    )


def week_start(day: date) -> date:
    """The Monday of `day`'s ISO week."""
    return day - timedelta(days=day.weekday())


def weekly_counts(
    days: Iterable[tuple[str, str, int]], today: date, weeks: int = CHART_WEEKS,
    verdicts: tuple[str, ...] = LEDGER_VERDICTS,
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
