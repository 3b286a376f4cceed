"""The account audit: Canvas's `provisioning_csv` enrollments, each judged as the lookup judges.

The report (provenance-sources.md §3.2) is read as a stream of lines, a thousand rows at a time
joined with the ledger, the SIS roster, the SIS jobs the proxy saw and the stored Live Events
(`lookup.Context`, whose `evidence` it takes), and judged by `provenance.judge`, as the course
lookup judges a listed row. What the report gives differs from a listing, and the verdicts say
so:

- `created_by_sis` stands where a listing shows `sis_import_id`: an SIS batch last claimed the
  row, which is not proof that SIS made it (§2.2); the batch's id is not given, so the SIS
  import the proxy forwarded cannot be named.
- There is no `created_at`. It is taken from the ledger when the proxy saw the row (Canvas's
  own value, recorded then); otherwise `predates_ledger` is null (cannot be told), never a
  guessed false, and an unsettled create through the proxy for the same user and place makes
  the row `pending` however old it is.
- Completed rows come only with `include_deleted` (always asked for here), deleted ones only
  when an SIS batch touched them: a deleted row made by hand or through the proxy is absent.
- Callers of the report hold `read_reports`, so the SIS fields are always there: the
  `unknown` verdict (SIS fields hidden from the caller) does not arise.
- Live Events name the actor as in the lookup (by enrollment id); a name only when a stored
  event gives one (the report has no `user` objects).
- A linked observer's row follows its student's row (`lookup.Links`), with Canvas asked for
  the students' rows and the observer row's `created_at`, as the lookup asks; a report file
  judged offline (`--from-report`) cannot ask, and those rows are judged on their own.

No Flask; the ledger is read through `core/ledger.py` only.
"""

from __future__ import annotations

import contextlib
import csv
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, TextIO

import sqlite_utils

from ..upstream import reports
from ..upstream.canvas import CanvasClient, CanvasRefused, enrollments_target
from . import ledger, lookup, provenance
from .export import FORMULA_STARTS, neutralise
from .live_events import VIAS
from .sis_roster import BUILT_IN_ROLES
from .util import parse_time
from .vocab import ALL_STATES, MANUAL, VERDICTS

CHUNK = 1000
MAX_PROBLEMS = 1000  # problems kept to show; all are counted

# §3.2's enrollment columns, in order; the audit needs those in REQUIRED.
REPORT_COLUMNS = (
    "canvas_course_id", "course_id", "canvas_user_id", "user_id", "role", "role_id",
    "canvas_section_id", "section_id", "status", "canvas_associated_user_id",
    "associated_user_id", "created_by_sis", "base_role_type", "limit_section_privileges",
    "canvas_enrollment_id",
)  # fmt: skip
REQUIRED = (
    "canvas_enrollment_id", "canvas_course_id", "canvas_user_id", "canvas_section_id",
    "status", "created_by_sis", "base_role_type",
)  # fmt: skip
# The report's status words -> Canvas's workflow_state (`invited` also covers
# creation_pending, `concluded` is completed).
STATES = {
    "active": "active",
    "invited": "invited",
    "concluded": "completed",
    "inactive": "inactive",
    "deleted": "deleted",
    "rejected": "rejected",
}
NO_CREATED_AT = (
    "; the report gives no created_at, so whether it predates the ledger cannot be told"
)

# One line of output per enrollment (CSV; NDJSON carries the same item with `ledger` nested).
CSV_COLUMNS = (
    "line", "id", "course_id", "sis_course_id", "course_section_id", "sis_section_id",
    "user_id", "sis_user_id", "type", "role", "role_id", "report_status", "enrollment_state",
    "created_by_sis", "created_at", "provenance", "integration", "actor_user_id",
    "ledger_action", "recorded_at", "predates_ledger", "in_sis_roster", "reason",
    "made_by_user_id", "made_by_name", "made_by_real_user_id", "made_via",
    "made_with_developer_key_id", "made_in_canvas_request_id", "made_at",
)  # fmt: skip
# The CSV columns of the Live Events actor (also `ledger-proxy audit`'s): column -> actor key.
ACTOR_COLUMNS = {
    "made_by_user_id": "user_id",
    "made_by_name": "name",
    "made_by_real_user_id": "real_user_id",
    "made_via": "via",
    "made_with_developer_key_id": "developer_key_id",
    "made_in_canvas_request_id": "request_id",
    "made_at": "event_time",
}


