"""One decoded Canvas Live Event (Canvas or Caliper format) -> a normalized `LiveEvent` (pure).

Facts this module relies on (shared/canvas/provenance-sources.md §1):

- Canvas format is ``{"metadata": {...}, "body": {...}}``; Caliper 1.1 is an envelope whose
  ``data[0]`` holds ``actor``, ``action``, ``object`` and ``extensions["com.instructure.canvas"]``.
- Ids in bodies and in the metadata's user/context ids are **global ids** (shard * 10^13 + local
  id), sent as strings; the REST API answers local ids, so every id is reduced to its local part.
  ``developer_key_id`` stays as sent: keys live on Instructure's own shard, and admins compare it
  with the key id their Developer Keys page shows.
- Under ``compact_live_events`` null keys are removed: an absent key reads as null.
- Request-originated events carry ``user_id`` and ``request_id``; job-originated ones carry
  ``job_id``/``job_tag`` and no user (§1.3). The channel rules of §1.7 are in `derive_via`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

SHARD_FACTOR = 10**13
ENROLLMENT_EVENTS = ("enrollment_created", "enrollment_updated")
SIS_BATCH_EVENTS = ("sis_batch_created", "sis_batch_updated")
ENROLLMENT, SIS_BATCH, IGNORED = "enrollment", "sis_batch", "ignored"
CANVAS_FORMAT, CALIPER_FORMAT = "canvas", "caliper"
CALIPER_EXTENSION = "com.instructure.canvas"
CALIPER_ACTIONS = {"Created": "created", "Modified": "updated"}
VIA_UI, VIA_API, VIA_SIS, VIA_SELF, VIA_CANVAS = "ui", "api", "sis", "self", "canvas"
VIAS = (VIA_UI, VIA_API, VIA_SIS, VIA_SELF, VIA_CANVAS)
OBSERVER = "ObserverEnrollment"
STUDENT = "StudentEnrollment"


class MalformedEvent(ValueError):
    """The document is not a Live Event this module can read; the message says what is wrong."""


@dataclass(frozen=True)
class EventActor:
    """Who and what made the change: the event's metadata (request or job context).

    All ids are local. ``user_id`` is the acting user (the masqueraded-as user when an admin
    masquerades; ``real_user_id`` is then the admin). Job-originated events have no user,
    request or URL, only ``job_id``/``job_tag``.
    """

    user_id: int | None = None
    real_user_id: int | None = None
    developer_key_id: str | None = None
    request_id: str | None = None
    session_id: str | None = None
    http_method: str | None = None
    url: str | None = None
    referrer: str | None = None
    user_agent: str | None = None
    client_ip: str | None = None
    hostname: str | None = None
    user_login: str | None = None
    user_sis_id: str | None = None
    context_type: str | None = None
    context_id: int | None = None
    context_role: str | None = None
    root_account_id: int | None = None
    job_id: str | None = None
    job_tag: str | None = None

    @property
    def from_job(self) -> bool:
        return self.user_id is None and self.request_id is None and (
            self.job_id is not None or self.job_tag is not None
        )


@dataclass(frozen=True)
class LiveEvent:
    """One Live Event, normalized. ``kind`` is `ENROLLMENT`, `SIS_BATCH` or `IGNORED`.

    Enrollment fields are null for other kinds; ``sis_batch_id``/``account_id`` are set for SIS
    batch events. ``event_time`` is the ISO 8601 text Canvas sent (order events by it: they are
    not sequenced). ``key`` is the same for every delivery of the same event, whatever its
    format, so storage can be idempotent under duplicate delivery (two changes to one row in
    one request within the same millisecond and to the same state share a key: they name
    the same actor anyway).
    """

    event_name: str
    event_time: str | None
    format: str
    kind: str
    actor: EventActor
    enrollment_id: int | None = None
    course_id: int | None = None
    course_section_id: int | None = None
    user_id: int | None = None
    associated_user_id: int | None = None
    user_name: str | None = None
    type: str | None = None
    workflow_state: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    limit_privileges_to_course_section: bool | None = None
    sis_batch_id: int | None = None
    account_id: int | None = None

    @property
    def ignored(self) -> bool:
        return self.kind == IGNORED

    @property
    def key(self) -> str:
        parts = [
            self.event_name, self.event_time, self.enrollment_id, self.sis_batch_id,
            self.workflow_state, self.actor.request_id, self.actor.job_id,
        ]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def local_id(value: Any, field: str = "id") -> int | None:
    """A Canvas id (global or local, int or digit string, or a Caliper URN) -> its local id."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MalformedEvent(f"{field} must be an id, not {value!r}")
    if isinstance(value, str) and value.startswith("urn:"):
        value = value.rsplit(":", 1)[-1]
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise MalformedEvent(f"{field} must be a Canvas id, not {value!r}")
    return value % SHARD_FACTOR


