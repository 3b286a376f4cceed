"""Normalizing Canvas Live Events and reading their channel (issue 13; provenance-sources.md §1)."""

from __future__ import annotations

from typing import Any

import pytest

from ledger_proxy.core.live_events import (
    CALIPER_FORMAT,
    CANVAS_FORMAT,
    ENROLLMENT,
    IGNORED,
    SIS_BATCH,
    LiveEvent,
    MalformedEvent,
    actor_event,
    actor_json,
    derive_via,
    local_id,
    parse_event,
)

SHARD = 2107 * 10**13
REQUEST_ID = "1dd9dc6f-2fb0-4c19-a6c5-7ee1bf3ed295"
SIS_JOB_TAG = "SIS::CSV::ImportRefactored#run_parallel_importer"


def g(local: int) -> str:
    """A global id as Canvas sends it."""
    return str(SHARD + local)


def canvas_event(metadata: dict[str, Any] | None = None, body: dict[str, Any] | None = None, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A request-originated `enrollment_created` in Canvas format: teacher 2 in the web UI."""
    meta = {
        "event_name": "enrollment_created", "event_time": "2026-09-03T10:00:00.123Z",
        "producer": "canvas", "root_account_id": g(1), "user_id": g(2),
        "request_id": REQUEST_ID, "session_id": "ef68", "http_method": "POST",
        "url": "https://canvas.test/courses/7/enroll_users", "referrer": "https://canvas.test/courses/7/users",
        "user_agent": "Mozilla/5.0", "client_ip": "203.0.113.9", "hostname": "canvas.test",
        "context_type": "Course", "context_id": g(7), "context_role": "TeacherEnrollment",
        **(metadata or {}),
    }
    data = {
        "enrollment_id": g(31), "course_id": g(7), "course_section_id": g(8), "user_id": g(5),
        "user_name": "Grace Hopper", "type": "TeacherEnrollment", "workflow_state": "invited",
        "created_at": "2026-09-03T10:00:00Z", "updated_at": "2026-09-03T10:00:00Z",
        "limit_privileges_to_course_section": False, **(body or {}),
    }
    for name in drop:  # compact_live_events: null keys are absent
        meta.pop(name, None)
        data.pop(name, None)
    return {"metadata": meta, "body": data}


def job_event(**metadata: Any) -> dict[str, Any]:
    base = canvas_event({"job_id": "9001", "job_tag": SIS_JOB_TAG, **metadata}, drop=(
        "user_id", "request_id", "session_id", "http_method", "url", "referrer", "user_agent",
        "client_ip", "hostname", "context_type", "context_id", "context_role",
    ))
    return base


def caliper_event(*, action: str = "Created", entity: str = "enrollment", job: bool = False, **ext: Any) -> dict[str, Any]:
    """The same UI add as `canvas_event`, in IMS Caliper 1.1 with Canvas extensions."""
    actor: dict[str, Any] = {
        "id": f"urn:instructure:canvas:user:{g(2)}", "type": "Person",
        "extensions": {"com.instructure.canvas": {"user_login": "tteacher", "root_account_id": g(1), "entity_id": g(2)}},
    }
    extensions: dict[str, Any] = {
        "hostname": "canvas.test", "request_id": REQUEST_ID,
        "request_url": "https://canvas.test/courses/7/enroll_users", "user_agent": "Mozilla/5.0",
        "client_ip": "203.0.113.9", "version": "1.0.0", **ext,
    }
    if job:
        actor = {"id": "http://canvas.test/", "type": "SoftwareApplication"}
        extensions = {"job_id": "9001", "job_tag": SIS_JOB_TAG}
    return {
        "sensor": "http://canvas.test/", "sendTime": "2026-09-03T10:00:01.000Z",
        "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p1",
        "data": [{
            "@context": "http://purl.imsglobal.org/ctx/caliper/v1p1",
            "id": "urn:uuid:19f57ead-f709-45e0-9869-25c68d933d45", "type": "Event",
            "actor": actor, "action": action,
            "object": {
                "id": f"urn:instructure:canvas:{entity}:{g(31)}", "type": "Entity",
                "dateCreated": "2026-09-03T10:00:00.000Z", "dateModified": "2026-09-03T10:00:00.000Z",
                "extensions": {"com.instructure.canvas": {
                    "course_id": f"urn:instructure:canvas:course:{g(7)}",
                    "course_section_id": f"urn:instructure:canvas:courseSection:{g(8)}",
                    "user_id": f"urn:instructure:canvas:user:{g(5)}", "user_name": "Grace Hopper",
                    "type": "TeacherEnrollment", "workflow_state": "invited",
                    "limit_privileges_to_course_section": False, "entity_id": g(31),
                }},
            },
            "eventTime": "2026-09-03T10:00:00.123Z",
            "group": {"id": f"urn:instructure:canvas:course:{g(7)}", "type": "CourseOffering"},
            "membership": {"id": "urn:instructure:canvas:course:x:Instructor:y", "type": "Membership", "roles": ["Instructor"]},
            "session": {"id": "urn:instructure:canvas:session:ef68", "type": "Session"},
            "extensions": {"com.instructure.canvas": extensions},
        }],
    }


# -- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("21070000000000031", 31, id="global-string"),
        pytest.param(21070000000000031, 31, id="global-int"),
        pytest.param("31", 31, id="local-string"),
        pytest.param(31, 31, id="local-int"),
        pytest.param("10000000000005", 5, id="shard-1"),
        pytest.param("urn:instructure:canvas:user:21070000000000005", 5, id="caliper-urn"),
        pytest.param(None, None, id="null"),
        pytest.param("", None, id="empty"),
    ],
)
def test_ids_become_local(value, expected):
    assert local_id(value) == expected


@pytest.mark.parametrize("value", [pytest.param("abc", id="text"), pytest.param(-3, id="negative"), pytest.param(True, id="bool"), pytest.param(3.5, id="float"), pytest.param("٣", id="non-ascii-digit")])
def test_non_ids_are_malformed(value):
    with pytest.raises(MalformedEvent, match="user_id"):
        local_id(value, "user_id")


# -- both formats ----------------------------------------------------------------------------


@pytest.mark.parametrize("document", [pytest.param(canvas_event(), id="canvas"), pytest.param(caliper_event(), id="caliper")])
def test_an_enrollment_event_in_either_format_normalizes_to_local_ids_and_its_actor(document):
    event = parse_event(document)
    assert (event.kind, event.event_name, event.event_time) == (ENROLLMENT, "enrollment_created", "2026-09-03T10:00:00.123Z")
    assert (event.enrollment_id, event.course_id, event.course_section_id, event.user_id) == (31, 7, 8, 5)
    assert (event.type, event.workflow_state, event.user_name) == ("TeacherEnrollment", "invited", "Grace Hopper")
    assert event.limit_privileges_to_course_section is False
    actor = event.actor
    assert (actor.user_id, actor.real_user_id, actor.developer_key_id) == (2, None, None)
    assert (actor.request_id, actor.url, actor.user_agent) == (REQUEST_ID, "https://canvas.test/courses/7/enroll_users", "Mozilla/5.0")
    assert (actor.context_id, actor.root_account_id, actor.session_id) == (7, 1, "ef68")
    assert derive_via(event) == "ui"


def test_the_format_is_recorded_but_the_dedup_key_does_not_depend_on_it():
    canvas, caliper = parse_event(canvas_event()), parse_event(caliper_event())
    assert (canvas.format, caliper.format) == (CANVAS_FORMAT, CALIPER_FORMAT)
    assert canvas.key == caliper.key == parse_event(canvas_event()).key
    assert canvas.key != parse_event(canvas_event({"event_time": "2026-09-03T10:00:01Z"})).key


def test_caliper_modified_is_enrollment_updated_and_carries_masquerade_and_key():
    document = caliper_event(action="Modified", developer_key_id="170000000000042")
    document["data"][0]["actor"]["extensions"]["com.instructure.canvas"]["real_user_id"] = g(1)
    event = parse_event(document)
    assert event.event_name == "enrollment_updated"
    assert (event.actor.real_user_id, event.actor.developer_key_id) == (1, "170000000000042")


def test_caliper_user_zero_means_an_unknown_user():
    document = caliper_event()
    document["data"][0]["actor"]["id"] = "urn:instructure:canvas:user:0"
    assert parse_event(document).actor.user_id is None


def test_a_caliper_job_event_has_no_user_and_reads_as_sis():
    event = parse_event(caliper_event(job=True))
    assert (event.actor.user_id, event.actor.request_id, event.actor.job_tag) == (None, None, SIS_JOB_TAG)
    assert derive_via(event) == "sis"


def test_absent_keys_read_as_null():
    document = canvas_event(drop=("session_id", "referrer", "user_name", "associated_user_id", "updated_at", "context_id", "limit_privileges_to_course_section"))
    event = parse_event(document)
    assert (event.actor.session_id, event.actor.referrer, event.actor.context_id) == (None, None, None)
    assert (event.user_name, event.associated_user_id, event.updated_at) == (None, None, None)
    assert event.limit_privileges_to_course_section is None


def test_observer_enrollments_carry_the_observed_user():
    event = parse_event(canvas_event(body={"type": "ObserverEnrollment", "associated_user_id": g(6)}))
    assert event.associated_user_id == 6


def test_sis_batch_events_carry_the_batch():
    document = canvas_event({"event_name": "sis_batch_created", "developer_key_id": "170000000000042"}, drop=("enrollment_id",))
    document["body"] = {"sis_batch_id": g(12), "account_id": g(1), "workflow_state": "created"}
    event = parse_event(document)
    assert (event.kind, event.sis_batch_id, event.account_id, event.workflow_state) == (SIS_BATCH, 12, 1, "created")
    assert event.enrollment_id is None
    assert derive_via(event) is None


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"metadata": {"event_name": "submission_created", "event_time": "2026-09-03T10:00:00Z"}, "body": {"submission_id": "1"}}, id="canvas-other"),
        pytest.param({"metadata": {"event_name": "enrollment_state_created"}, "body": {}}, id="enrollment-state"),
        pytest.param({"metadata": {"event_name": "logged_in"}}, id="no-body-no-time"),
        pytest.param(caliper_event(entity="submission"), id="caliper-other"),
    ],
)
def test_other_event_types_are_recognised_as_ignored(document):
    event = parse_event(document)
    assert event.kind == IGNORED and event.ignored
    assert derive_via(event) is None


# -- the channel (§1.7) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "via"),
    [
        pytest.param(canvas_event(), "ui", id="ui-teacher"),
        pytest.param(canvas_event({"user_id": g(9), "real_user_id": g(1)}), "ui", id="ui-masquerading-admin"),
        pytest.param(canvas_event({"developer_key_id": "170000000000042", "url": "https://canvas.test/api/v1/courses/7/enrollments"}), "api", id="api-developer-key"),
        pytest.param(canvas_event({"developer_key_id": 170000000000001}), "api", id="api-personal-token-int-key"),
        pytest.param(job_event(), "sis", id="sis-job"),
        pytest.param(job_event(job_tag="EnrollmentState.invalidate_states_for_course_or_section"), "canvas", id="other-job"),
        pytest.param(canvas_event({"user_id": g(5)}), "self", id="self-ui"),
        pytest.param(canvas_event({"user_id": g(5), "developer_key_id": "170000000000001"}), "self", id="self-api"),
        pytest.param(canvas_event({"user_id": g(5), "real_user_id": g(1)}), "ui", id="admin-masquerading-as-the-student-is-not-self"),
        pytest.param(canvas_event(drop=("user_id",)), None, id="no-actor"),
    ],
)
def test_via_follows_the_channel_table(document, via):
    assert derive_via(parse_event(document)) == via


@pytest.mark.parametrize(
    ("url", "via"),
    [pytest.param("https://canvas.test/api/v1/courses/7/enrollments", "api", id="api-url"), pytest.param("https://canvas.test/courses/7/enroll_users", "ui", id="ui-url")],
)
def test_caliper_has_no_developer_key_so_the_url_tells_api_from_ui(url, via):
    assert derive_via(parse_event(caliper_event(request_url=url))) == via


def test_a_linked_observer_enrollment_in_the_same_request_is_canvas_s_own():
    student = parse_event(canvas_event({"developer_key_id": "170000000000042"}, {"enrollment_id": g(40), "user_id": g(5), "type": "StudentEnrollment"}))
    observer = parse_event(canvas_event({"developer_key_id": "170000000000042"}, {"enrollment_id": g(41), "user_id": g(6), "type": "ObserverEnrollment", "associated_user_id": g(5)}))
    assert derive_via(observer, [student, observer]) == "canvas"
    assert derive_via(observer) == "api"  # alone, it looks like a direct create
    other_request = parse_event(canvas_event({"request_id": "other"}, {"user_id": g(5), "type": "StudentEnrollment"}))
    assert derive_via(observer, [other_request]) == "api"


# -- the lookup's actor ----------------------------------------------------------------------


def test_the_actor_comes_from_the_earliest_created_event_whatever_the_order():
    created = parse_event(canvas_event())
    later_created = parse_event(canvas_event({"event_time": "2026-09-03T10:00:02Z", "user_id": g(9)}))
    updated = parse_event(canvas_event({"event_name": "enrollment_updated", "event_time": "2026-09-03T09:00:00Z", "user_id": g(1)}))
    assert actor_event([updated, later_created, created, created]) is created
    assert actor_event([updated]) is updated
    assert actor_event([parse_event({"metadata": {"event_name": "logged_in"}})]) is None
    assert actor_event([]) is None


def test_event_times_of_mixed_precision_and_offsets_are_ordered_by_moment():
    a = parse_event(canvas_event({"event_time": "2026-09-03T12:00:00+02:00"}))  # 10:00Z
    b = parse_event(canvas_event({"event_time": "2026-09-03T10:00:00.500Z"}))
    assert actor_event([b, a]) is a


def test_the_actor_object_has_the_lookup_s_fields():
    event = parse_event(canvas_event())
    assert actor_json(event, name="Terry Teacher") == {
        "user_id": 2, "name": "Terry Teacher", "real_user_id": None, "via": "ui",
        "developer_key_id": None, "request_id": REQUEST_ID,
        "event_time": "2026-09-03T10:00:00.123Z", "source": "live_events",
    }
    assert actor_json(parse_event(job_event()))["via"] == "sis"


# -- malformed input -------------------------------------------------------------------------


def _without(document: dict[str, Any], part: str, name: str) -> dict[str, Any]:
    document[part].pop(name)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param([], "JSON object", id="not-an-object"),
        pytest.param({"hello": 1}, "neither Canvas", id="unknown-shape"),
        pytest.param({"metadata": "x", "body": {}}, "metadata must be an object", id="metadata-not-object"),
        pytest.param({"body": {}}, "metadata is missing", id="no-metadata"),
        pytest.param(_without(canvas_event(), "metadata", "event_name"), "event_name is missing", id="no-event-name"),
        pytest.param(_without(canvas_event(), "metadata", "event_time"), "event_time is missing", id="no-event-time"),
        pytest.param(canvas_event({"event_time": "yesterday"}), "not an ISO 8601 time", id="bad-event-time"),
        pytest.param(_without(canvas_event(), "body", "enrollment_id"), "body.enrollment_id is missing", id="no-enrollment-id"),
        pytest.param(canvas_event(body={"course_id": "seven"}), "body.course_id", id="bad-course-id"),
        pytest.param(canvas_event({"user_id": {"id": 2}}), "metadata.user_id", id="bad-actor"),
        pytest.param(canvas_event({"request_id": 5}), "metadata.request_id must be a string", id="bad-request-id"),
        pytest.param(canvas_event(body={"limit_privileges_to_course_section": "no"}), "must be a boolean", id="bad-boolean"),
        pytest.param({"data": []}, "non-empty list", id="caliper-empty"),
        pytest.param({"data": ["x"]}, r"data\[0\] must be an object", id="caliper-item-not-object"),
    ],
)
def test_malformed_events_say_what_is_wrong(document, message):
    with pytest.raises(MalformedEvent, match=message):
        parse_event(document)


def test_live_event_is_a_frozen_value():
    event = parse_event(canvas_event())
    assert isinstance(event, LiveEvent)
    with pytest.raises(AttributeError):
        event.user_id = 1  # type: ignore[misc]
