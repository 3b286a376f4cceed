"""The simulator emits the Live Events Canvas would, signed, for every path it models (issue 13).

Each test turns emission on towards a tiny receiver it starts, acts through the simulator,
waits with `POST /_sim/live_events/flush` (no sleeping), verifies every received JWT against
the simulator's JWKS and reads it with the normalizer the proxy uses.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from ledger_proxy.core.live_events import LiveEvent, derive_via, parse_event
from ledger_proxy.devserver import BackgroundServer
from ledger_proxy.simulator.live_events import DEFAULT_DEVELOPER_KEY_ID
from ledger_proxy.upstream.jwks import LiveEventsVerifier

BROWSER = "Mozilla/5.0 (test browser)"


class Receiver:
    """A subscriber endpoint: keeps every body; answers the queued statuses, then 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            self.bodies.append(request.get_data())
            status = self.statuses.pop(0) if self.statuses else 200
        return Response("", status=status)(environ, start_response)


@pytest.fixture
def receiver():
    app = Receiver()
    with BackgroundServer(app) as server:
        app.url = f"{server.url}/ledger/v1/live-events"
        yield app


class Stream:
    """Live Events from `sim` to `receiver`: turn on, flush, read back verified and normalized."""

    def __init__(self, sim: Any, receiver: Receiver) -> None:
        self.sim = sim
        self.receiver = receiver
        self.verifier = LiveEventsVerifier(sim.live_events_jwks_url)

    def start(self, **config: Any) -> dict[str, Any]:
        config.setdefault("url", self.receiver.url)
        return self.sim.live_events(**config)

    def flush(self) -> dict[str, Any]:
        return self.sim.flush_live_events()

    def events(self) -> list[LiveEvent]:
        self.flush()
        return [parse_event(self.verifier.verify(body)) for body in self.receiver.bodies]

    def enrollment_events(self) -> list[LiveEvent]:
        return [e for e in self.events() if e.kind == "enrollment"]


@pytest.fixture
def stream(sim, receiver):
    yield Stream(sim, receiver)
    sim.live_events(enabled=False)


def ui_add(sim: Any, course_id: int, user_id: int, actor: int, **extra: Any) -> dict[str, Any]:
    return sim.control("POST", "ui/enrollments", {"course_id": course_id, "user_id": user_id, "actor_user_id": actor, **extra})


def api_create(sim: Any, course_id: int, token: str, user_id: Any, **params: Any) -> Any:
    data = {"enrollment[user_id]": user_id, **{f"enrollment[{k}]": v for k, v in params.items()}}
    response = sim.api("POST", f"courses/{course_id}/enrollments", token, data=data, headers={"User-Agent": "integration-script/1.0"})
    assert response.status_code == 200, response.text
    return response


# -- each path -------------------------------------------------------------------------------


def test_a_teacher_adding_someone_in_the_web_ui(world, stream):
    stream.start()
    student = world.students[0]
    truth = ui_add(world.sim, world.course["id"], student["id"], world.teacher["id"], user_agent=BROWSER)
    [event] = stream.enrollment_events()
    assert (event.event_name, event.enrollment_id, event.user_id, event.course_id) == ("enrollment_created", truth["id"], student["id"], world.course["id"])
    assert (event.actor.user_id, event.actor.real_user_id, event.actor.developer_key_id) == (world.teacher["id"], None, None)
    assert event.actor.url.endswith(f"/courses/{world.course['id']}/enroll_users")
    assert event.actor.referrer.endswith(f"/courses/{world.course['id']}/users")
    assert (event.actor.user_agent, event.actor.context_role) == (BROWSER, "TeacherEnrollment")
    assert event.actor.request_id == truth["origin"]["request_context_id"]
    assert derive_via(event) == "ui"


def test_a_masquerading_admin_in_the_web_ui(world, stream):
    stream.start()
    ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"], real_user_id=world.admin["id"])
    [event] = stream.enrollment_events()
    assert (event.actor.user_id, event.actor.real_user_id) == (world.teacher["id"], world.admin["id"])
    assert derive_via(event) == "ui"


def test_an_api_create_carries_the_token_s_user_key_and_request_id(world, stream):
    stream.start()
    response = api_create(world.sim, world.course["id"], world.admin["token"], world.students[1]["id"])
    [event] = stream.enrollment_events()
    assert event.enrollment_id == response.json()["id"]
    assert event.actor.request_id == response.headers["X-Request-Context-Id"]
    assert (event.actor.user_id, event.actor.developer_key_id) == (world.admin["id"], DEFAULT_DEVELOPER_KEY_ID)
    assert (event.actor.http_method, event.actor.user_agent) == ("POST", "integration-script/1.0")
    assert f"/api/v1/courses/{world.course['id']}/enrollments" in event.actor.url
    assert derive_via(event) == "api"


