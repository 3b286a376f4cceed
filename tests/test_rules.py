"""Pure rules: request classification, parameter parsing, header and Link rewriting."""

from __future__ import annotations

import json

import pytest

from ledger_proxy.upstream.forwarding import (
    BadRequestTarget,
    check_request_target,
    end_to_end,
    rewrite_canvas_url,
    rewrite_link_header,
)
from ledger_proxy.upstream.operations import (
    MalformedBody,
    classify,
    may_be_overridden,
    parse_params,
    request_params,
)


@pytest.mark.parametrize(
    ("method", "path", "kind", "refs"),
    [
        pytest.param("POST", "/api/v1/courses/1/enrollments", "enrollment_create", {"course_ref": "1"}, id="course-create"),
        pytest.param("POST", "/api/v1/courses/sis_course_id:BIO%2F101/enrollments", "enrollment_create", {"course_ref": "sis_course_id:BIO/101"}, id="sis-course"),
        pytest.param("POST", "/api/v1/sections/11/enrollments/", "enrollment_create", {"section_ref": "11"}, id="section-create-slash"),
        pytest.param("DELETE", "/api/v1/courses/1/enrollments/77", "enrollment_delete", {"course_ref": "1", "enrollment_ref": "77"}, id="delete"),
        pytest.param("PUT", "/api/v1/courses/1/enrollments/77/reactivate", "enrollment_reactivate", {"enrollment_ref": "77"}, id="reactivate"),
        pytest.param("POST", "/api/v1/courses/1/enrollments/77/accept", "enrollment_accept", {}, id="accept"),
        pytest.param("POST", "/api/v1/courses/1/enrollments/77/reject", "enrollment_reject", {}, id="reject"),
        pytest.param("POST", "/api/v1/accounts/1/sis_imports", "sis_import", {"account_ref": "1"}, id="sis-import"),
        pytest.param("POST", "/api/v1/accounts/self/bulk_enrollment", "bulk_enrollment", {"account_ref": "self"}, id="bulk"),
        pytest.param("GET", "/api/v1/courses/1/enrollments", None, {}, id="list-is-not-a-change"),
        pytest.param("POST", "/api/v1/courses/1/enrollments/77", None, {}, id="plain-post-on-member"),
        pytest.param("DELETE", "/api/v1/courses/1/enrollments", None, {}, id="delete-collection"),
        pytest.param("POST", "/api/v1/courses/1/users", None, {}, id="other"),
    ],
)
def test_classify(method, path, kind, refs):
    operation = classify(method, path)
    assert (operation.kind if operation else None) == kind
    for name, value in refs.items():
        assert getattr(operation, name) == value


def test_only_posts_on_enrollment_members_may_be_method_overrides():
    assert may_be_overridden("POST", "/api/v1/courses/1/enrollments/77")
    assert may_be_overridden("POST", "/api/v1/courses/1/enrollments/77/reactivate")
    assert not may_be_overridden("POST", "/api/v1/courses/1/enrollments")
    assert not may_be_overridden("GET", "/api/v1/courses/1/enrollments/77")


@pytest.mark.parametrize(
    ("query", "content_type", "body", "expected"),
    [
        pytest.param("", "application/x-www-form-urlencoded", b"enrollment%5Buser_id%5D=5&enrollment%5Btype%5D=TeacherEnrollment",
                     {"enrollment[user_id]": "5", "enrollment[type]": "TeacherEnrollment"}, id="form"),
        pytest.param("", "application/json", json.dumps({"enrollment": {"user_id": "sis_user_id:s1", "role_id": 3, "notify": True}}).encode(),
                     {"enrollment[user_id]": "sis_user_id:s1", "enrollment[role_id]": 3, "enrollment[notify]": True}, id="nested-json"),
        pytest.param("per_page=10&per_page=100", None, b"", {"per_page": "100"}, id="last-repeated-key-wins"),
        # Rails: request_parameters.merge(query_parameters), a shallow merge: the query string
        # wins, and its top-level name replaces that whole name from the body.
        pytest.param("enrollment[user_id]=1", "application/x-www-form-urlencoded", b"enrollment[user_id]=2", {"enrollment[user_id]": "1"}, id="query-over-body"),
        pytest.param("enrollment[type]=TaEnrollment", "application/x-www-form-urlencoded", b"enrollment[user_id]=2&notify=1",
                     {"enrollment[type]": "TaEnrollment", "notify": "1"}, id="query-name-replaces-body-name"),
        pytest.param("", "application/vnd.api+json", json.dumps({"access_token": "t"}).encode(), {}, id="vnd-api-json-not-parsed"),
        pytest.param("", "text/x-json", json.dumps({"a": 1}).encode(), {"a": 1}, id="rails-json-synonym"),
        pytest.param("", None, b"enrollment[user_id]=5", {"enrollment[user_id]": "5"}, id="post-without-content-type-is-a-form"),
        pytest.param("", "application/x-www-form-urlencoded", b"user_ids[]=1&user_ids[]=2", {"user_ids[]": ["1", "2"]}, id="arrays"),
        pytest.param("", "application/json", json.dumps({"user_ids": [1, 2]}).encode(), {"user_ids[]": [1, 2]}, id="json-arrays"),
        pytest.param("", "text/plain", b"anything", {}, id="other-content-type-ignored"),
    ],
)
def test_parse_params(query, content_type, body, expected):
    assert parse_params(query, content_type, body) == expected


def test_only_a_post_without_content_type_is_read_as_a_form():
    assert parse_params("", None, b"access_token=t", method="DELETE") == {}
    assert parse_params("", None, b"access_token=t", method="POST") == {"access_token": "t"}


