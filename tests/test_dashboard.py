"""The dashboard at /ledger/ over real HTTP, in front of the simulator (issue 6, item 3)."""

from __future__ import annotations

import base64
import re
import zlib
from datetime import date, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ledger_proxy import create_app
from ledger_proxy.config import ConfigError

from .dashboard_support import (
    TAG_LABELS,
    browser_session,
    csrf_of,
    expected_verdict,
    mixed_course_fixture,  # noqa: F401 - the mixed_course fixture
    oauth_proxy_fixture,  # noqa: F401 - the oauth_proxy fixture
    page_rows,
    sign_in_with_token,
)


def cookie_payload(session: requests.Session) -> str:
    """What Flask's signed cookie lets anyone read: its (maybe compressed) JSON payload."""
    value = session.cookies["ledger_session"]
    compressed = value.startswith(".")
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return (zlib.decompress(raw) if compressed else raw).decode()


def oauth_sign_in(session: requests.Session, proxy, next_path: str = "", *, to_callback: bool = True) -> dict[str, requests.Response]:
    """Click "Sign in with Canvas" and follow each redirect by hand, keeping every answer."""
    page = session.get(f"{proxy.url}/ledger/login", timeout=10)
    start = session.post(f"{proxy.url}/ledger/login", data={"csrf_token": csrf_of(page.text), "next": next_path}, allow_redirects=False, timeout=10)
    authorize = session.get(start.headers["Location"], allow_redirects=False, timeout=10)
    steps = {"start": start, "authorize": authorize}
    if to_callback and authorize.status_code == 302 and authorize.headers["Location"].startswith(proxy.url):
        steps["callback"] = session.get(authorize.headers["Location"], allow_redirects=False, timeout=10)
    return steps


# Signing in with a pasted token


def test_a_pasted_token_signs_in_and_is_never_shown_or_readable(world, mixed_course):
    session = browser_session()
    first = session.get(f"{mixed_course.url}/ledger/", allow_redirects=False, timeout=10)
    assert first.status_code == 302 and first.headers["Location"].endswith("/ledger/login?next=/ledger/")
    login = session.get(f"{mixed_course.url}/ledger/login", timeout=10)
    assert login.status_code == 200 and login.headers["Content-Type"].startswith("text/html")
    assert '<html lang="en">' in login.text
    assert '<label for="token">' in login.text and 'id="token" name="token" type="password"' in login.text
    answer = sign_in_with_token(session, mixed_course, world.admin["token"])
    assert answer.status_code == 302 and answer.headers["Location"] == "/ledger/"
    home = session.get(f"{mixed_course.url}/ledger/", timeout=10)
    assert home.status_code == 200 and "Ada Admin" in home.text
    course = session.get(f"{mixed_course.url}/ledger/courses/{world.course['id']}", timeout=10)
    for response in (login, answer, home, course):
        assert world.admin["token"] not in response.text
        assert world.admin["token"] not in str(response.headers)
    readable = cookie_payload(session)
    assert "canvas" in readable and world.admin["token"] not in readable  # sealed, not just signed


def test_a_token_canvas_refuses_is_turned_away_on_the_form(mixed_course):
    session = browser_session()
    answer = sign_in_with_token(session, mixed_course, "not-a-canvas-token")
    assert answer.status_code == 401
    assert "Canvas did not accept this token." in answer.text
    assert "not-a-canvas-token" not in answer.text
    assert session.get(f"{mixed_course.url}/ledger/", allow_redirects=False, timeout=10).status_code == 302


def test_after_signing_in_the_user_lands_where_they_were_going_but_never_off_site(world, mixed_course):
    session = browser_session()
    going = session.get(f"{mixed_course.url}/ledger/courses/{world.course['id']}?provenance=manual", allow_redirects=False, timeout=10)
    assert going.headers["Location"] == f"/ledger/login?next=/ledger/courses/{world.course['id']}?provenance%3Dmanual"
    page = session.get(f"{mixed_course.url}{going.headers['Location']}", timeout=10)
    assert f'name="next" value="/ledger/courses/{world.course["id"]}?provenance=manual"' in page.text
    for wanted, landed in [
        (f"/ledger/courses/{world.course['id']}?provenance=manual", f"/ledger/courses/{world.course['id']}?provenance=manual"),
        ("https://evil.example/ledger/", "/ledger/"),
        ("//evil.example/ledger/", "/ledger/"),
        ("/ledger//evil.example", "/ledger/"),
        ("/api/v1/users/self", "/ledger/"),
    ]:
        fresh = browser_session()
        login = fresh.get(f"{mixed_course.url}/ledger/login", timeout=10)
        answer = fresh.post(f"{mixed_course.url}/ledger/login", data={"csrf_token": csrf_of(login.text), "token": world.admin["token"], "next": wanted}, allow_redirects=False, timeout=10)
        assert answer.headers["Location"] == landed, wanted


