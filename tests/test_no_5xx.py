"""Issue 11 item 6: no 5xx of the proxy's own for any input (over real HTTP / CliRunner).

(The JSON-nesting case on enrollment POSTs belongs to the request parser's own tests.)
"""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from ledger_proxy.cli import main

from .dashboard_support import browser_session, csrf_of
from .helpers import assert_canvas_error, raw_request
from .test_faults import enroll

OUT_OF_RANGE = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00")


@pytest.mark.parametrize("tail", ["%00", "dashboard.css%00", "a%00/../dashboard.css", "a" * 3000, "x/" * 1500, "dashboard.css/" + "b" * 3000])
def test_dashboard_static_paths_with_nul_or_3000_characters_are_404(world, sim, make_proxy, tail):
    proxy = make_proxy(sim.url)
    port = int(proxy.url.rsplit(":", 1)[1])
    status, _, _ = raw_request(port, f"GET /ledger/static/{tail} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    assert status == 404
    # The stylesheet itself is still served.
    status, _, body = raw_request(port, b"GET /ledger/static/dashboard.css HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 200 and b".tag-sis" in body


NEXTS = [
    "/ledger/%0D%0ASet-Cookie:%20planted=1",
    "/ledger/%0ALocation:%20https://evil.example/",
    "/ledger/courses/1%0D%0A%0D%0A<script>",
    "/ledger/%09x",
    "/ledger/%7Fx",
]


@pytest.mark.parametrize("next_path", NEXTS)
def test_next_with_cr_or_lf_on_the_sign_in_page_is_ignored_safely(world, sim, make_proxy, next_path):
    proxy = make_proxy(sim.url, SESSION_COOKIE_SECURE=False)
    session = browser_session()
    page = session.get(f"{proxy.url}/ledger/login?next={next_path}", timeout=10)
    assert page.status_code == 200
    from urllib.parse import unquote

    posted = session.post(
        f"{proxy.url}/ledger/login",
        data={"csrf_token": csrf_of(page.text), "token": world.admin["token"], "next": unquote(next_path)},
        allow_redirects=False, timeout=10,
    )
    assert posted.status_code == 302 and posted.headers["Location"] == "/ledger/"
    assert "planted" not in posted.headers.get("Set-Cookie", "")
    # Signed in, the GET redirects at once: to the dashboard's home, never a split header.
    again = session.get(f"{proxy.url}/ledger/login?next={next_path}", allow_redirects=False, timeout=10)
    assert again.status_code == 302 and again.headers["Location"] == "/ledger/"
    assert "planted" not in again.headers.get("Set-Cookie", "")


@pytest.mark.parametrize("bound", ["since", "until"])
@pytest.mark.parametrize("moment", OUT_OF_RANGE)
def test_export_bounds_out_of_range_are_400_before_streaming(world, sim, make_proxy, bound, moment):
    proxy = make_proxy(sim.url, ADMIN_USER_IDS=[world.admin["id"]])
    assert enroll(proxy.url, world, world.students[0]).status_code == 200
    import requests

    for fmt in ("csv", "ndjson"):
        answer = requests.get(
            f"{proxy.url}/ledger/v1/export", params={bound: moment, "format": fmt},
            headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10,
        )
        assert_canvas_error(answer, 400, bound)
        assert "out of range" in answer.json()["errors"][0]["message"]


@pytest.mark.parametrize("bound", ["since", "until"])
@pytest.mark.parametrize("moment", OUT_OF_RANGE)
def test_the_export_command_says_what_is_wrong_with_an_out_of_range_bound(world, sim, make_proxy, monkeypatch, bound, moment):
    proxy = make_proxy(sim.url)
    assert enroll(proxy.url, world, world.students[0]).status_code == 200
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", proxy.app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")
    result = CliRunner().invoke(main, ["export", f"--{bound}", moment])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"--{bound}" in result.output and "out of range" in result.output
    assert "Traceback" not in result.output


def test_an_early_bound_still_selects_by_time(world, sim, make_proxy, monkeypatch):
    """A year before 1000 is compared as a four-digit year (0999 sorts before 2026)."""
    proxy = make_proxy(sim.url)
    assert enroll(proxy.url, world, world.students[0]).status_code == 200
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", proxy.app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "k")
    since = CliRunner().invoke(main, ["export", "--since", "0999-01-01T00:00:00Z"])
    until = CliRunner().invoke(main, ["export", "--until", "0999-01-01T00:00:00Z"])
    assert (since.exit_code, until.exit_code) == (0, 0)
    with sqlite3.connect(proxy.app.config["DATABASE"]) as conn:
        [(count,)] = conn.execute("SELECT count(*) FROM events").fetchall()
    assert (len(since.output.splitlines()), len(until.output.splitlines())) == (1 + count, 1)
