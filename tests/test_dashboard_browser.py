"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), at 1366x768.

Needs /usr/bin/chromium: `apt-get update && apt-get install -y chromium` (as root). Never
`playwright install`: this project uses the distribution's browser, not a downloaded one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .dashboard_support import (
    TAG_LABELS,
    build_mixed_course,
    expected_verdict,
    oauth_proxy_fixture,  # noqa: F401 - the oauth_proxy fixture
)

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LAPTOP = {"width": 1366, "height": 768}

# WCAG 2.1 contrast of each element's text against the first opaque background behind it.
CONTRAST_JS = """
(selector) => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  return [...document.querySelectorAll(selector)].filter(el => el.offsetParent !== null).map(el => {
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
    return {text: el.textContent.trim().slice(0, 40), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)};
  });
}
"""


# The same for SVG: each chart text's and bar's `fill` against the page behind the chart.
# Text needs 4.5:1 (WCAG 1.4.3), a bar as a graphic 3:1 (WCAG 1.4.11).
FILL_CONTRAST_JS = CONTRAST_JS.replace(
    "getComputedStyle(el).color", "getComputedStyle(el).fill"
).replace("background(el))", "background(el.ownerSVGElement || el))")


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.fail(
            f"Debian's Chromium is not installed at {CHROMIUM}; the dashboard's browser test needs "
            f"it. Install it (as root) with: {INSTALL_CHROMIUM}",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: .venv/bin/pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shown_tags(page):
    rows = page.locator("table.enrollments tbody tr[data-enrollment-id]")
    return {int(row.get_attribute("data-enrollment-id")): row.locator(".tag").inner_text() for row in rows.all()}


def test_an_admin_signs_in_with_canvas_looks_a_course_up_and_filters_to_manual(chromium, world, sim, oauth_proxy):
    build_mixed_course(world, sim, oauth_proxy)
    sim.control("POST", "oauth/approve_as", {"user_id": world.admin["id"]})
    truth = {row["id"]: row for row in sim.enrollments(course_id=world.course["id"])}
    context = chromium.new_context(viewport=LAPTOP)
    try:
        page = context.new_page()
        page.goto(f"{oauth_proxy.url}/ledger/")
        assert page.url.startswith(f"{oauth_proxy.url}/ledger/login")
        page.get_by_role("button", name="Sign in with Canvas").click()  # Canvas approves, comes back
        page.wait_for_url(f"{oauth_proxy.url}/ledger/")
        assert "Signed in as Ada Admin" in page.locator("header").inner_text()

        # The admin's overview: the weekly chart is drawn (no script), labelled and readable.
        chart = page.get_by_role("img", name="Enrollments made per week, by verdict")
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100 and box["x"] + box["width"] <= LAPTOP["width"]
        made = int(page.locator("table.integrations tbody tr td:nth-child(3)").first.inner_text())
        bars = page.locator("svg.chart rect.bar")
        assert bars.count() == 1 and bars.first.get_attribute("data-verdict") == "integration"
        assert int(bars.first.get_attribute("data-count")) == made == 4
        assert bars.first.bounding_box()["height"] > 20  # drawn, not only in the markup
        legend = page.locator("svg.chart text.legend-label").all_text_contents()
        assert legend == ["Integration", "Pending"]
        assert "provisioning report" in page.locator("figure.weekly figcaption").inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
        assert page.evaluate("document.querySelectorAll('script').length") == 0
        texts = page.evaluate(FILL_CONTRAST_JS, "svg.chart text")
        assert texts and [t for t in texts if t["ratio"] < 4.5] == []
        marks = page.evaluate(FILL_CONTRAST_JS, "svg.chart rect.bar, svg.chart rect.swatch")
        assert len(marks) == 3 and [m for m in marks if m["ratio"] < 3] == []
        low = [item for item in page.evaluate(CONTRAST_JS, ".tag, .muted, a, th, td, label, .help, button, figcaption, summary, h1, h2, p") if item["ratio"] < 4.5]
        assert low == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

        page.get_by_label("Course", exact=True).fill("sis_course_id:BIO-101")
        page.get_by_role("button", name="Look up").click()
        page.wait_for_url("**/ledger/courses/sis_course_id:BIO-101")
        live = {i: t for i, t in truth.items() if t["enrollment_state"] != "deleted"}
        assert shown_tags(page) == {i: TAG_LABELS[expected_verdict(t)] for i, t in live.items()}
        assert set(shown_tags(page).values()) == {"Integration", "SIS", "Manual"}
        heading = page.get_by_role("heading", level=1).inner_text()
        assert heading.startswith("Biology 101") and "sis_course_id:BIO-101" in heading
        assert page.title().startswith("Biology 101")

        # Usable on a laptop screen and readable: no sideways scrolling, every control
        # labelled, every text at WCAG AA contrast (colour repeats the tag's words, never alone).
        assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
        unlabelled = page.evaluate(
            "[...document.querySelectorAll('input:not([type=hidden]), select')].filter(e => !e.labels.length).map(e => e.name)"
        )
        assert unlabelled == []
        low = [item for item in page.evaluate(CONTRAST_JS, ".tag, .muted, a, th, td, dt, dd, label, .help, button, caption, h1") if item["ratio"] < 4.5]
        assert low == []
        assert page.locator("html").get_attribute("lang") == "en"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

        page.get_by_role("navigation", name="Filter by provenance").get_by_role("link", name=re.compile("^Manual")).click()
        page.wait_for_url("**provenance=manual")
        manual = shown_tags(page)
        assert manual and set(manual.values()) == {"Manual"}
        assert set(manual) == {i for i, t in live.items() if expected_verdict(t) == "manual"}
        page.screenshot(path=str(ARTIFACTS / "dashboard-manual.png"))

        page.get_by_label("Show", exact=True).select_option("")
        page.get_by_label("Include deleted enrollments").check()
        page.get_by_role("button", name="Look up").click()
        page.wait_for_url("**include_deleted=1")
        assert set(shown_tags(page)) == set(truth)

        [cookie] = [c for c in context.cookies() if c["name"] == "ledger_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/ledger"
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/ledger/login")
        assert "You are signed out." in page.content()
    finally:
        context.close()


def test_an_admin_sees_the_audit_s_verdicts_charted_per_week_readably(chromium, world, sim, make_proxy):
    """After an account audit with Live Events, the chart has every verdict: drawn, with its
    legend, its data table, and every text and bar at WCAG AA contrast."""
    from .test_account_audit_jobs import audited_with_live_events

    proxy, _ = audited_with_live_events(world, sim, make_proxy)
    context = chromium.new_context(viewport=LAPTOP)
    try:
        page = context.new_page()
        page.goto(f"{proxy.url}/ledger/")
        page.get_by_label("Canvas access token").fill(world.admin["token"])
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url(f"{proxy.url}/ledger/")
        chart = page.get_by_role("img", name="Enrollments made per week, by verdict")
        assert chart.is_visible()
        legend = page.locator("svg.chart text.legend-label").all_text_contents()
        assert legend == ["Integration", "SIS", "Manual", "Pending", "Unknown", "Ambiguous"]
        drawn = {bar.get_attribute("data-verdict") for bar in page.locator("svg.chart rect.bar").all() if bar.bounding_box()["height"] > 0}
        assert {"integration", "sis", "manual"} <= drawn
        # The legend's words stay inside the chart, and the page needs no sideways scrolling.
        right = page.evaluate("Math.max(...[...document.querySelectorAll('svg.chart text')].map(t => t.getBoundingClientRect().right))")
        assert right <= chart.bounding_box()["x"] + chart.bounding_box()["width"] + 1
        assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
        texts = page.evaluate(FILL_CONTRAST_JS, "svg.chart text")
        assert [t for t in texts if t["ratio"] < 4.5] == []
        marks = page.evaluate(FILL_CONTRAST_JS, "svg.chart rect.bar, svg.chart rect.swatch")
        assert len(marks) >= 6 + 3 and [m for m in marks if m["ratio"] < 3] == []
        page.get_by_text("The chart's numbers as a table").click()
        table = page.locator("table.weekly-counts")
        assert table.is_visible() and table.locator("thead th").all_inner_texts()[1:] == [*legend, "Total"]
        low = [item for item in page.evaluate(CONTRAST_JS, ".tag, a, th, td, figcaption, summary, code, h2") if item["ratio"] < 4.5]
        assert low == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-overview-audit.png"), full_page=True)
    finally:
        context.close()
