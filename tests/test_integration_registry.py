"""The integration registry's rules, table-driven (the HTTP behaviour is in test_labels.py)."""

from __future__ import annotations

import json

import pytest

from ledger_proxy.core.integrations import (
    ENFORCE,
    RECORD,
    RegistryError,
    check_label,
    load_registry,
    parse_registry,
)

REGISTRY = {"roster-sync": {"user_ids": [17, 18]}, "sis-feed": {"user_ids": [5]}}


@pytest.mark.parametrize(
    ("mode", "label", "user", "verified", "refused", "says"),
    [
        (ENFORCE, None, 17, None, False, "no integration label"),
        (ENFORCE, "roster-sync", 17, True, False, "registered"),
        (ENFORCE, "roster-sync", 5, False, True, "user 5 is not registered"),
        (ENFORCE, "roster-sync", None, False, True, "unknown"),
        (ENFORCE, "made-up", 17, False, True, "not in the integration registry"),
        (RECORD, "roster-sync", 5, False, False, "user 5 is not registered"),
        (RECORD, "sis-feed", 5, True, False, "registered"),
    ],
)
def test_check_label(mode, label, user, verified, refused, says):
    result = check_label(parse_registry(REGISTRY, mode), label, user)
    assert (result.verified, result.refused) == (verified, refused)
    assert says in result.reason


def test_without_a_registry_every_label_is_self_declared():
    result = check_label(None, "roster-sync", 17)
    assert (result.verified, result.refused) == (None, False)
    assert "self-declared" in result.reason


@pytest.mark.parametrize(
    "document",
    [[], {"x": {"user_ids": "17"}}, {"x": {}}, {"x": {"user_ids": [True]}}, {"x": [17]}],
)
def test_a_malformed_registry_is_refused(document):
    with pytest.raises(RegistryError):
        parse_registry(document)


def test_an_unknown_mode_is_refused():
    with pytest.raises(RegistryError, match="enforce, record"):
        parse_registry(REGISTRY, "audit")


def test_load_from_a_file(tmp_path):
    path = tmp_path / "integrations.json"
    path.write_text(json.dumps(REGISTRY))
    assert load_registry(path).allows("roster-sync", 18)
    path.write_text("{not json")
    with pytest.raises(RegistryError, match="not JSON"):
        load_registry(path)
    with pytest.raises(RegistryError, match="cannot be read"):
        load_registry(tmp_path / "missing.json")
