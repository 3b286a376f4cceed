"""What the ledger records for each kind of answer, against a scripted upstream."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from .helpers import ledger_rows as read_ledger
from .upstream import Reply

TOKEN = "secret-token-4f1c9a"


def canvas_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def enrollment(**overrides):
    now = canvas_time(datetime.now(UTC))
    row = {
        "id": 8812, "user_id": 4031, "course_id": 517, "course_section_id": 602,
        "type": "StudentEnrollment", "role": "StudentEnrollment", "role_id": 3,
        "enrollment_state": "invited", "created_at": now, "updated_at": now,
    }
    row.update(overrides)
    return row


def scripted(app, answers, date_offset=timedelta(0)):
    """users/self answers user 17; other paths answer from `answers` (path -> (status, body))."""

    def reply(seen):
        path = seen.raw_target.split("?")[0]
        if path == "/api/v1/users/self":
            return Reply(body=json.dumps({"id": 17, "name": "Roster Sync"}).encode())
        status, body = answers[path]
        date = format_datetime(datetime.now(UTC) + date_offset, usegmt=True)
        return Reply(
            status=status,
            headers=[("Content-Type", "application/json"), ("X-Request-Context-Id", f"ctx-{len(app.seen)}"), ("Date", date)],
            body=json.dumps(body).encode(),
        )

    app.reply = reply


def ledger_rows(proxy, table):
    return read_ledger(proxy, f"SELECT * FROM {table}")


def post_enrollment(proxy, path="/i/roster-sync/api/v1/courses/517/enrollments"):
    return requests.post(
        proxy.url + path,
        data={"enrollment[user_id]": "4031", "enrollment[type]": "StudentEnrollment"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


def test_a_new_enrollment_is_recorded_as_created_with_its_evidence(upstream, make_proxy):
    app, server = upstream
    scripted(app, {"/api/v1/courses/517/enrollments": ("200 OK", enrollment())})
    proxy = make_proxy(server.url)
    response = post_enrollment(proxy)
    assert response.status_code == 200
    [event] = ledger_rows(proxy, "events")
    assert event["action"] == "created"
    assert (event["enrollment_id"], event["course_id"], event["course_section_id"], event["user_id"]) == (8812, 517, 602, 4031)
    assert (event["integration"], event["actor_user_id"]) == ("roster-sync", 17)
    assert event["canvas_request_id"] == response.headers["X-Request-Context-Id"]
    [req] = ledger_rows(proxy, "requests")
    assert req["id"] == response.headers["X-Ledger-Request-Id"] == event["request_id"]
    assert (req["status"], req["http_status"], req["kind"]) == ("completed", 200, "enrollment_create")
    assert json.loads(req["params"]) == {"enrollment[type]": "StudentEnrollment", "enrollment[user_id]": "4031"}
    [view] = ledger_rows(proxy, "enrollments")
    assert (view["origin_action"], view["origin_integration"], view["enrollment_state"]) == ("created", "roster-sync", "invited")


def test_an_old_row_returned_by_a_create_is_adopted(upstream, make_proxy):
    app, server = upstream
    old = canvas_time(datetime.now(UTC) - timedelta(days=3))
    scripted(app, {"/api/v1/courses/517/enrollments": ("200 OK", enrollment(created_at=old))})
    proxy = make_proxy(server.url)
    post_enrollment(proxy)
    [event] = ledger_rows(proxy, "events")
    assert event["action"] == "adopted"


def test_adoption_is_judged_on_canvas_clock_not_the_proxy_clock(upstream, make_proxy):
    """Canvas's clock runs 10 minutes behind ours: its fresh row is still 'created'."""
    app, server = upstream
    behind = timedelta(minutes=-10)
    scripted(
        app,
        {"/api/v1/courses/517/enrollments": ("200 OK", enrollment(created_at=canvas_time(datetime.now(UTC) + behind)))},
        date_offset=behind,
    )
    proxy = make_proxy(server.url)
    post_enrollment(proxy)
    assert [e["action"] for e in ledger_rows(proxy, "events")] == ["created"]


