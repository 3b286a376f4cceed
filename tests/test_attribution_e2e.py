"""Issue 14 over real HTTP: manual rows attributed from Canvas page views, judged against the
simulator's ground truth (who really made each row, and how), never the proxy's own output."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from canvasapi import Canvas
from click.testing import CliRunner

from ledger_proxy.cli import main

BYPASS_CLIENT = "bypass-script/1.0"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"


def attributed(proxy: Any, course_id: int, token: str, **params: Any) -> dict[str, Any]:
    answer = requests.get(
        f"{proxy.url}/ledger/v1/courses/{course_id}/enrollments",
        params={"attribute": "page_views", **params},
        headers={"Authorization": f"Bearer {token}"}, timeout=60,
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def plain(proxy: Any, course_id: int, token: str) -> dict[str, Any]:
    answer = requests.get(
        f"{proxy.url}/ledger/v1/courses/{course_id}/enrollments",
        headers={"Authorization": f"Bearer {token}"}, timeout=60,
    )
    result: dict[str, Any] = answer.json()
    return result


def row_of(result: dict[str, Any], enrollment_id: int) -> dict[str, Any]:
    [row] = [item for item in result["enrollments"] if item["id"] == enrollment_id]
    return row


def expected_via(truth: dict[str, Any]) -> str:
    """How the row was really made, from the simulator's origin."""
    origin = truth["origin"]
    if origin["actor_user_id"] == truth["user_id"]:
        return "self"
    return "ui" if origin["channel"] == "ui" else "api"


def teacher_adds(sim: Any, course_id: int, user_id: int, actor_user_id: int) -> dict[str, Any]:
    """Someone adds a user in Canvas's web UI (People, +People), not through the proxy."""
    made: dict[str, Any] = sim.control("POST", "ui/enrollments", {
        "course_id": course_id, "user_id": user_id, "actor_user_id": actor_user_id,
    })
    return made


def at(sim: Any, moment: str) -> None:
    sim.control("POST", "clock", {"now": moment})


@pytest.fixture
def story(sim: Any, world: Any, make_proxy: Any) -> dict[str, Any]:
    """The seed's story and its neighbours, each at its own minute, with no Live Events (on
    a clock ahead of the proxy's, so the integration's row is not older than the ledger)."""
    proxy = make_proxy(
        sim.url, PAGE_VIEWS_TOKEN=world.admin["token"], PAGE_VIEWS_ALLOWANCE_SECONDS=5,
        SESSION_COOKIE_SECURE=False,  # the dashboard over plain http
    )
    course_id = world.course["id"]
    t1, t2, u, selfish, s3, s4 = world.students[:6]
    canvas = Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"])
    at(sim, "2027-03-02T09:00:00Z")
    # The integration enrolls T1 through the proxy; two seconds later T1 adds T2 in the UI.
    canvas.get_course(course_id).enroll_user(
        t1["id"], enrollment={"type": "TeacherEnrollment", "enrollment_state": "active"},
    )
    at(sim, "2027-03-02T09:00:02Z")
    ui_add = sim.control("POST", "ui/enrollments", {
        "course_id": course_id, "user_id": t2["id"], "actor_user_id": t1["id"],
        "type": "TaEnrollment",
    })
    # A script with U's own token, bypassing the proxy (U teaches the course).
    at(sim, "2027-03-02T09:10:00Z")
    sim.control("POST", "ui/enrollments", {
        "course_id": course_id, "user_id": u["id"], "actor_user_id": world.admin["id"],
        "type": "TeacherEnrollment", "enrollment_state": "active",
    })
    at(sim, "2027-03-02T09:20:00Z")
    script = sim.control("POST", "api_bypass/enrollments", {
        "course_id": course_id, "user_id": world.students[6]["id"], "actor_user_id": u["id"],
        "user_agent": BYPASS_CLIENT,
    })
    # A student enrolls themselves.
    at(sim, "2027-03-02T09:30:00Z")
    own = sim.control("POST", "api_bypass/enrollments", {
        "course_id": course_id, "user_id": selfish["id"], "actor_user_id": selfish["id"],
        "user_agent": BROWSER,
    })
    # Two teachers, each adding someone in the same second.
    at(sim, "2027-03-02T09:40:00Z")
    both = [
        sim.control("POST", "ui/enrollments", {
            "course_id": course_id, "user_id": student["id"], "actor_user_id": actor["id"],
        })
        for student, actor in ((s3, t1), (s4, world.teacher))
    ]
    at(sim, "2027-03-02T10:00:00Z")
    return {
        "proxy": proxy, "course_id": course_id, "ui_add": ui_add, "script": script,
        "own": own, "both": both,
    }