def parse_event(document: Any) -> LiveEvent:
    """A decoded event in either format -> `LiveEvent`; raises `MalformedEvent`."""
    if not isinstance(document, Mapping):
        raise MalformedEvent("an event must be a JSON object")
    if "metadata" in document or "body" in document:
        return _from_canvas(document)
    if "data" in document:
        return _from_caliper(document)
    raise MalformedEvent("neither Canvas format (metadata, body) nor Caliper (data[])")


# -- Canvas format ---------------------------------------------------------------------------


def _from_canvas(document: Mapping[str, Any]) -> LiveEvent:
    metadata = _mapping(document.get("metadata"), "metadata")
    body = _mapping(document.get("body", {}), "body")
    event_name = _text(metadata.get("event_name"), "metadata.event_name")
    if not event_name:
        raise MalformedEvent("metadata.event_name is missing")
    kind = _kind(event_name)
    event_time = _time(metadata.get("event_time"), "metadata.event_time", kind != IGNORED)
    actor = EventActor(
        user_id=local_id(metadata.get("user_id"), "metadata.user_id"),
        real_user_id=local_id(metadata.get("real_user_id"), "metadata.real_user_id"),
        developer_key_id=_id_text(metadata.get("developer_key_id"), "metadata.developer_key_id"),
        request_id=_text(metadata.get("request_id"), "metadata.request_id"),
        session_id=_text(metadata.get("session_id"), "metadata.session_id"),
        http_method=_text(metadata.get("http_method"), "metadata.http_method"),
        url=_text(metadata.get("url"), "metadata.url"),
        referrer=_text(metadata.get("referrer"), "metadata.referrer"),
        user_agent=_text(metadata.get("user_agent"), "metadata.user_agent"),
        client_ip=_text(metadata.get("client_ip"), "metadata.client_ip"),
        hostname=_text(metadata.get("hostname"), "metadata.hostname"),
        user_login=_text(metadata.get("user_login"), "metadata.user_login"),
        user_sis_id=_text(metadata.get("user_sis_id"), "metadata.user_sis_id"),
        context_type=_text(metadata.get("context_type"), "metadata.context_type"),
        context_id=local_id(metadata.get("context_id"), "metadata.context_id"),
        context_role=_text(metadata.get("context_role"), "metadata.context_role"),
        root_account_id=local_id(metadata.get("root_account_id"), "metadata.root_account_id"),
        job_id=_id_text(metadata.get("job_id"), "metadata.job_id"),
        job_tag=_text(metadata.get("job_tag"), "metadata.job_tag"),
    )
    event = LiveEvent(event_name, event_time, CANVAS_FORMAT, kind, actor)
    if kind == ENROLLMENT:
        return _with_enrollment(event, body, "body")
    if kind == SIS_BATCH:
        return _with_sis_batch(event, body)
    return event


def _with_enrollment(event: LiveEvent, body: Mapping[str, Any], where: str) -> LiveEvent:
    enrollment_id = local_id(body.get("enrollment_id"), f"{where}.enrollment_id")
    if enrollment_id is None:
        raise MalformedEvent(f"{where}.enrollment_id is missing")
    limit = body.get("limit_privileges_to_course_section")
    if limit is not None and not isinstance(limit, bool):
        raise MalformedEvent(f"{where}.limit_privileges_to_course_section must be a boolean")
    return replace(
        event,
        enrollment_id=enrollment_id,
        course_id=local_id(body.get("course_id"), f"{where}.course_id"),
        course_section_id=local_id(body.get("course_section_id"), f"{where}.course_section_id"),
        user_id=local_id(body.get("user_id"), f"{where}.user_id"),
        associated_user_id=local_id(
            body.get("associated_user_id"), f"{where}.associated_user_id",
        ),
        user_name=_text(body.get("user_name"), f"{where}.user_name"),
        type=_text(body.get("type"), f"{where}.type"),
        workflow_state=_text(body.get("workflow_state"), f"{where}.workflow_state"),
        created_at=_time(body.get("created_at"), f"{where}.created_at", False),
        updated_at=_time(body.get("updated_at"), f"{where}.updated_at", False),
        limit_privileges_to_course_section=limit,
    )


