"""marshmallow schemas at the HTTP edge of the proxy's own API (/ledger/v1/): the query
parameters it accepts, and the JSON it answers (the OpenAPI document's models).

Answers' unknown fields are refused (marshmallow's default, RAISE), which the OpenAPI document
states as ``additionalProperties: false``: a field added to an answer without documenting it
here fails the contract test (tests/test_openapi.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from werkzeug.datastructures import MultiDict

from ..core.live_events import VIAS
from ..core.vocab import ACTIONS, ADOPTED, AMBIGUOUS, CREATED, VERDICTS
from ..errors import ProxyError

# Requests


def load_args(schema: Schema, args: MultiDict[str, str]) -> dict[str, Any]:
    """Query parameters through `schema` (unknown ones refused); 400 naming each bad one.

    Lists (fields.List) take every value of a repeated parameter; others take the last, as
    Canvas does.
    """
    data: dict[str, Any] = {}
    for name in args:
        values = args.getlist(name)
        field = schema.fields.get(name.removesuffix("[]"))
        key = name.removesuffix("[]")
        data[key] = values if field is not None and _is_list(field) else values[-1]
    try:
        loaded: dict[str, Any] = schema.load(data, unknown=RAISE)
    except ValidationError as exc:
        raise ProxyError(400, _describe(exc.normalized_messages())) from None
    return loaded


def _is_list(field: Any) -> bool:
    from marshmallow import fields

    return isinstance(field, fields.List)


def _describe(messages: Any) -> str:
    if isinstance(messages, dict):
        parts = []
        for name, problem in sorted(messages.items()):
            text = "; ".join(problem) if isinstance(problem, list) else str(problem)
            if text == "Unknown field.":
                text = "unknown parameter"
            parts.append(f"{name}: {text}")
        return "invalid parameters: " + ", ".join(parts)
    return f"invalid parameters: {messages}"


class LookupArgs(Schema):
    """Query parameters of GET /ledger/v1/{courses,sections}/<id>/enrollments."""

    provenance = fields.String(
        load_default=None,
        validate=validate.OneOf(VERDICTS),
    )
    include_deleted = fields.Boolean(load_default=False)
    access_token = fields.String(load_default=None)  # Canvas accepts the token here too
    # Issue 14: on request only, manual rows attributed from Canvas page views.
    attribute = fields.String(load_default=None, validate=validate.OneOf(("page_views",)))
    refresh = fields.Boolean(load_default=False)


def _in_utc_range(moment: datetime) -> None:
    """recorded_at is UTC: 0001-01-01T00:00:00+01:00 is a time before year 1 there."""
    try:
        (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValidationError("out of range: not a time between years 1 and 9999 in UTC") from None


class ExportArgs(Schema):
    """Query parameters of GET /ledger/v1/export (unknown ones refused: a typo in a filter
    must not silently widen an auditor's slice to the whole ledger)."""

    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "ndjson")))
    since = fields.DateTime(format="iso", load_default=None, validate=_in_utc_range)
    until = fields.DateTime(format="iso", load_default=None, validate=_in_utc_range)
    course_id = fields.Integer(
        strict=False, load_default=None, validate=validate.Range(min=1, max=2**63 - 1)
    )
    integration = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    action = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    access_token = fields.String(load_default=None)  # Canvas accepts the token here too


# Answers


def _id(description: str = "", **kwargs: Any) -> fields.Integer:
    return fields.Integer(metadata={"description": description} if description else {}, **kwargs)


def _text(description: str = "", **kwargs: Any) -> fields.String:
    return fields.String(metadata={"description": description} if description else {}, **kwargs)


class CanvasErrorMessage(Schema):
    message = _text("What went wrong, for a person.", required=True)
    error_code = _text("A machine-readable code, when there is one.")


class CanvasError(Schema):
    """Canvas's error shape, used for every error the proxy answers itself."""

    errors = fields.List(fields.Nested(CanvasErrorMessage), required=True)
    status = _text("Canvas's status word beside the errors (401: unauthenticated, ...).")


class UserSummary(Schema):
    id = _id("Canvas user id.", required=True)
    name = _text("Display name.", allow_none=True)
    sortable_name = _text("Sortable name.", allow_none=True)


