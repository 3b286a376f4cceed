"""Prometheus metrics: what the proxy forwards, how Canvas answers, what the ledger holds.

Each app gets its own metric objects (tests build many apps in one process). Under gunicorn
with several workers, set PROMETHEUS_MULTIPROC_DIR (``ledger-proxy serve`` does): each worker
then writes its counters to files in that folder and ``/metrics`` adds them up, so every
scrape sees the whole server, whichever worker answers it. The pending-intents gauge is read
from the ledger at scrape time, so it is right in either mode.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..core import ledger
from ..core.util import parse_time
from ..core.vocab import UNSETTLED

log = logging.getLogger(__name__)

# No *_created series: Prometheus does not need them, and they double every counter's lines.
disable_created_metrics()

EXTENSION_KEY = "ledger_proxy_metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Canvas answers most API calls in well under a second; SIS imports and slow pages take longer.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RATE_LIMIT_TEXT = b"rate limit exceeded"
SNIFF_BYTES = 4096


def multiprocess_dir() -> str | None:
    """The multiprocess folder, if this process counts in files (see the module docstring)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return None
    if values.ValueClass is values.MutexValue:
        # prometheus_client chose its value class when first imported, before the variable
        # was set: this process counts in memory, and the files would miss its counts.
        log.warning("%s was set after prometheus_client was imported; ignored", MULTIPROC_ENV)
        return None
    return path


def prepare_multiprocess_dir(path: str) -> None:
    """Create the folder, and empty it of a previous run's counts (call before workers start)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(_server: Any, worker: Any) -> None:
    """gunicorn hook: forget a dead worker's live gauges (its counters stay counted)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(worker.pid)


class PendingIntents(Collector):
    """Enrollment-changing requests whose outcome is not settled, read from the ledger."""

    def __init__(self, database: str) -> None:
        self.database = database

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families = self._families()
        count, oldest = families
        try:
            found = ledger.unsettled_summary(self.database, timeout=2)
        except sqlite3.Error as exc:
            log.warning("metrics: the ledger could not be read: %s", exc)
            return []
        now = datetime.now(UTC)
        for status in UNSETTLED:
            number, first = found.get(status, (0, None))
            count.add_metric([status], number)
            since = parse_time(first)
            age = (now - since).total_seconds() if since else 0.0
            oldest.add_metric([status], max(age, 0.0))
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "ledger_proxy_pending_intents",
                "Enrollment-changing requests whose outcome is not settled (see reconcile).",
                labels=["status"],
            ),
            GaugeMetricFamily(
                "ledger_proxy_oldest_pending_intent_age_seconds",
                "Age of the oldest unsettled enrollment-changing request (0 when none).",
                labels=["status"],
            ),
        ]


class Metrics:
    """The metric objects of one app."""

    def __init__(self, database: str) -> None:
        self.multiprocess = multiprocess_dir()
        # In multiprocess mode the values live in files; the objects are not registered.
        self.registry: CollectorRegistry | None = None if self.multiprocess else CollectorRegistry()
        self.database = database
        self.forwarded = Counter(
            "ledger_proxy_forwarded_requests",
            "Requests forwarded to Canvas, by method and the status the client got.",
            ["method", "status"],
            registry=self.registry,
        )
        self.canvas_latency = Histogram(
            "ledger_proxy_canvas_request_duration_seconds",
            "Time from sending a forwarded request to Canvas until its response headers "
            "(or the failure), by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.recorded = Counter(
            "ledger_proxy_enrollments_recorded",
            "Enrollment events written to the ledger, by action.",
            ["action"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "ledger_proxy_canvas_throttled_responses",
            "Canvas answers that say it is throttling the caller: 429, or 403 Rate Limit "
            "Exceeded.",
            ["status"],
            registry=self.registry,
        )
        if self.registry is not None:
            self.registry.register(PendingIntents(database))

    def exposition(self) -> bytes:
        """The text format for a scrape: this process, or every worker in multiprocess mode."""
        if self.registry is not None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess)
        registry.register(PendingIntents(self.database))
        return generate_latest(registry)


def init_app(app: Flask) -> Metrics:
    metrics = Metrics(app.config["DATABASE"])
    app.extensions[EXTENSION_KEY] = metrics
    return metrics


def current() -> Metrics | None:
    metrics: Metrics | None = current_app.extensions.get(EXTENSION_KEY)
    return metrics


# The calls made from the request path


_NOT_GIVEN: Any = object()


@contextmanager
def canvas_timer(method: str, metrics: Metrics | None = _NOT_GIVEN) -> Iterator[None]:
    """Time one upstream send (answered or failed) into the Canvas latency histogram (of
    `metrics` when given: the lean path has no app context)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        if metrics is _NOT_GIVEN:
            metrics = current()
        if metrics is not None:
            metrics.canvas_latency.labels(method).observe(time.perf_counter() - started)


def count_recorded(events: Iterable[Any]) -> None:
    """Count ledger events (anything with an `action`) as they are recorded."""
    metrics = current()
    if metrics is not None:
        for event in events:
            metrics.recorded.labels(event.action).inc()


def says_rate_limited(prefix: bytes, content_encoding: str | None) -> bool:
    """Does the start of a body say "Rate Limit Exceeded" (Canvas's throttled 403)?"""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
        try:
            prefix = zlib.decompressobj(wbits).decompress(prefix, SNIFF_BYTES)
        except zlib.error:
            return False
    elif encoding != "identity":
        return False
    return RATE_LIMIT_TEXT in prefix.lower()


def sniff_throttled(
    chunks: Iterable[bytes], content_encoding: str | None, metrics: Metrics
) -> Iterator[bytes]:
    """Pass a streamed 403 body through unchanged, counting it if Canvas was throttling.

    It runs as the server sends the body, after the request context is gone: hence `metrics`.
    """
    seen = b""
    iterator = iter(chunks)
    try:
        for chunk in iterator:
            if len(seen) < SNIFF_BYTES:
                seen += chunk
            yield chunk
    finally:
        if says_rate_limited(seen[:SNIFF_BYTES], content_encoding):
            metrics.throttled.labels("403").inc()
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
