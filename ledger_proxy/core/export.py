"""Ledger export: event rows as CSV/NDJSON formatted by SQLite, streamed; reading them back."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlite_utils

from . import chain, ledger
from .chain import (  # noqa: F401  (re-exported: the export's columns and its verification)
    COLUMNS,
    GENESIS,
    HASH_SCHEME,
    HEADER,
    ChainBroken,
    ChainHead,
    event_hash,
    link,
    outward,
    verify,
)
from .ledger import Filters

_Row = TypeVar("_Row")

PAGE_SIZE = ledger.PAGE_SIZE


# Export


def count(db: sqlite_utils.Database, filters: Filters) -> int:
    """How many events an export with `filters` holds (for a progress bar)."""
    return ledger.event_count(db, filters)


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
    for page in ledger.event_pages(db, _CSV_LINE, filters):
        yield ("\r\n".join(line for _, line in page) + "\r\n").encode()


def ndjson_chunks(db: sqlite_utils.Database, filters: Filters) -> Iterator[bytes]:
    for page in ledger.event_pages(db, _NDJSON_LINE, filters):
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
    for page in ledger.event_pages(db, ", ".join(COLUMNS)):
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


def verify_ledger(
    db: sqlite_utils.Database, tick: Callable[[int], None] | None = None
) -> ChainHead:
    """`verify` over the ledger itself, with the evidence only the database holds; `tick(n)`
    is told of every n events walked (a progress bar)."""
    # Read before walking: events appended meanwhile only raise the head the walk reaches.
    last_used_seq, recorded_head = ledger.chain_ends(db)
    links = ledger.chain_links(db)
    head = chain.walk_links(
        links if tick is None else _ticking(links, tick),
        lambda seq: dict(zip(HEADER, ledger.event_at(db, seq, ", ".join(COLUMNS)), strict=True)),
    )
    if head is not None:
        return chain.check_ends(head, last_used_seq, recorded_head)
    # A link does not hold: the walk over whole events finds where and names the break.
    events = db_events(db) if tick is None else _ticking(db_events(db), tick)
    return verify(events, last_used_seq=last_used_seq, recorded_head=recorded_head)


def _ticking(rows: Iterator[_Row], tick: Callable[[int], None]) -> Iterator[_Row]:
    for count, row in enumerate(rows, start=1):
        yield row
        if count % PAGE_SIZE == 0:
            tick(PAGE_SIZE)
