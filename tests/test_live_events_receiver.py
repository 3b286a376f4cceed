"""Who made each enrollment, from Canvas Live Events (issue 13), over real HTTP.

The simulator signs and posts its Live Events to the proxy's receiver
(`POST /ledger/v1/live-events`), verified against the simulator's JWKS; the lookup is asked
through the proxy. Verdicts are judged against the simulator's ground truth (each enrollment's
`origin`), never against the proxy's own output.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta
from typing import Any

import canvasapi
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ledger_proxy.core import ledger

from .helpers import assert_canvas_error

BROWSER = "Mozilla/5.0 (test browser)"


class Subscription:
    """The proxy subscribed to the simulator's Live Events (HTTPS, the simulator's JWKS)."""

    def __init__(self, sim: Any, proxy: Any) -> None:
        self.sim = sim
        self.proxy = proxy
        self.url = f"{proxy.url}/ledger/v1/live-events"
        self.http = requests.Session()
        self.http.trust_env = False

    def start(self, **config: Any) -> dict[str, Any]:
        config.setdefault("url", self.url)
        return self.sim.live_events(**config)

    def flush(self) -> None:
        self.sim.flush_live_events()

    def rows(self) -> list[dict[str, Any]]:
        db = ledger.connect(self.proxy.app.config["DATABASE"])
        try:
            return list(db.query("SELECT * FROM live_events ORDER BY rowid"))
        finally:
            db.close()

    def post(self, body: str | bytes, **headers: str) -> requests.Response:
        return self.http.post(self.url, data=body, headers=headers, timeout=10)

    def lookup(self, course_id: int, token: str) -> dict[str, Any]:
        response = self.http.get(
            f"{self.proxy.url}/ledger/v1/courses/{course_id}/enrollments",
            headers={"Authorization": f"Bearer {token}"}, timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def subscribed(sim: Any, make_proxy: Any) -> Any:
    proxy = make_proxy(sim.url, LIVE_EVENTS_JWKS=sim.live_events_jwks_url)
    subscription = Subscription(sim, proxy)
    yield subscription
    sim.live_events(enabled=False)


def by_id(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["id"]: row for row in result["enrollments"]}


def ui_add(sim: Any, course_id: int, user_id: int, actor: int, **extra: Any) -> dict[str, Any]:
    payload = {"course_id": course_id, "user_id": user_id, "actor_user_id": actor, "type": "TeacherEnrollment", **extra}
    return sim.control("POST", "ui/enrollments", payload)


def origin(sim: Any, course_id: int, enrollment_id: int) -> dict[str, Any]:
    [row] = [e for e in sim.enrollments(course_id=course_id) if e["id"] == enrollment_id]
    return row["origin"]


def linked_parent(sim: Any, student_id: int) -> dict[str, Any]:
    """A parent account linked to this student before the student is enrolled."""
    parent = sim.add_user("Pat Parent")
    sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": student_id})
    return parent


def observer_truth(sim: Any, course_id: int, parent: dict[str, Any]) -> dict[str, Any]:
    """The parent's one row in the course, as the simulator's ground truth has it."""
    [observer] = [row for row in sim.enrollments(course_id=course_id) if row["user_id"] == parent["id"]]
    return observer


# -- the seed's story ------------------------------------------------------------------------


def test_the_integration_enrolls_t1_and_t1_adds_t2_in_the_web_ui(world, subscribed):
    """Issue 13's story end to end: T1 is `integration`, confirmed by Canvas's request id; T2 is
    `manual`, added in the web UI by T1, whom the answer names."""
    sim = world.sim
    t1 = sim.add_user("Tess One", sis_user_id="T1")
    t2 = sim.add_user("Theo Two", sis_user_id="T2")
    subscribed.start()
    canvas = canvasapi.Canvas(f"{subscribed.proxy.url}/i/roster-sync", world.admin["token"])
    course = canvas.get_course(world.course["id"])
    made = course.enroll_user(t1["id"], enrollment={"type": "TeacherEnrollment", "enrollment_state": "active"})
    by_t1 = ui_add(sim, world.course["id"], t2["id"], t1["id"], user_agent=BROWSER)
    subscribed.flush()

    # Ground truth: the simulator's own record of who made each row and how.
    truth_t1 = origin(sim, world.course["id"], made.id)
    truth_t2 = origin(sim, world.course["id"], by_t1["id"])
    assert (truth_t1["channel"], truth_t1["actor_user_id"]) == ("api", world.admin["id"])
    assert (truth_t2["channel"], truth_t2["actor_user_id"]) == ("ui", t1["id"])
    rows = by_id(subscribed.lookup(world.course["id"], world.admin["token"]))
    first, second = rows[made.id], rows[by_t1["id"]]

    assert first["provenance"] == "integration"
    assert first["actor"]["via"] == "api" and first["actor"]["user_id"] == truth_t1["actor_user_id"]
    request_id = first["actor"]["request_id"]
    assert request_id == truth_t1["request_context_id"] == first["ledger"]["canvas_request_id"]
    assert f"confirmed by Canvas: request {request_id} made it" in first["reason"]

    assert second["provenance"] == "manual"
    assert second["actor"] == {
        "user_id": t1["id"], "name": "Tess One", "real_user_id": None, "via": "ui",
        "developer_key_id": None, "request_id": truth_t2["request_context_id"],
        "event_time": second["actor"]["event_time"], "source": "live_events",
    }
    assert second["reason"].startswith(f"added in the web UI by Tess One (user {t1['id']}) on ")


# -- signatures: every case through the receiver, nothing stored on failure -------------------


def pem_and_key() -> tuple[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, key


def one_event(world: Any, subscribed: Any, **config: Any) -> dict[str, Any]:
    """The simulator's log entry of one real enrollment_created (its document; its JWT when
    it was posted)."""
    config.setdefault("url", None)
    if config["url"] is None:
        config["ndjson_path"] = "/dev/null"
    subscribed.start(**config)
    ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"], type="StudentEnrollment")
    subscribed.flush()
    [entry] = [e for e in world.sim.live_events_log() if e["event_name"] == "enrollment_created"]
    return entry


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


@pytest.fixture
def known_key(world: Any, subscribed: Any) -> tuple[str, Any]:
    """The simulator signs with a key this test holds too, so it can forge with it."""
    pem, key = pem_and_key()
    kid = world.sim.control("POST", "live_events/signing_key", {"pem": pem})["kid"]
    return kid, key


def test_a_good_signature_is_stored_once_and_a_replay_is_a_duplicate(world, subscribed):
    entry = one_event(world, subscribed, url=subscribed.url)
    assert entry["status"] == "delivered"
    [row] = [r for r in subscribed.rows() if r["event_name"] == "enrollment_created"]
    stored = json.loads(row["document"])
    assert {k: stored[k] for k in ("metadata", "body")} == entry["document"]
    assert (row["received_via"], row["enrollment_id"], row["actor_user_id"]) == ("https", world.truth(row["enrollment_id"])["id"], world.teacher["id"])
    again = subscribed.post(entry["jwt"])
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert len(subscribed.rows()) == 1  # (its enrollment_state_created is dropped)


@pytest.mark.parametrize(
    ("forge", "status", "message"),
    [
        pytest.param(lambda doc, kid, key: jwt.encode({**doc, "exp": int(time.time()) + 300}, pem_and_key()[1], "RS256", headers={"kid": kid}), 401, "bad signature", id="wrong-key"),
        pytest.param(lambda doc, kid, key: jwt.encode({**doc, "exp": int(time.time()) + 300}, key, "RS256", headers={"kid": "made-up"}), 401, "unknown key id", id="unknown-kid"),
        pytest.param(lambda doc, kid, key: unsigned({"alg": "none", "kid": kid}, doc), 401, "algorithm 'none' is not accepted", id="alg-none"),
        pytest.param(lambda doc, kid, key: hs256_with_public_key(doc, kid, key), 401, "algorithm 'HS256' is not accepted", id="hs256-with-the-public-key"),
        pytest.param(lambda doc, kid, key: jwt.encode({**doc, "exp": int(time.time()) - 3600}, key, "RS256", headers={"kid": kid}), 401, "not valid now", id="expired"),
        pytest.param(lambda doc, kid, key: jwt.encode({**doc, "iat": int(time.time()) + 3600}, key, "RS256", headers={"kid": kid}), 401, "not valid now", id="issued-in-the-future"),
        pytest.param(lambda doc, kid, key: "not a token", 400, "not a compact JWT", id="not-a-jwt"),
        pytest.param(lambda doc, kid, key: json.dumps(doc), 401, "unsigned event", id="unsigned-json"),
        pytest.param(lambda doc, kid, key: jwt.encode({"metadata": {"event_name": "enrollment_created"}, "body": {}}, key, "RS256", headers={"kid": kid}), 400, "could not be read", id="signed-but-not-an-event"),
    ],
)
def test_a_refused_token_is_answered_in_the_error_shape_and_nothing_is_stored(world, subscribed, known_key, forge, status, message):
    kid, key = known_key
    document = one_event(world, subscribed)["document"]
    response = subscribed.post(forge(document, kid, key))
    assert_canvas_error(response, status, message)
    assert subscribed.rows() == []


def hs256_with_public_key(document: dict[str, Any], kid: str, key: Any) -> str:
    """The classic confusion: HMAC 'signed' with the public key the JWKS publishes."""
    import hashlib
    import hmac

    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = unsigned({"alg": "HS256", "kid": kid, "typ": "JWT"}, document).rstrip(".")
    signature = hmac.new(public, head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def test_an_unknown_kid_is_fetched_again_so_a_rotated_key_is_trusted(world, subscribed):
    subscribed.start()
    ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"], type="StudentEnrollment")
    subscribed.flush()
    world.sim.control("POST", "live_events/signing_key", {})  # Instructure rotates its key
    ui_add(world.sim, world.course["id"], world.students[1]["id"], world.teacher["id"], type="StudentEnrollment")
    subscribed.flush()
    assert [e["status"] for e in world.sim.live_events_log() if e["event_name"] == "enrollment_created"] == ["delivered", "delivered"]
    assert len([r for r in subscribed.rows() if r["event_name"] == "enrollment_created"]) == 2
    assert subscribed.proxy.app.extensions["ledger_proxy"].live_events.fetches == 2


def test_an_unreadable_jwks_is_a_503_and_nothing_is_stored(world, sim, make_proxy, tmp_path):
    proxy = make_proxy(sim.url, LIVE_EVENTS_JWKS=str(tmp_path / "missing-jwks.json"))
    subscription = Subscription(sim, proxy)
    document = one_event(world, subscription)["document"]
    token = jwt.encode(document, pem_and_key()[1], "RS256", headers={"kid": "k1"})
    assert_canvas_error(subscription.post(token), 503, "could not be verified now")
    assert subscription.rows() == []
    sim.live_events(enabled=False)


def test_without_the_setting_the_endpoint_says_live_events_are_not_configured(world, proxy):
    response = requests.post(f"{proxy.url}/ledger/v1/live-events", data="x.y.z", timeout=10)
    assert_canvas_error(response, 404, "Live Events are not configured")


def test_an_oversized_body_is_refused_before_it_is_read(world, subscribed):
    response = subscribed.post(b"x" * (256 * 1024 + 1))
    assert_canvas_error(response, 413, "at most")
    assert subscribed.rows() == []


def test_other_event_types_are_acknowledged_and_dropped(world, subscribed, known_key):
    kid, key = known_key
    document = {"metadata": {"event_name": "submission_created", "event_time": "2026-09-03T10:00:00.000Z"}, "body": {"submission_id": "1"}}
    response = subscribed.post(jwt.encode(document, key, "RS256", headers={"kid": kid}))
    assert (response.status_code, response.json()) == (200, {"status": "ignored"})
    assert subscribed.rows() == []


# -- each way an enrollment is made, judged against the simulator's ground truth --------------


def direct_api(sim: Any, course_id: int, token: str, user_id: Any, **params: Any) -> dict[str, Any]:
    """A script calling Canvas directly, bypassing the proxy."""
    data = {"enrollment[user_id]": user_id, **{f"enrollment[{k}]": v for k, v in params.items()}}
    response = sim.api("POST", f"courses/{course_id}/enrollments", token, data=data, headers={"User-Agent": "bypass-script/1.0"})
    assert response.status_code == 200, response.text
    return response.json()


def test_each_via_names_who_made_the_row(world, subscribed):
    sim, course_id = world.sim, world.course["id"]
    parent = sim.add_user("Pat Parent")
    sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": world.students[4]["id"]})
    sim.control("PATCH", f"courses/{course_id}", {"self_enrollment_code": "JOINBIO"})
    subscribed.start()
    made = {
        "ui": ui_add(sim, course_id, world.students[0]["id"], world.teacher["id"], type="StudentEnrollment")["id"],
        "masquerade": ui_add(sim, course_id, world.students[1]["id"], world.teacher["id"], type="StudentEnrollment", real_user_id=world.admin["id"])["id"],
        "api": direct_api(sim, course_id, world.admin["token"], world.students[2]["id"])["id"],
        "self": direct_api(sim, course_id, world.students[3]["token"], "self", self_enrollment_code="JOINBIO")["id"],
    }
    direct_api(sim, course_id, world.admin["token"], world.students[4]["id"])  # and its linked observer
    sim.control("POST", "sis_imports", {"rows": [{"course_id": "BIO-101", "user_id": "S-06", "role": "student", "status": "active"}]})
    subscribed.flush()
    truth = {row["id"]: row["origin"] for row in sim.enrollments(course_id=course_id)}
    [made["canvas"]] = [row["id"] for row in sim.enrollments(course_id=course_id) if row["user_id"] == parent["id"]]
    [made["sis"]] = [i for i, o in truth.items() if o["channel"] == "sis"]
    rows = by_id(subscribed.lookup(course_id, world.admin["token"]))

    for case in ("ui", "masquerade", "api", "self", "canvas"):
        row, origin_ = rows[made[case]], truth[made[case]]
        assert origin_["channel"] in ("ui", "api"), case  # none of them went through the proxy
        assert row["provenance"] == "manual", case
        assert row["actor"]["request_id"] == origin_["request_context_id"], case
    assert rows[made["ui"]]["actor"]["via"] == "ui" and rows[made["ui"]]["actor"]["user_id"] == truth[made["ui"]]["actor_user_id"] == world.teacher["id"]
    assert rows[made["ui"]]["reason"].startswith(f"added in the web UI by Terry Teacher (user {world.teacher['id']}) on ")
    masquerade = rows[made["masquerade"]]["actor"]
    assert (masquerade["via"], masquerade["user_id"], masquerade["real_user_id"]) == ("ui", world.teacher["id"], world.admin["id"])
    api = rows[made["api"]]
    assert (api["actor"]["via"], api["actor"]["user_id"]) == ("api", truth[made["api"]]["actor_user_id"])
    assert f"with developer key {api['actor']['developer_key_id']}" in api["reason"] and api["reason"].endswith("bypassing the proxy")
    assert rows[made["self"]]["actor"]["via"] == "self" and truth[made["self"]]["actor_user_id"] == world.students[3]["id"]
    assert rows[made["canvas"]]["actor"]["via"] == "canvas"
    assert "side effect" in rows[made["canvas"]]["reason"]
    sis_row = rows[made["sis"]]
    assert (sis_row["provenance"], sis_row["actor"]["via"], sis_row["actor"]["user_id"]) == ("sis", "sis", None)
    assert "confirmed by Canvas: the SIS importer's job made it" in sis_row["reason"]
    summary = subscribed.lookup(course_id, world.admin["token"])["summary"]
    assert summary["manual_via"]["ui"] >= 2 and summary["manual_via"]["api"] == 2 and summary["manual_via"]["self"] == 1 and summary["manual_via"]["canvas"] == 1


def test_an_sis_import_s_rows_name_who_uploaded_it(world, subscribed):
    sim = world.sim
    subscribed.start()
    csv_text = "course_id,user_id,role,status\nBIO-101,S-04,student,active\n"
    response = sim.api("POST", "accounts/1/sis_imports", world.admin["token"], params={"extension": "csv"}, data=csv_text, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    subscribed.flush()
    [made] = [row for row in sim.enrollments(course_id=world.course["id"]) if row["origin"]["channel"] == "sis"]
    row = by_id(subscribed.lookup(world.course["id"], world.admin["token"]))[made["id"]]
    assert (row["provenance"], row["sis_import_id"]) == ("sis", response.json()["id"])
    assert "confirmed by Canvas: the SIS importer's job made it" in row["reason"]
    assert f"Canvas's Live Event says user {world.admin['id']} uploaded SIS import {response.json()['id']} with developer key " in row["reason"]


def test_a_linked_observer_enrolled_by_a_proxied_request_is_confirmed_as_its_side_effect(world, subscribed):
    sim, course_id = world.sim, world.course["id"]
    parent = sim.add_user("Pat Parent")
    sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": world.students[4]["id"]})
    subscribed.start()
    canvas = canvasapi.Canvas(f"{subscribed.proxy.url}/i/roster-sync", world.admin["token"])
    canvas.get_course(course_id).enroll_user(world.students[4]["id"], enrollment={"type": "StudentEnrollment"})
    subscribed.flush()
    [observer] = [row for row in sim.enrollments(course_id=course_id) if row["user_id"] == parent["id"]]
    row = by_id(subscribed.lookup(course_id, world.admin["token"]))[observer["id"]]
    assert observer["origin"]["request_context_id"] == row["actor"]["request_id"]
    assert (row["provenance"], row["actor"]["via"]) == ("integration", "canvas")
    assert "confirmed by Canvas" in row["reason"] and "side effect" in row["reason"]


# -- Live Events and the linked-observer rule together (issues 10 and 13) ----------------------


def test_a_proxied_student_s_linked_observer_follows_it_in_the_same_request(world, subscribed):
    """Canvas's word (the observer row's request id is the proxy's) and the link agree:
    `integration`, and `linked_to` names the student enrollment made in that request."""
    sim, course_id = world.sim, world.course["id"]
    parent = linked_parent(sim, world.students[5]["id"])
    subscribed.start()
    canvas = canvasapi.Canvas(f"{subscribed.proxy.url}/i/roster-sync", world.admin["token"])
    made = canvas.get_course(course_id).enroll_user(world.students[5]["id"], enrollment={"type": "StudentEnrollment"})
    subscribed.flush()
    observer = observer_truth(sim, course_id, parent)
    assert observer["history"][0]["linked_to"] == made.id  # the simulator's ground truth
    row = by_id(subscribed.lookup(course_id, world.admin["token"]))[observer["id"]]
    assert (row["provenance"], row["actor"]["via"]) == ("integration", "canvas"), row["reason"]
    assert row["linked_to"]["enrollment_id"] == made.id
    assert f"following student user {world.students[5]['id']}" in row["reason"]
    assert f"enrollment {made.id}, which roster-sync (user {world.admin['id']}) created through the proxy in that same request" in row["reason"]


def test_a_hand_made_student_s_linked_observer_follows_it_by_canvas_s_request_id(world, subscribed):
    sim, course_id = world.sim, world.course["id"]
    parent = linked_parent(sim, world.students[6]["id"])
    subscribed.start()
    by_hand = ui_add(sim, course_id, world.students[6]["id"], world.teacher["id"], type="StudentEnrollment", user_agent=BROWSER)
    subscribed.flush()
    observer = observer_truth(sim, course_id, parent)
    assert observer["history"][0]["linked_to"] == by_hand["id"]
    assert observer["origin"]["channel"] == "ui"  # the teacher's request, not the proxy's
    row = by_id(subscribed.lookup(course_id, world.admin["token"]))[observer["id"]]
    assert (row["provenance"], row["actor"]["via"]) == ("manual", "canvas"), row["reason"]
    assert row["linked_to"]["enrollment_id"] == by_hand["id"]
    assert f"Canvas's Live Events say request {observer['origin']['request_context_id']} made both" in row["reason"]
    assert "added in the web UI by Terry Teacher" in row["reason"]


def test_an_observer_linked_in_the_same_second_is_told_apart_by_canvas_s_request_ids(world, subscribed):
    """The integration enrolls a student; the parent is linked at once (the same second or the
    next), so the observer row's created_at is within the allowance of the student's: timing
    alone would call it the integration's side effect. Canvas's Live Events say the link's own
    request made it, so it is not."""
    sim, course_id = world.sim, world.course["id"]
    subscribed.start()
    canvas = canvasapi.Canvas(f"{subscribed.proxy.url}/i/roster-sync", world.admin["token"])
    made = canvas.get_course(course_id).enroll_user(world.students[7]["id"], enrollment={"type": "StudentEnrollment", "enrollment_state": "active"})
    parent = sim.add_user("Quick Parent")
    link = sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": world.students[7]["id"], "actor_user_id": world.admin["id"]})
    subscribed.flush()
    [observer_id] = link["enrollment_ids"]
    truth = [row for row in sim.enrollments(course_id=course_id) if row["id"] == observer_id][0]
    student_truth = [row for row in sim.enrollments(course_id=course_id) if row["id"] == made.id][0]
    assert truth["history"][0]["cause"] == "observer_link"  # ground truth: the link made it
    apart = abs(datetime.fromisoformat(truth["created_at"].replace("Z", "+00:00")) - datetime.fromisoformat(student_truth["created_at"].replace("Z", "+00:00")))
    assert apart <= timedelta(seconds=2)  # within the allowance: the clocks cannot tell
    row = by_id(subscribed.lookup(course_id, world.admin["token"]))[observer_id]
    assert row["provenance"] == "manual", row["reason"]
    assert row["linked_to"] is None
    assert row["actor"]["request_id"] == truth["origin"]["request_context_id"] != student_truth["origin"]["request_context_id"]
    assert f"in request {truth['origin']['request_context_id']}, not with their enrollment in this section ({made.id} at" in row["reason"]
    assert "linked later" in row["reason"]


def test_the_section_lookup_names_the_actor_too(world, subscribed):
    subscribed.start()
    made = ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"], type="StudentEnrollment", section_id=world.section_b)
    subscribed.flush()
    response = subscribed.http.get(f"{subscribed.proxy.url}/ledger/v1/sections/{world.section_b}/enrollments", headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10)
    row = by_id(response.json())[made["id"]]
    assert (row["course_section_id"], row["actor"]["user_id"], row["actor"]["via"]) == (world.section_b, world.teacher["id"], "ui")


def test_caliper_events_say_the_same(world, subscribed):
    sim, course_id = world.sim, world.course["id"]
    subscribed.start(format="caliper")
    by_hand = ui_add(sim, course_id, world.students[0]["id"], world.teacher["id"], type="StudentEnrollment")["id"]
    bypass = direct_api(sim, course_id, world.admin["token"], world.students[1]["id"])["id"]
    subscribed.flush()
    assert {r["format"] for r in subscribed.rows()} == {"caliper"}
    rows = by_id(subscribed.lookup(course_id, world.admin["token"]))
    assert (rows[by_hand]["actor"]["via"], rows[by_hand]["actor"]["user_id"]) == ("ui", world.teacher["id"])
    assert (rows[bypass]["actor"]["via"], rows[bypass]["actor"]["user_id"]) == ("api", world.admin["id"])


def test_duplicates_and_reordering_change_nothing(world, subscribed):
    sim, course_id = world.sim, world.course["id"]
    subscribed.start(duplicate=[1, 2, 3], reorder=[1])
    ids = [ui_add(sim, course_id, student["id"], world.teacher["id"], type="StudentEnrollment")["id"] for student in world.students[:3]]
    subscribed.flush()
    assert sum(e["deliveries"] for e in sim.live_events_log()) > len(sim.live_events_log())  # they were duplicated
    created = [r for r in subscribed.rows() if r["event_name"] == "enrollment_created"]
    assert sorted(r["enrollment_id"] for r in created) == sorted(ids)  # each stored once
    rows = by_id(subscribed.lookup(course_id, world.admin["token"]))
    assert all(rows[i]["actor"]["user_id"] == world.teacher["id"] for i in ids)


def test_global_ids_on_another_shard_match_the_rest_api_s_local_ids(world, subscribed):
    subscribed.start(shard=42)
    made = ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"], type="StudentEnrollment")
    subscribed.flush()
    [sent] = [e for e in world.sim.live_events_log() if e["event_name"] == "enrollment_created"]
    assert sent["document"]["body"]["enrollment_id"] == str(42 * 10**13 + made["id"])
    row = by_id(subscribed.lookup(world.course["id"], world.admin["token"]))[made["id"]]
    assert row["actor"]["user_id"] == world.teacher["id"]


def test_an_event_that_arrives_before_the_proxy_records_the_enrollment(world, subscribed):
    """Canvas's event is stored while the proxy still waits to write the outcome of the very
    request that made the row; the join is made when the lookup reads."""
    runtime = subscribed.proxy.app.extensions["ledger_proxy"]
    runtime.after_canvas = lambda: world.sim.flush_live_events()
    subscribed.start()
    canvas = canvasapi.Canvas(f"{subscribed.proxy.url}/i/roster-sync", world.admin["token"])
    made = canvas.get_course(world.course["id"]).enroll_user(world.students[0]["id"], enrollment={"type": "StudentEnrollment"})
    runtime.after_canvas = None
    [stored] = [r for r in subscribed.rows() if r["event_name"] == "enrollment_created"]
    assert stored["enrollment_id"] == made.id
    row = by_id(subscribed.lookup(world.course["id"], world.admin["token"]))[made.id]
    assert row["provenance"] == "integration" and "confirmed by Canvas" in row["reason"]


def test_an_event_that_arrives_long_after_is_joined_then(world, subscribed):
    """Lost on the way (Canvas is best effort), then ingested from an archive later."""
    subscribed.start(drop=[1])
    made = ui_add(world.sim, world.course["id"], world.students[0]["id"], world.teacher["id"], type="StudentEnrollment")
    subscribed.flush()
    before = by_id(subscribed.lookup(world.course["id"], world.admin["token"]))[made["id"]]
    assert before["actor"] is None and before["provenance"] == "manual"
    [lost] = [e for e in world.sim.live_events_log() if e["status"] == "dropped"]
    assert subscribed.post(jwt_for(world, lost["document"])).json() == {"status": "stored"}
    after = by_id(subscribed.lookup(world.course["id"], world.admin["token"]))[made["id"]]
    assert after["actor"]["user_id"] == world.teacher["id"]


def jwt_for(world: Any, document: dict[str, Any]) -> str:
    """Signed with the simulator's current key, as Canvas would have."""
    key = world.sim.state.live_events._signing_key()
    return key.sign({**document, "exp": int(time.time()) + 300})


