"""Ledger export and tamper evidence: event rows, CSV/NDJSON encoding, the hash chain (no Flask)."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import sqlite_utils

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

PAGE_SIZE = 1000
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


def next_link(db: sqlite_utils.Database) -> tuple[int, str | None]:
    """(seq, prev_hash) of the next event; call inside the write transaction that inserts it.

    The seq continues after any seq ever used, so deleted tail events leave a visible gap.
    """
    last = db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    used = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    seq = max(last[0] if last else 0, used[0] if used else 0) + 1
    return seq, (last[1] if last else GENESIS)


# Export


@dataclass(frozen=True)
class Filters:
    """A slice of the ledger; `since` and `until` bound recorded_at, both inclusive."""

    since: datetime | None = None
    until: datetime | None = None
    course_id: int | None = None
    integration: str | None = None
    action: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.since is not None:
            clauses.append("recorded_at >= ?")
            params.append(_recorded_at(self.since))
        if self.until is not None:
            clauses.append("recorded_at <= ?")
            params.append(_recorded_at(self.until))
        for column in ("course_id", "integration", "action"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return "".join(f" AND {clause}" for clause in clauses), params


def count(db: sqlite_utils.Database, filters: Filters) -> int:
    """How many events an export with `filters` holds (for a progress bar)."""
    where, params = filters.where()
    return int(db.execute(f"SELECT count(*) FROM events WHERE 1{where}", params).fetchone()[0])


def _recorded_at(moment: datetime) -> str:
    """In recorded_at's own format, so that text order is time order (a four-digit year
    even before 1000, which strftime's %Y would shorten)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def pages(
    db: sqlite_utils.Database,
    select: str,
    filters: Filters = Filters(),
    page_size: int = PAGE_SIZE,
) -> Iterator[list[tuple[Any, ...]]]:
    """Pages of `select` (whose first column is seq) by keyset on seq, up to today's head.

    Stopping at the head seen at the start gives a consistent export without holding a read
    transaction open while a slow client downloads it: events are only ever appended.
    """
    head = db.execute("SELECT max(seq) FROM events").fetchone()[0]
    if head is None:
        return
    where, params = filters.where()
    sql = f"SELECT {select} FROM events WHERE seq > ? AND seq <= ?{where} ORDER BY seq LIMIT ?"
    after = -(2**63)  # SQLite's smallest integer: forged events may have seq 0 or below
    while True:
        rows = db.conn.execute(sql, [after, head, *params, page_size]).fetchall()
        if rows:
            yield rows
        if len(rows) < page_size:
            return
        after = rows[-1][0]


# SQLite writes each line itself (much faster than Python's csv module or json.dumps per
# row). CSV: RFC 4180, CRLF line ends; text columns always quoted ("" doubled), integers bare,
# NULL empty. Anything not an integer in an integer column is quoted too, so a forged value
# cannot break the file's columns.
INTEGER_COLUMNS = frozenset(
    (
        "seq",
        "enrollment_id",
        "course_id",
        "course_section_id",
        "user_id",
        "role_id",
        "actor_user_id",
        "sis_import_id",
    )
)


# Spreadsheet safety (OWASP, "CSV injection"): a text cell that begins with one of these gets a
# single quote in front (the field is quoted already), so that a spreadsheet shows it as text
# instead of running it as a formula. A value that itself begins with a quote gets one too, so
# that reading undoes it exactly: a CSV cell that begins with a quote loses one (docs/audit.md).
# Integers are written bare: a number is never a formula. NDJSON carries the raw values.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unneutralise(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


# One GLOB character class (a leading "-" is literal in it; the quote doubled for SQL; tab and CR
# as themselves): the cheapest test SQLite offers here, about a tenth of the export's time.
_FORMULA_GLOB = "[" + "".join(sorted(FORMULA_STARTS, key=lambda c: c != "-")) + "]*"


def _neutralised(column: str) -> str:
    pattern = _FORMULA_GLOB.replace("'", "''")
    return f"CASE WHEN {column} GLOB '{pattern}' THEN '''' || {column} ELSE {column} END"


