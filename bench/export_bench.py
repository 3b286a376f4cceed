"""Benchmark: exporting a 1,000,000-event ledger as CSV, beside the sqlite3 CLI's own CSV export.

Builds a ledger of N events (the proxy's schema; one executemany in one transaction; every
event chained with a valid hash, so `verify` passes), then runs each contender R times, each
run a separate process, measuring wall time and that process's peak RSS (ru_maxrss from
os.wait4 on it):

  cli csv       ledger-proxy export -o FILE              (the whole command, start-up included)
  cli ndjson    ledger-proxy export --format ndjson -o FILE
  function csv  ledger_proxy.core.export.export(db, Filters(), "csv") written to FILE, timed inside
                its process (the function behind GET /ledger/v1/export, without HTTP)
  sqlite3 csv   sqlite3 -csv -header LEDGER "SELECT * FROM events ORDER BY seq" > FILE
  cli verify    ledger-proxy verify                      (for reference; no target)

Target (issue 4): 1,000,000 events exported in <= 5 s with peak RSS <= 150 MB. The sqlite3
CLI is Debian's `sqlite3` package (`apt-get install sqlite3`). Run from the repository root:

    .venv/bin/python bench/export_bench.py [--events N] [--rounds R] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger_proxy.core import export  # noqa: E402
from ledger_proxy.core.ledger import initialise  # noqa: E402

TARGET_SECONDS, TARGET_MB = 5.0, 150.0
TYPES = ("StudentEnrollment", "StudentEnrollment", "StudentEnrollment", "TeacherEnrollment",
         "TaEnrollment", "ObserverEnrollment")
ACTIONS = ("created", "created", "created", "adopted", "deactivated", "reactivated", "concluded",
           "deleted")
STATE_AFTER = {"created": "active", "adopted": "active", "deactivated": "inactive",
               "reactivated": "active", "concluded": "completed", "deleted": "deleted"}
INTEGRATIONS = ("roster-sync", "kth-sync", "helpdesk", None)

FUNCTION = """
import sys, time
from ledger_proxy.core import export
from ledger_proxy.core.ledger import connect
db = connect(sys.argv[1])
started = time.perf_counter()
with open(sys.argv[2], "wb") as sink:
    for chunk in export.export(db, export.Filters(), "csv"):
        sink.write(chunk)
print(time.perf_counter() - started)
"""


def synthetic_events(count: int) -> Iterator[dict[str, Any]]:
    """Realistic-looking events: 2,000 courses, 200,000 users, mixed actions and labels."""
    for seq in range(1, count + 1):
        action = ACTIONS[seq % len(ACTIONS)]
        kind = TYPES[seq % len(TYPES)]
        second, micro = divmod(seq * 37_000, 1_000_000)
        minute, second = divmod(second, 60)
        hour, minute = divmod(minute, 60)
        day, hour = divmod(hour, 24)
        stamp = f"2025-01-{1 + day % 28:02d}T{hour:02d}:{minute:02d}:{second:02d}"
        yield {
            "seq": seq,
            "request_id": f"{seq * 2654435761 % 2**128:032x}",
            "enrollment_id": 1_000_000 + seq // 2,
            "action": action,
            "course_id": 5_000 + seq % 2_000,
            "course_section_id": 9_000 + seq % 3_000,
            "user_id": 100_000 + seq % 200_000,
            "type": kind,
            "role": kind,
            "role_id": 3 + seq % 5,
            "enrollment_state": STATE_AFTER[action],
            "sis_import_id": 77 if seq % 10 == 0 else None,
            "canvas_created_at": f"{stamp}Z",
            "canvas_updated_at": f"{stamp}Z",
            "canvas_request_id": f"{seq:08x}-5a1e-4c0d-9e3b-{seq * 7919:012x}"[:36],
            "integration": INTEGRATIONS[seq % len(INTEGRATIONS)],
            "actor_user_id": 1 + seq % 40,
            "recorded_at": f"{stamp}.{micro:06d}Z",
        }


def build_ledger(path: Path, count: int) -> float:
    """The proxy's schema (migrations), then `count` chained events in one transaction."""
    started = time.perf_counter()
    initialise(str(path))
    columns = export.COLUMNS
    insert = f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(
                insert, ([row[c] for c in columns] for row in export.link(synthetic_events(count)))
            )
    finally:
        conn.close()
    return time.perf_counter() - started


