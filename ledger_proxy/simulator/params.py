"""Rails-style request parameters: merged query and body pairs, bracket keys, last value wins."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

TRUE_VALUES = frozenset({"true", "t", "yes", "y", "on", "1"})
FALSE_VALUES = frozenset({"false", "f", "no", "n", "off", "0"})
_LEADING_INT = re.compile(r"\s*([+-]?\d+)")


class Params:
    """Every (key, value) pair of a request in arrival order: query string first, then body.

    Keys are flat Rails keys (`enrollment[user_id]`, `state[]`); JSON bodies are flattened to
    the same form, keeping their typed values. As in Rails, a repeated scalar key keeps its
    last value, and `key[]` collects every value.
    """

    def __init__(self, pairs: Iterable[tuple[str, Any]] = ()) -> None:
        self.pairs: list[tuple[str, Any]] = list(pairs)

    def extend(self, pairs: Iterable[tuple[str, Any]]) -> None:
        self.pairs.extend(pairs)

    def get(self, key: str, default: Any = None) -> Any:
        """The last value of `key`, or `default` when it was never sent."""
        found = default
        for name, value in self.pairs:
            if name == key:
                found = value
        return found

    def has(self, key: str) -> bool:
        return any(name == key for name, _ in self.pairs)

    def get_list(self, key: str) -> list[Any] | None:
        """Values of `key[]` (all of them) or of a scalar `key` (the last); None if absent."""
        values = [value for name, value in self.pairs if name == f"{key}[]"]
        if values:
            return values
        if self.has(key):
            scalar = self.get(key)
            return list(scalar) if isinstance(scalar, list) else [scalar]
        return None

    def nested(self, prefix: str) -> dict[str, Any]:
        """The `prefix[...]` sub-hash as {inner_key: last value}."""
        opening = f"{prefix}["
        found: dict[str, Any] = {}
        for name, value in self.pairs:
            if name.startswith(opening) and name.endswith("]"):
                found[name[len(opening) : -1]] = value
        return found


def flatten_json(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """`{"enrollment": {"user_id": 5}}` -> `[("enrollment[user_id]", 5)]` (lists become `k[]`)."""
    if isinstance(value, Mapping):
        if not value and prefix:
            return [(prefix, {})]
        pairs: list[tuple[str, Any]] = []
        for key, inner in value.items():
            name = f"{prefix}[{key}]" if prefix else str(key)
            pairs.extend(flatten_json(inner, name))
        return pairs
    if isinstance(value, list) and prefix:
        pairs = []
        for item in value:
            if isinstance(item, (Mapping, list)):
                pairs.extend(flatten_json(item, f"{prefix}[]"))
            else:
                pairs.append((f"{prefix}[]", item))
        return pairs
    return [(prefix, value)] if prefix else []


def to_boolean(value: Any) -> bool | None:
    """Canvas `value_to_boolean`: True, False, or None for anything unrecognised."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in TRUE_VALUES:
        return True
    if text in FALSE_VALUES:
        return False
    return None


def ruby_to_i(value: Any) -> int:
    """Ruby `String#to_i`: the leading integer, or 0 for garbage."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    match = _LEADING_INT.match(str(value))
    return int(match.group(1)) if match else 0


def text_or_none(value: Any) -> str | None:
    """A parameter as a stripped string; None when absent or blank."""
    if value is None:
        return None
    text = str(value).strip() if not isinstance(value, bool) else str(value).lower()
    return text or None