def test_an_oauth_token_carries_its_developer_key(world, stream):
    key = world.sim.control("POST", "oauth/developer_keys", {"name": "Integration"})
    with world.sim.state.lock:  # as if issued by /login/oauth2/token
        world.sim.state.tokens["oauth-token"] = world.admin["id"]
        world.sim.state.oauth_tokens["oauth-token"] = key["client_id"]
    stream.start()
    api_create(world.sim, world.course["id"], "oauth-token", world.students[1]["id"])
    [event] = stream.enrollment_events()
    assert event.actor.developer_key_id == key["client_id"]


def test_an_api_create_masquerading_with_as_user_id(world, stream):
    stream.start()
    response = world.sim.api("POST", f"courses/{world.course['id']}/enrollments", world.admin["token"], data={"enrollment[user_id]": world.students[2]["id"], "as_user_id": world.teacher["id"]})
    assert response.status_code == 200
    assert (response.headers["X-Canvas-User-Id"], response.headers["X-Canvas-Real-User-Id"]) == (str(world.teacher["id"]), str(world.admin["id"]))
    [event] = stream.enrollment_events()
    assert (event.actor.user_id, event.actor.real_user_id) == (world.teacher["id"], world.admin["id"])
    assert event.actor.request_id == response.headers["X-Request-Context-Id"]


def test_as_user_id_from_a_non_admin_is_refused_as_canvas_does(world):
    response = world.sim.api("GET", "users/self", world.teacher["token"], params={"as_user_id": world.admin["id"]})
    assert (response.status_code, response.json()) == (401, {"errors": "Invalid as_user_id"})


