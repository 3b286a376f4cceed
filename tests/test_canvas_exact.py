"""Whatever Canvas would accept reaches it as the client sent it (issue 10).

Judged on the simulator's raw request log: the request line's path and query string exactly as
Canvas received them.
"""

from __future__ import annotations

import json

import pytest

from .helpers import raw_request


@pytest.fixture
def proxy(sim, make_proxy):
    return make_proxy(sim.url)


@pytest.mark.parametrize(
    "query",
    [
        "state[]=active&state[]=invited",
        "search_term=%7e%7E",
        "note=100%&user_id[]=%32%36%37",
        "x=%c0%ae&y=%zz",
        "a=1;b=2&c=%2f%2F",
        "sis_user_id[]=" + "&sis_user_id[]=".join(f"S-{n:04d}" for n in range(40)),
    ],
)
def test_the_query_string_reaches_canvas_byte_for_byte(world, sim, proxy, query):
    status, _, answer = raw_request(
        proxy.port,
        (
            f"GET /api/v1/courses/{world.course['id']}/enrollments?{query} HTTP/1.1\r\n"
            f"Host: proxy.test\r\nAuthorization: Bearer {world.admin['token']}\r\nConnection: close\r\n\r\n"
        ).encode(),
    )
    assert status == 200, answer
    [seen] = sim.requests_log(r"/enrollments$")
    assert seen["query_string"] == query
    assert status == 200


def test_a_bare_percent_does_not_change_what_canvas_answers(world, sim, proxy):
    """Direct to Canvas and through the proxy, the same bytes give the same answer."""
    student = world.students[0]
    sim.control("POST", "ui/enrollments", {"course_id": world.course["id"], "user_id": student["id"],
                                          "type": "StudentEnrollment", "actor_user_id": world.teacher["id"]})
    target = f"/api/v1/courses/{world.course['id']}/enrollments?note=100%&user_id=%{ord(str(student['id'])[0]):x}" + str(student["id"])[1:]
    request = (f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {world.admin['token']}\r\n"
               "Connection: close\r\n\r\n").encode()
    direct = raw_request(int(sim.url.rsplit(":", 1)[1]), request)
    proxied = raw_request(proxy.port, request)
    assert direct[0] == proxied[0] == 200
    ids = [(row["id"], row["user_id"]) for row in json.loads(direct[2])]
    assert [row["user_id"] for row in json.loads(direct[2])] == [student["id"]]
    assert [(row["id"], row["user_id"]) for row in json.loads(proxied[2])] == ids


@pytest.mark.parametrize("base", ["{proxy}/", "{proxy}/i/roster-sync/", "{proxy}//i/roster-sync//"])
def test_a_base_url_ending_in_a_slash_is_served_and_recorded(world, sim, proxy, base):
    """A client whose base URL ends in a slash sends `//api/v1/...`: Canvas's router squeezes
    repeated slashes, and so does the proxy, before routing and forwarding."""
    import sqlite3

    import requests

    root = base.format(proxy=proxy.url)
    student = world.students[1]
    response = requests.post(
        f"{root}/api/v1/courses/{world.course['id']}/enrollments",
        data={"enrollment[user_id]": student["id"], "enrollment[type]": "StudentEnrollment"},
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    made = response.json()["id"]
    [seen] = sim.requests_log(r"/enrollments$")
    assert seen["path"] == f"/api/v1/courses/{world.course['id']}/enrollments"
    assert world.truth(made)["origin"]["channel"] == "api"
    with sqlite3.connect(proxy.app.config["DATABASE"]) as conn:
        rows = conn.execute("SELECT action, integration FROM events WHERE enrollment_id = ?", (made,)).fetchall()
    expected = None if base == "{proxy}/" else "roster-sync"
    assert rows == [("created", expected)]
    listing = requests.get(
        f"{root}/api/v1/courses/{world.course['id']}/enrollments?per_page=1",
        headers={"Authorization": f"Bearer {world.admin['token']}"},
        timeout=10,
    )
    assert listing.status_code == 200
    assert listing.links["next"]["url"].startswith(proxy.url)  # pagination stays on the proxy