@pytest.mark.parametrize(
    ("query", "content_type", "body", "header", "expected"),
    [
        pytest.param("", "application/x-www-form-urlencoded", b"_method=delete", None, "DELETE", id="form"),
        pytest.param("", "application/x-www-form-urlencoded", b"_method=put", "DELETE", "PUT", id="form-before-header"),
        pytest.param("", "application/x-www-form-urlencoded", b"", "DELETE", "DELETE", id="header"),
        pytest.param("_method=DELETE", None, b"", None, None, id="query-is-not-read"),
        pytest.param("", "application/json", b'{"_method": "DELETE"}', None, None, id="json-is-not-read"),
        pytest.param("", "application/x-www-form-urlencoded", b"_method=explode", "DELETE", None, id="not-a-method"),
    ],
)
def test_method_override_as_rack_does_it(query, content_type, body, header, expected):
    assert request_params(query, content_type, body).method_override(header) == expected


def test_tokens_from_every_place_canvas_reads_them():
    parsed = request_params("access_token=q", "application/json", b'{"access_token": "b"}')
    assert parsed.tokens() == ["q", "b"]
    assert parsed.params["access_token"] == "q"
    assert request_params("", "application/vnd.api+json", b'{"access_token": "b"}').tokens() == []


@pytest.mark.parametrize("depth", [101, 5000])
def test_json_nested_deeper_than_ruby_allows_is_malformed(depth):
    body = ("[" * (depth - 1) + "]" * (depth - 1)).encode()
    with pytest.raises(MalformedBody, match="nested deeper"):
        parse_params("", "application/json", b'{"a": ' + body + b"}")


def test_json_nested_as_deep_as_ruby_allows_is_fine():
    body = b'{"a": ' + b"[" * 99 + b"]" * 99 + b"}"
    assert parse_params("", "application/json", body) == {}


def test_parse_multipart():
    boundary = "XyZ"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"enrollment[user_id]\"\r\n\r\n5\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"enrollment[type]\"\r\n\r\nTaEnrollment\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    assert parse_params("", f"multipart/form-data; boundary={boundary}", body) == {
        "enrollment[user_id]": "5",
        "enrollment[type]": "TaEnrollment",
    }


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("application/json", b"{not json", id="bad-json"),
        pytest.param("application/json", b"[1, 2]", id="json-not-object"),
        pytest.param("application/json", b"\xff\xfe", id="json-bad-utf8"),
        pytest.param("application/x-www-form-urlencoded", b"a=%ff%fe", id="form-bad-utf8"),
        pytest.param("multipart/form-data; boundary=XyZ", b"garbage without parts", id="bad-multipart"),
    ],
)
def test_malformed_bodies_are_reported(content_type, body):
    with pytest.raises(MalformedBody):
        parse_params("", content_type, body)


@pytest.mark.parametrize(
    "target",
    ["http://evil/api/v1", "//evil/api", "/api/v1/../x", "/api/v1/%2e%2E/x", "/api/v1/%252e%252e/x", "/api/v1/a%5C..%5Cb", "/api/v1/a b"],
)
def test_refused_request_targets(target):
    with pytest.raises(BadRequestTarget):
        check_request_target(target)


def test_sis_ids_with_encoded_slashes_are_fine():
    assert check_request_target("/api/v1/courses/sis_course_id:a%2Fb?x=1") == ("/api/v1/courses/sis_course_id:a%2Fb", "x=1")


def test_end_to_end_drops_hop_by_hop_and_connection_named_headers():
    headers = [("Connection", "close, X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "5"), ("Upgrade", "h2c"), ("Accept", "*/*")]
    assert end_to_end(headers) == [("Accept", "*/*")]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://canvas.test/api/v1/x?page=bookmark:abc", "http://proxy:8080/i/a/api/v1/x?page=bookmark:abc", id="canvas"),
        pytest.param("https://CANVAS.test:443/api/v1/x", "http://proxy:8080/i/a/api/v1/x", id="default-port-and-case"),
        pytest.param("http://canvas.test/api/v1/x", "http://proxy:8080/i/a/api/v1/x", id="canvas-host-http-behind-its-load-balancer"),
        pytest.param("https://canvas.test:8443/api/v1/x", "https://canvas.test:8443/api/v1/x", id="another-port-is-another-service"),
        pytest.param("https://canvas.test.evil/api/v1/x", "https://canvas.test.evil/api/v1/x", id="look-alike-host-untouched"),
        pytest.param("https://files.example/x", "https://files.example/x", id="storage-untouched"),
    ],
)
def test_rewrite_canvas_url(url, expected):
    assert rewrite_canvas_url(url, "https://canvas.test", "http://proxy:8080/i/a") == expected


def test_rewrite_canvas_url_with_a_canvas_path_prefix():
    assert rewrite_canvas_url("https://h.test/canvas/api/v1/x", "https://h.test/canvas", "http://p") == "http://p/api/v1/x"
    assert rewrite_canvas_url("https://h.test/other/api/v1/x", "https://h.test/canvas", "http://p") == "https://h.test/other/api/v1/x"


def test_rewrite_link_header_keeps_format_byte_for_byte():
    value = '<https://c.test/api/v1/a?page=first&per_page=10>; rel="current",<https://c.test/api/v1/a?page=bookmark:WzFd&per_page=10>; rel="next"'
    assert rewrite_link_header(value, "https://c.test", "http://p:1") == value.replace("https://c.test", "http://p:1")