class LedgerEvidence(Schema):
    """What the ledger recorded about the enrollment: its first event, and its last."""

    integration = _text("Integration label of the first recorded request.", allow_none=True)
    actor_user_id = _id("Canvas user behind that request's token.", allow_none=True)
    action = _text(
        "created (the proxy saw Canvas make it), adopted (it existed before the proxy first "
        "touched it, by a re-enrollment or a change) or ambiguous (reconciliation found that a "
        "request whose answer was lost may have made it, and so may something else).",
        required=True,
        validate=validate.OneOf((CREATED, ADOPTED, AMBIGUOUS)),
    )
    first_action = _text(
        "The first action the ledger recorded: created, adopted, or a change (deleted, ...).",
        required=True,
        validate=validate.OneOf(ACTIONS),
    )
    recorded_at = fields.DateTime(required=True, metadata={"description": "Proxy clock, UTC."})
    canvas_request_id = _text("Canvas's X-Request-Context-Id of that request.", allow_none=True)
    request_id = _text("The proxy's own request id (X-Ledger-Request-Id).", required=True)
    last_action = _text("Latest action recorded.", required=True)
    last_recorded_at = fields.DateTime(required=True)
    acting_as_user_id = _id(
        "The user Canvas acted as when actor_user_id masqueraded (as_user_id); null otherwise.",
        allow_none=True,
    )
    label_verified = fields.Boolean(
        allow_none=True,
        metadata={
            "description": "true: the integration registry confirmed the label for the actor; "
            "false: it did not (recorded in 'record' mode); null: no registry, the label is "
            "self-declared."
        },
    )


class PageViewCandidate(Schema):
    """One of several people whose page views match an ambiguous row (issue 14)."""

    user_id = _id("A Canvas user whose page views show an enrollment POST then.", required=True)
    via = _text("ui, api or self, read from that page view.", required=True,
                validate=validate.OneOf(VIAS))
    request_id = _text("The page view's id (Canvas's request id).", allow_none=True)
    event_time = _text("The page view's created_at (whole seconds).", required=True)


class Actor(Schema):
    """Who made the enrollment, as Canvas's Live Events tell it (docs/live-events.md), or,
    asked with ?attribute=page_views, as Canvas page views suggest (docs/attribution.md)."""

    user_id = _id(
        "The Canvas user who made it (local id): the logged-in user, or the user an admin "
        "masqueraded as; not the enrolled user. Null for SIS imports and Canvas's own jobs.",
        required=True, allow_none=True,
    )
    name = _text(
        "That user's name when they are enrolled in the course (Canvas's user object), else "
        "null.", required=True, allow_none=True,
    )
    real_user_id = _id("The admin masquerading as user_id, else null.", required=True,
                       allow_none=True)
    via = _text(
        "How: ui (browser session), api (an access token), sis (the SIS importer's job), self "
        "(self-enrollment), canvas (Canvas's own side effect); null when the event names no "
        "actor.", required=True, allow_none=True,
        validate=validate.OneOf(VIAS),
    )
    developer_key_id = _text(
        "The developer key of the token used, as Canvas sends it (a global id); every "
        "personal access token shares the default key.", required=True, allow_none=True,
    )
    request_id = _text("Canvas's request id (X-Request-Context-Id).", required=True,
                       allow_none=True)
    event_time = _text("When Canvas emitted the event (ISO 8601).", required=True,
                       allow_none=True)
    source = _text(
        "live_events, or page_views (only with ?attribute=page_views).", required=True,
        validate=validate.OneOf(["live_events", "page_views"]),
    )
    # Page views only (issue 14).
    confidence = _text(
        "page_views: confirmed (the page view's id is a request id the proxy or a Live Event "
        "recorded), probable (one candidate matched), ambiguous (several; user_id is null and "
        "candidates lists them).",
        validate=validate.OneOf(["confirmed", "probable", "ambiguous"]),
    )
    app_name = _text("page_views: the page view's app_name (an OAuth key's name).",
                     allow_none=True)
    user_agent = _text("page_views: the page view's user agent.", allow_none=True)
    candidates = fields.List(
        fields.Nested(PageViewCandidate), allow_none=True,
        metadata={"description": "page_views, ambiguous: everyone who matched; else null."},
    )


class LinkedStudentEvidence(Schema):
    """The student enrollment a linked observer's row was made with (same section)."""

    enrollment_id = _id("The student's Canvas enrollment id.", required=True)
    user_id = _id("The observed student (the row's associated_user_id).", allow_none=True)
    course_section_id = _id("The section both rows are in.", allow_none=True)


