"""marshmallow schemas at the HTTP edge of the proxy's own API (/ledger/v1/)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from werkzeug.datastructures import MultiDict

from .errors import ProxyError


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
        validate=validate.OneOf(
            ("integration", "sis", "manual", "pending", "unknown", "ambiguous")
        ),
    )
    include_deleted = fields.Boolean(load_default=False)
    access_token = fields.String(load_default=None)  # Canvas accepts the token here too


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
