"""The simulator's page views (issue 14): what Canvas records per request, and the API that reads them."""

from __future__ import annotations

from typing import Any

import requests

PATH = "users/{}/page_views"


def views(sim: Any, user_id: int, token: str, **params: Any) -> requests.Response:
    return sim.api("GET", PATH.format(user_id), token, params=params)


def test_a_ui_add_is_a_user_generated_post_in_the_actors_page_views(sim: Any, world: Any) -> None:
    student = world.students[0]
    made = sim.control("POST", "ui/enrollments", {
        "course_id": world.course["id"], "user_id": student["id"],
        "actor_user_id": world.teacher["id"],
    })
    answer = views(sim, world.teacher["id"], world.admin["token"])
    assert answer.status_code == 200
    [view] = answer.json()
    assert view["id"] == made["origin"]["request_context_id"]
    assert view["http_method"] == "post"
    assert view["url"].endswith(f"/api/v1/courses/{world.course['id']}/enrollments")
    assert view["user_agent"] == "User-Generated"
    assert view["app_name"] is None


def test_an_api_call_is_in_the_token_owners_page_views_with_its_request_id(
    sim: Any, world: Any,
) -> None:
    answer = sim.api(
        "POST", f"courses/{world.course['id']}/enrollments", world.teacher["token"],
        data={"enrollment[user_id]": world.students[1]["id"]},
        headers={"User-Agent": "my-script/1.0"},
    )
    assert answer.status_code == 200
    request_id = answer.headers["X-Request-Context-Id"]
    listed = views(sim, world.teacher["id"], world.admin["token"]).json()
    [view] = [v for v in listed if v["id"] == request_id]
    assert view["user_agent"] == "my-script/1.0"
    assert view["app_name"] is None  # a personal token
    assert view["http_method"] == "post"


def test_newest_first_time_window_and_link_pagination(sim: Any, world: Any) -> None:
    sim.control("POST", "clock", {"now": "2026-01-01T10:00:00Z"})
    for student in world.students[:3]:
        sim.control("POST", "ui/enrollments", {
            "course_id": world.course["id"], "user_id": student["id"],
            "actor_user_id": world.teacher["id"],
        })
        sim.control("POST", "clock", {"advance_seconds": 60})
    first = views(sim, world.teacher["id"], world.admin["token"], per_page=2)
    assert len(first.json()) == 2
    assert 'rel="next"' in first.headers["Link"]
    times = [v["created_at"] for v in first.json()]
    assert times == sorted(times, reverse=True)
    window = views(
        sim, world.teacher["id"], world.admin["token"],
        start_time="2026-01-01T10:01:00Z", end_time="2026-01-01T10:02:00Z",
    ).json()
    assert [v["created_at"] for v in window] == ["2026-01-01T10:01:00Z"]


def test_only_an_admin_may_read_page_views(sim: Any, world: Any) -> None:
    answer = views(sim, world.admin["id"], world.teacher["token"])
    assert answer.status_code == 401
    assert answer.json()["status"] == "unauthorized"
    assert views(sim, world.admin["id"], "").status_code == 401


def test_an_oauth_tokens_page_views_carry_its_developer_keys_name(sim: Any, world: Any) -> None:
    from .test_simulator_oauth import authorize, code_from, exchange

    key = sim.control(
        "POST", "oauth/developer_keys", {"name": "Roster Sync", "redirect_uri": "http://127.0.0.1/"},
    )
    sim.control("POST", "oauth/approve_as", {"user_id": world.teacher["id"]})
    token = exchange(sim, key, code_from(authorize(sim, key))["code"][0]).json()["access_token"]
    answer = sim.api("GET", "users/self", token)
    listed = views(sim, world.teacher["id"], world.admin["token"]).json()
    [view] = [v for v in listed if v["id"] == answer.headers["X-Request-Context-Id"]]
    assert view["app_name"] == "Roster Sync"
    assert view["http_method"] == "get"


def test_a_bypassing_scripts_page_view_has_its_user_agent(sim: Any, world: Any) -> None:
    made = sim.control("POST", "api_bypass/enrollments", {
        "course_id": world.course["id"], "user_id": world.students[0]["id"],
        "actor_user_id": world.teacher["id"], "user_agent": "bypass-script/1.0",
    })
    [view] = views(sim, world.teacher["id"], world.admin["token"]).json()
    assert view["id"] == made["origin"]["request_context_id"]
    assert view["user_agent"] == "bypass-script/1.0"
    assert view["app_name"] is None


def test_the_account_admins_are_listed_for_admins_only(sim: Any, world: Any) -> None:
    listed = sim.api("GET", "accounts/self/admins", world.admin["token"])
    assert [a["user"]["id"] for a in listed.json()] == [world.admin["id"]]
    assert sim.api("GET", "accounts/self/admins", world.teacher["token"]).status_code == 403