def test_without_live_events_every_actor_is_null(world, proxy):
    canvasapi.Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"]).get_course(world.course["id"]).enroll_user(world.students[0]["id"], enrollment={"type": "StudentEnrollment"})
    response = requests.get(f"{proxy.url}/ledger/v1/courses/{world.course['id']}/enrollments", headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10)
    body = response.json()
    assert {row["actor"] is None for row in body["enrollments"]} == {True}
    assert body["summary"]["manual_via"]["none"] == body["summary"]["manual"]


# -- the dashboard and `ledger-proxy audit` show the actor too --------------------------------


def test_the_dashboard_and_the_audit_name_the_actor(world, sim, make_proxy):
    import html

    from click.testing import CliRunner

    from ledger_proxy.cli import main

    from .dashboard_support import browser_session, sign_in_with_token

    proxy = make_proxy(sim.url, LIVE_EVENTS_JWKS=sim.live_events_jwks_url, SESSION_COOKIE_SECURE=False)
    subscription = Subscription(sim, proxy)
    subscription.start()
    try:
        made = ui_add(sim, world.course["id"], world.students[0]["id"], world.teacher["id"], type="StudentEnrollment")
        subscription.flush()
    finally:
        sim.live_events(enabled=False)
    row = by_id(subscription.lookup(world.course["id"], world.admin["token"]))[made["id"]]
    assert row["reason"].startswith("added in the web UI by Terry Teacher")

    session = browser_session()
    sign_in_with_token(session, proxy, world.admin["token"])
    page = session.get(f"{proxy.url}/ledger/courses/{world.course['id']}", timeout=10)
    text = html.unescape(page.text)
    assert "Made by (Canvas Live Events)" in text and row["reason"] in text
    assert f"Terry Teacher user {world.teacher['id']}, via ui" in text and row["actor"]["request_id"] in text
    assert "Manual, by how Canvas's Live Events say they were made: web UI 1," in text

    env = {"LEDGER_PROXY_CANVAS_URL": sim.url, "LEDGER_PROXY_DATABASE": proxy.app.config["DATABASE"], "CANVAS_TOKEN": world.admin["token"]}
    as_csv = CliRunner().invoke(main, ["audit", str(world.course["id"]), "--format", "csv"], env=env)
    assert as_csv.exit_code == 0, as_csv.output
    import csv
    import io

    [audited] = [r for r in csv.DictReader(io.StringIO(as_csv.stdout)) if r["id"] == str(made["id"])]
    assert (audited["made_by_user_id"], audited["made_by_name"], audited["made_via"]) == (str(world.teacher["id"]), "Terry Teacher", "ui")
    as_json = CliRunner().invoke(main, ["audit", str(world.course["id"]), "--format", "json"], env=env)
    assert json.loads(as_json.stdout)["enrollments"] == subscription.lookup(world.course["id"], world.admin["token"])["enrollments"]