def test_a_row_the_ledger_knows_is_adopted_on_a_second_create(upstream, make_proxy):
    app, server = upstream
    scripted(app, {"/api/v1/courses/517/enrollments": ("200 OK", enrollment())})
    proxy = make_proxy(server.url)
    post_enrollment(proxy)
    post_enrollment(proxy)
    assert [e["action"] for e in ledger_rows(proxy, "events")] == ["created", "adopted"]
    [view] = ledger_rows(proxy, "enrollments")
    assert (view["origin_action"], view["last_action"]) == ("created", "adopted")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param("400 Bad Request", "failed", id="400"),
        pytest.param("401 Unauthorized", "failed", id="401"),
        pytest.param("403 Forbidden", "failed", id="403"),
        pytest.param("404 Not Found", "failed", id="404"),
        pytest.param("500 Internal Server Error", "unknown", id="500-may-have-acted"),
        pytest.param("503 Service Unavailable", "unknown", id="503-may-have-acted"),
    ],
)
def test_error_answers_settle_the_intent_without_events(upstream, make_proxy, status, expected):
    app, server = upstream
    scripted(app, {"/api/v1/courses/517/enrollments": (status, {"errors": [{"message": "no"}]})})
    proxy = make_proxy(server.url)
    response = post_enrollment(proxy)
    assert response.status_code == int(status.split()[0])
    assert ledger_rows(proxy, "events") == []
    [req] = ledger_rows(proxy, "requests")
    assert (req["status"], req["http_status"]) == (expected, int(status.split()[0]))


