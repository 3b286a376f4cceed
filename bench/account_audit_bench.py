"""Benchmark: a 500,000-enrollment provisioning report judged against a ledger, beside the time a
per-course API walk of the same account would take within Canvas's throttle.

Generates a `provisioning_csv` enrollments file (§3.2's columns; N rows over C courses and
200,000 users, 40% `created_by_sis`) and a ledger that has seen a share of those rows (its
current view and the requests behind it), a loaded SIS roster, and a few unsettled creates
(so every join of the lookup runs). Then runs, R times each, in a separate process measuring
wall time and that process's peak RSS (ru_maxrss from os.wait4):

  csv     ledger-proxy audit-account 1 --from-report FILE -o OUT            (whole command)
  ndjson  ledger-proxy audit-account 1 --from-report FILE --format ndjson -o OUT

Target (issue 15): N = 500,000 judged and written in <= 30 s with peak RSS <= 200 MB.

The per-course walk is computed, not run: GET /courses/:id/enrollments at Canvas's maximum
per_page (100), one page after another, for every course, plus the account's course list;
with Canvas's default throttle (enrollments-api.md §11: high-water mark 600, outflow 10 per
second) and a per-request cost and latency that the notes do not give (assumed; a table of
them is printed). Run from the repository root:

    .venv/bin/python bench/account_audit_bench.py [--enrollments N] [--courses C] [--rounds R]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from export_bench import machine  # noqa: E402

from ledger_proxy.core.account_audit import REPORT_COLUMNS  # noqa: E402
from ledger_proxy.core.ledger import initialise  # noqa: E402

TARGET_SECONDS, TARGET_MB = 30.0, 200.0
USERS = 200_000
LEDGER_SHARE = 5  # the ledger has seen one row in five
STATUSES = ("active",) * 17 + ("invited", "concluded", "inactive")
TYPES = ("StudentEnrollment",) * 8 + ("TeacherEnrollment", "TaEnrollment")
ROLE_WORDS = {"StudentEnrollment": "student", "TeacherEnrollment": "teacher", "TaEnrollment": "ta"}
ROLE_IDS = {"StudentEnrollment": 3, "TeacherEnrollment": 4, "TaEnrollment": 5}
# Canvas's default throttle (enrollments-api.md §11) and its page size cap (§8).
HWM, OUTFLOW, PER_PAGE = 600.0, 10.0, 100
COSTS = (0.1, 0.5, 1.0)  # assumed cost units (CPU + DB seconds) of one page of 100
LATENCY = 0.3  # assumed seconds for Canvas to serve one page of 100 enrollments


def row(i: int, courses: int) -> list[object]:
    course = 10_000 + i % courses
    user = 100_000 + (i * 7919) % USERS
    type_ = TYPES[i % len(TYPES)]
    return [
        course, f"C-{course}", user, f"U-{user}", ROLE_WORDS[type_], ROLE_IDS[type_],
        course * 10, f"C-{course}-S", STATUSES[i % len(STATUSES)], "", "",
        "true" if i % 5 in (1, 2) else "false", type_, "false", i,
    ]  # fmt: skip


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds user + system, peak RSS MB) of one process. CPU time is the
    local work itself; wall time also holds what other processes on the machine took."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"audit-account failed: {err.decode(errors='replace')}")
    wall = time.perf_counter() - started
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def write_report(path: Path, count: int, courses: int) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(REPORT_COLUMNS)
        for i in range(1, count + 1):
            writer.writerow(row(i, courses))


def build_ledger(path: Path, count: int, courses: int) -> int:
    """The proxy's schema with the rows the ledger saw, a roster and 10 unsettled creates."""
    initialise(str(path))
    db = sqlite3.connect(path)
    seen = range(LEDGER_SHARE, count + 1, LEDGER_SHARE)
    stamp = "2025-03-01T10:00:00.000000Z"
    with db:
        db.executemany(
            "INSERT INTO requests (id, received_at, method, path, kind, integration, "
            "actor_user_id, status) VALUES (?, ?, 'POST', ?, 'enrollment_create', ?, 1, ?)",
            (
                (f"r{i}", stamp, f"/api/v1/courses/{row(i, courses)[0]}/enrollments",
                 "roster-sync", "completed")
                for i in seen
            ),
        )  # fmt: skip
        db.executemany(
            "INSERT INTO enrollments (enrollment_id, course_id, course_section_id, user_id, "
            "type, role, role_id, enrollment_state, canvas_created_at, origin_action, "
            "origin_integration, origin_actor_user_id, origin_request_id, first_recorded_at, "
            "last_action, last_seq, last_recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'active', '2025-03-01T10:00:00Z', ?, 'roster-sync', 1, "
            "?, ?, ?, ?, ?)",
            (
                (i, r[0], r[6], r[2], r[12], r[12], r[5],
                 "adopted" if i % 4 == 0 else "created", f"r{i}", stamp,
                 "created", i, stamp)
                for i in seen
                for r in (row(i, courses),)
            ),
        )  # fmt: skip
        db.executemany(
            "INSERT INTO sis_roster (line, course_id, user_id, role, status) "
            "VALUES (?, ?, ?, ?, 'active')",
            (
                (i, r[1], r[3], r[4])
                for i in range(1, count + 1, 3)
                for r in (row(i, courses),)
            ),
        )  # fmt: skip
        db.execute(
            "INSERT INTO ledger_meta (key, value) VALUES ('sis_roster_loaded_at', ?)", [stamp]
        )
        db.executemany(
            "INSERT INTO requests (id, received_at, method, path, kind, course_ref, params, "
            "status) VALUES (?, ?, 'POST', '/api/v1/courses/1/enrollments', "
            "'enrollment_create', ?, ?, 'unknown')",
            (
                (f"u{n}", stamp, str(10_000 + n), json.dumps({"enrollment[user_id]": str(n)}))
                for n in range(10)
            ),
        )  # fmt: skip
    db.close()
    return len(seen)


