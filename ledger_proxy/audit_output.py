"""How `ledger-proxy audit` shows a lookup: a table, CSV or JSON, and progress on a terminal."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import click

from .core.account_audit import ACTOR_COLUMNS
from .core.export import neutralise
from .core.vocab import AMBIGUOUS, INTEGRATION, MANUAL, PENDING, SIS, UNKNOWN
from .upstream.canvas import CanvasRefused

CSV_COLUMNS = (
    "id",
    "user_id",
    "user_name",
    "course_section_id",
    "type",
    "role",
    "enrollment_state",
    "created_at",
    "sis_import_id",
    "provenance",
    "integration",
    "actor_user_id",
    "ledger_action",
    "recorded_at",
    "predates_ledger",
    "in_sis_roster",
    "reason",
    # Who made it, from Canvas Live Events (the `actor` object; empty without one).
    "made_by_user_id",
    "made_by_name",
    "made_by_real_user_id",
    "made_via",
    "made_with_developer_key_id",
    "made_in_canvas_request_id",
    "made_at",
)
COLOURS = {
    INTEGRATION: "green",
    SIS: "blue",
    MANUAL: "yellow",
    PENDING: "magenta",
    UNKNOWN: "white",
    AMBIGUOUS: "red",
}


class Progress:
    """'fetched N enrollments' on a terminal's stderr; silent when stderr is not a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.active = stream.isatty()
        self.shown = False

    def update(self, fetched: int) -> None:
        if self.active:
            self.stream.write(f"\rfetched {fetched} enrollments from Canvas...")
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


class AccountProgress:
    """`audit-account`'s phases on a terminal's stderr: Canvas building the report (its own
    progress), then the file read and judged (a bar over its size); silent when piped."""

    def __init__(self, stream: TextIO, from_report: str | None) -> None:
        self.stream = stream
        self.active = stream.isatty()
        self.bar: Any = None
        self.shown = 0
        if self.active and from_report:
            self._bar(os.path.getsize(from_report), "judging the report")

    def watchers(self) -> Any:
        from .core.account_audit import Watchers

        return Watchers(self.on_status, self.on_download, self.on_read)

    def _bar(self, length: int | None, label: str) -> None:
        self.done()
        self.bar = click.progressbar(length=length, label=label, file=self.stream)
        self.bar.__enter__()
        self.shown = 0

    def on_status(self, report: dict[str, Any]) -> None:
        if not self.active:
            return
        if self.bar is None:
            self._bar(100, f"Canvas builds report {report.get('id')}")
        progress = int(report.get("progress") or 0)
        self.bar.update(max(0, progress - self.shown))
        self.shown = max(self.shown, progress)

    def on_download(self, report: dict[str, Any]) -> None:
        if self.active:
            size = (report.get("attachment") or {}).get("size")
            self._bar(int(size) if size else None, "downloading and judging")

    def on_read(self, characters: int) -> None:
        if self.bar is not None:
            self.bar.update(characters)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@contextlib.contextmanager
def output_file(path: str | None) -> Iterator[TextIO]:
    """Standard output, or FILE written beside it and renamed into place only when the run
    succeeds: a failed run leaves no half-written file."""
    if path in (None, "-"):
        yield sys.stdout
        return
    partial = f"{path}.part"
    try:
        with open(partial, "w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


class QueryProgress(Progress):
    """A bar of page-views queries done (ledger-proxy attribute)."""

    def update(self, done: int, total: int = 0) -> None:  # type: ignore[override]
        if self.active and total:
            filled = int(30 * done / total)
            bar = "#" * filled + " " * (30 - filled)
            self.stream.write(f"\r[{bar}] {done}/{total} page-views queries")
            self.stream.flush()
            self.shown = True


def refusal_message(refusal: CanvasRefused) -> str:
    return f"Canvas answered {refusal.status}: {refusal.message(300)}"


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    flat = []
    for item in result["enrollments"]:
        ledger = item.get("ledger") or {}
        actor = item.get("actor") or {}
        flat.append(
            {
                **{column: item.get(column) for column in CSV_COLUMNS},
                "user_name": (item.get("user") or {}).get("name"),
                "integration": ledger.get("integration"),
                "actor_user_id": ledger.get("actor_user_id"),
                "ledger_action": ledger.get("action"),
                "recorded_at": ledger.get("recorded_at"),
                **{column: actor.get(key) for column, key in ACTOR_COLUMNS.items()},
            }
        )
    return flat


def write(result: dict[str, Any], output_format: str, out: TextIO, *, colour: bool) -> None:
    if output_format == "json":
        json.dump(result, out, indent=2)
        out.write("\n")
    elif output_format == "csv":
        # Text quoted and neutralised as in the ledger export (export.neutralise), so that a
        # display name or a role name such as =HYPERLINK(...) stays text in a spreadsheet.
        writer = csv.DictWriter(
            out, fieldnames=CSV_COLUMNS, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC
        )
        writer.writeheader()
        writer.writerows(
            {key: neutralise(cell) if isinstance(cell, str) else cell for key, cell in row.items()}
            for row in rows(result)
        )
    else:
        _table(result, out, colour)


def _table(result: dict[str, Any], out: TextIO, colour: bool) -> None:
    header = ("id", "user", "type", "state", "provenance", "via", "reason")
    lines = [
        (
            str(row["id"]),
            str(row["user_name"] or row["user_id"]),
            str(row["type"]),
            str(row["enrollment_state"]),
            str(row["provenance"]),
            str(row["made_via"] or "-"),
            str(row["reason"]),
        )
        for row in rows(result)
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header) - 1)]
    for index, line in enumerate([header, *lines]):
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        if colour and index > 0:
            cells[4] = click.style(cells[4], fg=COLOURS.get(line[4]), bold=True)
        out.write("  ".join([*cells, line[-1]]).rstrip() + "\n")
    summary = result["summary"]
    out.write("\n")
    manual_via = summary.get("manual_via") or {}
    if any(count for via, count in manual_via.items() if via != "none"):
        out.write(
            "manual by how (Live Events): "
            + ", ".join(f"{via}: {count}" for via, count in manual_via.items())
            + "\n"
        )
    out.write(
        ", ".join(
            f"{name}: {count}"
            for name, count in summary.items()
            if name not in ("total", "manual_via")
        )
        + f" (total {summary['total']})\n"
    )