# The session cookie and CSRF


@pytest.mark.parametrize(
    ("settings", "secure"),
    [pytest.param({}, True, id="default-secure"), pytest.param({"SESSION_COOKIE_SECURE": False}, False, id="plain-http")],
)
def test_the_session_cookie_is_httponly_samesite_lax_scoped_and_secure_by_default(sim, make_proxy, settings, secure):
    proxy = make_proxy(sim.url, **settings)
    response = requests.get(f"{proxy.url}/ledger/login", timeout=10)
    cookie = response.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert cookie.startswith("ledger_session=")
    assert "httponly" in attributes
    assert attributes["samesite"] == "SameSite=Lax"
    assert attributes["path"] == "Path=/ledger"  # never sent to /api/, so never forwarded to Canvas
    assert ("secure" in attributes) is secure


def test_forms_without_this_session_s_csrf_token_are_refused(world, mixed_course):
    session = browser_session()
    session.get(f"{mixed_course.url}/ledger/login", timeout=10)
    for form in ({"token": world.admin["token"]}, {"token": world.admin["token"], "csrf_token": "forged"}):
        refused = session.post(f"{mixed_course.url}/ledger/login", data=form, allow_redirects=False, timeout=10)
        assert refused.status_code == 400 and "Form expired" in refused.text
    other = browser_session()
    foreign = csrf_of(other.get(f"{mixed_course.url}/ledger/login", timeout=10).text)
    refused = session.post(f"{mixed_course.url}/ledger/login", data={"token": world.admin["token"], "csrf_token": foreign}, allow_redirects=False, timeout=10)
    assert refused.status_code == 400
    assert session.get(f"{mixed_course.url}/ledger/", allow_redirects=False, timeout=10).status_code == 302

    assert sign_in_with_token(session, mixed_course, world.admin["token"]).status_code == 302
    home = session.get(f"{mixed_course.url}/ledger/", timeout=10)
    refused = session.post(f"{mixed_course.url}/ledger/logout", data={}, allow_redirects=False, timeout=10)
    assert refused.status_code == 400
    assert session.get(f"{mixed_course.url}/ledger/", allow_redirects=False, timeout=10).status_code == 200
    out = session.post(f"{mixed_course.url}/ledger/logout", data={"csrf_token": csrf_of(home.text)}, allow_redirects=False, timeout=10)
    assert out.status_code == 302 and out.headers["Location"] == "/ledger/login"
    assert "You are signed out." in session.get(f"{mixed_course.url}/ledger/login", timeout=10).text
    assert session.get(f"{mixed_course.url}/ledger/", allow_redirects=False, timeout=10).status_code == 302


def test_signing_in_starts_a_new_csrf_token(world, mixed_course):
    session = browser_session()
    before = csrf_of(session.get(f"{mixed_course.url}/ledger/login", timeout=10).text)
    sign_in_with_token(session, mixed_course, world.admin["token"])
    after = csrf_of(session.get(f"{mixed_course.url}/ledger/", timeout=10).text)
    assert before != after


