"""The hash chain over the ledger's events: columns, canonical bytes, links, verification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

# Every column of an event, in export order: the file alone carries what verification needs.
COLUMNS = (
    "seq",
    "enrollment_id",
    "course_id",
    "course_section_id",
    "user_id",
    "type",
    "role",
    "role_id",
    "enrollment_state",
    "action",
    "integration",
    "actor_user_id",
    "canvas_request_id",
    "request_id",
    "canvas_created_at",
    "canvas_updated_at",
    "sis_import_id",
    "recorded_at",
    "prev_hash",
    "hash",
)
# Outside the ledger (export files, history, hashes) Canvas's timestamps keep Canvas's names.
EXPORT_NAMES = {"canvas_created_at": "created_at", "canvas_updated_at": "updated_at"}
LEDGER_NAMES = {name: column for column, name in EXPORT_NAMES.items()}
HEADER = tuple(EXPORT_NAMES.get(column, column) for column in COLUMNS)
# The hash covers every other column, seq and prev_hash included (docs/audit.md).
HASHED_COLUMNS = tuple(name for name in HEADER if name != "hash")
GENESIS = "0" * 64
HASH_SCHEME = "sha256(canonical JSON of every column but hash, values as CSV text); v1"

# How far the diagnosis looks for the seq a renumbered event was recorded under.
RENUMBER_WINDOW = 1000


# The hash chain


def _text(value: Any) -> str:
    """A value as the CSV carries it (and as SQLite stores it): NULL is the empty string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


_HASH_ORDER = tuple(sorted(HASHED_COLUMNS))
# The keys of the canonical JSON in their order, with the ledger column each one is read from.
HASHED_KEYS = tuple((name, LEDGER_NAMES.get(name, name)) for name in _HASH_ORDER)
# Keys inserted already sorted: the same bytes as json.dumps(sort_keys=True), but faster.
_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def canonical(row: Mapping[str, Any]) -> bytes:
    """The bytes hashed for one event: sorted keys, no whitespace, ASCII, every value as text.

    `row` may use the ledger's column names or the export's (created_at for canvas_created_at).
    """
    return _to_json({name: _text(_value(row, name)) for name in _HASH_ORDER}).encode("ascii")


def _value(row: Mapping[str, Any], name: str) -> Any:
    column = LEDGER_NAMES.get(name)
    return row[column] if column is not None and column in row else row.get(name)


def outward(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger row with the names an export, the history and the hash use."""
    return {EXPORT_NAMES.get(key, key): value for key, value in row.items()}


def event_hash(row: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


def link(rows: Iterable[Mapping[str, Any]], prev_hash: str = GENESIS) -> Iterator[dict[str, Any]]:
    """Rows in seq order with `prev_hash` and `hash` set: each chains from the one before."""
    for row in rows:
        linked = {**row, "prev_hash": prev_hash}
        linked["hash"] = prev_hash = event_hash(linked)
        yield linked


# Verification


@dataclass(frozen=True)
class ChainHead:
    count: int
    seq: int
    hash: str


class ChainBroken(Exception):
    """The first place where the events stop being the chain the proxy wrote."""

    def __init__(self, seq: int, kind: str, detail: str) -> None:
        super().__init__(f"ledger chain broken at seq {seq}: {kind} ({detail})")
        self.seq = seq
        self.kind = kind  # edited, deleted, inserted or reordered
        self.detail = detail


def verify(
    rows: Iterable[Mapping[str, Any]],
    *,
    last_used_seq: int | None = None,
    recorded_head: int | None = None,
) -> ChainHead:
    """Walk the events in seq order; ChainBroken at the first edit, deletion, insertion or move.

    `last_used_seq` (sqlite_sequence) reveals events deleted from the end; `recorded_head` (the
    highest seq the current view names) tells an appended forgery from an edited last event.
    """
    remaining = iter(rows)
    prev = ChainHead(0, 0, GENESIS)
    for row in remaining:
        seq = int(row["seq"])
        if _intact(row) and row["prev_hash"] == prev.hash and seq == prev.seq + 1:
            prev = ChainHead(prev.count + 1, seq, row["hash"])
            continue
        raise _diagnose(row, seq, prev, remaining, recorded_head)
    return check_ends(prev, last_used_seq, recorded_head)


def walk_links(
    links: Iterable[tuple[Any, Any, Any, str | None]],
    full_row: Callable[[Any], Mapping[str, Any]],
) -> ChainHead | None:
    """The chain's head if every link holds, else None (then `verify` over the full rows names
    the break). `links` are (seq, prev_hash, hash, canonical JSON text or None) in seq order;
    where the text is None, or holds what SQLite does not escape as Python does (non-ASCII,
    DEL), the hash is checked on `full_row(seq)`, as `verify` checks it.

    `verify` of a million events spent most of its time building a dict per event; the ledger
    writes the canonical text itself where it is sure to be Python's (ledger.chain_links).
    """
    count, head_seq, head_hash = 0, 0, GENESIS
    sha256 = hashlib.sha256
    for seq, prev_hash, hash_, text in links:
        if not (hash_ and prev_hash == head_hash and seq == head_seq + 1):
            return None
        if text is not None and text.isascii() and "\x7f" not in text:
            if sha256(text.encode("ascii")).hexdigest() != hash_:
                return None
        elif not _intact(full_row(seq)):
            return None
        count, head_seq, head_hash = count + 1, seq, hash_
    return ChainHead(count, head_seq, head_hash)


def check_ends(
    prev: ChainHead, last_used_seq: int | None, recorded_head: int | None
) -> ChainHead:
    """The evidence beyond the last event: seqs used after it, or named by the current view."""
    if last_used_seq is not None and last_used_seq > prev.seq:
        raise ChainBroken(
            prev.seq + 1,
            "deleted",
            f"{_seqs(prev.seq + 1, last_used_seq)} missing from the end of the ledger",
        )
    if recorded_head is not None and recorded_head > prev.seq:
        raise ChainBroken(
            prev.seq + 1,
            "deleted",
            f"the current view names seq {recorded_head}, the ledger ends at seq {prev.seq}",
        )
    return prev


def _intact(row: Mapping[str, Any], seq: Any = None) -> bool:
    """Does the row's hash match its content (as if at `seq`, when given)?"""
    if not row.get("hash") or not row.get("prev_hash"):
        return False
    content = row if seq is None else {**row, "seq": seq}
    return event_hash(content) == row["hash"]


