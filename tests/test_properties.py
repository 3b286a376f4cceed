"""Property-based tests of the parsing that feeds the ledger: any input gives a parse or a
clear MalformedBody / BadRequestTarget, never another exception; what goes in comes out."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_proxy.upstream.forwarding import BadRequestTarget, check_request_target
from ledger_proxy.upstream.operations import MalformedBody, classify, parse_params

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "",
        "application/x-www-form-urlencoded",
        "application/json",
        "application/json; charset=utf-8",
        "multipart/form-data; boundary=XyZ",
        "multipart/form-data",
        "text/plain",
        "application/vnd.api+json",
    ]
)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
KEYS = st.sampled_from(["user_id", "type", "role_id", "enrollment_state", "course_section_id", "notify"])

settings.register_profile("ledger", max_examples=300, deadline=None)
settings.load_profile("ledger")


@given(query=st.text(max_size=200), content_type=CONTENT_TYPES, body=st.binary(max_size=400))
def test_any_body_parses_or_is_reported_malformed(query, content_type, body):
    try:
        params = parse_params(query, content_type, body)
    except MalformedBody as exc:
        assert str(exc)
    else:
        assert isinstance(params, dict)
        assert all(isinstance(key, str) for key in params)


@given(fields=st.dictionaries(KEYS, TEXT, max_size=6))
def test_form_bodies_round_trip(fields):
    body = urlencode({f"enrollment[{k}]": v for k, v in fields.items()}).encode()
    assert parse_params("", "application/x-www-form-urlencoded", body) == {
        f"enrollment[{k}]": v for k, v in fields.items()
    }


@given(fields=st.dictionaries(KEYS, st.one_of(TEXT, st.integers(), st.booleans(), st.none()), max_size=6))
def test_nested_json_bodies_round_trip(fields):
    body = json.dumps({"enrollment": fields}).encode()
    assert parse_params("", "application/json", body) == {f"enrollment[{k}]": v for k, v in fields.items()}


@given(first=TEXT, last=TEXT)
def test_the_last_of_a_repeated_key_wins_as_in_rails(first, last):
    query = urlencode([("enrollment[user_id]", first), ("enrollment[user_id]", last)])
    assert parse_params(query, None, b"")["enrollment[user_id]"] == last


@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), path=st.text(max_size=120))
def test_classify_never_fails(method, path):
    operation = classify(method, "/api/v1/" + path)
    if operation is not None:
        assert operation.kind.startswith(("enrollment_", "bulk_", "sis_"))


@given(segment=st.text(max_size=40))
def test_classify_keeps_any_course_reference(segment):
    from urllib.parse import quote

    encoded = quote(segment, safe=":")
    operation = classify("POST", f"/api/v1/courses/{encoded}/enrollments")
    if segment and "/" not in segment:
        assert operation is not None and operation.course_ref == segment


@given(target=st.text(max_size=200))
def test_request_targets_are_checked_or_refused(target):
    try:
        path, query = check_request_target(target)
    except BadRequestTarget:
        return
    assert path.startswith("/") and not path.startswith("//")
    assert ".." not in [part for part in path.split("/")]