def test_an_sis_import_emits_batch_events_and_job_originated_enrollments(world, stream):
    stream.start()
    csv_text = "course_id,user_id,role,status\nBIO-101,S-04,student,active\n"
    response = world.sim.api("POST", "accounts/1/sis_imports", world.admin["token"], params={"extension": "csv"}, data=csv_text, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    events = stream.events()
    assert [e.event_name for e in events] == ["sis_batch_created", "sis_batch_updated", "enrollment_created", "sis_batch_updated"]
    created, _, enrollment, done = events
    assert created.sis_batch_id == response.json()["id"]
    assert (created.actor.user_id, created.actor.developer_key_id) == (world.admin["id"], DEFAULT_DEVELOPER_KEY_ID)
    assert created.actor.request_id == response.headers["X-Request-Context-Id"]
    assert (enrollment.actor.user_id, enrollment.actor.request_id) == (None, None)
    assert "SIS" in enrollment.actor.job_tag and enrollment.actor.job_id
    assert derive_via(enrollment) == "sis"
    assert done.workflow_state == "imported"


def test_canvas_s_own_sis_process_through_the_control_api(world, stream):
    stream.start()
    world.sim.control("POST", "sis_imports", {"rows": [{"course_id": "BIO-101", "user_id": "S-05", "role": "student", "status": "active"}]})
    [enrollment] = stream.enrollment_events()
    assert derive_via(enrollment) == "sis"


def test_self_enrollment_with_the_course_s_code(world, stream):
    world.sim.control("PATCH", f"courses/{world.course['id']}", {"self_enrollment_code": "JOINBIO"})
    stream.start()
    student = world.students[5]
    response = api_create(world.sim, world.course["id"], student["token"], "self", self_enrollment_code="JOINBIO")
    assert (response.json()["enrollment_state"], response.json()["type"]) == ("active", "StudentEnrollment")
    [event] = stream.enrollment_events()
    assert event.actor.user_id == event.user_id == student["id"]
    assert derive_via(event) == "self"


def test_a_wrong_self_enrollment_code_is_still_refused(world):
    world.sim.control("PATCH", f"courses/{world.course['id']}", {"self_enrollment_code": "JOINBIO"})
    response = world.sim.api("POST", f"courses/{world.course['id']}/enrollments", world.students[5]["token"], data={"enrollment[user_id]": "self", "enrollment[self_enrollment_code]": "nope"})
    assert (response.status_code, response.json()) == (400, {"message": "enrollment[self_enrollment_code] is invalid"})


def test_a_linked_observer_s_enrollment_is_canvas_s_side_effect_in_the_same_request(world, stream):
    parent = world.sim.add_user("Pat Parent")
    student = world.students[6]
    world.sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": student["id"]})
    stream.start()
    response = api_create(world.sim, world.course["id"], world.admin["token"], student["id"])
    events = stream.enrollment_events()
    assert [(e.type, e.user_id) for e in events] == [("StudentEnrollment", student["id"]), ("ObserverEnrollment", parent["id"])]
    student_event, observer_event = events
    assert observer_event.associated_user_id == student["id"]
    assert {e.actor.request_id for e in events} == {response.headers["X-Request-Context-Id"]}
    assert derive_via(student_event, events) == "api"
    assert derive_via(observer_event, events) == "canvas"
    truth = world.sim.enrollments(user_id=parent["id"])
    assert truth[0]["history"][0]["linked_to"] == student_event.enrollment_id


def test_changes_emit_enrollment_updated_and_a_no_op_re_enroll_emits_nothing(world, stream):
    stream.start()
    first = api_create(world.sim, world.course["id"], world.admin["token"], world.students[1]["id"]).json()
    api_create(world.sim, world.course["id"], world.admin["token"], world.students[1]["id"])  # same row, nothing changed
    world.sim.api("DELETE", f"courses/{world.course['id']}/enrollments/{first['id']}", world.admin["token"], params={"task": "delete"})
    events = stream.enrollment_events()
    assert [(e.event_name, e.workflow_state) for e in events] == [("enrollment_created", "invited"), ("enrollment_updated", "deleted")]


# -- formats and outputs ---------------------------------------------------------------------


def test_caliper_format_reads_the_same(world, stream):
    stream.start(format="caliper")
    truth = ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    [event] = stream.enrollment_events()
    assert event.format == "caliper"
    assert (event.enrollment_id, event.actor.user_id, event.actor.request_id) == (truth["id"], world.teacher["id"], truth["origin"]["request_context_id"])
    assert derive_via(event) == "ui"


def test_ids_are_global_on_the_configured_shard(world, stream):
    stream.start(shard=2107)
    truth = ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    stream.flush()
    [entry] = [e for e in world.sim.live_events_log() if e["event_name"] == "enrollment_created"]
    assert entry["document"]["body"]["enrollment_id"] == str(2107 * 10**13 + truth["id"])
    assert [e.enrollment_id for e in stream.enrollment_events()] == [truth["id"]]


def test_compact_events_leave_null_keys_out(world, stream):
    stream.start(compact=True)
    ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    stream.flush()
    [entry] = world.sim.live_events_log()
    assert "developer_key_id" not in entry["document"]["metadata"]
    assert "real_user_id" not in entry["document"]["metadata"]
    assert derive_via(stream.enrollment_events()[0]) == "ui"


def test_ndjson_lines_for_pipe_ingestion(world, stream, tmp_path):
    path = tmp_path / "events.ndjson"
    stream.start(url=None, ndjson_path=str(path))
    ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    api_create(world.sim, world.course["id"], world.admin["token"], world.students[1]["id"])
    stream.flush()
    events = [parse_event(json.loads(line)) for line in path.read_text().splitlines()]
    assert [derive_via(e) for e in events] == ["ui", "api"]
    assert stream.receiver.bodies == []


# -- faults ----------------------------------------------------------------------------------


def enroll_four(world: Any) -> list[int]:
    return [ui_add(world.sim, world.course["id"], s["id"], world.teacher["id"])["id"] for s in world.students[:4]]


def test_drop_duplicate_and_reorder_by_event_number(world, stream):
    stream.start(drop=[1], duplicate=[2], reorder=[3])
    one, two, three, four = enroll_four(world)
    assert [e.enrollment_id for e in stream.enrollment_events()] == [two, two, four, three]
    statuses = [e["status"] for e in world.sim.live_events_log()]
    assert statuses == ["dropped", "delivered", "delivered", "delivered"]


def test_a_delayed_event_arrives_after_later_ones(world, stream):
    # One SIS import emits all its events within one request, so the later ones are surely
    # emitted before the delayed one falls due: sis_batch_created 1, _updated 2, rows 3-6.
    stream.start(delay={"3": 0.3})
    rows = [{"course_id": "BIO-101", "user_id": s["sis_user_id"], "role": "student", "status": "active"} for s in world.students[:4]]
    world.sim.control("POST", "sis_imports", {"rows": rows})
    one, two, three, four = [e["id"] for e in world.sim.enrollments(course_id=world.course["id"]) if e["origin"]["channel"] == "sis"]
    assert [e.enrollment_id for e in stream.enrollment_events()] == [two, three, four, one]


def test_a_held_event_is_released_by_flush(world, stream):
    stream.start(reorder=[1])
    [only] = [ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"])["id"]]
    assert world.sim.control("GET", "live_events")["idle"] is False
    assert [e.enrollment_id for e in stream.enrollment_events()] == [only]


def test_seeded_fault_rates_are_deterministic(world, stream):
    outcomes = []
    for run in range(2):
        world.sim.state.live_events.reset()
        stream.start(seed=7, drop_rate=0.5)
        for n in range(6):
            user = world.sim.add_user(f"Run {run} user {n}")
            ui_add(world.sim, world.course["id"], user["id"], world.teacher["id"])
        stream.flush()
        outcomes.append([e["status"] for e in world.sim.live_events_log()])
    assert outcomes[0] == outcomes[1]
    assert "dropped" in outcomes[0] and "delivered" in outcomes[0]


def test_a_failing_subscriber_is_retried_a_bounded_number_of_times(world, stream):
    stream.receiver.statuses = [503]
    stream.start()
    ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    first, second = stream.enrollment_events()  # refused once with 503, then accepted
    assert first == second
    [entry] = world.sim.live_events_log()
    assert (entry["status"], entry["attempts"], entry["deliveries"]) == ("delivered", 2, 1)


def test_an_unreachable_subscriber_never_breaks_the_simulator(world, stream):
    stream.start(url="http://127.0.0.1:9/unreachable", timeout=1)
    response = api_create(world.sim, world.course["id"], world.admin["token"], world.students[1]["id"])
    assert response.status_code == 200
    stream.flush()
    [entry] = world.sim.live_events_log()
    assert entry["status"] == "failed" and 1 < entry["attempts"] <= 4


# -- off by default --------------------------------------------------------------------------


def test_nothing_is_emitted_unless_configured(world, receiver):
    ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    status = world.sim.control("GET", "live_events")
    assert (status["enabled"], status["emitted"]) == (False, 0)
    assert receiver.bodies == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"format": "xml", "url": "http://127.0.0.1:1/"}, "format", id="format"),
        pytest.param({"url": "ftp://x"}, "http", id="url"),
        pytest.param({}, "needs a url", id="nowhere"),
        pytest.param({"url": "http://127.0.0.1:1/", "colour": "red"}, "unknown", id="unknown-setting"),
    ],
)
def test_bad_configuration_is_a_400(sim, config, message):
    response = sim.http.post(f"{sim.url}/_sim/live_events", json=config, timeout=5)
    assert response.status_code == 400 and message in response.json()["error"]