class EnrollmentVerdict(Schema):
    """One Canvas enrollment as Canvas showed it to the caller, with its provenance."""

    id = _id("Canvas enrollment id.", required=True)
    user_id = _id("Canvas user id.", allow_none=True)
    course_id = _id("Canvas course id.", allow_none=True)
    course_section_id = _id("Canvas section id.", allow_none=True)
    type = _text("StudentEnrollment, TeacherEnrollment, ...", allow_none=True)
    role = _text("Role name.", allow_none=True)
    role_id = _id("Role id.", allow_none=True)
    enrollment_state = _text("active, invited, completed, deleted, ...", allow_none=True)
    created_at = _text("Canvas's created_at (whole seconds).", allow_none=True)
    updated_at = _text("Canvas's updated_at.", allow_none=True)
    sis_import_id = _id(
        "The SIS import that made or last claimed the row (null when Canvas hid it).",
        allow_none=True,
    )
    sis_user_id = _text("SIS ids, when Canvas showed them to the caller.", allow_none=True)
    sis_course_id = _text(allow_none=True)
    sis_section_id = _text(allow_none=True)
    user = fields.Nested(UserSummary, metadata={"description": "When Canvas included it."})
    provenance = _text("The verdict.", required=True, validate=validate.OneOf(VERDICTS))
    reason = _text("Why, in a sentence, naming the evidence.", required=True)
    predates_ledger = fields.Boolean(
        required=True,
        metadata={"description": "Created before the ledger began recording."},
    )
    ledger = fields.Nested(LedgerEvidence, required=True, allow_none=True)
    in_sis_roster = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={"description": "Matches the loaded SIS roster; null when it cannot be told."},
    )
    sis_visible = fields.Boolean(
        required=True, metadata={"description": "Did Canvas show the caller the SIS fields?"}
    )
    actor = fields.Nested(
        Actor, required=True, allow_none=True,
        metadata={"description": "Who made it, from Canvas Live Events; null without one."},
    )
    linked_to = fields.Nested(
        LinkedStudentEvidence,
        required=True,
        allow_none=True,
        metadata={
            "description": "For an observer row Canvas made itself for a linked observer: the "
            "student enrollment it follows, whose verdict it takes; null otherwise."
        },
    )


class ManualVia(Schema):
    """Manual rows per `actor.via`; `none`: no Live Event names their actor."""

    ui = fields.Integer(required=True)
    api = fields.Integer(required=True)
    sis = fields.Integer(required=True)
    self_ = fields.Integer(required=True, data_key="self")
    canvas = fields.Integer(required=True)
    none = fields.Integer(required=True)


class Summary(Schema):
    """Counts of every enrollment examined, before ?provenance= filters the list."""

    integration = fields.Integer(required=True)
    sis = fields.Integer(required=True)
    manual = fields.Integer(required=True)
    pending = fields.Integer(required=True)
    # (`unknown` is a Schema option's name: the field is named so only in the data.)
    unknown_ = fields.Integer(required=True, data_key="unknown")
    ambiguous = fields.Integer(required=True)
    total = fields.Integer(required=True)
    manual_via = fields.Nested(
        ManualVia, required=True,
        metadata={"description": "The manual rows by how their Live Event says they were made."},
    )


class AttributionReport(Schema):
    """What ?attribute=page_views asked Canvas and what it cost (issue 14)."""

    source = _text("Always page_views.", required=True, validate=validate.OneOf(["page_views"]))
    status = _text(
        "done, or unavailable (no reader token, or Canvas refused it: verdicts unchanged).",
        required=True, validate=validate.OneOf(["done", "unavailable"]),
    )
    message = _text("Why page views were unavailable.")
    rows = fields.Integer(required=True, metadata={
        "description": "manual and unknown rows without a Live Events actor."})
    from_ledger = fields.Integer(required=True, metadata={
        "description": "Of those, answered from the ledger's stored answers."})
    asked = fields.Integer(required=True, metadata={"description": "Of those, asked of Canvas."})
    canvas_requests = fields.Integer(required=True)
    throttled = fields.Integer(required=True)
    waited_seconds = fields.Float(required=True)


class LookupResult(Schema):
    enrollments = fields.List(fields.Nested(EnrollmentVerdict), required=True)
    summary = fields.Nested(Summary, required=True)
    attribution = fields.Nested(AttributionReport, metadata={
        "description": "Only with ?attribute=page_views."})


class LedgerEvent(Schema):
    """One ledger event: a row of the export, and an item of an enrollment's history."""

    seq = _id("Position in the ledger's hash chain.", required=True)
    enrollment_id = _id("Canvas enrollment id.", required=True)
    course_id = _id(allow_none=True)
    course_section_id = _id(allow_none=True)
    user_id = _id(allow_none=True)
    type = _text(allow_none=True)
    role = _text(allow_none=True)
    role_id = _id(allow_none=True)
    enrollment_state = _text(allow_none=True)
    action = _text(required=True)
    integration = _text(allow_none=True)
    actor_user_id = _id(allow_none=True)
    canvas_request_id = _text(allow_none=True)
    request_id = _text("The proxy's request id.", required=True)
    created_at = _text("Canvas's created_at of the enrollment.", allow_none=True)
    updated_at = _text("Canvas's updated_at of the enrollment.", allow_none=True)
    sis_import_id = _id(allow_none=True)
    recorded_at = _text("Proxy clock, ISO 8601 UTC.", required=True)
    prev_hash = _text("Hash of the event before (64 zeros for the first).", allow_none=True)
    hash = _text("SHA-256 over this event and prev_hash (docs/audit.md).", allow_none=True)


