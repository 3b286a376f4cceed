"""The classification rules, case by case (ledger_proxy.provenance is pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger_proxy.core.provenance import (
    ActorEvidence,
    Evidence,
    LedgerRecord,
    LinkedStudent,
    ObserverLink,
    ProxyChange,
    SisImportRecord,
    SisUpload,
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


# -- Live Events and the linked-observer rule together (issues 10 and 13) ------------------------
# Canvas's own word about the observer row (its enrollment_created names a request) is stronger
# than the timing inference: see core/provenance.py's docstring.


def student_made_in(request, verdict="manual", created_at=NOW, changes=()):
    """A student enrollment whose own enrollment_created Live Event names `request`."""
    said = actor("ui", request_id=request)
    return LinkedStudent(STUDENT_ROW, created_at, Verdict(verdict, "r", False), None, changes, said)


def restore(request):
    return ProxyChange("adopted", "roster-sync", 17, NOW, request)


@pytest.mark.parametrize(
    ("case", "expected", "reason_parts", "follows"),
    [
        pytest.param(observer_row(student(), actor=actor("canvas", proxied=True, request_id="ctx-1")), "integration", ["confirmed by Canvas: request ctx-1 made it", "following student user 11 (Sam Student)'s enrollment 40, which roster-sync (user 17) created through the proxy in that same request"], STUDENT_ROW, id="proxied-side-effect-follows-the-same-request"),
        pytest.param(observer_row(None, actor=actor("canvas", proxied=True)), "integration", ["confirmed by Canvas: request 5a53c1f0 made it", "side effect"], None, id="proxied-even-when-the-students-are-hidden"),
        pytest.param(observer_row(student("manual"), actor=actor("api", proxied=True, request_id="r-proxy")), "integration", ["confirmed by Canvas: request r-proxy made it"], None, id="proxied-beats-a-hand-made-student-at-the-same-time"),
        pytest.param(observer_row(student_made_in("r-ui", created_at=NOW - timedelta(hours=1)), actor=actor("canvas", request_id="r-ui")), "manual", ["enrollment 40, which is manual", "request r-ui made both"], STUDENT_ROW, id="the-same-request-beats-the-clock"),
        pytest.param(observer_row(student(), actor=actor("ui", request_id="r-link")), "manual", ["added in the web UI by Terry Teacher", "made at 2026-09-01T12:00:00Z in request r-link, not with their enrollment in this section (40 at 2026-09-01T12:00:00Z in request ctx-1)", "linked later"], None, id="another-request-beats-the-clock"),
        pytest.param(observer_row(student("manual"), actor=actor("ui", request_id="r-x")), "manual", ["enrollment 40, which is manual"], STUDENT_ROW, id="a-student-of-unknown-request-still-matches-by-time"),
        pytest.param(observer_row(None, sis_visible=False, actor=actor("sis", user_id=None, name=None, request_id=None)), "sis", ["confirmed by Canvas: the SIS importer's job made it"], None, id="the-sis-importer-s-job-decides"),
        pytest.param(observer_row(student_made_in("r-old", created_at=LONG_AGO, changes=(restore("r-restore"),)), actor=actor("canvas", proxied=True, request_id="r-restore")), "integration", ["confirmed by Canvas: request r-restore made it", "roster-sync (user 17) adopted student user 11 (Sam Student)'s enrollment 40 in that same request"], STUDENT_ROW, id="restored-by-the-proxy-in-the-same-request"),
        pytest.param(observer_row(student("manual", created_at=LONG_AGO, changes=(change(),)), actor=actor("ui", request_id="r-other")), "manual", ["linked later"], None, id="not-the-proxy-s-restore-when-canvas-names-another-request"),
        pytest.param(observer_row(None, actor=actor("canvas", request_id="r-ui")), "unknown", ["cannot be told; Canvas's Live Event says it was added by Canvas itself on 2026-09-03, as a side effect of a request by Terry Teacher (user 2)"], None, id="students-hidden-the-event-is-quoted"),
        pytest.param(observer_row(student(), actor=actor("canvas", created=False, request_id="r-later")), "integration", ["following student user 11 (Sam Student)'s enrollment 40 that roster-sync (user 17) created through the proxy"], STUDENT_ROW, id="an-update-names-no-maker-timing-stands"),
    ],
)
def test_live_events_and_the_linked_observer_rule(case, expected, reason_parts, follows):
    verdict = judge(case)
    assert verdict.provenance == expected, verdict.reason
    for part in reason_parts:
        assert part in verdict.reason
    assert verdict.follows == follows
