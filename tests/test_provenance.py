"""The classification rules, case by case (ledger_proxy.provenance is pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger_proxy.core.provenance import (
    ActorEvidence,
    Evidence,
    LedgerRecord,
    SisImportRecord,
    SisUpload,
    classify,
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
    no_actor = {"ui": 0, "api": 0, "sis": 0, "self": 0, "canvas": 0, "none": 2}
    assert summary(["manual", "sis", "manual"]) == {"integration": 0, "sis": 1, "manual": 2, "pending": 0, "unknown": 0, "ambiguous": 0, "total": 3, "manual_via": no_actor}


def test_summary_counts_manual_rows_by_how_they_were_made():
    counts = summary([("manual", "ui"), ("manual", "ui"), ("manual", "api"), ("manual", None), ("integration", "api"), ("sis", "sis")])
    assert counts["manual"] == 4
    assert counts["manual_via"] == {"ui": 2, "api": 1, "sis": 0, "self": 0, "canvas": 0, "none": 1}


# -- issue 13: the actor from Canvas Live Events -------------------------------------------------

DAY = datetime(2026, 9, 3, 10, 0, tzinfo=UTC)


def actor(via="ui", user_id=2, name="Terry Teacher", created=True, proxied=False, **overrides):
    values = dict(via=via, user_id=user_id, name=name, real_user_id=None, developer_key_id=None, request_id="5a53c1f0", event_time=DAY, created=created, proxied=proxied)
    values.update(overrides)
    return ActorEvidence(**values)


@pytest.mark.parametrize(
    ("case", "expected", "reason"),
    [
        pytest.param(evidence(actor=actor()), "manual", "added in the web UI by Terry Teacher (user 2) on 2026-09-03", id="ui-by-a-teacher"),
        pytest.param(evidence(actor=actor(name=None, real_user_id=1)), "manual", "added in the web UI by user 2, as admin user 1 acting as them on 2026-09-03", id="ui-masquerading-admin"),
        pytest.param(evidence(actor=actor("api", user_id=9, name=None, developer_key_id="170000000000042")), "manual", "added through the API by user 9 with developer key 170000000000042 on 2026-09-03, bypassing the proxy", id="api-bypassing-the-proxy"),
        pytest.param(evidence(actor=actor("self", user_id=5, name="Sam Student")), "manual", "self-enrolled by Sam Student (user 5) on 2026-09-03", id="self-enrollment"),
        pytest.param(evidence(actor=actor("canvas", user_id=None, name=None)), "manual", "added by Canvas itself on 2026-09-03, as a side effect", id="canvas-side-effect"),
        pytest.param(evidence(actor=actor(created=False)), "manual", "re-enrolled or changed in the web UI by Terry Teacher (user 2)", id="only-an-update-says-re-enrolled"),
        pytest.param(evidence(actor=actor(), ledger=record("adopted")), "manual", "added in the web UI by Terry Teacher (user 2) on 2026-09-03; it already existed when roster-sync (user 17) adopted it", id="ui-then-adopted"),
        pytest.param(evidence(ledger=record(), actor=actor("api", proxied=True)), "integration", "created through the proxy by roster-sync (user 17) on 2026-09-01; confirmed by Canvas: request 5a53c1f0 made it", id="integration-confirmed-by-request-id"),
        pytest.param(evidence(ledger=record(), actor=actor("api")), "integration", "but Canvas's Live Event says it was added through the API", id="integration-contradicted-is-said"),
        pytest.param(evidence(actor=actor("api", proxied=True)), "integration", "confirmed by Canvas: request 5a53c1f0 made it on 2026-09-03, a request the proxy forwarded", id="lost-answer-confirmed-by-canvas"),
        pytest.param(evidence(actor=actor("canvas", proxied=True)), "integration", "a request the proxy forwarded, as Canvas's side effect", id="side-effect-of-a-proxied-request"),
        pytest.param(evidence(ledger=record("adopted"), actor=actor("api", created=False, proxied=True)), "manual", "re-enrolled or changed through the API", id="an-update-through-the-proxy-confirms-no-creation"),
        pytest.param(evidence(sis_import_id=9, actor=actor("sis", user_id=None, name=None)), "sis", "Canvas shows sis_import_id 9 and confirmed by Canvas: the SIS importer's job made it", id="sis-job-strengthens-sis-import-id"),
        pytest.param(evidence(sis_visible=False, actor=actor("sis", user_id=None, name=None)), "sis", "confirmed by Canvas: the SIS importer's job made it", id="sis-job-turns-unknown-into-sis"),
        pytest.param(evidence(sis_import_id=9, actor=actor()), "sis", "first added in the web UI by Terry Teacher", id="made-by-hand-then-claimed-by-sis"),
        pytest.param(evidence(sis_import_id=9, sis_upload=SisUpload(9, 1, None, "170000000000001")), "sis", "Canvas's Live Event says user 1 uploaded SIS import 9 with developer key 170000000000001", id="sis-upload-named"),
        pytest.param(evidence(sis_visible=False, actor=actor()), "unknown", "Canvas's Live Event says it was added in the web UI by Terry Teacher (user 2) on 2026-09-03; Canvas hid the SIS fields", id="sis-hidden-actor-quoted-not-decided"),
        pytest.param(evidence(pending_request_id="r9", actor=actor("api")), "pending", "request r9", id="pending-stays-pending"),
    ],
)
def test_rules_with_a_live_event(case, expected, reason):
    verdict = classify(case)
    assert verdict.provenance == expected
    assert reason in verdict.reason