class LedgerEnrollment(Schema):
    """The ledger's current view of one enrollment."""

    enrollment_id = _id(required=True)
    course_id = _id(allow_none=True)
    course_section_id = _id(allow_none=True)
    user_id = _id(allow_none=True)
    type = _text(allow_none=True)
    role = _text(allow_none=True)
    role_id = _id(allow_none=True)
    enrollment_state = _text(allow_none=True)
    sis_import_id = _id(allow_none=True)
    created_at = _text("Canvas's created_at of the enrollment.", allow_none=True)
    updated_at = _text("Canvas's updated_at of the enrollment.", allow_none=True)
    origin_action = _text(required=True)
    origin_integration = _text(allow_none=True)
    origin_actor_user_id = _id(allow_none=True)
    origin_request_id = _text(required=True)
    origin_canvas_request_id = _text(allow_none=True)
    first_recorded_at = _text(required=True)
    last_action = _text(required=True)
    last_seq = _id(required=True)
    last_recorded_at = _text(required=True)


class EnrollmentHistory(Schema):
    enrollment_id = _id(required=True)
    current = fields.Nested(LedgerEnrollment, required=True, allow_none=True)
    events = fields.List(fields.Nested(LedgerEvent), required=True)


class LiveEventReceipt(Schema):
    status = _text(
        "stored; duplicate (already stored); ignored (a type the ledger does not keep).",
        required=True, validate=validate.OneOf(["stored", "duplicate", "ignored"]),
    )


class Health(Schema):
    status = _text("ok", required=True)


class Check(Schema):
    ok = fields.Boolean(required=True)
    error = _text("Why the check failed.")
    duration_ms = fields.Float()
    http_status = _id("canvas: the status Canvas answered (401 without a token is usual).")


class Readiness(Schema):
    status = _text("ok", required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(Check), required=True)


class NotReady(CanvasError):
    """503 from /readyz: Canvas's error shape, naming the failing checks."""

    failing = fields.List(fields.String(), required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(Check), required=True)


# Account audits (web/audits.py)


class AuditArgs(Schema):
    """Parameters of POST /ledger/v1/accounts/<account_id>/audits (query or form)."""

    term = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Only this enrollment term (Canvas id, or sis_term_id:X)."},
    )
    manual_only = fields.Boolean(
        load_default=False, metadata={"description": "Keep only the rows judged manual."}
    )
    access_token = fields.String(load_default=None)


class AuditResultArgs(Schema):
    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "ndjson")))
    provenance = fields.String(
        load_default=None,
        validate=validate.OneOf(VERDICTS),
        metadata={"description": "Only the rows with this verdict (manual: the manual rows)."},
    )
    access_token = fields.String(load_default=None)


class AuditProblem(Schema):
    line = _id("Line of the report file.", required=True)
    message = _text("What is wrong with the row (it was skipped).", required=True)


class AuditSummary(Summary):
    """Counts of every row judged (before manual_only keeps some)."""

    by_via = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.Integer()),
        required=True,
        metadata={"description": "Counts per verdict for each channel the ledger knows."},
    )
    predates_unknown = fields.Integer(
        required=True,
        metadata={"description": "Rows whose created_at neither the report nor the ledger has."},
    )
    malformed = fields.Integer(required=True, metadata={"description": "Rows skipped."})


class AuditResults(Schema):
    csv = _text("The result as CSV (spreadsheet-safe).", required=True)
    ndjson = _text("The result as NDJSON.", required=True)


class AuditJob(Schema):
    """An account audit job and, once complete, its summary and where its result is."""

    id = _text("The job's id.", required=True)
    account_id = _text("The account, as named when the job was started.", required=True)
    term = _text(allow_none=True, required=True)
    provenance = _text("manual when only manual rows are kept.", allow_none=True, required=True)
    requested_by = _id("The admin who started it.", allow_none=True, required=True)
    state = _text(
        "queued, running, complete, failed, or interrupted (the proxy stopped or its process "
        "is gone: start it again).",
        required=True,
        validate=validate.OneOf(("queued", "running", "complete", "failed", "interrupted")),
    )
    phase = _text("report (Canvas builds it) or judging.", allow_none=True, required=True)
    report_id = _id("Canvas's report run.", allow_none=True, required=True)
    report_progress = _id("Canvas's progress of the report, 0-100.", allow_none=True, required=True)
    characters_read = _id("How much of the report file has been judged.", required=True)
    created_at = _text(required=True)
    updated_at = _text("The job's last sign of life.", required=True)
    summary = fields.Nested(AuditSummary, allow_none=True, required=True)
    problems = fields.List(fields.Nested(AuditProblem), required=True)
    error = _text("Why it failed or was interrupted.", allow_none=True, required=True)
    url = _text("This job.", required=True)
    results = fields.Nested(AuditResults, allow_none=True, required=True)
