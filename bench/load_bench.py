"""Load: concurrent clients enrolling through gunicorn; the ledger must match Canvas exactly.

    .venv/bin/python bench/load_bench.py [--clients 8] [--workers 4] [--enrollments 3000]

Starts the bundled simulator and `gunicorn wsgi:app` as separate processes on free loopback
ports, has `--clients` threads enroll `--enrollments` new users through the proxy (each with
its own integration label), then checks: every enrollment Canvas made is in the ledger exactly
once as `created`, no request is left unsettled, no 5xx came from the proxy, and gunicorn's log
has no "database is locked". Prints throughput and latency percentiles. Stops by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger_proxy.devserver import gunicorn_process, simulator_process  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--enrollments", type=int, default=3000)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    database = str(Path(tmp.name) / "ledger.sqlite3")
    settings = {
        "LEDGER_PROXY_DATABASE": database,
        "LEDGER_PROXY_TOKEN_HASH_KEY": "bench",
    }
    with contextlib.ExitStack() as stack:
        stack.callback(tmp.cleanup)
        canvas = stack.enter_context(simulator_process()).url
        settings["LEDGER_PROXY_CANVAS_URL"] = canvas
        http = requests.Session()
        admin = http.post(
            f"{canvas}/_sim/users", json={"name": "Bench Admin", "admin": True}, timeout=10
        ).json()
        course = http.post(f"{canvas}/_sim/courses", json={"name": "Load"}, timeout=10).json()
        users = [
            http.post(f"{canvas}/_sim/users", json={"name": f"Load {n:05d}"}, timeout=10).json()[
                "id"
            ]
            for n in range(args.enrollments)
        ]
        gunicorn = stack.enter_context(gunicorn_process(settings, workers=args.workers))
        base, log = gunicorn.url, gunicorn.log
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()

        def client(index: int) -> None:
            session = requests.Session()
            session.trust_env = False
            headers = {"Authorization": f"Bearer {admin['token']}", "User-Agent": "load-bench/1"}
            for user_id in users[index :: args.clients]:
                started = time.perf_counter()
                response = session.post(
                    f"{base}/i/client-{index}/api/v1/courses/{course['id']}/enrollments",
                    data={"enrollment[user_id]": user_id},
                    headers=headers,
                    timeout=60,
                )
                with lock:
                    latencies.append(time.perf_counter() - started)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, range(args.clients)))
        elapsed = time.perf_counter() - started

        truth = http.get(
            f"{canvas}/_sim/enrollments", params={"course_id": course["id"]}, timeout=60
        ).json()
        made = sorted(row["id"] for row in truth)
        with sqlite3.connect(database) as conn:
            created = sorted(
                r[0]
                for r in conn.execute("SELECT enrollment_id FROM events WHERE action = 'created'")
            )
            unsettled = conn.execute(
                "SELECT count(*) FROM requests WHERE status IN ('pending', 'unknown')"
            ).fetchone()[0]
        locked = sum("database is locked" in line for line in log)
        cuts = statistics.quantiles(latencies, n=100)
        print(f"clients={args.clients} workers={args.workers} enrollments={args.enrollments}")
        print(f"elapsed {elapsed:.2f} s, {len(latencies) / elapsed:.0f} enrollments/s")
        p50, p95, p99 = (cuts[n] * 1000 for n in (49, 94, 98))
        print(f"latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms")
        print(f"statuses {statuses}; Canvas made {len(made)}; ledger created {len(created)}")
        print(f"unsettled requests {unsettled}; 'database is locked' in gunicorn's log {locked}")
        ok = made == created and unsettled == 0 and locked == 0 and set(statuses) == {200}
        print("OK: the ledger matches Canvas exactly" if ok else "MISMATCH")
        if not ok:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
