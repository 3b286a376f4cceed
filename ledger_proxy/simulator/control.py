"""The `/_sim/` test-control API: build worlds, inspect ground truth, inject faults (no auth)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ledger_proxy.simulator.enrollments import create_linked_enrollment_for
from ledger_proxy.simulator.jobs import queue_sis_import, run_jobs
from ledger_proxy.simulator.live_events import LiveEventsConfig, emit_sis_batch
from ledger_proxy.simulator.models import CHANNELS, STUDENT, Context, User, iso
from ledger_proxy.simulator.serialize import ground_truth_json, sis_import_json
from ledger_proxy.simulator.sis import new_import
from ledger_proxy.simulator.state import FaultRule, Settings
from ledger_proxy.simulator.web import sim_state
from ledger_proxy.simulator.world import (
    DirectEnrollment,
    WorldError,
    enroll_directly,
    seed,
    seed_demo,
)

bp = Blueprint("canvas_simulator_control", __name__, url_prefix="/_sim")
FAULT_ACTIONS = ("delay", "drop", "error", "throttle")


@bp.errorhandler(WorldError)
@bp.errorhandler(ValueError)
@bp.errorhandler(KeyError)
@bp.errorhandler(TypeError)
def bad_control_request(exc: Exception) -> tuple[Response, int]:
    return jsonify({"error": str(exc)}), 400


def body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def user_out(user: User) -> dict[str, Any]:
    return {
        "id": user.id, "name": user.name, "sortable_name": user.sortable_name,
        "short_name": user.short_name, "sis_user_id": user.sis_user_id,
        "integration_id": user.integration_id, "login_id": user.login_id, "admin": user.admin,
        "token": user.token, "created_at": iso(user.created_at),
    }


@bp.post("/reset")
def reset() -> Response:
    sim_state().reset()
    return jsonify({"ok": True})


@bp.post("/demo")
def demo() -> Response:
    world = seed_demo(sim_state())
    return jsonify({
        "admin": user_out(world["admin"]), "teacher": user_out(world["teacher"]),
        "students": [user_out(s) for s in world["students"]],
        "course_id": world["course"].id,
        "section_ids": [s.id for s in world["sections"]],
    })


@bp.post("/users")
def add_user() -> tuple[Response, int]:
    data = body()
    user = sim_state().add_user(
        str(data["name"]), sortable_name=data.get("sortable_name"),
        short_name=data.get("short_name"), sis_user_id=data.get("sis_user_id"),
        integration_id=data.get("integration_id"), login_id=data.get("login_id"),
        admin=bool(data.get("admin", False)), token=data.get("token"),
        registered=bool(data.get("registered", True)),
    )
    return jsonify(user_out(user)), 201


@bp.post("/tokens/revoke")
def revoke_token() -> Response:
    """A user (or an admin) deleting an access token in Canvas: it stops working at once."""
    token = str(body().get("token", ""))
    state = sim_state()
    with state.lock:
        if token not in state.tokens:
            raise ValueError("no such token")
        del state.tokens[token]
        state.oauth_tokens.pop(token, None)
    return jsonify({"revoked": True})


@bp.get("/users")
def list_users() -> Response:
    with sim_state().lock:
        return jsonify([user_out(u) for u in sim_state().users.values()])


@bp.post("/courses")
def add_course() -> tuple[Response, int]:
    data = body()
    course = sim_state().add_course(
        str(data["name"]), sis_course_id=data.get("sis_course_id"),
        workflow_state=data.get("workflow_state", "available"),
        course_code=data.get("course_code"), integration_id=data.get("integration_id"),
    )
    course.self_enrollment_code = data.get("self_enrollment_code")
    return jsonify(course_out(course.id)), 201


@bp.patch("/courses/<int:course_id>")
def update_course(course_id: int) -> Response:
    state = sim_state()
    with state.lock:
        course = state.courses[course_id]
        new_state = body().get("workflow_state", course.workflow_state)
        if new_state not in ("available", "unpublished", "completed", "deleted"):
            raise ValueError(f"unknown course workflow_state: {new_state}")
        course.workflow_state = new_state
        if "self_enrollment_code" in body():
            course.self_enrollment_code = body()["self_enrollment_code"]
        return jsonify(course_out(course_id))


def course_out(course_id: int) -> dict[str, Any]:
    state = sim_state()
    course = state.courses[course_id]
    return {
        "id": course.id, "name": course.name, "course_code": course.course_code,
        "sis_course_id": course.sis_course_id, "workflow_state": course.workflow_state,
        "default_section_id": course.default_section_id,
        "section_ids": [s.id for s in state.sections.values() if s.course_id == course.id],
        "self_enrollment_code": course.self_enrollment_code,
    }


@bp.post("/courses/<int:course_id>/sections")
def add_section(course_id: int) -> tuple[Response, int]:
    data = body()
    section = sim_state().add_section(
        course_id, str(data["name"]), sis_section_id=data.get("sis_section_id"),
        integration_id=data.get("integration_id"),
    )
    return jsonify(section_out(section.id)), 201


@bp.patch("/sections/<int:section_id>")
def update_section(section_id: int) -> Response:
    state = sim_state()
    with state.lock:
        section = state.sections[section_id]
        section.workflow_state = body().get("workflow_state", section.workflow_state)
        return jsonify(section_out(section_id))


def section_out(section_id: int) -> dict[str, Any]:
    section = sim_state().sections[section_id]
    return {
        "id": section.id, "course_id": section.course_id, "name": section.name,
        "sis_section_id": section.sis_section_id, "workflow_state": section.workflow_state,
        "default": section.default,
    }


@bp.post("/roles")
def add_role() -> tuple[Response, int]:
    data = body()
    role = sim_state().add_role(
        str(data["name"]), str(data["base_role_type"]), data.get("workflow_state", "active"),
    )
    return jsonify({
        "id": role.id, "name": role.name, "base_role_type": role.base_role_type,
        "workflow_state": role.workflow_state,
    }), 201


@bp.post("/ui/enrollments")
def ui_enrollment() -> tuple[Response, int]:
    return _direct_enrollment("ui")


@bp.post("/api_bypass/enrollments")
def api_bypass_enrollment() -> tuple[Response, int]:
    return _direct_enrollment("api")


def _direct_enrollment(channel: str) -> tuple[Response, int]:
    data = body()
    state = sim_state()
    enrollment, created = enroll_directly(state, DirectEnrollment(
        course_id=data["course_id"], user_id=data["user_id"], channel=channel,
        actor_user_id=data.get("actor_user_id"), type=data.get("type"),
        role_id=data.get("role_id"), section_id=data.get("section_id"),
        enrollment_state=data.get("enrollment_state"),
        associated_user_id=data.get("associated_user_id"), user_agent=data.get("user_agent"),
        real_user_id=data.get("real_user_id"), developer_key_id=data.get("developer_key_id"),
        base_url=request.host_url.rstrip("/"),
    ))
    with state.lock:
        out = ground_truth_json(state, enrollment)
    out["created"] = created
    return jsonify(out), 201 if created else 200


@bp.post("/sis_imports")
def sis_import() -> tuple[Response, int]:
    data = body()
    state = sim_state()
    with state.lock:
        if "rows" in data:
            imported = new_import(state, None, rows=list(data["rows"]))
        else:
            imported = new_import(state, None, csv_text=str(data["csv"]))
        ctx = Context("sis", sis_import_id=imported.id)
        emit_sis_batch(state, imported, ctx, created=True)
        queue_sis_import(state, imported.id, ctx)
        if state.settings.auto_run_jobs:
            run_jobs(state)
        return jsonify(sis_import_json(state, imported)), 201


@bp.post("/seed")
def seed_enrollments() -> tuple[Response, int]:
    data = body()
    channel = data.get("channel", "seed")
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel: {channel}")
    state = sim_state()
    with state.lock:
        rows = seed(
            state, data["course_id"], int(data["count"]),
            type_=data.get("type", "StudentEnrollment"),
            enrollment_state=data.get("enrollment_state"), channel=channel,
            section_id=data.get("section_id"),
        )
        return jsonify({
            "count": len(rows),
            "enrollment_ids": [e.id for e in rows],
            "user_ids": [e.user_id for e in rows],
        }), 201


@bp.get("/enrollments")
def ground_truth() -> Response:
    state = sim_state()
    course_id = request.args.get("course_id", type=int)
    user_id = request.args.get("user_id", type=int)
    with state.lock:
        rows = [
            ground_truth_json(state, e) for e in state.enrollments.values()
            if (course_id is None or e.course_id == course_id)
            and (user_id is None or e.user_id == user_id)
        ]
    return jsonify(rows)


@bp.get("/requests")
def requests_log() -> Response:
    state = sim_state()
    pattern = request.args.get("path")
    with state.lock:
        entries = [dict(e) for e in state.request_log]
    if pattern:
        entries = [e for e in entries if re.search(pattern, e["path"])]
    return jsonify(entries)


@bp.delete("/requests")
def clear_requests() -> Response:
    with sim_state().lock:
        sim_state().request_log.clear()
    return jsonify({"ok": True})


@bp.post("/faults")
def set_faults() -> Response:
    data = body()
    rules = [fault_rule(raw) for raw in data.get("rules", [])]
    state = sim_state()
    with state.lock:
        state.faults = (state.faults if data.get("append") else []) + rules
        return jsonify([rule.as_json() for rule in state.faults])


@bp.get("/faults")
def list_faults() -> Response:
    with sim_state().lock:
        return jsonify([rule.as_json() for rule in sim_state().faults])


@bp.delete("/faults")
def clear_faults() -> Response:
    with sim_state().lock:
        sim_state().faults = []
    return jsonify({"ok": True})


def fault_rule(raw: dict[str, Any]) -> FaultRule:
    action = raw.get("action")
    if action not in FAULT_ACTIONS:
        raise ValueError(f"fault action must be one of {FAULT_ACTIONS}")
    when = raw.get("when", "before")
    if when not in ("before", "after"):
        raise ValueError("fault `when` must be 'before' or 'after'")
    status = raw.get("status")
    if action == "throttle" and status not in (None, 403, 429):
        raise ValueError("throttle faults answer 403 or 429")
    if raw.get("path"):
        re.compile(raw["path"])
    times = raw.get("times")
    return FaultRule(
        action=action, method=raw.get("method"), path=raw.get("path"), when=when,
        seconds=float(raw.get("seconds", 0.0)), status=int(status) if status else None,
        times=int(times) if times is not None else None,
    )


@bp.get("/settings")
def get_settings() -> Response:
    return jsonify(vars(sim_state().settings))


@bp.post("/settings")
def update_settings() -> Response:
    data = body()
    state = sim_state()
    with state.lock:
        for name, value in data.items():
            if name not in Settings.__dataclass_fields__:
                raise ValueError(f"unknown setting: {name}")
            if name == "throttle" and value not in (None, 403, 429):
                raise ValueError("throttle must be null, 403 or 429")
            setattr(state.settings, name, value)
        return jsonify(vars(state.settings))


@bp.post("/jobs/run")
def run_queued_jobs() -> Response:
    return jsonify({"ran": run_jobs(sim_state())})


@bp.get("/jobs")
def list_jobs() -> Response:
    with sim_state().lock:
        return jsonify([{"kind": j.kind, "id": j.target_id} for j in sim_state().jobs])


@bp.post("/clock")
def set_clock() -> Response:
    """`{"now": "<ISO>"}` freezes, `{"advance_seconds": 5}` moves, `{"now": null}` thaws."""
    data = body()
    state = sim_state()
    with state.lock:
        if "now" in data:
            moment = data["now"]
            frozen = datetime.fromisoformat(moment.replace("Z", "+00:00")) if moment else None
            state.set_clock(frozen)
        if "advance_seconds" in data:
            state.advance_clock(float(data["advance_seconds"]))
        return jsonify({"now": state.now().isoformat()})


@bp.post("/observer_links")
def link_observer() -> tuple[Response, int]:
    """`{observer_id, student_id, actor_user_id?, channel?: ui}`: a parent account
    (`UserObservationLink.create_or_restore`). The student's new enrollments get linked
    ObserverEnrollments in the same request; the link itself enrolls the observer in each of
    the student's active or pending StudentEnrollments now (`create_linked_enrollments`)."""
    data = body()
    state = sim_state()
    with state.lock:
        observer = state.users[int(data["observer_id"])]
        student = state.users[int(data["student_id"])]
        links = state.observer_links.setdefault(student.id, [])
        if observer.id not in links:
            links.append(observer.id)
        actor_user_id = data.get("actor_user_id")
        # Linking is a request of its own in Canvas (its own request id, in its Live Events);
        # without an actor it is a background job's.
        ctx = Context(
            channel=data.get("channel") or "ui", actor_user_id=actor_user_id,
            request_context_id=str(uuid.uuid4()) if actor_user_id is not None else None,
        )
        made = []
        for enrollment in sorted(state.enrollments.values(), key=lambda e: e.id):
            if (
                enrollment.user_id == student.id and enrollment.type == STUDENT
                and enrollment.workflow_state in ("active", "invited", "creation_pending")
            ):
                linked = create_linked_enrollment_for(
                    state, enrollment, observer, ctx, cause="observer_link",
                )
                if linked is not None:
                    made.append(linked.id)
        return jsonify(
            {"student_id": student.id, "observer_ids": links, "enrollment_ids": made}
        ), 201