def _with_sis_batch(event: LiveEvent, body: Mapping[str, Any]) -> LiveEvent:
    sis_batch_id = local_id(body.get("sis_batch_id"), "body.sis_batch_id")
    if sis_batch_id is None:
        raise MalformedEvent("body.sis_batch_id is missing")
    return replace(
        event, sis_batch_id=sis_batch_id,
        account_id=local_id(body.get("account_id"), "body.account_id"),
        workflow_state=_text(body.get("workflow_state"), "body.workflow_state"),
    )


# -- Caliper format --------------------------------------------------------------------------


def _from_caliper(document: Mapping[str, Any]) -> LiveEvent:
    data = document.get("data")
    if not isinstance(data, list) or not data:
        raise MalformedEvent("Caliper data must be a non-empty list")
    item = _mapping(data[0], "data[0]")
    action = _text(item.get("action"), "data[0].action")
    obj = _mapping(item.get("object", {}), "data[0].object")
    object_id = _text(obj.get("id"), "data[0].object.id") or ""
    entity = object_id.split(":")[-2] if object_id.count(":") >= 2 else ""
    event_name = _caliper_name(entity, action, _text(item.get("type"), "data[0].type"))
    kind = _kind(event_name)
    event_time = _time(item.get("eventTime"), "data[0].eventTime", kind != IGNORED)
    actor_doc = _mapping(item.get("actor", {}), "data[0].actor")
    actor_ext = _extension(actor_doc, "data[0].actor")
    ext = _extension(item, "data[0]")
    user_id = None
    if actor_doc.get("type") == "Person":
        user_id = local_id(actor_doc.get("id"), "data[0].actor.id") or None  # user:0 = unknown
    group = _mapping(item.get("group") or {}, "data[0].group")
    membership = _mapping(item.get("membership") or {}, "data[0].membership")
    session = _mapping(item.get("session") or {}, "data[0].session")
    roles = membership.get("roles")
    actor = EventActor(
        user_id=user_id,
        real_user_id=local_id(actor_ext.get("real_user_id"), "actor real_user_id"),
        developer_key_id=_id_text(ext.get("developer_key_id"), "developer_key_id"),
        request_id=_text(ext.get("request_id"), "request_id"),
        session_id=_urn_tail(session.get("id")),
        url=_text(ext.get("request_url"), "request_url"),
        referrer=_text(item.get("referrer"), "data[0].referrer"),
        user_agent=_text(ext.get("user_agent"), "user_agent"),
        client_ip=_text(ext.get("client_ip"), "client_ip"),
        hostname=_text(ext.get("hostname"), "hostname"),
        user_login=_text(actor_ext.get("user_login"), "user_login"),
        user_sis_id=_text(actor_ext.get("user_sis_id"), "user_sis_id"),
        context_type=_text(group.get("type"), "data[0].group.type"),
        context_id=local_id(group.get("id"), "data[0].group.id"),
        context_role=(
            ",".join(str(role) for role in roles) if isinstance(roles, list) and roles else None
        ),
        root_account_id=local_id(actor_ext.get("root_account_id"), "root_account_id"),
        job_id=_id_text(ext.get("job_id"), "job_id"),
        job_tag=_text(ext.get("job_tag"), "job_tag"),
    )
    event = LiveEvent(event_name, event_time, CALIPER_FORMAT, kind, actor)
    object_ext = _extension(obj, "data[0].object")
    if kind == ENROLLMENT:
        body = {**object_ext, "enrollment_id": object_id,
                "created_at": obj.get("dateCreated"), "updated_at": obj.get("dateModified")}
        return _with_enrollment(event, body, "data[0].object")
    if kind == SIS_BATCH:
        return _with_sis_batch(event, {**object_ext, "sis_batch_id": object_id})
    return event


def _caliper_name(entity: str, action: str | None, type_: str | None) -> str:
    if entity in ("enrollment", "sis_batch") and action in CALIPER_ACTIONS:
        return f"{entity}_{CALIPER_ACTIONS[action]}"
    return f"caliper:{type_ or 'Event'}:{action or ''}:{entity}"