@pytest.mark.parametrize(
    ("method", "path", "body", "action", "state"),
    [
        pytest.param("DELETE", "/api/v1/courses/517/enrollments/8812", {"task": "conclude"}, "concluded", "completed", id="conclude"),
        pytest.param("DELETE", "/api/v1/courses/517/enrollments/8812", {"task": "delete"}, "deleted", "deleted", id="delete"),
        pytest.param("DELETE", "/api/v1/courses/517/enrollments/8812", {"task": "deactivate"}, "deactivated", "inactive", id="deactivate"),
        pytest.param("PUT", "/api/v1/courses/517/enrollments/8812/reactivate", None, "reactivated", "active", id="reactivate"),
    ],
)
def test_changes_are_recorded_from_the_answer(upstream, make_proxy, method, path, body, action, state):
    app, server = upstream
    scripted(app, {path: ("200 OK", enrollment(enrollment_state=state))})
    proxy = make_proxy(server.url)
    requests.request(method, proxy.url + path, data=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    [event] = ledger_rows(proxy, "events")
    assert (event["action"], event["enrollment_state"], event["enrollment_id"]) == (action, state, 8812)


def test_accept_is_recorded_against_the_known_enrollment(upstream, make_proxy):
    app, server = upstream
    scripted(
        app,
        {
            "/api/v1/courses/517/enrollments": ("200 OK", enrollment()),
            "/api/v1/courses/517/enrollments/8812/accept": ("200 OK", {"success": True}),
        },
    )
    proxy = make_proxy(server.url)
    post_enrollment(proxy)
    requests.post(proxy.url + "/api/v1/courses/517/enrollments/8812/accept", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    events = ledger_rows(proxy, "events")
    assert [(e["action"], e["enrollment_state"], e["user_id"]) for e in events] == [("created", "invited", 4031), ("accepted", "active", 4031)]


def test_a_post_overridden_to_delete_is_recorded(upstream, make_proxy):
    app, server = upstream
    scripted(app, {"/api/v1/courses/517/enrollments/8812": ("200 OK", enrollment(enrollment_state="deleted"))})
    proxy = make_proxy(server.url)
    requests.post(
        proxy.url + "/api/v1/courses/517/enrollments/8812",
        data={"_method": "DELETE", "task": "delete"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert [e["action"] for e in ledger_rows(proxy, "events")] == ["deleted"]


def test_sis_import_is_recorded_as_a_job_with_its_submitter(upstream, make_proxy):
    app, server = upstream
    scripted(app, {"/api/v1/accounts/1/sis_imports": ("200 OK", {"id": 99, "workflow_state": "created"})})
    proxy = make_proxy(server.url)
    csv = b"course_id,user_id,role,section_id,status\nBIO-101,s1,student,,active\n"
    response = requests.post(
        proxy.url + "/i/sis-feed/api/v1/accounts/1/sis_imports",
        files={"attachment": ("enrollments.csv", csv, "text/csv")},
        data={"import_type": "instructure_csv"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.json()["id"] == 99
    assert csv in app.seen[-1].body
    [job] = ledger_rows(proxy, "async_jobs")
    assert (job["kind"], job["job_id"], job["integration"], job["actor_user_id"]) == ("sis_import", 99, "sis-feed", 17)


def test_token_in_query_is_used_for_the_actor_and_never_stored(upstream, make_proxy):
    app, server = upstream
    scripted(app, {"/api/v1/courses/517/enrollments": ("200 OK", enrollment())})
    proxy = make_proxy(server.url)
    requests.post(
        f"{proxy.url}/api/v1/courses/517/enrollments?access_token={TOKEN}",
        data={"enrollment[user_id]": "4031"},
        timeout=10,
    )
    assert [e["actor_user_id"] for e in ledger_rows(proxy, "events")] == [17]
    assert f"access_token={TOKEN}" in app.seen[-1].raw_target  # forwarded as sent
    db_bytes = b"".join(
        p.read_bytes() for p in __import__("pathlib").Path(proxy.app.config["DATABASE"]).parent.glob("ledger.sqlite3*")
    )
    assert TOKEN.encode() not in db_bytes


def test_a_malformed_enrollment_body_is_refused_before_canvas(upstream, make_proxy):
    app, server = upstream
    proxy = make_proxy(server.url)
    response = requests.post(
        proxy.url + "/api/v1/courses/517/enrollments",
        data=b'{"enrollment": {"user_id": ',
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 400
    assert "invalid JSON body" in response.json()["errors"][0]["message"]
    assert app.seen == []
    assert ledger_rows(proxy, "requests") == []


def test_an_enrollment_body_over_the_parsed_maximum_is_413(upstream, make_proxy):
    app, server = upstream
    proxy = make_proxy(server.url, MAX_PARSED_BODY_BYTES=100)
    response = requests.post(
        proxy.url + "/api/v1/courses/517/enrollments", data={"enrollment[user_id]": "1" * 200}, timeout=10
    )
    assert response.status_code == 413
    assert app.seen == []


def test_events_are_append_only(upstream, make_proxy):
    app, server = upstream
    scripted(app, {"/api/v1/courses/517/enrollments": ("200 OK", enrollment())})
    proxy = make_proxy(server.url)
    post_enrollment(proxy)
    with sqlite3.connect(proxy.app.config["DATABASE"]) as conn:
        for statement in ("UPDATE events SET action = 'x'", "DELETE FROM events"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)


def test_canvas_stalling_in_the_middle_of_its_answer_is_a_504_and_unknown(make_proxy):
    """Headers came, then the body stalled past the read timeout: Canvas may have acted."""
    import time

    from ledger_proxy.devserver import BackgroundServer

    def stalling(environ, start_response):
        if environ["PATH_INFO"] == "/api/v1/users/self":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"id": 17}']
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "400")])

        def body():
            yield b'{"id": 8812, '
            time.sleep(3.0)
            yield b" " * 386

        return body()

    with BackgroundServer(stalling) as server:
        proxy = make_proxy(server.url, READ_TIMEOUT=1.0)
        response = post_enrollment(proxy)
        assert response.status_code == 504
        assert "did not finish answering in time" in response.json()["errors"][0]["message"]
        [req] = ledger_rows(proxy, "requests")
        assert (req["status"], req["http_status"]) == ("unknown", 200)