def _csv_value(column: str) -> str:
    if column in INTEGER_COLUMNS:
        return (
            f"CASE typeof({column}) WHEN 'integer' THEN {column} WHEN 'null' THEN '' "
            f"ELSE '\"' || replace({_neutralised(column)}, '\"', '\"\"') || '\"' END"
        )
    return f"ifnull({_neutralised(column)}, '')"


_CSV_LINE = "seq, printf('{}', {})".format(
    ",".join("%s" if column in INTEGER_COLUMNS else '"%w"' for column in COLUMNS),
    ", ".join(_csv_value(column) for column in COLUMNS),
)
_NDJSON_LINE = "seq, json_object({})".format(
    ", ".join(f"'{name}', {column}" for name, column in zip(HEADER, COLUMNS, strict=True))
)


def csv_chunks(db: sqlite_utils.Database, filters: Filters) -> Iterator[bytes]:
    yield (",".join(HEADER) + "\r\n").encode()
    for page in pages(db, _CSV_LINE, filters):
        yield ("\r\n".join(line for _, line in page) + "\r\n").encode()


def ndjson_chunks(db: sqlite_utils.Database, filters: Filters) -> Iterator[bytes]:
    for page in pages(db, _NDJSON_LINE, filters):
        yield ("\n".join(line for _, line in page) + "\n").encode()


FORMATS = {
    "csv": ("text/csv; charset=utf-8", csv_chunks),
    "ndjson": ("application/x-ndjson; charset=utf-8", ndjson_chunks),
}


def export(db: sqlite_utils.Database, filters: Filters, fmt: str = "csv") -> Iterator[bytes]:
    """The export file, in chunks of about a page: the HTTP export and the CLI both use this."""
    return FORMATS[fmt][1](db, filters)


def content_type(fmt: str) -> str:
    return FORMATS[fmt][0]


def filename(fmt: str, now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"ledger-export-{moment:%Y%m%dT%H%M%SZ}.{fmt}"


# Reading events back


def db_events(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """Every event in seq order, named as in an export (HEADER), paged by keyset."""
    for page in pages(db, ", ".join(COLUMNS)):
        for row in page:
            yield dict(zip(HEADER, row, strict=True))


def file_events(path: str) -> Iterator[dict[str, Any]]:
    """The events of an export file, CSV or NDJSON (told apart by the first character), with
    exactly the export's columns: a column a file adds is ignored, never hashed in."""
    with open(path, encoding="utf-8", newline="") as handle:
        ndjson = handle.read(1) == "{"
        handle.seek(0)
        if ndjson:
            for line in handle:
                if line.strip():
                    document = json.loads(line)
                    yield {name: document.get(name) for name in HEADER}
            return
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [name for name in HEADER if name not in header]
        if missing:
            raise ValueError(f"{path} is not a ledger export: it has no column {missing[0]}")
        for values in reader:
            row = dict(zip(header, values, strict=True))
            yield {name: unneutralise(row[name]) for name in HEADER}


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


def verify_ledger(
    db: sqlite_utils.Database, tick: Callable[[int], None] | None = None
) -> ChainHead:
    """`verify` over the ledger itself, with the evidence only the database holds; `tick(n)`
    is told of every n events walked (a progress bar)."""
    # Read before walking: events appended meanwhile only raise the head the walk reaches.
    used = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    recorded_head = db.execute("SELECT max(last_seq) FROM enrollments").fetchone()[0]
    events = db_events(db) if tick is None else _ticking(db_events(db), tick)
    return verify(events, last_used_seq=used[0] if used else None, recorded_head=recorded_head)


def _ticking(
    rows: Iterator[dict[str, Any]], tick: Callable[[int], None]
) -> Iterator[dict[str, Any]]:
    for count, row in enumerate(rows, start=1):
        yield row
        if count % PAGE_SIZE == 0:
            tick(PAGE_SIZE)
