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


# Rails parses a JSON body only for its :json MIME type and that type's synonyms: a body sent
# as application/vnd.api+json (or any other +json) never becomes parameters.
JSON_MIMETYPES = frozenset({"application/json", "text/x-json", "application/jsonrequest"})
# Ruby's JSON.parse refuses documents nested deeper than this (JSON::NestingError), and Rails
# answers 400.
JSON_MAX_NESTING = 100


@dataclass(frozen=True)
class RequestParams:
    """A request's parameters as Rails sees them, and where each part came from."""

    params: Params  # Rails' `params`: the body's, with the query string's over them
    query: Params
    body: Params
    form: Params  # what Rack parses itself (form or multipart): where `_method` is read

    def method_override(self, header: str | None) -> str | None:
        """The method Rack::MethodOverride makes of a POST: `_method` from the form body
        first, then X-HTTP-Method-Override, when it names an HTTP method."""
        for candidate in (self.form.get("_method"), header):
            if isinstance(candidate, str) and candidate:
                method = candidate.upper()
                return method if method in RACK_METHODS else None
        return None

    def tokens(self) -> list[str]:
        """Every access_token parameter given (query string, then body), blanks left out."""
        found = [part.get("access_token") for part in (self.query, self.body)]
        return [value for value in found if isinstance(value, str) and value]


RACK_METHODS = frozenset(
    {"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "LINK", "UNLINK"}
)


def _depth(document: Any) -> int:
    """How deeply arrays and objects nest in `document` (without recursion)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth > JSON_MAX_NESTING:
                break
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return deepest


def _json_pairs(body: bytes) -> Iterable[tuple[str, Any]]:
    try:
        document = json.loads(body.decode("utf-8"))
    except RecursionError:
        raise MalformedBody(f"JSON nested deeper than {JSON_MAX_NESTING} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedBody(f"invalid JSON body ({exc})") from None
    if not isinstance(document, dict):
        raise MalformedBody("a JSON body must be an object")
    if _depth(document) > JSON_MAX_NESTING:
        raise MalformedBody(f"JSON nested deeper than {JSON_MAX_NESTING} levels")
    return list(_flatten_json(document))


def _collect(pairs: Iterable[tuple[str, Any]]) -> Params:
    params: Params = {}
    for key, value in pairs:
        _add(params, key, value)
    return params


def _top_level(key: str) -> str:
    return key.split("[", 1)[0]


def request_params(
    query: str, content_type: str | None, body: bytes, method: str = "POST"
) -> RequestParams:
    """Parameters as Rails builds them from the query string and the body.

    - JSON only for Rails' JSON MIME types; form and multipart bodies as Rack parses them, and
      a POST body without a Content-Type as a form too (Rack's `form_data?`); any other body
      gives no parameters.
    - `params` is `request_parameters.merge(query_parameters)`: a shallow merge, so a
      top-level name in the query string (`enrollment`) replaces that whole name from the body.
    - `method` is the method as sent, before any override (Rack looks at the original POST).
    """
    query_params = _collect(_pairs_from_query(query))
    mimetype = (content_type or "").split(";")[0].strip().lower()
    form: Params = {}
    body_params: Params = {}
    if body:
        if mimetype in JSON_MIMETYPES:
            body_params = _collect(_json_pairs(body))
        elif mimetype == "multipart/form-data":
            body_params = form = _collect(_pairs_from_multipart(content_type or "", body))
        elif mimetype == "application/x-www-form-urlencoded" or (
            not mimetype and method.upper() == "POST"
        ):
            body_params = form = _collect(_pairs_from_query(body))
    overridden = {_top_level(key) for key in query_params}
    merged = {k: v for k, v in body_params.items() if _top_level(k) not in overridden}
    merged.update(query_params)
    return RequestParams(merged, query_params, body_params, form)


def parse_params(query: str, content_type: str | None, body: bytes, method: str = "POST") -> Params:
    """Rails-style parameters from the query string and the body (see request_params)."""
    return request_params(query, content_type, body, method).params


# Keys that authenticate or masquerade; never stored.
SECRET_PARAMS = frozenset({"access_token", "api_key"})


def redact(params: Params) -> Params:
    return {key: value for key, value in params.items() if key not in SECRET_PARAMS}