# -- Live Events (simulator/live_events.py) -------------------------------------------------


@bp.post("/live_events")
def configure_live_events() -> Response:
    """Start emitting (`{url?, format?, ndjson_path?, faults...}`) or stop (`{"enabled": false}`);
    docs/simulator.md lists the settings."""
    data = body()
    state = sim_state()
    if data.get("enabled", True) is False:
        state.live_events.configure(None)
    else:
        config = LiveEventsConfig.from_json({k: v for k, v in data.items() if k != "enabled"})
        if config.url is None and config.ndjson_path is None:
            raise ValueError("live_events needs a url, an ndjson_path or both")
        state.live_events.configure(config)
    return jsonify(state.live_events.status())


@bp.get("/live_events")
def live_events_status() -> Response:
    return jsonify(sim_state().live_events.status())


@bp.get("/live_events/log")
def live_events_log() -> Response:
    """Every event emitted since the last reset, in emission order, with what became of it."""
    return jsonify(sim_state().live_events.log_json())


@bp.post("/live_events/flush")
def flush_live_events() -> Response:
    """Release held events and wait (up to `timeout` seconds, default 10) until every queued
    event is delivered or has failed; `idle` says whether that happened."""
    timeout = float(body().get("timeout", 10.0))
    sim_state().live_events.flush(min(max(timeout, 0.0), 60.0))
    return jsonify(sim_state().live_events.status())


@bp.get("/live_events/jwks.json")
def live_events_jwks() -> Response:
    return jsonify(sim_state().live_events.jwks())


@bp.post("/live_events/signing_key")
def rotate_signing_key() -> Response:
    """A new signing key (`{pem?, keep_old?}`): the JWKS then lists it (and the old one)."""
    data = body()
    key = sim_state().live_events.set_key(data.get("pem"), bool(data.get("keep_old", False)))
    return jsonify({"kid": key.kid, "jwks": sim_state().live_events.jwks()})
