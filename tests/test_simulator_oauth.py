"""The simulator's Canvas OAuth2 endpoints and their controls (docs/simulator.md, "OAuth2")."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

CALLBACK = "http://127.0.0.1:9/ledger/oauth/callback"


@pytest.fixture
def key(sim):
    return sim.control("POST", "oauth/developer_keys", {"name": "Dashboard", "redirect_uri": "http://127.0.0.1/"})


def authorize(sim, key, **params):
    query = {"client_id": key["client_id"], "response_type": "code", "redirect_uri": CALLBACK, "state": "s1", **params}
    return sim.http.get(f"{sim.url}/login/oauth2/auth", params=query, allow_redirects=False, timeout=10)


def exchange(sim, key, code, **overrides):
    form = {"grant_type": "authorization_code", "client_id": key["client_id"], "client_secret": key["client_secret"], "redirect_uri": CALLBACK, "code": code, **overrides}
    return sim.http.post(f"{sim.url}/login/oauth2/token", data=form, timeout=10)


def code_from(response):
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return parse_qs(urlsplit(location).query)


def test_a_code_becomes_a_token_that_the_api_accepts_once(sim, key):
    user = sim.add_user("Ada Admin", admin=True)
    sim.control("POST", "oauth/approve_as", {"user_id": user["id"]})
    back = code_from(authorize(sim, key))
    assert back["state"] == ["s1"]
    answer = exchange(sim, key, back["code"][0])
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["user"] == {"id": user["id"], "name": "Ada Admin"}
    assert sim.api("GET", "users/self", body["access_token"]).json()["id"] == user["id"]
    again = exchange(sim, key, back["code"][0])
    assert (again.status_code, again.json()) == (400, {"error": "invalid_grant", "error_description": "authorization_code not found"})


def test_login_as_approves_one_request_without_a_setting(sim, key):
    user = sim.add_user("Terry Teacher")
    back = code_from(authorize(sim, key, login_as=user["id"]))
    assert exchange(sim, key, back["code"][0]).json()["user"]["id"] == user["id"]


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        pytest.param({"client_id": "nope"}, 401, ("invalid_client", "unknown client"), id="unknown-client"),
        pytest.param({"redirect_uri": "https://elsewhere.example/cb"}, 400, ("invalid_request", "redirect_uri does not match client settings"), id="foreign-redirect"),
        pytest.param({"response_type": "token"}, 400, ("unsupported_response_type", "Only response_type=code is permitted"), id="implicit-flow"),
    ],
)
def test_authorize_refuses_what_canvas_refuses(sim, key, params, status, error):
    answer = authorize(sim, key, **params)
    assert answer.status_code == status
    assert (answer.json()["error"], answer.json()["error_description"]) == error


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        pytest.param({"client_secret": "wrong"}, 401, "invalid_client", id="bad-secret"),
        pytest.param({"grant_type": "password"}, 400, "unsupported_grant_type", id="bad-grant"),
        pytest.param({"redirect_uri": "http://127.0.0.1:9/other"}, 400, "invalid_request", id="other-redirect"),
        pytest.param({"code": ""}, 400, "invalid_request", id="no-code"),
    ],
)
def test_token_refuses_what_canvas_refuses(sim, key, overrides, status, error):
    user = sim.add_user("Ada")
    code = code_from(authorize(sim, key, login_as=user["id"]))["code"][0]
    answer = exchange(sim, key, overrides.pop("code", code), **overrides)
    assert (answer.status_code, answer.json()["error"]) == (status, error)


def test_a_code_expires_after_ten_minutes(sim, key):
    user = sim.add_user("Ada")
    sim.control("POST", "clock", {"now": "2026-01-01T00:00:00Z"})
    code = code_from(authorize(sim, key, login_as=user["id"]))["code"][0]
    sim.control("POST", "clock", {"advance_seconds": 601})
    assert exchange(sim, key, code).json()["error"] == "invalid_grant"


def test_denying_sends_access_denied_back_with_the_state(sim, key):
    sim.control("POST", "oauth/approve_as", {"deny": True})
    back = code_from(authorize(sim, key))
    assert back == {"error": ["access_denied"], "error_description": ["the user denied the request"], "state": ["s1"]}


def test_without_a_chosen_user_a_page_lets_a_person_choose(sim, key):
    user = sim.add_user("Grace <Hopper>")
    page = authorize(sim, key)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Grace &lt;Hopper&gt;" in page.text and 'name="state" value="s1"' in page.text
    form = {"client_id": key["client_id"], "response_type": "code", "redirect_uri": CALLBACK, "state": "s1", "user_id": user["id"], "decision": "approve"}
    chosen = sim.http.post(f"{sim.url}/login/oauth2/auth", data=form, allow_redirects=False, timeout=10)
    assert exchange(sim, key, code_from(chosen)["code"][0]).json()["user"]["id"] == user["id"]


def test_delete_revokes_an_oauth_token_only(sim, key):
    user = sim.add_user("Ada")
    token = exchange(sim, key, code_from(authorize(sim, key, login_as=user["id"]))["code"][0]).json()["access_token"]
    revoked = sim.http.delete(f"{sim.url}/login/oauth2/token", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert (revoked.status_code, revoked.json()) == (200, {})
    assert sim.api("GET", "users/self", token).status_code == 401
    own = sim.http.delete(f"{sim.url}/login/oauth2/token", headers={"Authorization": f"Bearer {user['token']}"}, timeout=10)
    assert own.status_code == 401
    assert sim.api("GET", "users/self", user["token"]).status_code == 200


def test_keys_and_choices_are_forgotten_on_reset(sim, key):
    assert [k["client_id"] for k in sim.control("GET", "oauth/developer_keys")] == [key["client_id"]]
    assert sim.http.post(f"{sim.url}/_sim/oauth/approve_as", json={"user_id": 999}, timeout=10).status_code == 400
    sim.control("POST", "reset")
    assert sim.control("GET", "oauth/developer_keys") == []
    assert authorize(sim, key).status_code == 401