class ReportUnreadable(ValueError):
    """The file is not a provisioning report's enrollments CSV (its header says so)."""


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Tally:
    """What a run has judged so far: counts per verdict and per channel, and bad rows."""

    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    by_via: dict[str, dict[str, int]] = field(default_factory=dict)
    predates_unknown: int = 0
    malformed: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.verdicts.values())

    def count(self, item: dict[str, Any]) -> None:
        self.verdicts[item["provenance"]] += 1
        if item["predates_ledger"] is None:
            self.predates_unknown += 1
        if item["via"] is not None:
            per = self.by_via.setdefault(item["via"], dict.fromkeys(VERDICTS, 0))
            per[item["provenance"]] += 1

    def problem(self, line: int, message: str) -> None:
        self.malformed += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(line, message))

    def summary(self) -> dict[str, Any]:
        manual_via = dict.fromkeys((*VIAS, provenance.NO_ACTOR), 0)
        for via_, per in self.by_via.items():
            manual_via[via_ if via_ in manual_via else provenance.NO_ACTOR] += per[MANUAL]
        manual_via[provenance.NO_ACTOR] += self.verdicts[MANUAL] - sum(manual_via.values())
        return {
            **self.verdicts,
            "total": self.rows,
            "manual_via": manual_via,
            "by_via": self.by_via,
            "predates_unknown": self.predates_unknown,
            "malformed": self.malformed,
        }

    def text(self) -> str:
        counts = ", ".join(f"{verdict}: {self.verdicts[verdict]}" for verdict in VERDICTS)
        line = f"{self.rows} enrollments judged ({counts})"
        for via, per in sorted(self.by_via.items()):
            line += f"\n  via {via}: " + ", ".join(f"{v}: {n}" for v, n in per.items() if n)
        if self.malformed:
            line += f"\n{self.malformed} malformed row(s) skipped"
        return line


# Reading the report