def test_the_jwks_rotates_on_request(sim, stream, world, receiver):
    stream.start()
    old_kid = sim.control("GET", "live_events")["kid"]
    rotated = sim.control("POST", "live_events/signing_key", {"keep_old": True})
    assert [k["kid"] for k in rotated["jwks"]["keys"]] == [old_kid, rotated["kid"]]
    ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    assert len(stream.enrollment_events()) == 1  # signed with the new key, found by its kid


def test_turning_emission_off_cancels_what_is_not_yet_sent(world, stream):
    stream.start(reorder=[1])
    ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"])
    status = world.sim.control("POST", "live_events", {"enabled": False})
    assert (status["enabled"], status["counts"], status["idle"]) == (False, {"cancelled": 1}, True)
    assert world.sim.control("POST", "live_events/flush", {"timeout": 1})["idle"]
    assert stream.receiver.bodies == []


def test_caliper_api_events_read_as_api_without_a_developer_key(world, stream):
    stream.start(format="caliper")
    api_create(world.sim, world.course["id"], world.admin["token"], world.students[1]["id"])
    [event] = stream.enrollment_events()
    assert (event.actor.developer_key_id, derive_via(event)) == (None, "api")


def test_several_delivery_workers_deliver_everything(world, stream):
    stream.start(workers=4)
    for n in range(12):
        user = world.sim.add_user(f"Parallel {n}")
        ui_add(world.sim, world.course["id"], user["id"], world.teacher["id"])
    assert len({e.enrollment_id for e in stream.enrollment_events()}) == 12


def test_a_create_through_the_proxy_is_the_same_to_canvas(world, stream, make_proxy):
    proxy = make_proxy(world.sim.url)
    stream.start()
    response = world.sim.http.post(
        f"{proxy.url}/api/v1/courses/{world.course['id']}/enrollments",
        data={"enrollment[user_id]": world.students[3]["id"]},
        headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10,
    )
    assert response.status_code == 200, response.text
    [event] = stream.enrollment_events()
    assert event.enrollment_id == response.json()["id"]
    assert event.actor.request_id == response.headers["X-Request-Context-Id"]
    assert (event.actor.user_id, derive_via(event)) == (world.admin["id"], "api")