def _extension(document: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    extensions = _mapping(document.get("extensions") or {}, f"{where}.extensions")
    return _mapping(extensions.get(CALIPER_EXTENSION) or {}, f"{where}.extensions")


def _urn_tail(value: Any) -> str | None:
    return value.rsplit(":", 1)[-1] if isinstance(value, str) and value else None


# -- the channel (§1.7) ----------------------------------------------------------------------


def derive_via(event: LiveEvent, same_request: Iterable[LiveEvent] = ()) -> str | None:
    """How the enrollment change was made, from the metadata (provenance-sources.md §1.7).

    - ``sis``: a job-originated event whose job is the SIS importer (``job_tag`` names SIS).
    - ``canvas``: Canvas's own side effect: another job-originated event, or an observer's
      enrollment linked to a student enrolled in the same request. A single event cannot show
      the latter, so pass the other events with the same ``request_id`` as ``same_request``.
    - ``self``: the actor is the enrolled user, and nobody is masquerading.
    - ``api``: an access token (``developer_key_id`` present; personal tokens carry the
      default key, so they count as ``api`` too). Caliper events are not documented to carry
      the key (§1.6), so there an ``/api/v1/`` URL counts as ``api``: a Canvas page calling
      the API with its session cookie then reads as ``api`` too.
    - ``ui``: a browser session (an acting user, no developer key).
    - None: not an enrollment event, or no actor at all (nothing to say).
    """
    if event.kind != ENROLLMENT:
        return None
    actor = event.actor
    if actor.from_job:
        return VIA_SIS if "sis" in (actor.job_tag or "").lower() else VIA_CANVAS
    if actor.user_id is None:
        return None
    if _linked_observer(event, same_request):
        return VIA_CANVAS
    if actor.user_id == event.user_id and actor.real_user_id in (None, actor.user_id):
        return VIA_SELF
    if actor.developer_key_id:
        return VIA_API
    if event.format == CALIPER_FORMAT and "/api/v1/" in (actor.url or ""):
        return VIA_API
    return VIA_UI


def _linked_observer(event: LiveEvent, same_request: Iterable[LiveEvent]) -> bool:
    if event.type != OBSERVER or event.associated_user_id is None or not event.actor.request_id:
        return False
    return any(
        other.kind == ENROLLMENT and other.actor.request_id == event.actor.request_id
        and other.type == STUDENT and other.user_id == event.associated_user_id
        and other.course_id == event.course_id
        for other in same_request
    )


# -- the lookup's `actor` ---------------------------------------------------------------------


def actor_event(events: Iterable[LiveEvent]) -> LiveEvent | None:
    """Of one enrollment's events (any order, duplicates included), the one that says who
    made it: the earliest `enrollment_created`, else the earliest `enrollment_updated` (a
    re-enrolled row is reused and emits only updates, §1.2); None without either."""
    enrollment_events = [e for e in events if e.kind == ENROLLMENT and e.event_time]
    for name in ENROLLMENT_EVENTS:
        named = [e for e in enrollment_events if e.event_name == name]
        if named:
            return min(named, key=lambda e: _moment(e.event_time or ""))
    return None


def actor_json(
    event: LiveEvent, same_request: Iterable[LiveEvent] = (), name: str | None = None,
) -> dict[str, Any]:
    """The lookup's ``actor`` object for the event `actor_event` chose. ``name`` is the
    actor's name when the caller knows it (the course listing's ``user``), else null."""
    return {
        "user_id": event.actor.user_id,
        "name": name,
        "real_user_id": event.actor.real_user_id,
        "via": derive_via(event, same_request),
        "developer_key_id": event.actor.developer_key_id,
        "request_id": event.actor.request_id,
        "event_time": event.event_time,
        "source": "live_events",
    }


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- field readers ---------------------------------------------------------------------------


def _kind(event_name: str) -> str:
    if event_name in ENROLLMENT_EVENTS:
        return ENROLLMENT
    return SIS_BATCH if event_name in SIS_BATCH_EVENTS else IGNORED


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        raise MalformedEvent(f"{where} is missing")
    if not isinstance(value, Mapping):
        raise MalformedEvent(f"{where} must be an object")
    return value


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{where} must be a string")
    return value


def _id_text(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MalformedEvent(f"{where} must be an id")
    return str(value)


def _time(value: Any, where: str, required: bool) -> str | None:
    text = _text(value, where)
    if text is None:
        if required:
            raise MalformedEvent(f"{where} is missing")
        return None
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedEvent(f"{where} is not an ISO 8601 time: {text!r}") from None
    return text