def test_pages_forbid_framing_and_caching_and_allow_forms_to_canvas_only(world, mixed_course):
    session = browser_session()
    sign_in_with_token(session, mixed_course, world.admin["token"])
    page = session.get(f"{mixed_course.url}/ledger/courses/{world.course['id']}", timeout=10)
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert f"form-action 'self' {mixed_course.app.config['CANVAS_URL']}" in policy
    assert page.headers["Cache-Control"] == "no-store"
    css = session.get(f"{mixed_course.url}/ledger/static/dashboard.css", timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    again = session.get(f"{mixed_course.url}/ledger/static/dashboard.css", headers={"If-None-Match": css.headers["ETag"]}, timeout=10)
    assert again.status_code == 304
    assert session.head(f"{mixed_course.url}/ledger/static/dashboard.css", timeout=10).status_code == 200
    assert session.get(f"{mixed_course.url}/ledger/static/..%2f__init__.py", timeout=10).status_code == 404


# OAuth2


def test_oauth_sign_in_end_to_end_and_sign_out_revokes_the_token(world, sim, oauth_proxy):
    sim.control("POST", "oauth/approve_as", {"user_id": world.admin["id"]})
    session = browser_session()
    login = session.get(f"{oauth_proxy.url}/ledger/login", timeout=10)
    assert "Sign in with Canvas" in login.text and 'name="token"' not in login.text
    steps = oauth_sign_in(session, oauth_proxy, f"/ledger/courses/{world.course['id']}")
    authorize = urlsplit(steps["start"].headers["Location"])
    query = parse_qs(authorize.query)
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == f"{sim.url}/login/oauth2/auth"
    assert query["client_id"] == [oauth_proxy.developer_key["client_id"]]
    assert query["response_type"] == ["code"]
    assert query["redirect_uri"] == [f"{oauth_proxy.url}/ledger/oauth/callback"]
    back = parse_qs(urlsplit(steps["authorize"].headers["Location"]).query)
    assert back["state"] == query["state"] and back["code"]
    assert steps["callback"].status_code == 302
    assert steps["callback"].headers["Location"] == f"/ledger/courses/{world.course['id']}"
    page = session.get(f"{oauth_proxy.url}/ledger/courses/{world.course['id']}", timeout=10)
    assert page.status_code == 200 and "Ada Admin" in page.text
    [issued] = list(sim.state.oauth_tokens)
    assert issued not in page.text and issued not in cookie_payload(session)

    out = session.post(f"{oauth_proxy.url}/ledger/logout", data={"csrf_token": csrf_of(page.text)}, allow_redirects=False, timeout=10)
    assert out.status_code == 302
    assert sim.api("GET", "users/self", issued).status_code == 401  # Canvas forgot it
    assert sim.api("GET", "users/self", world.admin["token"]).status_code == 200  # their own token stays


def test_a_pasted_token_is_not_revoked_on_sign_out(world, sim, mixed_course):
    session = browser_session()
    sign_in_with_token(session, mixed_course, world.admin["token"])
    home = session.get(f"{mixed_course.url}/ledger/", timeout=10)
    session.post(f"{mixed_course.url}/ledger/logout", data={"csrf_token": csrf_of(home.text)}, timeout=10)
    assert sim.api("GET", "users/self", world.admin["token"]).status_code == 200


def test_an_oauth_callback_whose_state_is_not_this_session_s_is_refused(world, sim, oauth_proxy):
    sim.control("POST", "oauth/approve_as", {"user_id": world.admin["id"]})
    victim = browser_session()
    victim.get(f"{oauth_proxy.url}/ledger/login", timeout=10)
    # The attacker's own code and state, fed to the victim's browser (login CSRF).
    steps = oauth_sign_in(browser_session(), oauth_proxy, to_callback=False)
    refused = victim.get(steps["authorize"].headers["Location"], allow_redirects=False, timeout=10)
    assert refused.status_code == 400 and "Sign-in not recognised" in refused.text
    assert victim.get(f"{oauth_proxy.url}/ledger/", allow_redirects=False, timeout=10).status_code == 302
    # A state from the victim's own session, with a code meant for someone else's flow.
    page = victim.get(f"{oauth_proxy.url}/ledger/login", timeout=10)
    started = victim.post(f"{oauth_proxy.url}/ledger/login", data={"csrf_token": csrf_of(page.text)}, allow_redirects=False, timeout=10)
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    forged = victim.get(f"{oauth_proxy.url}/ledger/oauth/callback", params={"code": "made-up", "state": state + "x"}, allow_redirects=False, timeout=10)
    assert forged.status_code == 400
    # Canvas refusing the code itself (already used, or made up) is shown as Canvas said it.
    page = victim.get(f"{oauth_proxy.url}/ledger/login", timeout=10)
    started = victim.post(f"{oauth_proxy.url}/ledger/login", data={"csrf_token": csrf_of(page.text)}, allow_redirects=False, timeout=10)
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    bad_code = victim.get(f"{oauth_proxy.url}/ledger/oauth/callback", params={"code": "made-up", "state": state}, allow_redirects=False, timeout=10)
    assert bad_code.status_code == 400 and "authorization_code not found" in bad_code.text


def test_a_user_who_denies_access_sees_why(world, sim, oauth_proxy):
    sim.control("POST", "oauth/approve_as", {"deny": True})
    steps = oauth_sign_in(browser_session(), oauth_proxy)
    assert steps["callback"].status_code == 403
    assert "Canvas did not sign you in" in steps["callback"].text


def test_oauth_settings_go_in_pairs(tmp_path):
    with pytest.raises(ConfigError, match="go together"):
        create_app({"CANVAS_URL": "http://c.test", "DATABASE": str(tmp_path / "l.sqlite3"), "OAUTH_CLIENT_ID": "1"}, instance_path=str(tmp_path / "i"))


# Looking a course up


def test_verdicts_on_the_page_match_the_json_lookup_and_the_ground_truth(world, sim, mixed_course):
    session = browser_session()
    sign_in_with_token(session, mixed_course, world.admin["token"])
    course_id = world.course["id"]
    page = session.get(f"{mixed_course.url}/ledger/courses/{course_id}", params={"include_deleted": "1"}, timeout=10)
    assert page.status_code == 200
    rows = page_rows(page.text)
    lookup = requests.get(f"{mixed_course.url}/ledger/v1/courses/{course_id}/enrollments", params={"include_deleted": "true"}, headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10).json()
    assert {row["id"]: row["provenance"] for row in rows} == {row["id"]: row["provenance"] for row in lookup["enrollments"]}
    truth = {row["id"]: expected_verdict(row) for row in sim.enrollments(course_id=course_id)}
    assert {row["id"]: row["provenance"] for row in rows} == truth
    assert {row["id"]: row["tag"] for row in rows} == {i: TAG_LABELS[v] for i, v in truth.items()}
    assert set(truth.values()) == {"integration", "sis", "manual"}
    for item in lookup["enrollments"]:
        assert item["reason"] in page.text
        if item["ledger"]:
            assert item["ledger"]["canvas_request_id"] in page.text
    assert "Predates ledger" in page.text and "In SIS roster" in page.text and "SIS import id" in page.text


def test_filtering_to_manual_and_leaving_deleted_rows_out(world, sim, mixed_course):
    session = browser_session()
    sign_in_with_token(session, mixed_course, world.admin["token"])
    course_id = world.course["id"]
    everything = page_rows(session.get(f"{mixed_course.url}/ledger/courses/{course_id}", timeout=10).text)
    truth = {row["id"]: row for row in sim.enrollments(course_id=course_id)}
    assert {row["id"] for row in everything} == {i for i, t in truth.items() if t["enrollment_state"] != "deleted"}
    manual = session.get(f"{mixed_course.url}/ledger/courses/{course_id}", params={"provenance": "manual"}, timeout=10)
    rows = page_rows(manual.text)
    assert rows and {row["provenance"] for row in rows} == {"manual"} and {row["tag"] for row in rows} == {"Manual"}
    assert {row["id"] for row in rows} == {i for i, t in truth.items() if expected_verdict(t) == "manual" and t["enrollment_state"] != "deleted"}
    assert 'aria-current="page"' in manual.text
    bad = session.get(f"{mixed_course.url}/ledger/courses/{course_id}", params={"provenance": "robots"}, timeout=10)
    assert bad.status_code == 400 and bad.headers["Content-Type"].startswith("text/html")


def test_the_lookup_form_takes_an_sis_course_id(world, mixed_course):
    session = browser_session()
    sign_in_with_token(session, mixed_course, world.admin["token"])
    found = session.get(f"{mixed_course.url}/ledger/courses", params={"course": " sis_course_id:BIO-101 ", "provenance": "sis"}, allow_redirects=False, timeout=10)
    assert found.headers["Location"] == "/ledger/courses/sis_course_id:BIO-101?provenance=sis"
    by_sis = session.get(f"{mixed_course.url}{found.headers['Location']}", timeout=10)
    by_id = session.get(f"{mixed_course.url}/ledger/courses/{world.course['id']}", params={"provenance": "sis"}, timeout=10)
    assert page_rows(by_sis.text) == page_rows(by_id.text) != []
    empty = session.get(f"{mixed_course.url}/ledger/courses", params={"course": ""}, allow_redirects=False, timeout=10)
    assert empty.headers["Location"] == "/ledger/"


def test_canvas_refusing_the_user_is_shown_as_an_error_page(world, sim, mixed_course):
    outsider = sim.add_user("Olive Outsider")
    session = browser_session()
    assert sign_in_with_token(session, mixed_course, outsider["token"]).status_code == 302
    refused = session.get(f"{mixed_course.url}/ledger/courses/{world.course['id']}", timeout=10)
    assert refused.status_code == 403 and refused.headers["Content-Type"].startswith("text/html")
    assert "user not authorized to perform that action" in refused.text
    missing = session.get(f"{mixed_course.url}/ledger/courses/999999", timeout=10)
    assert missing.status_code == 404 and "The specified resource does not exist." in missing.text
    sim.control("POST", "settings", {"throttle": 403})
    throttled = session.get(f"{mixed_course.url}/ledger/courses/{world.course['id']}", timeout=10)
    assert throttled.status_code == 403 and "Rate Limit Exceeded" in throttled.text


def test_a_token_canvas_stops_accepting_ends_the_session(world, sim, oauth_proxy):
    sim.control("POST", "oauth/approve_as", {"user_id": world.admin["id"]})
    session = browser_session()
    oauth_sign_in(session, oauth_proxy)
    [issued] = list(sim.state.oauth_tokens)
    sim.state.tokens.pop(issued)  # revoked in Canvas behind the dashboard's back
    page = session.get(f"{oauth_proxy.url}/ledger/courses/{world.course['id']}", timeout=10)
    assert page.status_code == 401 and "no longer accepts your sign-in" in page.text
    assert session.get(f"{oauth_proxy.url}/ledger/", allow_redirects=False, timeout=10).status_code == 302


def test_canvas_down_is_a_502_page(world, sim, mixed_course):
    session = browser_session()
    sign_in_with_token(session, mixed_course, world.admin["token"])
    sim.set_faults({"action": "drop", "path": "/enrollments"})
    page = session.get(f"{mixed_course.url}/ledger/courses/{world.course['id']}", timeout=10)
    assert page.status_code == 502 and page.headers["Content-Type"].startswith("text/html")


def test_admins_get_export_links_that_work_with_the_session(world, sim, mixed_course):
    session = browser_session()
    sign_in_with_token(session, mixed_course, world.admin["token"])
    page = session.get(f"{mixed_course.url}/ledger/courses/{world.course['id']}", timeout=10)
    assert 'href="/ledger/v1/export?format=csv"' in page.text
    assert f'href="/ledger/v1/export?format=csv&amp;course_id={world.course["id"]}"' in page.text
    export = session.get(f"{mixed_course.url}/ledger/v1/export", params={"format": "csv"}, timeout=10)
    if export.status_code != 404:  # the export endpoint is another change; the link is ours
        assert export.status_code == 200 and export.headers["Content-Type"].startswith("text/csv")
    # The session stands in for a token on reads only.
    assert session.post(f"{mixed_course.url}/ledger/v1/export", timeout=10).status_code in (401, 405)
    teacher = browser_session()
    sign_in_with_token(teacher, mixed_course, world.teacher["token"])
    page = teacher.get(f"{mixed_course.url}/ledger/courses/{world.course['id']}", timeout=10)
    assert "/ledger/v1/export" not in page.text and "for the admins" in page.text
    assert {row["provenance"] for row in page_rows(page.text)} <= {"integration", "unknown"}  # SIS hidden from teachers


# The sealed session and its key


def test_the_secret_key_is_generated_once_and_private(tmp_path):
    first = create_app({"CANVAS_URL": "http://c.test"}, instance_path=str(tmp_path / "i"))
    second = create_app({"CANVAS_URL": "http://c.test"}, instance_path=str(tmp_path / "i"))
    key_file = tmp_path / "i" / "secret.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert first.secret_key == second.secret_key == key_file.read_text().strip().encode()
    configured = create_app({"CANVAS_URL": "http://c.test", "SECRET_KEY": "from-settings"}, instance_path=str(tmp_path / "j"))
    assert configured.secret_key == b"from-settings" and not (tmp_path / "j" / "secret.key").exists()


def test_session_cookie_secure_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGER_PROXY_SESSION_COOKIE_SECURE", "false")
    app = create_app({"CANVAS_URL": "http://c.test", "DATABASE": str(tmp_path / "l.sqlite3")}, instance_path=str(tmp_path / "i"))
    assert app.config["SESSION_COOKIE_SECURE"] is False


def test_a_sealed_token_opens_only_with_its_key_and_only_until_it_expires(tmp_path, monkeypatch):
    from ledger_proxy.web import session as web_session

    app = create_app({"CANVAS_URL": "http://c.test", "DATABASE": str(tmp_path / "l.sqlite3"), "SECRET_KEY": "k1"}, instance_path=str(tmp_path / "i"))
    with app.test_request_context("/ledger/"):
        web_session.sign_in("canvas-token", 7, "Ada", expires_in=60, oauth=True)
        found = web_session.signed_in()
        assert found is not None and (found.token, found.user_id, found.oauth) == ("canvas-token", 7, True)
        assert "canvas-token" not in str(dict(web_session.session))
        now = web_session.time.time()
        monkeypatch.setattr(web_session.time, "time", lambda: now + 61)
        assert web_session.signed_in() is None  # Canvas said the token lasts 60 s
        monkeypatch.undo()
        app.secret_key = "k2"
        assert web_session.signed_in() is None  # a new key signs everyone out


def test_an_unknown_dashboard_page_is_an_html_404_and_the_api_keeps_json(make_proxy, sim):
    import requests

    proxy = make_proxy(sim.url)
    page = requests.get(f"{proxy.url}/ledger/no-such-page", timeout=10)
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")
    assert "no such page" in page.text
    api = requests.get(f"{proxy.url}/ledger/v1/no-such-endpoint", timeout=10)
    assert api.status_code == 404 and api.json()["errors"][0]["message"]


def test_the_course_page_shows_the_course_s_name_from_canvas(world, sim, mixed_course):
    session = browser_session()
    sign_in_with_token(session, mixed_course, world.admin["token"])
    for ref in (str(world.course["id"]), "sis_course_id:BIO-101"):
        page = session.get(f"{mixed_course.url}/ledger/courses/{ref}", timeout=10)
        assert page.status_code == 200
        assert f'<span class="course-name">Biology 101</span> <span class="muted">course {ref}' in page.text
        assert f"<title>Biology 101 ({ref})" in page.text
    # A course name with markup in it is text on the page, never markup.
    odd = sim.add_course("<i>Bio</i> & Co")
    escaped = session.get(f"{mixed_course.url}/ledger/courses/{odd['id']}", timeout=10).text
    assert '<span class="course-name">&lt;i&gt;Bio&lt;/i&gt; &amp; Co</span>' in escaped and "<i>Bio</i>" not in escaped


def test_the_course_page_falls_back_to_the_id_when_canvas_gives_no_name(world, sim, mixed_course):
    session = browser_session()
    sign_in_with_token(session, mixed_course, world.admin["token"])
    course_id = world.course["id"]
    sim.control("POST", "faults", {"rules": [{"action": "error", "status": 500, "method": "GET", "path": rf"/api/v1/courses/{course_id}$"}]})
    try:
        page = session.get(f"{mixed_course.url}/ledger/courses/{course_id}", timeout=10)
    finally:
        sim.control("DELETE", "faults")
    assert page.status_code == 200 and f'<h1 id="results-heading">Course {course_id}</h1>' in page.text
    assert "course-name" not in page.text and page_rows(page.text)  # the lookup itself still shown


def test_the_admin_s_home_charts_the_enrollments_made_per_week(world, sim, mixed_course):
    session = browser_session()
    sign_in_with_token(session, mixed_course, world.admin["token"])
    page = session.get(f"{mixed_course.url}/ledger/", timeout=10).text
    svg = page[page.index("<svg"): page.index("</svg>") + len("</svg>")]
    assert '<title id="chart-title">Enrollments made per week, by verdict</title>' in svg
    assert '<desc id="chart-desc">' in svg and "Integration" in svg and "Pending" in svg
    assert "<script" not in page
    # Every enrollment the proxy saw Canvas create (the integrations table's "made") is in this
    # week's Integration bar, and in the data table beside the chart.
    made = sum(int(n) for n in re.findall(r'<tr data-integration="[^"]*"><td>[^<]*</td><td>\d+</td><td>(\d+)</td>', page))
    assert made == 4  # roster-sync: three enrollments of students 0, 1, 6 and one deleted at once
    bars = {(week, verdict): int(count) for week, verdict, count in re.findall(r'data-week="([^"]+)" data-verdict="([^"]+)" data-count="(\d+)"', svg)}
    monday = (date.today() - timedelta(days=date.today().weekday())).isoformat()
    label = "{}-W{:02d}".format(*date.fromisoformat(monday).isocalendar()[:2])
    assert bars == {(label, "integration"): made}
    row = re.search(rf'<tr data-week="{monday}">(.*?)</tr>', page).group(1)
    assert f'<td data-verdict="integration">{made}</td><td data-verdict="pending">0</td><td data-verdict="total">{made}</td>' in row
    assert "provisioning report" in page and "has no creation time" in page  # the caption says what is counted
    teacher = browser_session()
    sign_in_with_token(teacher, mixed_course, world.teacher["token"])
    assert "<svg" not in teacher.get(f"{mixed_course.url}/ledger/", timeout=10).text
