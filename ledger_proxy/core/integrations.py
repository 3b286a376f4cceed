"""The integration registry: which Canvas users may act under which integration label.

Without a registry a label is self-declared: anyone with a Canvas token can send
`/i/roster-sync/...`, and every answer says so. With one, each label is bound to the Canvas
user ids (the token's user, as Canvas resolves it) allowed to use it. In `enforce` mode a
request under a label by anyone else is refused; in `record` mode it is forwarded and
recorded with `label_verified: false`.

The registry is a JSON file:

    {"roster-sync": {"user_ids": [17, 18]}, "sis-feed": {"user_ids": [5]}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENFORCE, RECORD = "enforce", "record"
MODES = (ENFORCE, RECORD)


class RegistryError(ValueError):
    """The registry file cannot be read or does not have the documented shape."""


@dataclass(frozen=True)
class Registry:
    users_by_label: Mapping[str, frozenset[int]]
    mode: str = ENFORCE

    def allows(self, label: str, user_id: int | None) -> bool:
        allowed = self.users_by_label.get(label, frozenset())
        return user_id is not None and user_id in allowed


@dataclass(frozen=True)
class LabelCheck:
    """What the registry says of one request's label."""

    verified: bool | None  # None: no registry (or no label), the label is self-declared
    refused: bool  # enforce mode and not verified: the request must not be forwarded
    reason: str


def parse_registry(document: Any, mode: str = ENFORCE) -> Registry:
    if mode not in MODES:
        raise RegistryError(f"the registry mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(document, dict):
        raise RegistryError("the registry must be a JSON object of label -> {\"user_ids\": [...]}")
    users: dict[str, frozenset[int]] = {}
    for label, entry in document.items():
        ids = entry.get("user_ids") if isinstance(entry, dict) else None
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise RegistryError(
                f"integration {label!r}: user_ids must be a list of Canvas user ids"
            )
        users[str(label)] = frozenset(ids)
    return Registry(users, mode)


def load_registry(path: str | Path, mode: str = ENFORCE) -> Registry:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegistryError(f"the integration registry {path} cannot be read: {exc}") from None
    except ValueError as exc:
        raise RegistryError(f"the integration registry {path} is not JSON: {exc}") from None
    return parse_registry(document, mode)


def check_label(registry: Registry | None, label: str | None, user_id: int | None) -> LabelCheck:
    """Is `user_id` (the token's Canvas user; None when unknown) allowed to use `label`?"""
    if label is None:
        return LabelCheck(None, False, "no integration label")
    if registry is None:
        return LabelCheck(None, False, f"integration {label!r} is self-declared (no registry)")
    if registry.allows(label, user_id):
        return LabelCheck(True, False, f"user {user_id} is registered for integration {label!r}")
    who = f"user {user_id}" if user_id is not None else "a token whose Canvas user is unknown"
    if label not in registry.users_by_label:
        reason = f"integration {label!r} is not in the integration registry"
    else:
        reason = f"{who} is not registered for integration {label!r}"
    return LabelCheck(False, registry.mode == ENFORCE, reason)
