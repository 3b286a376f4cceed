"""core.lookup.run as a function: its sources passed explicitly, Canvas faked (issue 9).

tests/test_lookup_e2e.py checks the same composition through HTTP and the simulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger_proxy.core import ledger, lookup

ALLOWANCE = timedelta(seconds=2)
NOW = "2999-01-01T00:00:00Z"  # after the ledger began recording


class FakeCanvas:
    """Each token's listing, served in pages of two; the targets asked for are kept."""

    def __init__(self, listings: dict[str, list[dict[str, Any]]]) -> None:
        self.listings = listings
        self.asked: list[tuple[str, str]] = []

    def pages(self, target: str, token: str) -> Iterator[list[Any]]:
        self.asked.append((target, token))
        rows = self.listings[token]
        for start in range(0, len(rows), 2):
            yield [dict(row) for row in rows[start : start + 2]]


def row(enrollment_id: int, **fields: Any) -> dict[str, Any]:
    return {"id": enrollment_id, "user_id": enrollment_id, "course_id": 7,
            "course_section_id": 70, "type": "StudentEnrollment", "created_at": NOW, **fields}  # fmt: skip


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "ledger.sqlite3")
    ledger.initialise(path)
    handle = ledger.connect(path)
    yield handle
    handle.close()


def recorded_create(db, enrollment_id: int, integration: str = "sync") -> None:
    request_id = f"r{enrollment_id}"
    ledger.record_intent(db, ledger.Intent(
        request_id=request_id, received_at=datetime.now(UTC), method="POST",
        path="/api/v1/courses/7/enrollments", kind="enrollment_create", integration=integration,
        actor=None, token_hash=None, user_agent=None, course_ref="7",
    ))  # fmt: skip
    ledger.record_events(
        db, request_id, [ledger.Event.from_canvas(row(enrollment_id), "created")],
        integration=integration, actor_user_id=None, http_status=200, canvas_request_id=None,
    )  # fmt: skip


COURSE = lookup.Query("courses", "7")


def run(db, canvas, query=COURSE, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"sis_reader": None, "allowance": ALLOWANCE, **kwargs}
    return lookup.run(db, canvas, "caller", query, **options)


def verdicts(result: dict[str, Any]) -> dict[int, str]:
    return {item["id"]: item["provenance"] for item in result["enrollments"]}


CASES = [
    pytest.param([row(1, sis_import_id=None)], {1: "integration"}, {1}, id="made-through-the-proxy"),
    pytest.param([row(2, sis_import_id=12)], {2: "sis"}, set(), id="sis-import-id"),
    pytest.param([row(3, sis_import_id=None)], {3: "manual"}, set(), id="manual"),
    pytest.param([row(4)], {4: "unknown"}, set(), id="sis-fields-hidden"),
]


@pytest.mark.parametrize("rows, expected, recorded", CASES)
def test_each_row_gets_its_verdict(db, rows, expected, recorded):
    for enrollment_id in recorded:
        recorded_create(db, enrollment_id)
    result = run(db, FakeCanvas({"caller": rows}))
    assert verdicts(result) == expected
    assert result["summary"]["total"] == len(rows)
    assert {verdict: n for verdict, n in result["summary"].items() if n and verdict not in ("total", "manual_via")} == {
        verdict: 1 for verdict in expected.values()
    }


def test_a_sis_reader_fills_in_what_canvas_hides_from_the_caller(db):
    canvas = FakeCanvas({"caller": [row(5), row(6)], "reader": [row(5, sis_import_id=12), row(6, sis_import_id=None), row(9, sis_import_id=1)]})
    result = run(db, canvas, sis_reader="reader")
    assert verdicts(result) == {5: "sis", 6: "manual"}  # never a row the caller cannot see
    assert [token for _, token in canvas.asked] == ["caller", "reader"]


def test_no_reader_needed_when_the_caller_sees_the_sis_fields(db):
    canvas = FakeCanvas({"caller": [row(5, sis_import_id=None)]})
    run(db, canvas, sis_reader="reader")
    assert [token for _, token in canvas.asked] == ["caller"]


def test_the_filter_keeps_one_verdict_and_the_summary_counts_all(db):
    recorded_create(db, 1)
    rows = [row(1, sis_import_id=None), row(2, sis_import_id=12), row(3, sis_import_id=None)]
    result = run(db, FakeCanvas({"caller": rows}), lookup.Query("courses", "7", provenance="manual"))
    assert verdicts(result) == {3: "manual"}
    assert result["summary"] == run(db, FakeCanvas({"caller": rows}))["summary"]


def test_pages_are_counted_as_they_come(db):
    seen: list[int] = []
    rows = [row(n, sis_import_id=None) for n in range(1, 6)]
    run(db, FakeCanvas({"caller": rows}), on_page=seen.append)
    assert seen == [2, 4, 5]


@pytest.mark.parametrize(
    "query, states",
    [
        pytest.param(lookup.Query("courses", "7"), "completed&state%5B%5D=rejected&per_page", id="listed"),
        pytest.param(lookup.Query("sections", "sis_section_id:A", include_deleted=True), "rejected&state%5B%5D=deleted&per_page", id="with-deleted"),
    ],
)
def test_canvas_is_asked_for_every_state(db, query, states):
    canvas = FakeCanvas({"caller": []})
    run(db, canvas, query)
    [(target, _)] = canvas.asked
    assert target.startswith(f"/api/v1/{query.scope}/{query.scope_id}/enrollments?state%5B%5D=active")
    assert states in target