def test_each_manual_row_names_who_really_made_it_and_how(sim: Any, world: Any, story: Any) -> None:
    result = attributed(story["proxy"], story["course_id"], world.admin["token"])
    assert result["attribution"]["status"] == "done"
    for made in (story["ui_add"], story["script"], story["own"]):
        truth = world.truth(made["id"])
        row = row_of(result, made["id"])
        assert row["provenance"] == "manual"
        actor = row["actor"]
        assert actor["source"] == "page_views"
        assert actor["user_id"] == truth["origin"]["actor_user_id"]
        assert actor["via"] == expected_via(truth)
        assert actor["confidence"] == "probable"
        assert actor["request_id"] == truth["origin"]["request_context_id"]
    t2 = row_of(result, story["ui_add"]["id"])
    assert t2["actor"]["via"] == "ui"
    assert t2["actor"]["name"] == world.students[0]["name"]


def test_two_people_in_the_same_second_are_ambiguous_and_nobody_is_named(
    world: Any, story: Any,
) -> None:
    result = attributed(story["proxy"], story["course_id"], world.admin["token"])
    for made in story["both"]:
        row = row_of(result, made["id"])
        actor = row["actor"]
        assert actor["confidence"] == "ambiguous"
        assert actor["user_id"] is None and actor["name"] is None
        truth = world.truth(made["id"])
        listed = {c["user_id"] for c in actor["candidates"]}
        assert truth["origin"]["actor_user_id"] in listed
        assert listed == {world.students[0]["id"], world.teacher["id"]}
        assert world.students[0]["name"] not in row["reason"]
        assert world.teacher["name"] not in row["reason"]


def test_the_integrations_rows_keep_their_verdict(world: Any, story: Any) -> None:
    result = attributed(story["proxy"], story["course_id"], world.admin["token"])
    integration = [r for r in result["enrollments"] if r["provenance"] == "integration"]
    assert integration and all(
        (r["actor"] or {}).get("source") != "page_views" for r in integration
    )


def test_asking_again_costs_nothing_and_refresh_asks_canvas(world: Any, story: Any) -> None:
    first = attributed(story["proxy"], story["course_id"], world.admin["token"])
    assert first["attribution"]["canvas_requests"] > 0
    again = attributed(story["proxy"], story["course_id"], world.admin["token"])
    assert again["attribution"]["canvas_requests"] == 0
    assert again["attribution"]["from_ledger"] == again["attribution"]["rows"]
    assert again["enrollments"] == first["enrollments"]
    fresh = attributed(story["proxy"], story["course_id"], world.admin["token"], refresh="true")
    assert fresh["attribution"]["canvas_requests"] > 0
    assert fresh["enrollments"] == first["enrollments"]


def test_a_candidates_windows_are_one_query(world: Any, story: Any, sim: Any) -> None:
    sim.control("DELETE", "requests")
    result = attributed(story["proxy"], story["course_id"], world.admin["token"])
    reads = [e for e in sim.requests_log() if e["path"].endswith("/page_views")]
    by_user: dict[str, int] = {}
    for entry in reads:
        if "2027-03-02" in entry["query_string"]:
            by_user[entry["path"]] = by_user.get(entry["path"], 0) + 1
    # The story's rows lie within one hour: each candidate is asked once for all of them.
    assert by_user and max(by_user.values()) == 1
    admins = [e for e in sim.requests_log() if e["path"].endswith("/accounts/self/admins")]
    assert result["attribution"]["canvas_requests"] == len(reads) + len(admins)


