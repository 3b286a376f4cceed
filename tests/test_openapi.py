"""The OpenAPI 3.1 document (issue 6, item 4): valid, complete, and true of real answers."""

from __future__ import annotations

import json
import re

import pytest
import requests
from canvasapi import Canvas
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from ledger_proxy.web import schemas


@pytest.fixture(name="proxy")
def _proxy(admin_proxy):
    return admin_proxy


@pytest.fixture
def document(proxy):
    response = requests.get(f"{proxy.url}/ledger/v1/openapi.json", timeout=10)
    assert response.status_code == 200
    return response.json()


def check(document, path, status, response, method="get"):
    """`response` (a real one) against what the document says `method path` answers."""
    assert response.status_code == status, response.text
    answer = document["paths"][path][method]["responses"][str(status)]
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[-1]]
    schema = answer["content"]["application/json"]["schema"]
    errors = list(
        Draft202012Validator({**schema, "components": document["components"]}).iter_errors(response.json())
    )
    assert errors == [], [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_the_document_is_valid_openapi_3_1(document, proxy):
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": proxy.url}]
    assert document["components"]["securitySchemes"]["canvasToken"] == {
        **document["components"]["securitySchemes"]["canvasToken"],
        "type": "http",
        "scheme": "bearer",
    }
    for name in ("EnrollmentVerdict", "LedgerEvidence", "LookupResult", "Summary", "CanvasError"):
        assert name in document["components"]["schemas"]
    parameters = document["paths"]["/ledger/v1/courses/{course_id}/enrollments"]["get"]["parameters"]
    assert {p["name"] for p in parameters} == {"course_id", "provenance", "include_deleted"}


def test_every_route_of_the_proxys_own_api_is_documented(proxy, document):
    own = set()
    for rule in proxy.app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        if path.startswith("/ledger/v1/") or path in ("/healthz", "/readyz", "/metrics"):
            own.add(path)
    assert own == set(document["paths"])


def enroll_every_way(world, proxy, sim):
    parent = sim.add_user("Pat Parent")  # Canvas enrolls a linked observer by itself (issue 10)
    sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": world.students[0]["id"]})
    canvas = Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"])
    made = canvas.get_course(world.course["id"]).enroll_user(world.students[0]["id"], enrollment={"enrollment_state": "active"})
    sim.control("POST", "ui/enrollments", {"course_id": world.course["id"], "user_id": world.students[1]["id"], "actor_user_id": world.teacher["id"]})
    sim.control("POST", "sis_imports", {"rows": [{"course_id": "BIO-101", "user_id": "S-03", "role": "student", "status": "active"}]})
    return made.id


def test_lookup_answers_match_the_document(world, proxy, sim, document):
    enroll_every_way(world, proxy, sim)
    path = "/ledger/v1/courses/{course_id}/enrollments"
    url = f"{proxy.url}/ledger/v1/courses/{world.course['id']}/enrollments"
    as_admin = requests.get(url, headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10)
    check(document, path, 200, as_admin)
    verdicts = {row["provenance"] for row in as_admin.json()["enrollments"]}
    assert verdicts == {"integration", "manual", "sis"}
    assert any(row["linked_to"] for row in as_admin.json()["enrollments"])
    schemas.LookupResult().load(as_admin.json())  # the marshmallow schema agrees (unknown: RAISE)
    as_teacher = requests.get(url, headers={"Authorization": f"Bearer {world.teacher['token']}"}, timeout=10)
    check(document, path, 200, as_teacher)  # SIS fields hidden: unknown verdicts, null SIS ids
    assert "unknown" in {row["provenance"] for row in as_teacher.json()["enrollments"]}
    section = f"{proxy.url}/ledger/v1/sections/{world.section_b}/enrollments?include_deleted=true"
    check(document, "/ledger/v1/sections/{section_id}/enrollments", 200, requests.get(section, headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10))
    check(document, path, 400, requests.get(f"{url}?provenance=robot", headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10))
    check(document, path, 401, requests.get(url, timeout=10))
    check(document, path, 404, requests.get(f"{proxy.url}/ledger/v1/courses/424242/enrollments", headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10))


def test_ledger_answers_match_the_document(world, proxy, sim, document):
    enrollment_id = enroll_every_way(world, proxy, sim)
    admin = {"Authorization": f"Bearer {world.admin['token']}"}
    path = "/ledger/v1/enrollments/{enrollment_id}"
    history = requests.get(f"{proxy.url}/ledger/v1/enrollments/{enrollment_id}", headers=admin, timeout=10)
    check(document, path, 200, history)
    schemas.EnrollmentHistory().load(history.json())
    check(document, path, 404, requests.get(f"{proxy.url}/ledger/v1/enrollments/999999", headers=admin, timeout=10))
    teacher = {"Authorization": f"Bearer {world.teacher['token']}"}
    check(document, path, 403, requests.get(f"{proxy.url}/ledger/v1/enrollments/{enrollment_id}", headers=teacher, timeout=10))

    export = requests.get(f"{proxy.url}/ledger/v1/export?format=ndjson", headers=admin, timeout=10)
    assert export.status_code == 200
    media = document["paths"]["/ledger/v1/export"]["get"]["responses"]["200"]["content"]
    assert export.headers["Content-Type"].split(";")[0] in media
    item = Draft202012Validator({**media["application/x-ndjson"]["x-item-schema"], "components": document["components"]})
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines and all(not list(item.iter_errors(line)) for line in lines)
    csv_header = requests.get(f"{proxy.url}/ledger/v1/export", headers=admin, timeout=10).text.splitlines()[0]
    assert sorted(csv_header.split(",")) == sorted(document["components"]["schemas"]["LedgerEvent"]["properties"])
    check(document, "/ledger/v1/export", 400, requests.get(f"{proxy.url}/ledger/v1/export?format=xlsx", headers=admin, timeout=10))


def test_operations_answers_match_the_document(proxy, document, tmp_path):
    check(document, "/healthz", 200, requests.get(f"{proxy.url}/healthz", timeout=10))
    check(document, "/readyz", 200, requests.get(f"{proxy.url}/readyz", timeout=10))
    proxy.app.config["DATABASE"] = str(tmp_path)  # a folder: the ledger check fails
    check(document, "/readyz", 503, requests.get(f"{proxy.url}/readyz", timeout=10))
