"""The classification rules, case by case (ledger_proxy.provenance is pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger_proxy.core.provenance import Evidence, LedgerRecord, SisImportRecord, classify, summary

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