def run(command: list[str], stdout: Any = subprocess.DEVNULL, env: dict[str, str] | None = None
        ) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout text if captured) of one process."""
    started = time.perf_counter()
    capture = stdout is subprocess.PIPE
    proc = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read() if capture and proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss / 1024, out


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", help="Build (or reuse) the ledger in this folder.")
    args = parser.parse_args()
    sqlite_cli = shutil.which("sqlite3")
    if sqlite_cli is None:
        raise SystemExit("the sqlite3 CLI is missing: apt-get install sqlite3")
    folder = Path(args.keep or tempfile.mkdtemp(prefix="export-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    ledger = folder / "ledger.sqlite3"
    if not ledger.exists():
        print(f"building {args.events:,} events in {ledger} ...", flush=True)
        print(f"  built in {build_ledger(ledger, args.events):.1f} s", flush=True)
    count = sqlite3.connect(ledger).execute("SELECT count(*) FROM events").fetchone()[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_PROXY_")}
    env.update(LEDGER_PROXY_DATABASE=str(ledger), LEDGER_PROXY_TOKEN_HASH_KEY="bench")
    cli = str(Path(sys.executable).with_name("ledger-proxy"))
    out = folder / "out"
    contenders: dict[str, Any] = {
        "cli csv": lambda: run([cli, "export", "-o", str(out)], env=env),
        "cli ndjson": lambda: run([cli, "export", "--format", "ndjson", "-o", str(out)], env=env),
        "function csv": lambda: run(
            [sys.executable, "-c", FUNCTION, str(ledger), str(out)], subprocess.PIPE, env=env
        ),
        "sqlite3 csv": lambda: _sqlite3(sqlite_cli, ledger, out),
        "cli verify": lambda: run([cli, "verify"], subprocess.PIPE, env=env),
    }
    results: dict[str, list[tuple[float, float, float | None]]] = {name: [] for name in contenders}
    sizes: dict[str, int] = {}
    for _ in range(args.rounds):  # interleaved, so that drift hits every contender alike
        for name, contender in contenders.items():
            wall, rss, text = contender()
            results[name].append((wall, rss, float(text) if name == "function csv" else None))
            if out.exists():
                sizes[name] = out.stat().st_size
                out.unlink()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\n{count:,} events; {machine()}; median of {args.rounds} runs; load {load}\n")
    print("| what | wall s | in-function s | peak RSS MB | output MB |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        timed = [r[2] for r in runs if r[2] is not None]
        inner_text = f"{statistics.median(timed):.2f}" if timed else ""
        size = f"{sizes[name] / 1e6:.0f}" if name in sizes else ""
        print(f"| {name} | {wall:.2f} | {inner_text} | {rss:.0f} | {size} |")
    cli_wall = statistics.median(r[0] for r in results["cli csv"])
    sqlite_wall = statistics.median(r[0] for r in results["sqlite3 csv"])
    cli_rss = max(r[1] for r in results["cli csv"])
    print(f"\ncli csv / sqlite3 csv: {cli_wall / sqlite_wall:.2f}x the time")
    verdict = cli_wall <= TARGET_SECONDS and cli_rss <= TARGET_MB
    print(f"target <= {TARGET_SECONDS:.0f} s and <= {TARGET_MB:.0f} MB: "
          f"{'met' if verdict else 'MISSED'} ({cli_wall:.2f} s, {cli_rss:.0f} MB)")


def _sqlite3(cli: str, ledger: Path, out: Path) -> tuple[float, float, str]:
    with open(out, "wb") as sink:
        return run([cli, "-csv", "-header", str(ledger), "SELECT * FROM events ORDER BY seq"], sink)


if __name__ == "__main__":
    main()
