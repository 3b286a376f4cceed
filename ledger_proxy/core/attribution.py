"""On request, the manual rows of a lookup attributed from Canvas page views (issue 14).

The lookup runs with the caller's token, so only rows the caller could list are attributed;
the page-views reader token reads nothing but the candidates' page views. Answers are stored
in the ledger with their evidence and reused until `refresh`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests
import sqlite_utils

from ..upstream.canvas import USER_AGENT, CanvasClient, CanvasRefused
from ..upstream.forwarding import canvas_part
from . import ledger, lookup, page_views
from .util import as_int, iso, parse_time, utcnow
from .vocab import MANUAL, UNKNOWN

ATTRIBUTED = (MANUAL, UNKNOWN)
RATE_LIMITED = b"Rate Limit Exceeded"
# X-Rate-Limit-Remaining below this: pause before the next read. Canvas's bucket refills
# (leaks) at about 10 units a second, so half a second gives back more than a read costs.
LOW_REMAINING = 50.0
LOW_REMAINING_PAUSE = 0.5
MAX_RETRIES = 5


class PageViewsUnavailable(Exception):
    """The reader token is missing or may not read page views; verdicts stay as they were."""


@dataclass
class Cost:
    """What asking Canvas cost: requests made, throttled answers, seconds waited."""

    requests: int = 0
    throttled: int = 0
    waited_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, throttled: bool = False, waited: float = 0.0) -> None:
        with self.lock:
            self.requests += 1
            self.throttled += int(throttled)
            self.waited_seconds += waited

    def wait(self, seconds: float) -> None:
        with self.lock:
            self.waited_seconds += seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "canvas_requests": self.requests, "throttled": self.throttled,
            "waited_seconds": round(self.waited_seconds, 3),
        }


@dataclass(frozen=True)
class Options:
    reader: str | None
    admins: Sequence[int]
    allowance: timedelta
    concurrency: int = 4
    refresh: bool = False
    backoff: float = 1.0  # seconds before the first retry of a throttled request

    @classmethod
    def configured(cls, settings: Mapping[str, Any], *, refresh: bool) -> Options:
        """From the settings registry's PAGE_VIEWS_* and ADMIN_USER_IDS."""
        return cls(
            reader=settings["PAGE_VIEWS_TOKEN"],
            admins=settings["ADMIN_USER_IDS"],
            allowance=timedelta(seconds=settings["PAGE_VIEWS_ALLOWANCE_SECONDS"]),
            concurrency=settings["PAGE_VIEWS_CONCURRENCY"],
            refresh=refresh,
        )


Progress = Callable[[int, int], None]


