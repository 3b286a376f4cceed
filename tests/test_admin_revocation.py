"""Issue 11 item 3: a revoked token loses admin access at once, over real HTTP.

The attack: an admin's token exports the ledger; the token is revoked in Canvas (the
simulator's `POST /_sim/tokens/revoke`), or the admin signs out of the dashboard; whoever
still holds the token (or a copy of the dashboard's cookie) tries again.
"""

from __future__ import annotations

import sqlite3

import requests

from ledger_proxy import create_app
from ledger_proxy.devserver import BackgroundServer

from .dashboard_support import browser_session, csrf_of, sign_in_with_token
from .helpers import assert_canvas_error
from .test_faults import enroll


def get(url, token=None, session=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return (session or requests).get(url, headers=headers, allow_redirects=False, timeout=10)


def actors(database):
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM actors").fetchone()[0]


def admin_paths(world):
    return ["/ledger/v1/export", "/ledger/v1/export?format=ndjson", "/ledger/v1/enrollments/1"]


def test_a_revoked_token_loses_admin_access_at_once(world, sim, make_proxy):
    proxy = make_proxy(sim.url, ADMIN_USER_IDS=[world.admin["id"]], ADMIN_CONFIRM_SECONDS=0)
    token = world.admin["token"]
    assert get(f"{proxy.url}/ledger/v1/export", token).status_code == 200
    sim.control("POST", "tokens/revoke", {"token": token})
    for path in admin_paths(world):
        answer = get(proxy.url + path, token)
        assert_canvas_error(answer, 401, "Invalid access token")
    assert actors(proxy.app.config["DATABASE"]) == 0  # the refused token's cache entry is gone


def test_a_restart_does_not_revive_a_revoked_token_from_the_identity_cache(world, sim, make_proxy, tmp_path):
    """The persisted `actors` table (an hour by default) never vouches for an admin."""
    proxy = make_proxy(sim.url, ADMIN_USER_IDS=[world.admin["id"]])
    token = world.admin["token"]
    # The admin's script enrolls someone through the proxy: the token's user is cached.
    assert enroll(proxy.url, world, world.students[0]).status_code == 200
    assert get(f"{proxy.url}/ledger/v1/export", token).status_code == 200
    assert actors(proxy.app.config["DATABASE"]) == 1
    proxy.stop()
    sim.control("POST", "tokens/revoke", {"token": token})
    # The same ledger, default settings, a fresh process's memory.
    config = {
        "CANVAS_URL": sim.url,
        "DATABASE": proxy.app.config["DATABASE"],
        "TOKEN_HASH_KEY": "test-token-hash-key",
        "ADMIN_USER_IDS": [world.admin["id"]],
    }
    app = create_app(config, instance_path=str(tmp_path / "instance"))
    with BackgroundServer(app) as again:
        for path in admin_paths(world):
            assert_canvas_error(get(again.url + path, token), 401, "Invalid access token")


def test_a_signed_out_dashboard_cookie_replayed_no_longer_exports(world, sim, make_proxy):
    proxy = make_proxy(sim.url, SESSION_COOKIE_SECURE=False, ADMIN_USER_IDS=[world.admin["id"]])
    database = proxy.app.config["DATABASE"]
    assert enroll(proxy.url, world, world.students[2]).status_code == 200  # caches the token's user
    session = browser_session()
    assert sign_in_with_token(session, proxy, world.admin["token"]).status_code == 302
    copied = session.cookies["ledger_session"]
    assert get(f"{proxy.url}/ledger/v1/export", session=session).status_code == 200
    assert actors(database) == 1

    home = session.get(f"{proxy.url}/ledger/", timeout=10)
    out = session.post(f"{proxy.url}/ledger/logout", data={"csrf_token": csrf_of(home.text)}, allow_redirects=False, timeout=10)
    assert out.status_code == 302
    assert actors(database) == 0  # sign-out deletes that token's cache entry

    replay = browser_session()
    replay.cookies.set("ledger_session", copied, path="/ledger")
    for path in admin_paths(world):
        assert get(proxy.url + path, session=replay).status_code == 401
    page = get(f"{proxy.url}/ledger/", session=replay)
    assert page.status_code == 302 and "/ledger/login" in page.headers["Location"]
    # The admin's token itself still works (a pasted token stays theirs), only the session ended.
    assert get(f"{proxy.url}/ledger/v1/export", world.admin["token"]).status_code == 200


def test_a_revoked_token_cannot_sign_in_to_the_dashboard_from_the_identity_cache(world, sim, make_proxy):
    proxy = make_proxy(sim.url, SESSION_COOKIE_SECURE=False, ADMIN_USER_IDS=[world.admin["id"]])
    assert enroll(proxy.url, world, world.students[1]).status_code == 200  # caches the token's user
    assert actors(proxy.app.config["DATABASE"]) == 1
    sim.control("POST", "tokens/revoke", {"token": world.admin["token"]})
    answer = sign_in_with_token(browser_session(), proxy, world.admin["token"])
    assert answer.status_code == 401 and "Canvas did not accept this token." in answer.text


def test_signed_out_sessions_are_forgotten_once_they_would_have_expired(tmp_path):
    from datetime import timedelta

    from ledger_proxy.core import ledger
    from ledger_proxy.core.util import utcnow

    path = str(tmp_path / "ledger.sqlite3")
    ledger.initialise(path)
    database = ledger.connect(path)
    try:
        ledger.end_session(database, "old", utcnow() - timedelta(seconds=1))
        assert ledger.session_ended(database, "old")
        ledger.end_session(database, "new", utcnow() + timedelta(hours=8))
        assert (ledger.session_ended(database, "old"), ledger.session_ended(database, "new")) == (False, True)
    finally:
        database.close()