def report_rows(lines: Iterable[str], tally: Tally) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, the row as a Canvas listing would show it) for each well-formed row; each bad
    row is told to `tally` with its line number and skipped. ReportUnreadable when the header
    lacks a column the audit needs."""
    reader = csv.reader(lines)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise ReportUnreadable("the report is empty (no header row)") from None
    except csv.Error as exc:
        raise ReportUnreadable(f"the header row cannot be read ({exc})") from None
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ReportUnreadable(
            "not a provisioning report's enrollments CSV: no column " + ", ".join(missing)
        )
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            tally.problem(reader.line_num, f"not CSV ({exc})")
            continue
        if not record:
            continue  # a blank line
        if len(record) != len(header):
            tally.problem(
                reader.line_num, f"{len(record)} fields where the header has {len(header)}"
            )
            continue
        try:
            yield reader.line_num, _listing_row(dict(zip(header, record, strict=True)))
        except ValueError as exc:
            tally.problem(reader.line_num, str(exc))


def _listing_row(cells: dict[str, str]) -> dict[str, Any]:
    status = cells["status"].strip()
    if status not in STATES:
        raise ValueError(f"status {status!r} is not one of the report's words")
    created_by_sis = cells["created_by_sis"].strip().lower()
    if created_by_sis not in ("true", "false"):
        raise ValueError(f"created_by_sis {cells['created_by_sis']!r} is neither true nor false")
    role = cells.get("role", "").strip()
    type_ = cells["base_role_type"].strip()
    return {
        "id": _id(cells, "canvas_enrollment_id"),
        "user_id": _id(cells, "canvas_user_id"),
        "course_id": _id(cells, "canvas_course_id"),
        "course_section_id": _id(cells, "canvas_section_id"),
        "associated_user_id": _id(cells, "canvas_associated_user_id", required=False),
        "type": type_,
        # A listing names a built-in role by its type; the report by its SIS word.
        "role": BUILT_IN_ROLES.get(role, role) if role else type_,
        "role_id": _id(cells, "role_id", required=False),
        "enrollment_state": STATES[status],
        "report_status": status,
        "created_by_sis": created_by_sis == "true",
        "created_at": None,
        # Present, so the SIS fields read as shown (the report always has them): the batch's id
        # is not given, created_by_sis stands for it (judge()).
        "sis_import_id": None,
        "sis_user_id": cells.get("user_id") or None,
        "sis_course_id": cells.get("course_id") or None,
        "sis_section_id": cells.get("section_id") or None,
    }


def _id(cells: dict[str, str], column: str, *, required: bool = True) -> int | None:
    text = cells.get(column) or ""
    if text.isdigit() and len(text) <= 19:  # isdigit alone would take "²"
        try:
            return int(text)
        except ValueError:
            pass
    text = text.strip()
    if not text and not required:
        return None
    if not text.isdigit() or len(text) > 19 or not text.isascii():
        raise ValueError(f"{column} {text!r} is not a Canvas id")
    return int(text)


# Judging


def judged(
    db: sqlite_utils.Database,
    lines: Iterable[str],
    tally: Tally,
    *,
    allowance: timedelta,
    provenance_filter: str | None = None,
    students: lookup.StudentRows | None = None,
    rows_of: lookup.StudentRows | None = None,
) -> Iterator[dict[str, Any]]:
    """Each well-formed row of the report with its verdict (those `provenance_filter`
    keeps); every verdict, kept or not, is counted in `tally`. `students` reads from Canvas
    the student enrollments a linked observer's row may follow, as the lookup does, and
    `rows_of` a user's enrollments in a course (for an observer row's created_at, which the
    report lacks and the link's timing needs); without them (a report file judged offline)
    observers' rows are judged on their own evidence."""
    roster_loaded = ledger.meta(db, ledger.ROSTER_LOADED_AT) is not None
    recording_since = parse_time(ledger.meta(db, ledger.RECORDING_SINCE))
    # The report has no `user` objects: actors are named from stored Live Events only.
    names: dict[int, str] = {}
    links = (
        lookup.Links(db, students, roster_loaded, recording_since, allowance, names)
        if students
        else None
    )

    def judged_chunk(chunk: list[tuple[int, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        rows = [row for _, row in chunk]
        context = lookup.Context.load(db, rows, roster_loaded, recording_since, names)
        context.links = links
        if rows_of is not None:
            _observers_created_at(context, rows, rows_of)
        yield from _judge_chunk(context, chunk, tally, allowance, provenance_filter)

    chunk: list[tuple[int, dict[str, Any]]] = []
    for numbered in report_rows(lines, tally):
        chunk.append(numbered)
        if len(chunk) == CHUNK:
            yield from judged_chunk(chunk)
            chunk = []
    if chunk:
        yield from judged_chunk(chunk)


def _observers_created_at(
    context: lookup.Context, rows: list[dict[str, Any]], rows_of: lookup.StudentRows
) -> None:
    """Canvas's created_at for each linked observer's row the proxy did not see made: the
    report has none, and which student row Canvas made it with is told by the time."""
    for row in rows:
        if row["type"] != lookup.OBSERVER or row["associated_user_id"] is None:
            continue
        if row["id"] in context.records:
            continue  # the ledger has Canvas's created_at (judge() takes it)
        for listed in rows_of(row["course_id"], row["user_id"]) or ():
            if listed.get("id") == row["id"]:
                row["created_at"] = listed.get("created_at")


def _judge_chunk(
    context: lookup.Context,
    chunk: list[tuple[int, dict[str, Any]]],
    tally: Tally,
    allowance: timedelta,
    provenance_filter: str | None,
) -> Iterator[dict[str, Any]]:
    for line, row in chunk:
        item = judge(context, row, allowance)
        item["line"] = line
        tally.count(item)
        if provenance_filter is None or item["provenance"] == provenance_filter:
            yield item


def judge(context: lookup.Context, row: dict[str, Any], allowance: timedelta) -> dict[str, Any]:
    """One report row, judged by the lookup's rules on the evidence the lookup gathers, with
    what the report says in place of what a listing would."""
    record = context.records.get(row["id"])
    if record is not None and record.get("canvas_created_at"):
        row["created_at"] = record["canvas_created_at"]  # Canvas's, as the proxy recorded it
    evidence, in_roster = context.evidence(row, record, allowance)
    # created_by_sis stands where a listing shows sis_import_id (sis_visible: the row has it).
    evidence = replace(evidence, created_by_sis=row["created_by_sis"])
    if context.links is not None:
        evidence = replace(evidence, link=context.links.link(row, evidence))
    verdict = provenance.judge(evidence)
    reason = verdict.reason
    if evidence.created_at is None and verdict.provenance == MANUAL:
        reason += NO_CREATED_AT
    actor = context._actor_json(row["id"])
    return {
        **row,
        "provenance": verdict.provenance,
        "reason": reason,
        "predates_ledger": verdict.predates_ledger if evidence.created_at is not None else None,
        "ledger": lookup.ledger_json(record),
        "in_sis_roster": in_roster,
        "sis_visible": evidence.sis_visible,
        "actor": actor,
        # How Canvas's Live Event says the row was made (ui, api, sis, self, canvas), if one
        # was received (core/live_events.derive_via); null otherwise.
        "via": actor["via"] if actor else None,
        "linked_to": lookup.linked_json(row, verdict),
    }


# Writing


_NO_LEDGER: dict[str, Any] = {}  # (and no actor)
# neutralise() is called only for text that needs it: the check is per cell, on every row.
_FORMULA_FIRST = frozenset(FORMULA_STARTS)
_ITEM_COLUMNS = tuple(
    column
    for column in CSV_COLUMNS
    if column not in ("integration", "actor_user_id", "ledger_action", "recorded_at")
    and column not in ACTOR_COLUMNS
)
_LEDGER_COLUMNS = (("integration", "integration"), ("actor_user_id", "actor_user_id"),
                   ("ledger_action", "action"), ("recorded_at", "recorded_at"))  # fmt: skip


def csv_line(item: dict[str, Any]) -> list[Any]:
    """One item as CSV cells in CSV_COLUMNS' order: text neutralised (a role or SIS id such
    as =HYPERLINK(...) stays text in a spreadsheet), booleans as words, null as empty."""
    ledger_part = item.get("ledger") or _NO_LEDGER
    values = {column: item.get(column) for column in _ITEM_COLUMNS}
    for column, key in _LEDGER_COLUMNS:
        values[column] = ledger_part.get(key)
    actor = item.get("actor") or _NO_LEDGER
    for column, key in ACTOR_COLUMNS.items():
        values[column] = actor.get(key)
    return [
        (neutralise(value) if value[:1] in _FORMULA_FIRST else value)
        if type(value) is str
        else ("" if value is None else "true" if value is True else "false" if value is False
              else value)
        for value in (values[column] for column in CSV_COLUMNS)
    ]  # fmt: skip


def write(items: Iterable[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """The judged rows as CSV (spreadsheet-safe) or NDJSON."""
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for item in items:
            writer.writerow(csv_line(item))
    else:
        for item in items:
            out.write(json.dumps(item, separators=(",", ":")) + "\n")


def counting(lines: Iterable[str], tick: Callable[[int], None]) -> Iterator[str]:
    """`lines`, telling `tick` the characters read every few thousand lines (progress)."""
    read = 0
    for number, line in enumerate(lines, start=1):
        read += len(line)
        if number % 5000 == 0:
            tick(read)
            read = 0
        yield line
    tick(read)


# The whole run


@dataclass(frozen=True)
class Request:
    """What to audit and how to write it."""

    account_id: str
    term: str | None = None
    provenance_filter: str | None = None
    fmt: str = "csv"
    timeout: float = 3600.0  # seconds Canvas may take to build the report
    from_report: str | None = None  # a report file already downloaded: Canvas is not asked


@dataclass
class Watchers:
    """Progress of each phase: Canvas's report status while it runs, then characters read."""

    on_status: Callable[[dict[str, Any]], None] = lambda report: None
    on_download: Callable[[dict[str, Any]], None] = lambda report: None
    on_read: Callable[[int], None] = lambda characters: None
    sleep: Callable[[float], None] = time.sleep  # between polls


def run(
    db: sqlite_utils.Database,
    canvas: CanvasClient,
    token: str,
    request: Request,
    out: TextIO,
    *,
    allowance: timedelta,
    watchers: Watchers | None = None,
) -> Tally:
    """Start the report with the caller's token, wait for it, stream its file through the
    judge into `out`; or read `request.from_report`. Raises ReportFailed, ReportUnreadable,
    CanvasRefused and the Canvas failures."""
    tally = Tally()
    watchers = watchers or Watchers()
    students = rows_of = None
    if not request.from_report:
        gate = threading.Lock()
        students = lookup.student_rows(canvas, token, None, gate)
        rows_of = _user_rows(canvas, token, gate)
    with _report_lines(canvas, token, request, watchers) as lines:
        items = judged(
            db, counting(lines, watchers.on_read), tally, allowance=allowance,
            provenance_filter=request.provenance_filter, students=students, rows_of=rows_of,
        )  # fmt: skip
        write(items, request.fmt, out)
    return tally


def _user_rows(canvas: CanvasClient, token: str, gate: threading.Lock) -> lookup.StudentRows:
    """(course id, user id) -> the user's enrollments in the course as Canvas shows them, or
    None when Canvas refused."""

    def read(course_id: int, user_id: int) -> list[dict[str, Any]] | None:
        target = enrollments_target("courses", str(course_id), ALL_STATES, user_ref=str(user_id))
        try:
            with gate:
                return [row for page in canvas.pages(target, token) for row in page]
        except CanvasRefused:
            return None

    return read


@contextlib.contextmanager
def _report_lines(
    canvas: CanvasClient, token: str, request: Request, watchers: Watchers
) -> Iterator[Iterable[str]]:
    if request.from_report:
        with open(request.from_report, encoding="utf-8-sig", newline="") as file:
            yield file
        return
    started = reports.start(canvas, token, request.account_id, term=request.term)
    run_ = reports.Run(request.account_id, int(started["id"]))
    watchers.on_status(started)
    report = reports.wait(
        canvas, token, run_, timeout=request.timeout, on_status=watchers.on_status,
        sleep=watchers.sleep,
    )  # fmt: skip
    watchers.on_download(report)
    with reports.lines(canvas, token, reports.download_url(report)) as text:
        yield text