def walk_estimate(count: int, courses: int) -> tuple[int, list[tuple[float, float, float]]]:
    """(pages, [(cost per page, throttle-bound seconds, sequential seconds)]) of the walk."""
    per_course = [count // courses + (1 if c < count % courses else 0) for c in range(courses)]
    pages = sum(max(1, math.ceil(n / PER_PAGE)) for n in per_course)
    pages += math.ceil(courses / PER_PAGE)  # GET /accounts/:id/courses, 100 a page
    table = []
    for cost in COSTS:
        throttle_bound = max(0.0, pages * cost - HWM) / OUTFLOW
        table.append((cost, throttle_bound, max(throttle_bound, pages * LATENCY)))
    return pages, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--enrollments", type=int, default=500_000)
    parser.add_argument("--courses", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    command = [str(Path(sys.executable).with_name("ledger-proxy")), "audit-account", "1"]
    with tempfile.TemporaryDirectory() as folder:
        report, ledger = Path(folder, "provisioning.csv"), Path(folder, "ledger.sqlite3")
        write_report(report, args.enrollments, args.courses)
        known = build_ledger(ledger, args.enrollments, args.courses)
        env = {**os.environ, "LEDGER_PROXY_DATABASE": str(ledger),
               "LEDGER_PROXY_INSTANCE_PATH": folder}  # fmt: skip
        print(machine())
        print(f"report: {args.enrollments:,} enrollments in {args.courses:,} courses, "
              f"{report.stat().st_size / 2**20:.1f} MB; ledger has seen {known:,}")  # fmt: skip
        for fmt in ("csv", "ndjson"):
            out = Path(folder, f"audit.{fmt}")
            runs = [
                measured([*command, "--from-report", str(report), "--format", fmt, "-o",
                          str(out)], env)
                for _ in range(args.rounds)
            ]  # fmt: skip
            walls, cpus, peaks = zip(*runs, strict=True)
            lines = sum(1 for _ in out.open()) - (1 if fmt == "csv" else 0)
            ok = statistics.median(walls) <= TARGET_SECONDS and max(peaks) <= TARGET_MB
            print(f"{fmt:6}  wall median {statistics.median(walls):6.2f} s (min "
                  f"{min(walls):.2f}, max {max(walls):.2f})  CPU median "
                  f"{statistics.median(cpus):6.2f} s  peak RSS max {max(peaks):5.1f} MB  "
                  f"({lines:,} rows)  {'within' if ok else 'OVER'} target "
                  f"({TARGET_SECONDS:g} s, {TARGET_MB:g} MB)")  # fmt: skip
        pages, table = walk_estimate(args.enrollments, args.courses)
        print(f"per-course API walk: {pages:,} requests of {PER_PAGE} (throttle: hwm {HWM:g}, "
              f"outflow {OUTFLOW:g}/s; assumed latency {LATENCY} s a page, one at a time)")
        for cost, bound, sequential in table:
            print(f"  cost {cost:>4} a page: >= {bound / 60:6.1f} min by the throttle alone, "
                  f"{sequential / 60:6.1f} min one page at a time")  # fmt: skip


if __name__ == "__main__":
    main()