def attribute(
    db: sqlite_utils.Database,
    canvas: CanvasClient,
    token: str,
    query: lookup.Query,
    options: Options,
    *,
    sis_reader: str | None,
    lookup_allowance: timedelta,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """The lookup, its `manual`/`unknown` rows without a Live Events actor given a page-views
    actor; `attribution` says what was asked and what it cost."""
    # The whole course: its teachers are candidates even when the caller filters them out.
    result = lookup.run(
        db, canvas, token, replace(query, provenance=None),
        sis_reader=sis_reader, allowance=lookup_allowance,
    )
    rows = [
        item for item in result["enrollments"]
        if item.get("provenance") in ATTRIBUTED and not item.get("actor")
        and as_int(item.get("id")) is not None
    ]
    cost = Cost()
    stored = {} if options.refresh else ledger.page_view_attributions(db, [r["id"] for r in rows])
    asked = [row for row in rows if row["id"] not in stored]
    report: dict[str, Any] = {"source": page_views.SOURCE, "rows": len(rows),
                              "from_ledger": len(rows) - len(asked), "asked": len(asked)}
    answers: dict[int, dict[str, Any]] = {k: v for k, v in stored.items()}
    if asked:
        try:
            answers.update(
                _ask(db, canvas, result["enrollments"], asked, options, cost, on_progress)
            )
        except PageViewsUnavailable as exc:
            report.update(status="unavailable", message=str(exc), **cost.as_json())
            result["attribution"] = report
            return _filtered(result, query)
    names = _names(result["enrollments"])
    for row in rows:
        answer = answers.get(row["id"])
        actor = dict(answer["actor"]) if answer and answer["actor"] else None
        if actor is None:
            continue
        if actor.get("user_id") is not None:
            actor["name"] = names.get(actor["user_id"])
        row["actor"] = actor
        row["reason"] = f"{row['reason']} {page_views.reason(actor)}"
    report.update(status="done", **cost.as_json())
    result["attribution"] = report
    return _filtered(result, query)


def _filtered(result: dict[str, Any], query: lookup.Query) -> dict[str, Any]:
    if query.provenance:
        result["enrollments"] = [
            item for item in result["enrollments"] if item.get("provenance") == query.provenance
        ]
    return result


def _ask(
    db: sqlite_utils.Database, canvas: CanvasClient, listing: list[dict[str, Any]],
    asked: list[dict[str, Any]], options: Options, cost: Cost, on_progress: Progress | None,
) -> dict[int, dict[str, Any]]:
    if not options.reader:
        raise PageViewsUnavailable(
            "No page-views reader token: set LEDGER_PROXY_PAGE_VIEWS_TOKEN to an account "
            "admin's token with the right to view statistics (page views)."
        )
    targets = [t for t in (_target(row) for row in asked) if t is not None]
    sections = sorted({s for s in (as_int(r.get("course_section_id")) for r in listing) if s})
    shared = page_views.candidates(
        listing, options.admins or _admins(canvas, options.reader, cost),
        ledger.integration_user_ids(db),
    )
    plan = _plan(targets, shared, options.allowance)
    views: dict[int, list[dict[str, Any]]] = {}
    done = 0
    if on_progress:
        on_progress(0, len(plan))
    fetch = _Fetcher(canvas, options, cost)
    with ThreadPoolExecutor(max_workers=max(options.concurrency, 1)) as pool:
        futures = [pool.submit(fetch.views, user_id, window) for user_id, window in plan]
        try:
            for (user_id, _), future in zip(plan, futures, strict=True):
                views.setdefault(user_id, []).extend(future.result())
                done += 1
                if on_progress:
                    on_progress(done, len(plan))
        except BaseException:
            # One read failed for good: the others stop too, rather than each waiting out
            # its own back-off for an answer that is no longer used.
            fetch.stopped.set()
            for future in futures:
                future.cancel()
            raise
    ids = {str(v["id"]) for vs in views.values() for v in vs if v.get("id")}
    known = ledger.known_request_ids(db, ids)
    answers: dict[int, dict[str, Any]] = {}
    for target in targets:
        found = page_views.match(
            target, views, page_views.for_target(shared, target), sections, known,
            options.allowance,
        )
        evidence = [_evidence_json(m) for m in found.evidence]
        answers[target.enrollment_id] = {"actor": found.actor, "evidence": evidence}
    ledger.store_page_view_attributions(
        db, targets[0].course_id if targets else 0, iso(utcnow()),
        [(eid, a["actor"], a["evidence"]) for eid, a in answers.items()],
    )
    return answers


def _plan(
    targets: list[page_views.Target], shared: Sequence[int], allowance: timedelta,
) -> list[tuple[int, page_views.Window]]:
    """(candidate, window) queries: a shared candidate's windows cover every target, the
    enrolled user's cover their own rows only."""
    by_user: dict[int, list[page_views.Target]] = {user_id: list(targets) for user_id in shared}
    for target in targets:
        if target.user_id is not None and target.user_id not in shared:
            by_user.setdefault(target.user_id, []).append(target)
    return [
        (user_id, window)
        for user_id, own in sorted(by_user.items())
        for window in page_views.windows(own, allowance)
    ]


class _Fetcher:
    """Page-views reads with the reader token: bounded by the pool, throttling honoured."""

    def __init__(self, canvas: CanvasClient, options: Options, cost: Cost) -> None:
        self.canvas, self.options, self.cost = canvas, options, cost
        self.pause_until = 0.0
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def views(self, user_id: int, window: page_views.Window) -> list[dict[str, Any]]:
        target: str | None = (
            f"/api/v1/users/{user_id}/page_views?start_time={quote(iso_z(window.start))}"
            f"&end_time={quote(iso_z(window.end))}&per_page=100"
        )
        found: list[dict[str, Any]] = []
        while target:
            page, target = self._page(target)
            found.extend(v for v in page if isinstance(v, dict))
        return found

    def _page(self, target: str) -> tuple[list[Any], str | None]:
        delay = self.options.backoff
        for _attempt in range(MAX_RETRIES + 1):
            self._wait()
            if self.stopped.is_set():
                raise PageViewsUnavailable("stopped: another page-views read failed")
            response = self.canvas.send(
                "GET", target,
                [("Authorization", f"Bearer {self.options.reader}"), ("User-Agent", USER_AGENT)],
                None,
            )
            with contextlib.closing(response):
                content = response.content
                remaining = _remaining(response)
                if response.status_code == 403 and RATE_LIMITED in content:
                    self.cost.add(throttled=True, waited=delay)
                    self._pause(delay)
                    delay *= 2
                    continue
                self.cost.add()
                if remaining is not None and remaining < LOW_REMAINING:
                    self.cost.wait(LOW_REMAINING_PAUSE)
                    self._pause(LOW_REMAINING_PAUSE)
                if response.status_code in (401, 403):
                    raise PageViewsUnavailable(_refused(response.status_code))
                if response.status_code == 404:
                    return [], None  # a candidate Canvas no longer has: nothing to read
                if response.status_code != 200:
                    raise PageViewsUnavailable(
                        f"Canvas answered {response.status_code} to a page-views read; "
                        "verdicts are unchanged. Try again later."
                    )
                page = response.json()
                next_url = response.links.get("next", {}).get("url")
                return (page if isinstance(page, list) else []), self._next(next_url)
        raise PageViewsUnavailable(
            f"Canvas kept throttling the page-views reads after {MAX_RETRIES} retries; "
            "try again later."
        )

    def _next(self, next_url: str | None) -> str | None:
        if not next_url:
            return None
        rest = canvas_part(next_url, self.canvas.base_url)
        return rest if rest and rest.startswith("/api/") else None

    def _pause(self, seconds: float) -> None:
        with self.lock:
            self.pause_until = max(self.pause_until, time.monotonic() + seconds)

    def _wait(self) -> None:
        with self.lock:
            wait = self.pause_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def _refused(status: int) -> str:
    return (
        f"Canvas refused the page-views reader token ({status}): LEDGER_PROXY_PAGE_VIEWS_TOKEN "
        "must belong to an account admin with the right to view statistics (page views). "
        "Verdicts are unchanged."
    )


def _remaining(response: requests.Response) -> float | None:
    try:
        return float(response.headers.get("X-Rate-Limit-Remaining", ""))
    except ValueError:
        return None


def _admins(canvas: CanvasClient, reader: str, cost: Cost) -> list[int]:
    """The root account's admins, read with the reader token (none when it may not)."""
    try:
        found: list[int] = []
        for page in canvas.pages("/api/v1/accounts/self/admins?per_page=100", reader):
            cost.add()
            found.extend(
                uid for uid in (as_int((a.get("user") or {}).get("id")) for a in page
                                if isinstance(a, dict)) if uid is not None
            )
        return found
    except CanvasRefused:
        cost.add()
        return []


def _target(row: Mapping[str, Any]) -> page_views.Target | None:
    created = parse_time(row.get("created_at"))
    course_id = as_int(row.get("course_id"))
    if created is None or course_id is None:
        return None
    return page_views.Target(
        enrollment_id=int(row["id"]), user_id=as_int(row.get("user_id")), course_id=course_id,
        section_id=as_int(row.get("course_section_id")), created_at=created,
    )


def _names(listing: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    names: dict[int, str] = {}
    for row in listing:
        user = row.get("user")
        if isinstance(user, dict) and isinstance(user.get("id"), int) and user.get("name"):
            names[user["id"]] = user["name"]
    return names


def _evidence_json(found: page_views.Match) -> dict[str, Any]:
    data = asdict(found)
    data["at"] = iso_z(found.at)
    return data


def iso_z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
