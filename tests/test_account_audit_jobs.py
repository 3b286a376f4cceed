"""The account audit as an HTTP job for admins (issue 15 item 2): started, polled, its result
streamed; a restart of the proxy reports it interrupted, never loses it."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from ledger_proxy.core import account_audit, audit_jobs, ledger

from .test_account_audit import Account
from .test_lookup_e2e import lookup
from .test_openapi import check


@pytest.fixture
def account(world, sim, make_proxy):
    return Account(world, sim, make_proxy(sim.url, ADMIN_USER_IDS=[world.admin["id"]], SESSION_COOKIE_SECURE=False))


def auth(user):
    return {"Authorization": f"Bearer {user['token']}"}


def start(proxy, user, account_id="1", **params):
    return requests.post(f"{proxy.url}/ledger/v1/accounts/{account_id}/audits", params=params, headers=auth(user), timeout=10)


def wait_for(url, user, *states, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        job = requests.get(url, headers=auth(user), timeout=10).json()
        if job["state"] in states or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


@pytest.fixture
def document(account):
    return requests.get(f"{account.proxy.url}/ledger/v1/openapi.json", timeout=10).json()


def test_the_job_end_to_end_gives_the_lookups_verdicts(world, sim, account, document):
    started = start(account.proxy, world.admin)
    check(document, "/ledger/v1/accounts/{account_id}/audits", 202, started, method="post")
    job = started.json()
    assert started.headers["Location"] == job["url"]
    assert job["state"] in ("queued", "running") and job["results"] is None
    done = wait_for(job["url"], world.admin, "complete", "failed")
    assert done["state"] == "complete", done
    check(document, "/ledger/v1/accounts/{account_id}/audits/{audit_id}", 200, requests.get(job["url"], headers=auth(world.admin), timeout=10))
    rows = [json.loads(line) for line in requests.get(done["results"]["ndjson"], headers=auth(world.admin), timeout=10).text.splitlines()]
    assert done["summary"]["total"] == len(rows) > 30
    looked_up = {}
    for course_id in account.courses:
        listing = lookup(account.proxy, f"courses/{course_id}/enrollments", world.admin["token"], include_deleted="true").json()
        looked_up.update({row["id"]: row["provenance"] for row in listing["enrollments"]})
    assert {row["id"]: row["provenance"] for row in rows} == {i: looked_up[i] for i in (row["id"] for row in rows)}
    for verdict in ("integration", "sis", "manual"):
        assert done["summary"][verdict] == sum(1 for row in rows if row["provenance"] == verdict) > 0
    as_csv = requests.get(done["results"]["csv"], headers=auth(world.admin), timeout=10)
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert list(table[0]) == list(account_audit.CSV_COLUMNS)
    assert [int(r["id"]) for r in table] == [row["id"] for row in rows]


def test_manual_only_keeps_the_manual_rows_and_counts_all(world, sim, account):
    job = start(account.proxy, world.admin, manual_only="true").json()
    done = wait_for(job["url"], world.admin, "complete", "failed")
    rows = requests.get(done["results"]["ndjson"], headers=auth(world.admin), timeout=10).text.splitlines()
    assert len(rows) == done["summary"]["manual"] < done["summary"]["total"]
    assert done["provenance"] == "manual"


def test_only_admins_start_or_read_jobs(world, sim, account):
    assert start(account.proxy, world.teacher).status_code == 403
    job = start(account.proxy, world.admin).json()
    assert requests.get(job["url"], headers=auth(world.teacher), timeout=10).status_code == 403
    assert requests.get(job["url"].replace("/accounts/1/", "/accounts/2/"), headers=auth(world.admin), timeout=10).status_code == 404
    assert start(account.proxy, world.admin, account_id="not%20an%20account").status_code == 404


def test_a_failed_report_fails_the_job_with_canvass_reason(world, sim, account):
    sim.settings(report_outcome="error")
    job = start(account.proxy, world.admin).json()
    done = wait_for(job["url"], world.admin, "complete", "failed")
    assert done["state"] == "failed"
    assert "ended with status 'error': Generating the report failed" in done["error"]
    result = requests.get(job["url"] + "/result", headers=auth(world.admin), timeout=10)
    assert result.status_code == 409
    assert "it is failed" in result.json()["errors"][0]["message"]


def test_a_restart_reports_a_running_job_interrupted(world, sim, account, make_proxy):
    sim.settings(report_outcome="stuck")
    job = start(account.proxy, world.admin).json()
    running = wait_for(job["url"], world.admin, "failed", "complete", timeout=1.0)
    assert running["state"] == "running" and running["report_progress"] == 42
    account.proxy.stop()
    account.proxy.app.extensions["ledger_proxy"].stop_background()
    restarted = make_proxy(sim.url, ADMIN_USER_IDS=[world.admin["id"]])
    after = requests.get(job["url"].replace(account.proxy.url, restarted.url), headers=auth(world.admin), timeout=10).json()
    assert after["state"] == "interrupted"
    assert after["error"] == audit_jobs.STOPPED


def test_a_job_whose_process_died_is_reported_interrupted(world, sim, account, monkeypatch):
    """No clean stop (a killed worker): the heartbeat stops, and a reader says so."""
    db = ledger.connect(account.proxy.app.config["DATABASE"])
    ledger.create_audit(db, {"id": "ab" * 16, "account_id": "1", "state": "running"})
    url = f"{account.proxy.url}/ledger/v1/accounts/1/audits/{'ab' * 16}"
    assert requests.get(url, headers=auth(world.admin), timeout=10).json()["state"] == "running"
    monkeypatch.setattr(audit_jobs, "STALE", timedelta(0))
    after = requests.get(url, headers=auth(world.admin), timeout=10).json()
    assert after["state"] == "interrupted" and after["error"] == audit_jobs.GONE
    db.close()


def test_the_dashboard_home_is_the_admins_overview(world, sim, account):
    """Issue 15 item 5 (in part): the latest audit's counts and its manual rows, the
    integrations seen, the unsettled requests; a non-admin sees only the lookup form."""
    from .dashboard_support import browser_session, sign_in_with_token

    admin = browser_session()
    assert sign_in_with_token(admin, account.proxy, world.admin["token"]).status_code == 302
    empty = admin.get(f"{account.proxy.url}/ledger/", timeout=10).text
    assert "No account audit yet" in empty
    job = start(account.proxy, world.admin).json()
    done = wait_for(job["url"], world.admin, "complete", "failed")
    page = admin.get(f"{account.proxy.url}/ledger/", timeout=10).text
    assert "Your account at a glance" in page
    for verdict in ("integration", "sis", "manual"):
        assert f'<td data-verdict="{verdict}">{done["summary"][verdict]}</td>' in page
    assert '<tr data-integration="roster-sync"><td>roster-sync</td><td>' in page
    assert 'id="unsettled">0 request(s)' in page
    # The weekly chart now has every verdict: the audit's rows are either charted by their
    # known creation time or counted as undated in the caption, none lost.
    svg = page[page.index("<svg"): page.index("</svg>")]
    charted = {}
    for verdict, count in re.findall(r'data-verdict="([a-z]+)" data-count="(\d+)"', svg):
        charted[verdict] = charted.get(verdict, 0) + int(count)
    undated = {v: int(n) for v, n in re.findall(r'<span data-undated="([a-z]+)">[A-Za-z]+ (\d+)</span>', page)}
    for verdict in ("sis", "manual", "unknown", "ambiguous"):
        assert charted.get(verdict, 0) + undated.get(verdict, 0) == done["summary"][verdict], verdict
    assert done["summary"]["manual"] and done["summary"]["sis"]
    assert re.findall(r'class="legend-label"[^>]*>([A-Za-z]+)<', svg) == ["Integration", "SIS", "Manual", "Pending", "Unknown", "Ambiguous"]
    link = re.search(r'id="manual-rows" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    manual = admin.get(f"{account.proxy.url}{link}", timeout=10)  # the signed-in admin's session
    assert manual.status_code == 200, manual.text
    rows = list(csv.DictReader(io.StringIO(manual.text)))
    assert len(rows) == done["summary"]["manual"] and {r["provenance"] for r in rows} == {"manual"}
    teacher = browser_session()
    sign_in_with_token(teacher, account.proxy, world.teacher["token"])
    assert "at a glance" not in teacher.get(f"{account.proxy.url}/ledger/", timeout=10).text


def chart_totals(page):
    svg = page[page.index("<svg"): page.index("</svg>")]
    charted = {}
    for week, verdict, count in re.findall(r'data-week="([^"]+)" data-verdict="([a-z]+)" data-count="(\d+)"', svg):
        charted[(week, verdict)] = charted.get((week, verdict), 0) + int(count)
    undated = {v: int(n) for v, n in re.findall(r'<span data-undated="([a-z]+)">[A-Za-z]+ (\d+)</span>', page)}
    return charted, undated


def audited_with_live_events(world, sim, make_proxy):
    """A proxy receiving Live Events in front of an Account, and its completed audit job."""
    proxy = make_proxy(sim.url, ADMIN_USER_IDS=[world.admin["id"]], SESSION_COOKIE_SECURE=False, LIVE_EVENTS_JWKS=sim.live_events_jwks_url)
    sim.live_events(url=f"{proxy.url}/ledger/v1/live-events")
    try:
        Account(world, sim, proxy)
        sim.flush_live_events()
    finally:
        sim.live_events(enabled=False)
    done = wait_for(start(proxy, world.admin).json()["url"], world.admin, "complete", "failed")
    assert done["state"] == "complete", done
    return proxy, done


def test_with_live_events_the_overview_charts_the_audit_s_rows_by_the_week_they_were_made(world, sim, make_proxy):
    """Rows the provisioning report cannot date are dated by the Live Event that made them."""
    from .dashboard_support import browser_session, sign_in_with_token

    proxy, done = audited_with_live_events(world, sim, make_proxy)
    admin = browser_session()
    sign_in_with_token(admin, proxy, world.admin["token"])
    page = admin.get(f"{proxy.url}/ledger/", timeout=10).text
    charted, undated = chart_totals(page)
    this_week = "{}-W{:02d}".format(*datetime.now(UTC).isocalendar()[:2])
    assert charted[(this_week, "manual")] > 0 and charted[(this_week, "sis")] > 0
    for verdict in ("sis", "manual", "unknown", "ambiguous"):
        dated = sum(n for (_, v), n in charted.items() if v == verdict)
        assert dated + undated.get(verdict, 0) == done["summary"][verdict], verdict
    assert "the time of the Live Event that made the row" in page
