"""The ledger's actor is the user Canvas acted as, whatever shape the request takes.

Each request is sent through the proxy to the simulator, which reads tokens and parameters as
Rails does (the Bearer header, else `access_token` from the query string over the body; JSON
only for Rails' JSON types; Rack's method override). The ledger's actor must equal the actor
the simulator recorded, or the proxy must refuse the request before anything reaches Canvas.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
import requests

ENROLLMENTS = r"/courses/\d+/enrollments"


def ledger_actor(database, enrollment_id):
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT actor_user_id FROM events WHERE enrollment_id = ? ORDER BY seq", (enrollment_id,)
        ).fetchall()
    return [row[0] for row in rows]


def canvas_actor(world, enrollment_id):
    return world.truth(enrollment_id)["origin"]["actor_user_id"]


def url(proxy, world, query=""):
    return f"{proxy.url}/i/roster-sync/api/v1/courses/{world.course['id']}/enrollments" + (f"?{query}" if query else "")


def form(student):
    return f"enrollment[user_id]={student['id']}&enrollment[type]=StudentEnrollment"


@pytest.fixture
def proxy(sim, make_proxy):
    return make_proxy(sim.url)


def test_a_query_token_beats_a_token_in_a_vnd_api_json_body(world, proxy):
    """Rails never parses an application/vnd.api+json body: Canvas acts as the query's user."""
    student = world.students[0]
    body = {"access_token": world.teacher["token"], "enrollment": {"user_id": student["id"]}}
    response = requests.post(
        url(proxy, world, f"access_token={world.admin['token']}&enrollment[user_id]={student['id']}&enrollment[type]=StudentEnrollment"),
        data=json.dumps(body),
        headers={"Content-Type": "application/vnd.api+json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    made = response.json()["id"]
    assert canvas_actor(world, made) == world.admin["id"]
    assert ledger_actor(proxy.app.config["DATABASE"], made) == [world.admin["id"]]


def test_a_post_body_without_content_type_is_read_as_a_form(world, proxy):
    student = world.students[1]
    response = requests.post(
        url(proxy, world),
        data=f"{form(student)}&access_token={world.teacher['token']}".encode(),
        headers={"Content-Type": ""},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    made = response.json()["id"]
    assert canvas_actor(world, made) == world.teacher["id"]
    assert ledger_actor(proxy.app.config["DATABASE"], made) == [world.teacher["id"]]


@pytest.mark.parametrize(
    ("query", "headers", "body"),
    [
        pytest.param("access_token={admin}", {"Content-Type": "application/x-www-form-urlencoded"}, "{form}&access_token={teacher}", id="query-and-form-body"),
        pytest.param("", {"Authorization": "Bearer {admin}", "Content-Type": "application/x-www-form-urlencoded"}, "{form}&access_token={teacher}", id="header-and-body"),
        pytest.param("access_token={teacher}", {"Authorization": "Bearer {admin}", "Content-Type": "application/x-www-form-urlencoded"}, "{form}", id="header-and-query"),
    ],
)
def test_conflicting_tokens_are_refused_before_canvas(world, sim, proxy, query, headers, body):
    values = {"admin": world.admin["token"], "teacher": world.teacher["token"], "form": form(world.students[2])}
    response = requests.post(
        url(proxy, world, query.format(**values)),
        data=body.format(**values).encode(),
        headers={name: value.format(**values) for name, value in headers.items()},
        timeout=10,
    )
    assert response.status_code == 400
    assert "different access tokens" in response.json()["errors"][0]["message"]
    assert sim.requests_log(ENROLLMENTS) == []


@pytest.mark.parametrize("named", ["Authorization", "Content-Type", "Content-Length"])
def test_connection_naming_a_deciding_header_is_refused(world, sim, proxy, named):
    """`Connection: Authorization` would make the proxy drop the header it took the actor from."""
    response = requests.post(
        url(proxy, world, f"access_token={world.teacher['token']}"),
        data=form(world.students[3]),
        headers={
            "Authorization": f"Bearer {world.admin['token']}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Connection": f"keep-alive, {named}",
        },
        timeout=10,
    )
    assert response.status_code == 400
    assert named.lower() in response.json()["errors"][0]["message"]
    assert sim.requests_log(ENROLLMENTS) == []


def enrolled(world, proxy, student):
    response = requests.post(
        url(proxy, world),
        data={"enrollment[user_id]": student["id"], "enrollment[type]": "StudentEnrollment"},
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


@pytest.mark.parametrize(
    ("body", "header", "expected_state"),
    [
        pytest.param("_method=DELETE&task=delete", None, "deleted", id="form-method"),
        pytest.param("_method=DELETE&task=conclude", "PUT", "completed", id="form-method-before-header"),
        pytest.param("task=inactivate", "DELETE", "inactive", id="header"),
    ],
)
def test_method_override_is_read_as_rack_reads_it(world, sim, proxy, body, header, expected_state):
    made = enrolled(world, proxy, world.students[4])
    headers = {"Authorization": f"Bearer {world.teacher['token']}", "Content-Type": "application/x-www-form-urlencoded"}
    if header:
        headers["X-HTTP-Method-Override"] = header
    response = requests.post(
        f"{proxy.url}/i/roster-sync/api/v1/courses/{world.course['id']}/enrollments/{made}",
        data=body,
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    truth = world.truth(made)
    assert truth["enrollment_state"] == expected_state
    with sqlite3.connect(proxy.app.config["DATABASE"]) as conn:
        rows = conn.execute("SELECT action, actor_user_id FROM events WHERE enrollment_id = ? ORDER BY seq", (made,)).fetchall()
    change = truth["history"][-1]
    assert rows[-1][1] == change["actor_user_id"] == world.teacher["id"]
    assert len(rows) == 2


def test_json_nested_a_thousand_deep_is_a_400_not_a_500(world, sim, proxy):
    nested = "[" * 1000 + "]" * 1000
    response = requests.post(
        url(proxy, world),
        data=f'{{"enrollment": {{"user_id": {world.students[5]["id"]}}}, "x": {nested}}}',
        headers={"Authorization": f"Bearer {world.admin['token']}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert "nested deeper" in response.json()["errors"][0]["message"]
    assert sim.requests_log(ENROLLMENTS) == []
