"""Which forwarded requests change enrollments, and the parameters they carry (no Flask)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.formparser import parse_form_data

Params = dict[str, Any]  # Rails-style flat keys: "enrollment[user_id]" -> "5", "user_ids[]" -> [..]

ID = r"(?P<{}>[^/]+)"
_FORMAT = r"(?:\.json)?/?"


@dataclass(frozen=True)
class Route:
    kind: str
    method: str
    pattern: re.Pattern[str]
    reads_body: bool  # the body is needed to record the intent (else it streams through)


def _route(kind: str, method: str, template: str, reads_body: bool = True) -> Route:
    names = re.findall(r"\{(\w+)\}", template)
    regex = template
    for name in names:
        regex = regex.replace("{" + name + "}", ID.format(name))
    return Route(kind, method, re.compile(rf"/api/v1/{regex}{_FORMAT}"), reads_body)


ROUTES: tuple[Route, ...] = (
    _route("enrollment_create", "POST", "courses/{course}/enrollments"),
    _route("enrollment_create", "POST", "sections/{section}/enrollments"),
    _route("enrollment_delete", "DELETE", "courses/{course}/enrollments/{enrollment}"),
    _route("enrollment_reactivate", "PUT", "courses/{course}/enrollments/{enrollment}/reactivate"),
    _route("enrollment_accept", "POST", "courses/{course}/enrollments/{enrollment}/accept"),
    _route("enrollment_reject", "POST", "courses/{course}/enrollments/{enrollment}/reject"),
    _route("bulk_enrollment", "POST", "accounts/{account}/bulk_enrollment"),
    # An SIS import upload can be hundreds of MB: it streams; the response names the job.
    _route("sis_import", "POST", "accounts/{account}/sis_imports", reads_body=False),
)

# Rails' Rack::MethodOverride turns a POST with `_method` (form body) or
# X-HTTP-Method-Override into another method, so such POSTs must be looked at too.
OVERRIDABLE_METHODS = frozenset({"DELETE", "PUT", "PATCH"})


@dataclass(frozen=True)
class Operation:
    kind: str
    reads_body: bool
    course_ref: str | None = None
    section_ref: str | None = None
    enrollment_ref: str | None = None
    account_ref: str | None = None


def classify(method: str, path: str) -> Operation | None:
    """The enrollment-changing operation `method path` is, if any. `path` is the raw path
    from /api/v1 on; ids keep the form the caller gave (numeric or sis_*:...)."""
    for route in ROUTES:
        if route.method != method:
            continue
        match = route.pattern.fullmatch(path)
        if match:
            refs = {name: unquote(value) for name, value in match.groupdict().items()}
            return Operation(
                kind=route.kind,
                reads_body=route.reads_body,
                course_ref=refs.get("course"),
                section_ref=refs.get("section"),
                enrollment_ref=refs.get("enrollment"),
                account_ref=refs.get("account"),
            )
    return None


def may_be_overridden(method: str, path: str) -> bool:
    """A POST whose body might carry `_method` turning it into an enrollment change."""
    return method == "POST" and any(
        classify(other, path) is not None for other in OVERRIDABLE_METHODS
    )


class MalformedBody(ValueError):
    """The body cannot be parsed as its Content-Type says; Canvas would answer 400 too."""


def _add(params: Params, key: str, value: Any) -> None:
    if key.endswith("[]"):
        params.setdefault(key, [])
        if not isinstance(params[key], list):
            params[key] = [params[key]]
        params[key].append(value)
    else:
        params[key] = value  # Rails keeps the last value of a repeated key


def _flatten_json(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten_json(item, f"{prefix}[{key}]" if prefix else str(key))
    elif isinstance(value, list) and prefix:
        for item in value:
            yield from _flatten_json(item, f"{prefix}[]")
    elif prefix:
        yield prefix, value


def _pairs_from_query(text: str | bytes) -> list[tuple[str, str]]:
    try:
        raw = text.decode("utf-8") if isinstance(text, bytes) else text
        return parse_qsl(raw, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedBody(f"invalid form or query encoding ({exc})") from None


def _pairs_from_multipart(content_type: str, body: bytes) -> list[tuple[str, str]]:
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    try:
        _, form, files = parse_form_data(environ, silent=False)
    except (ValueError, HTTPException) as exc:
        raise MalformedBody(f"invalid multipart body ({exc})") from None
    pairs: MultiDict[str, str] = form
    result = list(pairs.items(multi=True))
    result.extend((name, storage.filename or "") for name, storage in files.items(multi=True))
    if not result and body.strip():
        raise MalformedBody("invalid multipart body (no parts found)")
    return result


def parse_params(query: str, content_type: str | None, body: bytes) -> Params:
    """Rails-style parameters from the query string and the body (form, multipart or JSON)."""
    params: Params = {}
    for key, value in _pairs_from_query(query):
        _add(params, key, value)
    mimetype = (content_type or "").split(";")[0].strip().lower()
    pairs: Iterable[tuple[str, Any]] = ()
    if not body:
        pass
    elif mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            document = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedBody(f"invalid JSON body ({exc})") from None
        if not isinstance(document, dict):
            raise MalformedBody("a JSON body must be an object")
        pairs = _flatten_json(document)
    elif mimetype == "multipart/form-data":
        pairs = _pairs_from_multipart(content_type or "", body)
    elif mimetype in ("application/x-www-form-urlencoded", ""):
        pairs = _pairs_from_query(body)
    for key, value in pairs:
        _add(params, key, value)
    return params


# Keys that authenticate or masquerade; never stored.
SECRET_PARAMS = frozenset({"access_token", "api_key"})


def redact(params: Params) -> Params:
    return {key: value for key, value in params.items() if key not in SECRET_PARAMS}
