"""recording.record as a function: the statuses it writes, case by case, with a fake `send`.

The same rules as tests/test_recording_rules.py and tests/test_faults.py check through HTTP,
table-driven here without a socket (issue 9).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from ledger_proxy.core import ledger, recording
from ledger_proxy.errors import ProxyError
from ledger_proxy.upstream.canvas import (
    CanvasAnswerCut,
    CanvasConnectionLost,
    CanvasTimeout,
    CanvasUnreachable,
)
from ledger_proxy.upstream.operations import Operation

ALLOWANCE = timedelta(seconds=2)
ENROLLMENT = {
    "id": 41, "course_id": 7, "course_section_id": 70, "user_id": 5, "type": "StudentEnrollment",
    "role": "StudentEnrollment", "role_id": 3, "enrollment_state": "active",
    "created_at": "2999-01-01T00:00:00Z", "updated_at": "2999-01-01T00:00:00Z",
}  # fmt: skip


class FakeRaw:
    def __init__(self, headers: list[tuple[str, str]], content: bytes, fails: Exception | None):
        self.headers = _Headers(headers)
        self._content, self._fails = content, fails

    def read(self, decode_content: bool = True) -> bytes:
        if self._fails is not None:
            raise self._fails
        return self._content


class _Headers:
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


class FakeResponse:
    """What CanvasClient.send returns, as far as recording reads it."""

    def __init__(self, status: int, document: Any = None, *, body: bytes | None = None,
                 fails: Exception | None = None) -> None:  # fmt: skip
        content = body if body is not None else json.dumps(document).encode()
        self.status_code = status
        self.raw = FakeRaw([("Content-Type", "application/json")], content, fails)
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "ledger.sqlite3")
    ledger.initialise(path)
    handle = ledger.connect(path)
    handle.conn.row_factory = sqlite3.Row
    yield handle
    handle.close()


def intent(kind: str = "enrollment_create", **overrides: Any) -> ledger.Intent:
    values: dict[str, Any] = dict(
        request_id="r1", received_at=datetime.now(UTC), method="POST",
        path="/api/v1/courses/7/enrollments", kind=kind, integration="sync", actor=None,
        token_hash=None, user_agent=None, course_ref="7", params={"enrollment[user_id]": "5"},
    )  # fmt: skip
    values.update(overrides)
    return ledger.Intent(**values)


def operation(kind: str = "enrollment_create", **refs: str) -> Operation:
    return Operation(kind=kind, reads_body=True, course_ref="7", **refs)


def request_row(db) -> dict[str, Any]:
    [row] = db.conn.execute("SELECT * FROM requests").fetchall()
    return dict(row)


def actions(db) -> list[str]:
    return [row[0] for row in db.conn.execute("SELECT action FROM events ORDER BY seq")]


def sender(outcome: Any):
    def send() -> Any:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return send


ANSWERED = [
    pytest.param(FakeResponse(200, ENROLLMENT), "completed", 200, ["created"], id="created"),
    pytest.param(FakeResponse(200, {**ENROLLMENT, "created_at": "2000-01-01T00:00:00Z"}),
                 "completed", 200, ["adopted"], id="adopted-old-row"),  # fmt: skip
    pytest.param(FakeResponse(400, {"errors": [{"message": "no"}]}), "failed", 400, [],
                 id="refused-4xx"),  # fmt: skip
    pytest.param(FakeResponse(503, {"errors": []}), "unknown", 503, [], id="5xx-may-have-acted"),
    pytest.param(FakeResponse(200, body=b"<html>"), "unknown", 200, [], id="unreadable-answer"),
    pytest.param(FakeResponse(200, {"id": None}), "unknown", 200, [], id="enrollment-without-id"),
]


@pytest.mark.parametrize("response, status, http_status, recorded", ANSWERED)
def test_an_answer_settles_the_request(db, response, status, http_status, recorded):
    result = recording.record(db, intent(), operation(), sender(response), allowance=ALLOWANCE)
    row = request_row(db)
    assert (row["status"], row["http_status"], row["settled_by"]) == (status, http_status, "response")
    assert actions(db) == recorded
    assert result.answer.status == http_status
    assert result.events is not None and [e.action for e in result.events] == recorded
    assert response.closed


NO_ANSWER = [
    pytest.param(CanvasUnreachable("ConnectError"), "failed", "Canvas could not be reached",
                 id="never-sent"),  # fmt: skip
    pytest.param(CanvasTimeout("ReadTimeout"), "unknown", "did not answer in time", id="timeout"),
    pytest.param(CanvasConnectionLost("RemoteDisconnected"), "unknown", "broke before it answered",
                 id="connection-lost"),  # fmt: skip
    pytest.param(ProxyError(400, "the request body could not be read"), "failed",
                 "could not be read", id="client-body-broke-off"),  # fmt: skip
]


@pytest.mark.parametrize("failure, status, error", NO_ANSWER)
def test_no_answer_from_canvas(db, failure, status, error):
    with pytest.raises(type(failure)):
        recording.record(db, intent(), operation(), sender(failure), allowance=ALLOWANCE)
    row = request_row(db)
    assert row["status"] == status and error in row["error"] and row["http_status"] is None
    assert actions(db) == []


@pytest.mark.parametrize(
    "failure, timed_out",
    [
        pytest.param(ReadTimeoutError(None, "/", "Read timed out."), True, id="stalled"),
        pytest.param(ProtocolError("Connection broken"), False, id="broken"),
    ],
)
def test_an_answer_cut_short_is_unknown(db, failure, timed_out):
    response = FakeResponse(201, ENROLLMENT, fails=failure)
    with pytest.raises(CanvasAnswerCut) as raised:
        recording.record(db, intent(), operation(), sender(response), allowance=ALLOWANCE)
    assert raised.value.timed_out is timed_out
    row = request_row(db)
    assert (row["status"], row["http_status"], row["error"]) == (
        "unknown", 201, type(failure).__name__
    )
    assert response.closed


def test_the_intent_stays_pending_when_the_process_dies_after_canvas(db):
    class Killed(BaseException):
        pass

    def die() -> None:
        raise Killed

    with pytest.raises(Killed):
        recording.record(
            db, intent(), operation(), sender(FakeResponse(200, ENROLLMENT)),
            allowance=ALLOWANCE, after_canvas=die,
        )  # fmt: skip
    assert request_row(db)["status"] == "pending"
    assert actions(db) == []


def test_an_outcome_that_cannot_be_written_leaves_the_intent_pending(db, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ledger, "record_events", broken)
    result = recording.record(
        db, intent(), operation(), sender(FakeResponse(200, ENROLLMENT)), allowance=ALLOWANCE
    )
    assert result.events is None and result.answer.status == 200
    assert request_row(db)["status"] == "pending"


CHANGES = [
    pytest.param("enrollment_delete", {**ENROLLMENT, "enrollment_state": "deleted"}, "deleted",
                 id="delete"),  # fmt: skip
    pytest.param("enrollment_delete", {**ENROLLMENT, "enrollment_state": "completed"},
                 "concluded", id="conclude"),  # fmt: skip
    pytest.param("enrollment_delete", {**ENROLLMENT, "enrollment_state": "inactive"},
                 "deactivated", id="deactivate"),  # fmt: skip
    pytest.param("enrollment_reactivate", ENROLLMENT, "reactivated", id="reactivate"),
    pytest.param("enrollment_accept", {"success": True}, "accepted", id="accept"),
    pytest.param("enrollment_reject", {"success": True}, "rejected", id="reject"),
]


@pytest.mark.parametrize("kind, document, action", CHANGES)
def test_a_change_records_its_action(db, kind, document, action):
    recording.record(
        db, intent(kind), operation(kind, enrollment_ref="41"), sender(FakeResponse(200, document)),
        allowance=ALLOWANCE,
    )  # fmt: skip
    assert request_row(db)["status"] == "completed"
    assert actions(db) == [action]


def test_an_sis_import_records_its_job(db):
    job = {"id": 99, "workflow_state": "created"}
    recording.record(
        db, intent("sis_import"), operation("sis_import", account_ref="1"),
        sender(FakeResponse(200, job)), allowance=ALLOWANCE,
    )  # fmt: skip
    assert request_row(db)["status"] == "completed"
    [row] = db.conn.execute("SELECT job_id, kind FROM async_jobs").fetchall()
    assert tuple(row) == (99, "sis_import")
