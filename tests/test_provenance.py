"""The classification rules, case by case (ledger_proxy.provenance is pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger_proxy.core.provenance import (
    Evidence,
    LedgerRecord,
    LinkedStudent,
    ObserverLink,
    ProxyChange,
    SisImportRecord,
    Verdict,
    classify,
    judge,
    summary,
)

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
SINCE = datetime(2026, 8, 1, tzinfo=UTC)


def record(action="created", integration="roster-sync", actor=17):
    return LedgerRecord(action, integration, actor, NOW, "ctx-1", "req-1", action)


def evidence(**overrides):
    values = dict(
        ledger=None,
        sis_visible=True,
        sis_import_id=None,
        in_sis_roster=None,
        created_at=NOW,
        recording_since=SINCE,
        allowance=timedelta(seconds=2),
    )
    values.update(overrides)
    return Evidence(**values)


@pytest.mark.parametrize(
    ("case", "expected", "reason_part"),
    [
        pytest.param(evidence(ledger=record()), "integration", "created through the proxy by roster-sync (user 17) on 2026-09-01", id="created-through-proxy"),
        pytest.param(evidence(ledger=record(integration=None)), "integration", "an unlabelled integration (user 17)", id="created-unlabelled"),
        pytest.param(evidence(ledger=record(), sis_import_id=9), "integration", "does not make SIS its creator", id="created-then-claimed-by-sis"),
        pytest.param(evidence(ledger=record(), sis_visible=False), "integration", "created through the proxy", id="created-sis-hidden"),
        pytest.param(evidence(sis_import_id=9), "sis", "sis_import_id 9", id="sis-import-id"),
        pytest.param(evidence(in_sis_roster=True), "sis", "SIS roster", id="roster-match"),
        pytest.param(evidence(sis_import_id=9, sis_import=SisImportRecord(9, "sis-feed", 3)), "sis", "submitted through the proxy by sis-feed (user 3)", id="sis-job-through-proxy"),
        pytest.param(evidence(ledger=record("adopted"), sis_import_id=9), "sis", "the proxy only saw it adopted", id="adopted-sis-row"),
        pytest.param(evidence(ledger=record("adopted")), "manual", "already existed when roster-sync (user 17) adopted it", id="adopted-hand-made"),
        pytest.param(evidence(ledger=record("deactivated")), "manual", "deactivated it", id="first-seen-by-a-change"),
        pytest.param(evidence(), "manual", "added by hand or by a script bypassing it", id="never-seen"),
        pytest.param(evidence(in_sis_roster=False), "manual", "added by hand", id="not-in-roster"),
        pytest.param(evidence(pending_request_id="r9"), "pending", "request r9", id="unsettled-request"),
        pytest.param(evidence(ledger=record("adopted"), pending_request_id="r9"), "pending", "request r9", id="retried-after-a-lost-answer"),
        pytest.param(evidence(ledger=record(), pending_request_id="r9"), "integration", "created through the proxy", id="created-row-not-pending"),
        pytest.param(evidence(sis_visible=False), "unknown", "hid the SIS fields", id="sis-hidden"),
        pytest.param(evidence(sis_visible=False, ledger=record("adopted")), "unknown", "adopted it", id="adopted-sis-hidden"),
        pytest.param(evidence(sis_visible=False, in_sis_roster=False), "manual", "added by hand", id="sis-hidden-but-roster-says-no"),
    ],
)
def test_rules(case, expected, reason_part):
    verdict = classify(case)
    assert verdict.provenance == expected
    assert reason_part in verdict.reason


@pytest.mark.parametrize(
    ("created_at", "predates"),
    [
        pytest.param(SINCE - timedelta(days=30), True, id="long-before"),
        pytest.param(SINCE - timedelta(seconds=1), False, id="within-allowance"),
        pytest.param(SINCE - timedelta(seconds=3), True, id="just-outside-allowance"),
        pytest.param(SINCE + timedelta(seconds=1), False, id="after"),
        pytest.param(None, False, id="no-created-at"),
    ],
)
def test_predates_ledger_compares_with_an_allowance(created_at, predates):
    verdict = classify(evidence(created_at=created_at))
    assert verdict.predates_ledger is predates
    assert ("predates the ledger" in verdict.reason) is predates


def test_created_rows_never_predate_the_ledger():
    assert classify(evidence(ledger=record(), created_at=SINCE - timedelta(days=1))).predates_ledger is False


def test_summary_counts_every_verdict():
    assert summary(["manual", "sis", "manual"]) == {"integration": 0, "sis": 1, "manual": 2, "pending": 0, "unknown": 0, "ambiguous": 0, "total": 3}


# -- Rows Canvas makes itself: a linked observer's row follows its student's (issue 10) ----------

STUDENT_ROW = 40


def student(verdict="integration", created_at=NOW, ledger=None, enrollment_id=STUDENT_ROW, reason="r", changes=()):
    if verdict == "integration" and ledger is None:
        ledger = record()
    return LinkedStudent(enrollment_id, created_at, Verdict(verdict, reason, False), ledger, changes)


LONG_AGO = NOW - timedelta(days=30)


def change(action="reactivated", at=NOW):
    return ProxyChange(action, "roster-sync", 17, at)


def observer_row(*students, **overrides):
    """An ObserverEnrollment of user 12 observing user 11, with these student rows in its section
    (None: Canvas did not show them)."""
    link = ObserverLink("user 12 (Pat Parent)", 11, "user 11 (Sam Student)", students[0] if students == (None,) else tuple(students))
    return evidence(link=link, **overrides)


@pytest.mark.parametrize(
    ("case", "expected", "reason_part", "follows"),
    [
        pytest.param(observer_row(student()), "integration", "made by Canvas for observer user 12 (Pat Parent), following student user 11 (Sam Student)'s enrollment 40 that roster-sync (user 17) created through the proxy on 2026-09-01", STUDENT_ROW, id="follows-integration-student"),
        pytest.param(observer_row(student("manual", reason="neither made through the proxy nor by SIS")), "manual", "enrollment 40, which is manual: neither made", STUDENT_ROW, id="follows-hand-made-student"),
        pytest.param(observer_row(student("sis", reason="made by SIS: Canvas shows sis_import_id 4")), "sis", "which is sis: made by SIS: Canvas shows sis_import_id 4", STUDENT_ROW, id="follows-sis-student"),
        pytest.param(observer_row(student("pending", reason="request r9")), "pending", "which is pending: request r9", STUDENT_ROW, id="follows-pending-student"),
        pytest.param(observer_row(student("unknown", reason="hid")), "unknown", "which is unknown", STUDENT_ROW, id="follows-unknown-student"),
        pytest.param(observer_row(student(created_at=NOW - timedelta(seconds=2))), "integration", "enrollment 40", STUDENT_ROW, id="within-the-allowance"),
        pytest.param(observer_row(student(created_at=NOW - timedelta(seconds=3))), "manual", "an observer added by hand or linked later", None, id="outside-the-allowance"),
        pytest.param(observer_row(student(created_at=NOW - timedelta(hours=1)), sis_visible=False), "unknown", "hid the SIS fields", None, id="later-and-sis-hidden"),
        pytest.param(observer_row(), "manual", "has no StudentEnrollment in this section", None, id="student-not-in-the-section"),
        pytest.param(observer_row(None), "unknown", "cannot be told", None, id="students-not-shown"),
        pytest.param(observer_row(student(created_at=None)), "manual", "an unknown time", None, id="student-time-unknown"),
        pytest.param(observer_row(student(created_at=NOW - timedelta(hours=1), enrollment_id=39, verdict="manual"), student(enrollment_id=41)), "integration", "enrollment 41", 41, id="the-student-row-made-with-it"),
        pytest.param(observer_row(student(created_at=NOW - timedelta(seconds=1), enrollment_id=39, verdict="manual"), student(enrollment_id=41)), "integration", "enrollment 41", 41, id="nearest-of-two"),
        pytest.param(observer_row(student("manual"), ledger=record()), "integration", "created through the proxy by roster-sync", None, id="its-own-request-through-the-proxy"),
        pytest.param(observer_row(student(), ledger=record("adopted")), "integration", "made by Canvas for observer", STUDENT_ROW, id="re-enrolled-through-the-proxy-later"),
        pytest.param(observer_row(student(), sis_import_id=9), "integration", "sis_import_id 9 on this row: a later SIS import claimed it", STUDENT_ROW, id="claimed-by-sis-later"),
        pytest.param(evidence(), "manual", "added by hand", None, id="not-an-observer-row"),
        pytest.param(observer_row(student("manual", created_at=LONG_AGO, changes=(change(),))), "integration", "when roster-sync (user 17) reactivated student user 11 (Sam Student)'s enrollment 40 through the proxy", STUDENT_ROW, id="made-when-the-proxy-restored-the-student"),
        pytest.param(observer_row(student("manual", created_at=LONG_AGO, changes=(change("adopted", NOW - timedelta(seconds=1)),))), "integration", "adopted student", STUDENT_ROW, id="made-when-the-proxy-re-enrolled-the-student"),
        pytest.param(observer_row(student("manual", created_at=LONG_AGO, changes=(change("concluded"),))), "manual", "linked later", None, id="a-conclusion-makes-no-observer-row"),
        pytest.param(observer_row(student("manual", created_at=LONG_AGO, changes=(change(at=NOW - timedelta(minutes=5)),))), "manual", "linked later", None, id="restored-at-another-time"),
    ],
)
def test_linked_observer_rules(case, expected, reason_part, follows):
    verdict = judge(case)
    assert verdict.provenance == expected
    assert reason_part in verdict.reason
    assert verdict.follows == follows
