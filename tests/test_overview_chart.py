"""The overview's weekly chart (issue 15 item 5): the pure weekly aggregation (table-tested),
the ledger's reads behind it, and the SVG, whose every text is escaped."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from xml.etree import ElementTree

import pytest

from ledger_proxy.core import ledger, overview
from ledger_proxy.web import chart

from .test_lookup_composition import db, recorded_create  # noqa: F401 - db is a fixture

SUNDAY = date(2026, 11, 29)  # ISO week 2026-W48 runs Monday 23 to Sunday 29 November

CASES = [
    pytest.param([], {}, id="nothing-recorded"),
    pytest.param([("2026-11-23", "integration", 3)], {"2026-11-23": {"integration": 3, "pending": 0}}, id="monday"),
    pytest.param([("2026-11-29", "integration", 2), ("2026-11-23", "integration", 1)], {"2026-11-23": {"integration": 3, "pending": 0}}, id="a-week-sums-its-days"),
    pytest.param([("2026-11-22", "integration", 4)], {"2026-11-16": {"integration": 4, "pending": 0}}, id="sunday-belongs-to-the-week-before"),
    pytest.param([("2026-11-24", "pending", 1), ("2026-11-24", "pending", 1), ("2026-11-25", "integration", 5)], {"2026-11-23": {"integration": 5, "pending": 2}}, id="verdicts-apart"),
    pytest.param([("2026-09-06", "integration", 9)], {}, id="older-than-the-window-left-out"),
    pytest.param([("2026-12-01", "integration", 9)], {}, id="after-today-left-out"),
    pytest.param([("2026-11-24", "manual", 7)], {}, id="a-verdict-not-charted-left-out"),
    pytest.param([("not a day", "integration", 1), (None, "pending", 1)], {}, id="unreadable-days-left-out"),
    pytest.param([("2026-09-07", "integration", 1)], {"2026-09-07": {"integration": 1, "pending": 0}}, id="first-week-of-the-window"),
]


@pytest.mark.parametrize(("days", "nonzero"), CASES)
def test_weekly_counts(days, nonzero):
    weeks = overview.weekly_counts(days, SUNDAY)
    assert len(weeks) == overview.CHART_WEEKS == 12
    assert weeks[0]["week"] == "2026-09-07" and weeks[-1]["week"] == "2026-11-23"
    assert weeks[-1]["label"] == "2026-W48" and weeks[0]["label"] == "2026-W37"
    assert [date.fromisoformat(w["week"]) for w in weeks] == [date(2026, 9, 7) + timedelta(weeks=n) for n in range(12)]
    assert {w["week"]: w["counts"] for w in weeks if w["total"]} == nonzero
    assert all(w["total"] == sum(w["counts"].values()) for w in weeks)


def test_weeks_across_a_year_end_use_iso_labels():
    weeks = overview.weekly_counts([("2027-01-01", "integration", 1)], date(2027, 1, 4), weeks=2)
    assert [(w["week"], w["label"], w["total"]) for w in weeks] == [("2026-12-28", "2026-W53", 1), ("2027-01-04", "2027-W01", 0)]


def test_the_overview_counts_the_ledgers_creates_and_unsettled_create_requests(db):  # noqa: F811
    now = datetime.now(UTC)
    recorded_create(db, 1)
    recorded_create(db, 2)
    ledger.record_intent(db, ledger.Intent(
        request_id="lost", received_at=now, method="POST", path="/api/v1/courses/7/enrollments",
        kind="enrollment_create", integration="sync", actor=None, token_hash=None, user_agent=None,
    ))  # fmt: skip  # no outcome yet: pending
    assert ledger.enrollments_created_per_day(db) == [{"day": now.date().isoformat(), "enrollments": 2}]
    weekly = overview.overview(db, today=now.date())["weekly"]
    assert weekly[-1]["counts"] == {"integration": 2, "pending": 1}
    assert sum(w["total"] for w in weekly) == 3


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


NS = "{http://www.w3.org/2000/svg}"
LABELS = {"integration": "Integration", "pending": "Pending"}


def test_the_svg_has_a_title_a_description_a_legend_and_one_bar_per_nonzero_count():
    weeks = overview.weekly_counts([("2026-11-24", "integration", 3), ("2026-11-24", "pending", 1), ("2026-11-10", "integration", 8)], SUNDAY)
    svg = parse(chart.weekly_svg(weeks, ("integration", "pending"), LABELS, "Made per week", "Bars of the last 12 weeks."))
    assert svg.get("role") == "img" and svg.get("aria-labelledby") == "chart-title chart-desc"
    assert svg.find(f"{NS}title").text == "Made per week" and svg.find(f"{NS}desc").text == "Bars of the last 12 weeks."
    texts = [t.text for t in svg.iter(f"{NS}text")]
    assert "Integration" in texts and "Pending" in texts  # the legend's words
    assert "W48" in texts and "W37" in texts and "4" in texts and "8" in texts and "10" in texts  # weeks, totals, axis top
    bars = {(b.get("data-week"), b.get("data-verdict")): int(b.get("data-count")) for b in svg.iter(f"{NS}rect") if "bar" in b.get("class").split()}
    assert bars == {("2026-W48", "integration"): 3, ("2026-W48", "pending"): 1, ("2026-W46", "integration"): 8}
    tallest = max(float(b.get("height")) for b in svg.iter(f"{NS}rect") if "bar" in b.get("class").split())
    assert tallest == pytest.approx((chart.HEIGHT - chart.TOP - chart.BOTTOM) * 8 / 10)


def test_the_svg_escapes_every_text():
    weeks = overview.weekly_counts([("2026-11-24", "integration", 1)], SUNDAY)
    weeks[-1]["label"] = '<W"48>'
    svg = chart.weekly_svg(weeks, ("integration",), {"integration": "<b>Int & co</b>"}, "<script>x</script>", 'a "quote" & <tag>')
    parsed = parse(svg)  # well-formed XML: nothing unescaped broke it
    assert "<script>" not in svg and "<b>" not in svg
    assert parsed.find(f"{NS}title").text == "<script>x</script>"
    assert "<b>Int & co</b>" in [t.text for t in parsed.iter(f"{NS}text")]


def test_an_empty_chart_still_draws_its_axis():
    weeks = overview.weekly_counts([], SUNDAY)
    svg = parse(chart.weekly_svg(weeks, ("integration", "pending"), LABELS, "t", "d"))
    assert not [b for b in svg.iter(f"{NS}rect") if "bar" in b.get("class").split()]
    assert [t.text for t in svg.iter(f"{NS}text") if t.get("class") == "axis-label"][:2] == ["1", "0"]


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (2, 2), (3, 5), (5, 5), (6, 10), (11, 20), (499, 500), (501, 1000)])
def test_the_axis_top_is_a_round_number(value, top):
    assert chart._nice_max(value) == top


def item(verdict, created_at=None, event_time=None):
    return {"provenance": verdict, "created_at": created_at, "actor": {"event_time": event_time} if event_time else None}


AUDIT_CASES = [
    pytest.param([], [], {}, id="no-rows"),
    pytest.param([item("manual", "2026-11-24T10:00:00Z")], [("2026-11-24", "manual", 1)], {}, id="created-at"),
    pytest.param([item("manual", None, "2026-11-20T09:00:00Z")], [("2026-11-20", "manual", 1)], {}, id="live-event-time"),
    pytest.param([item("sis", "2026-11-24T10:00:00Z", "2026-11-20T09:00:00Z")], [("2026-11-24", "sis", 1)], {}, id="created-at-first"),
    pytest.param([item("manual"), item("manual"), item("unknown")], [], {"manual": 2, "unknown": 1}, id="undated-counted"),
    pytest.param([item("manual", "yesterday")], [], {"manual": 1}, id="unreadable-time-undated"),
    pytest.param([item("integration", "2026-11-24T10:00:00Z"), item("pending")], [], {}, id="ledger-verdicts-left-to-the-ledger"),
    pytest.param([item("ambiguous", "2026-11-24T01:00:00Z"), item("ambiguous", "2026-11-24T23:00:00Z"), item("sis", "2026-11-23T00:00:00Z")],
                 [("2026-11-23", "sis", 1), ("2026-11-24", "ambiguous", 2)], {}, id="summed-per-day-and-verdict"),
]


@pytest.mark.parametrize(("items", "dated", "undated"), AUDIT_CASES)
def test_audit_days(items, dated, undated):
    assert overview.audit_days(items) == (dated, undated)


def test_without_a_completed_audit_only_the_ledger_s_verdicts_are_charted(db):  # noqa: F811
    summary = overview.overview(db)
    assert summary["chart_verdicts"] == ("integration", "pending") and summary["chart_undated"] is None
    assert set(summary["weekly"][0]["counts"]) == {"integration", "pending"}