def test_a_reader_token_without_the_right_says_so_and_changes_no_verdict(
    sim: Any, world: Any, make_proxy: Any,
) -> None:
    proxy = make_proxy(sim.url, PAGE_VIEWS_TOKEN=world.teacher["token"])
    teacher_adds(sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    result = attributed(proxy, world.course["id"], world.admin["token"])
    assert result["attribution"]["status"] == "unavailable"
    assert "view statistics" in result["attribution"]["message"]
    before = plain(proxy, world.course["id"], world.admin["token"])
    assert result["enrollments"] == before["enrollments"]
    from ledger_proxy.web import schemas

    schemas.LookupResult().load(result)  # the documented shape, unknown fields refused


def test_throttled_reads_back_off_and_still_answer(sim: Any, world: Any, story: Any) -> None:
    sim.set_faults({"action": "throttle", "path": "page_views", "status": 403, "times": 2})
    result = attributed(story["proxy"], story["course_id"], world.admin["token"])
    assert result["attribution"]["throttled"] == 2
    row = row_of(result, story["ui_add"]["id"])
    assert row["actor"]["user_id"] == world.truth(story["ui_add"]["id"])["origin"]["actor_user_id"]


def test_a_low_rate_limit_remaining_slows_the_reads(sim: Any, world: Any, make_proxy: Any) -> None:
    proxy = make_proxy(sim.url, PAGE_VIEWS_TOKEN=world.admin["token"], PAGE_VIEWS_CONCURRENCY=1)
    teacher_adds(sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    sim.settings(rate_limit_remaining=10.0)
    report = attributed(proxy, world.course["id"], world.admin["token"])["attribution"]
    assert report["status"] == "done"
    assert report["waited_seconds"] >= 0.5 * (report["canvas_requests"] - 1)


def test_an_enrollment_made_before_the_ledger_existed_is_attributed(
    sim: Any, world: Any, make_proxy: Any,
) -> None:
    at(sim, "2025-01-09T15:02:44Z")
    made = teacher_adds(sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    sim.control("POST", "clock", {"now": None})
    proxy = make_proxy(sim.url, PAGE_VIEWS_TOKEN=world.admin["token"])
    row = row_of(attributed(proxy, world.course["id"], world.admin["token"]), made["id"])
    assert row["predates_ledger"] is True
    assert row["actor"]["user_id"] == world.truth(made["id"])["origin"]["actor_user_id"]
    assert row["actor"]["via"] == "ui"


def test_the_cli_names_the_same_people_and_counts_its_requests(
    sim: Any, world: Any, story: Any, monkeypatch: Any,
) -> None:
    monkeypatch.setenv("LEDGER_PROXY_CANVAS_URL", sim.url)
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", story["proxy"].app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "test-token-hash-key")
    monkeypatch.setenv("LEDGER_PROXY_PAGE_VIEWS_TOKEN", world.admin["token"])
    done = CliRunner().invoke(
        main, ["attribute", str(story["course_id"]), "--format", "json",
               "--token", world.admin["token"]], catch_exceptions=False,
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    truth = world.truth(story["ui_add"]["id"])
    assert row_of(result, story["ui_add"]["id"])["actor"]["user_id"] == truth["origin"]["actor_user_id"]
    assert "Canvas requests" in done.stderr
    table = CliRunner().invoke(
        main, ["attribute", str(story["course_id"]), "--token", world.admin["token"]],
    )
    assert table.exit_code == 0, table.output
    assert f"enrollment {story['ui_add']['id']}" in table.stdout
    assert "0 Canvas requests" in table.stderr  # answered from the ledger


def test_attributed_answers_match_the_openapi_document(sim: Any, world: Any, story: Any) -> None:
    from .test_openapi import check

    document = requests.get(f"{story['proxy'].url}/ledger/v1/openapi.json", timeout=10).json()
    path = "/ledger/v1/courses/{course_id}/enrollments"
    url = f"{story['proxy'].url}/ledger/v1/courses/{story['course_id']}/enrollments"
    headers = {"Authorization": f"Bearer {world.admin['token']}"}
    answer = requests.get(url, params={"attribute": "page_views"}, headers=headers, timeout=30)
    check(document, path, 200, answer)
    from ledger_proxy.web import schemas

    schemas.LookupResult().load(answer.json())  # the marshmallow schema agrees (unknown: RAISE)
    confidences = {(r["actor"] or {}).get("confidence") for r in answer.json()["enrollments"]}
    assert {"probable", "ambiguous"} <= confidences
    section = f"{story['proxy'].url}/ledger/v1/sections/{world.section_a}/enrollments"
    check(document, "/ledger/v1/sections/{section_id}/enrollments", 200, requests.get(
        section, params={"attribute": "page_views"}, headers=headers, timeout=30,
    ))
    check(document, path, 400, requests.get(
        url, params={"attribute": "guess"}, headers=headers, timeout=30,
    ))


def test_nothing_is_read_for_a_course_the_caller_cannot_list(
    sim: Any, world: Any, make_proxy: Any,
) -> None:
    proxy = make_proxy(sim.url, PAGE_VIEWS_TOKEN=world.admin["token"])
    other = sim.add_course("Chemistry 101")
    teacher_adds(sim, other["id"], world.students[0]["id"], world.admin["id"])
    sim.control("DELETE", "requests")
    answer = requests.get(
        f"{proxy.url}/ledger/v1/courses/{other['id']}/enrollments",
        params={"attribute": "page_views"},
        headers={"Authorization": f"Bearer {world.teacher['token']}"}, timeout=30,
    )
    assert answer.status_code in (401, 403, 404)
    assert not [e for e in sim.requests_log() if e["path"].endswith("/page_views")]


def test_the_dashboard_button_asks_page_views_and_shows_who(world: Any, story: Any) -> None:
    from .dashboard_support import browser_session, sign_in_with_token

    session = browser_session()
    sign_in_with_token(session, story["proxy"], world.admin["token"])
    page_url = f"{story['proxy'].url}/ledger/courses/{story['course_id']}"
    plain_page = session.get(page_url, timeout=30)
    assert 'name="attribute" value="page_views"' in plain_page.text
    assert "Made by (Canvas page views" not in plain_page.text  # never without the button
    asked = session.get(page_url, params={"attribute": "page_views"}, timeout=30)
    assert asked.status_code == 200
    truth = world.truth(story["ui_add"]["id"])
    assert "Made by (Canvas page views, probable)" in asked.text
    assert f"user {truth['origin']['actor_user_id']}, via ui" in asked.text
    assert "Made by (Canvas page views, ambiguous)" in asked.text
    assert "Canvas requests" in asked.text


def test_a_match_on_a_later_page_of_page_views_is_found(
    sim: Any, world: Any, make_proxy: Any,
) -> None:
    proxy = make_proxy(sim.url, PAGE_VIEWS_TOKEN=world.admin["token"])
    at(sim, "2027-04-01T08:00:00Z")
    made = teacher_adds(sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    for _ in range(105):  # the teacher browses on: the add is on the second page, newest first
        sim.api("GET", "users/self", world.teacher["token"])
    sim.control("DELETE", "requests")
    row = row_of(attributed(proxy, world.course["id"], world.admin["token"]), made["id"])
    assert row["actor"]["user_id"] == world.truth(made["id"])["origin"]["actor_user_id"]
    teacher_reads = [
        e for e in sim.requests_log()
        if e["path"] == f"/api/v1/users/{world.teacher['id']}/page_views"
        and "2027-04-01" in e["query_string"]
    ]
    assert len(teacher_reads) == 2  # one window, two pages



def test_canvas_throttling_without_end_gives_up_with_a_message_and_no_verdict_changes(
    sim: Any, world: Any, make_proxy: Any,
) -> None:
    from datetime import timedelta

    from ledger_proxy.core import attribution, ledger, lookup
    from ledger_proxy.upstream.canvas import CanvasClient

    proxy = make_proxy(sim.url)
    made = teacher_adds(sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    sim.set_faults({"action": "throttle", "path": "page_views", "status": 403})
    db = ledger.connect(proxy.app.config["DATABASE"])
    try:
        result = attribution.attribute(
            db, CanvasClient(sim.url, 5, 30), world.admin["token"],
            lookup.Query("courses", str(world.course["id"])),
            attribution.Options(
                reader=world.admin["token"], admins=[], allowance=timedelta(seconds=5),
                concurrency=2, backoff=0.01,
            ),
            sis_reader=None, lookup_allowance=timedelta(seconds=120),
        )
        assert result["attribution"]["status"] == "unavailable"
        assert "throttling" in result["attribution"]["message"]
        assert row_of(result, made["id"])["actor"] is None
        assert ledger.page_view_attributions(db, [made["id"]]) == {}  # nothing stored
    finally:
        db.close()


def test_a_canvas_error_on_page_views_leaves_the_verdicts_as_they_were(
    sim: Any, world: Any, make_proxy: Any,
) -> None:
    proxy = make_proxy(sim.url, PAGE_VIEWS_TOKEN=world.admin["token"])
    teacher_adds(sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    sim.set_faults({"action": "error", "path": "page_views", "status": 500})
    result = attributed(proxy, world.course["id"], world.admin["token"])
    assert result["attribution"]["status"] == "unavailable"
    assert "Canvas answered 500" in result["attribution"]["message"]
    assert result["enrollments"] == plain(proxy, world.course["id"], world.admin["token"])["enrollments"]


def test_an_admin_masquerading_is_named_beside_the_user_they_acted_as(
    sim: Any, world: Any, make_proxy: Any,
) -> None:
    proxy = make_proxy(sim.url, PAGE_VIEWS_TOKEN=world.admin["token"])
    student = world.students[0]
    at(sim, "2027-05-01T12:00:00Z")  # apart from the world's own UI add, made by that admin
    answer = sim.api(
        "POST", f"courses/{world.course['id']}/enrollments", world.admin["token"],
        data={"enrollment[user_id]": student["id"], "as_user_id": world.teacher["id"]},
        headers={"User-Agent": BYPASS_CLIENT},
    )
    assert answer.status_code == 200, answer.text
    truth = world.truth(answer.json()["id"])
    row = row_of(attributed(proxy, world.course["id"], world.admin["token"]), truth["id"])
    assert row["actor"]["user_id"] == truth["origin"]["actor_user_id"] == world.teacher["id"]
    assert row["actor"]["real_user_id"] == truth["origin"]["real_user_id"] == world.admin["id"]
    assert row["actor"]["via"] == "api"
    assert row["actor"]["request_id"] == answer.headers["X-Request-Context-Id"]


def test_an_admin_nobody_configured_is_found_with_the_reader_token(
    sim: Any, world: Any, make_proxy: Any,
) -> None:
    proxy = make_proxy(sim.url, PAGE_VIEWS_TOKEN=world.admin["token"])
    helpdesk = sim.add_user("Hal Helpdesk", admin=True)
    at(sim, "2027-05-01T12:00:00Z")  # apart from the world's own UI add, made by an admin
    made = teacher_adds(sim, world.course["id"], world.students[0]["id"], helpdesk["id"])
    row = row_of(attributed(proxy, world.course["id"], world.admin["token"]), made["id"])
    assert row["actor"]["user_id"] == world.truth(made["id"])["origin"]["actor_user_id"]
    assert row["actor"]["confidence"] == "probable"


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    import io

    from ledger_proxy.audit_output import QueryProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = QueryProgress(stream)
        bar.update(0, 4)
        bar.update(2, 4)
        bar.done()
    assert terminal.getvalue().endswith(f"\r[{'#' * 15}{' ' * 15}] 2/4 page-views queries\n")
    assert pipe.getvalue() == ""