def _seqs(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}-{last}"


def _diagnose(
    row: Mapping[str, Any],
    seq: int,
    prev: ChainHead,
    remaining: Iterator[Mapping[str, Any]],
    recorded_head: int | None,
) -> ChainBroken:
    """Name the kind of break at `row`, looking ahead in the rows that follow it."""
    intact, linked = _intact(row), row.get("prev_hash") == prev.hash
    if intact and seq > prev.seq + 1:
        return ChainBroken(
            prev.seq + 1,
            "deleted",
            f"{_seqs(prev.seq + 1, seq - 1)} missing: seq {seq} follows seq {prev.seq}",
        )
    if prev.count and seq <= prev.seq:
        return ChainBroken(seq, "reordered", f"seq {seq} comes after seq {prev.seq}")
    after = next(remaining, None)
    if after is not None and _skips(after, row, prev):
        return ChainBroken(
            seq, "inserted", f"seq {after['seq']} chains from seq {prev.seq}, not from seq {seq}"
        )
    moved = _moved(row, chain([after], remaining) if after is not None else remaining, intact)
    if moved:
        return ChainBroken(seq, "reordered", f"seq {seq} holds the event recorded as {moved}")
    if intact:  # it chains from a hash that is no longer in the ledger
        if not prev.count:
            return ChainBroken(seq, "deleted", f"seq {seq} chains from events before it")
        return ChainBroken(
            prev.seq,
            "edited",
            f"the hash of seq {prev.seq} was recomputed: seq {seq} chains from another one",
        )
    renumbered = next(
        (old for old in range(seq + 1, seq + 1 + RENUMBER_WINDOW) if _intact(row, old)), None
    )
    if renumbered is not None:
        return ChainBroken(
            seq,
            "deleted",
            f"seq {seq} was recorded as seq {renumbered}: the events before it were deleted "
            "and the rest renumbered",
        )
    recorded = recorded_head is not None and recorded_head >= seq
    if after is None and not recorded and not (linked and row.get("hash")):
        return ChainBroken(seq, "inserted", f"seq {seq} does not chain: the proxy never wrote it")
    if after is None and recorded_head is not None and not recorded:
        return ChainBroken(seq, "inserted", f"the proxy never recorded seq {seq}")
    return ChainBroken(seq, "edited", f"the content of seq {seq} no longer matches its hash")


def _skips(after: Mapping[str, Any], row: Mapping[str, Any], prev: ChainHead) -> bool:
    """Does the next event chain from the one before `row`, as if `row` were not there?"""
    if after.get("prev_hash") != prev.hash or row.get("prev_hash") == after.get("hash"):
        return False  # (the second: the two were swapped, `row` chains from `after`)
    return _intact(after) or _intact(after, int(after["seq"]) - 1)


def _moved(row: Mapping[str, Any], later: Iterable[Mapping[str, Any]], intact: bool) -> str:
    """Where this row's event was recorded, when that is among the rows that follow it."""
    for other in later:
        if not other.get("hash"):
            continue
        if row.get("prev_hash") == other["hash"]:
            after = int(other["seq"]) + 1
            return f"seq {after}" if _intact(row, after) else f"the event after seq {after - 1}"
        if not intact and other.get("prev_hash"):
            there = {**row, "seq": other["seq"], "prev_hash": other["prev_hash"]}
            if event_hash(there) == other["hash"]:
                return f"seq {other['seq']}"
    return ""
