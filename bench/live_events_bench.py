"""Benchmark: the Live Events receiver under gunicorn, verifying and storing signed events.

Target (issue 13): an SIS import of 50,000 enrollments produces 50,000 events in minutes, so the
receiver must verify and store >= 2,000 events/s on this machine under gunicorn.

What runs:

1. A ledger in a temporary folder and a JWKS file holding one RSA public key (RS256, as
   Instructure signs), named by LEDGER_PROXY_LIVE_EVENTS_JWKS.
2. gunicorn started as the README says (`gunicorn -c python:ledger_proxy.ops.gunicorn_conf
   --bind ... wsgi:app`), with 2 workers x 4 threads.
3. N distinct `enrollment_created` events (Canvas format, global ids, as an SIS import's job
   emits them), signed ahead of time in worker processes, so signing costs nothing here.
4. C client processes, each posting its share on one keep-alive HTTP/1.1 connection, one
   request at a time (as Canvas's deliverer does per connection), all started together.
5. Afterwards the ledger's `live_events` rows are counted: every event must be stored, once.

Reports events/s (N / the wall time from the first post to the last answer), the clients'
latency percentiles, and the load average. Run from the repository root:

    .venv/bin/python bench/live_events_bench.py [--events N] [--clients C] \
        [--workers W] [--threads T]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from ledger_proxy.core import ledger  # noqa: E402

TARGET = 2000.0
KID = "bench-key-1"
SHARD = 10**13 * 7
PATH = "/ledger/v1/live-events"


def event(n: int) -> dict[str, Any]:
    """One SIS job's enrollment_created, as Canvas sends it (job metadata, global ids)."""
    stamp = f"2026-09-01T08:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z"
    return {
        "metadata": {
            "event_name": "enrollment_created", "event_time": stamp, "producer": "canvas",
            "root_account_id": str(SHARD + 1), "job_id": str(SHARD + 900_000 + n // 1000),
            "job_tag": "SIS::CSV::ImportRefactored#run_parallel_importer",
        },
        "body": {
            "enrollment_id": str(SHARD + 1_000_000 + n),
            "course_id": str(SHARD + 5_000 + n % 2_000),
            "user_id": str(SHARD + 200_000 + n), "user_name": f"Student {n}",
            "type": "StudentEnrollment", "workflow_state": "active",
            "course_section_id": str(SHARD + 9_000 + n % 2_000),
            "created_at": stamp, "updated_at": stamp,
            "limit_privileges_to_course_section": False,
        },
    }


_KEY: Any = None


def _init_signer(pem: bytes) -> None:
    global _KEY
    _KEY = serialization.load_pem_private_key(pem, password=None)


def _sign(n: int) -> bytes:
    now = int(time.time())
    claims = {**event(n), "iat": now, "exp": now + 3600}
    return jwt.encode(claims, _KEY, algorithm="RS256", headers={"kid": KID}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client(port: int, bodies: list[bytes], start_at: float, out: Any) -> None:
    """Post `bodies` one at a time on one keep-alive connection; report latencies."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, failures = [], 0
    while time.time() < start_at:
        time.sleep(0.001)
    for body in bodies:
        started = time.perf_counter()
        connection.request("POST", PATH, body=body, headers={"Content-Type": "application/jwt"})
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            failures += 1
    connection.close()
    times = os.times()
    out.put((latencies, failures, time.time(), times.user + times.system))


def cpu_seconds(master: int) -> float:
    """User + system CPU time of gunicorn's workers (the master's children), from /proc."""
    total = 0.0
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    for pid in children:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def wait_ready(port: int, process: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("gunicorn exited during start-up")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer /healthz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="live-events-bench-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk = {**public, "kid": KID, "alg": "RS256", "use": "sig"}
    (workdir / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    print(f"signing {args.events} events ahead of time...", file=sys.stderr)
    with multiprocessing.Pool(os.cpu_count(), _init_signer, (pem,)) as pool:
        tokens = pool.map(_sign, range(args.events), chunksize=500)

    database = workdir / "ledger.sqlite3"
    port = free_port()
    env = {
        **os.environ,
        "LEDGER_PROXY_CANVAS_URL": "http://127.0.0.1:9",  # never reached: no Canvas calls
        "LEDGER_PROXY_DATABASE": str(database),
        "LEDGER_PROXY_INSTANCE_PATH": str(workdir / "instance"),
        "LEDGER_PROXY_LIVE_EVENTS_JWKS": str(workdir / "jwks.json"),
        "LEDGER_PROXY_RECONCILE_INTERVAL_SECONDS": "0",
        "LEDGER_PROXY_LOG_LEVEL": "WARNING",
    }
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "-c", "python:ledger_proxy.ops.gunicorn_conf",
        "--bind", f"127.0.0.1:{port}", "-w", str(args.workers), "--threads", str(args.threads),
        "wsgi:app",
    ]
    print("$ " + " ".join(command[1:]), file=sys.stderr)
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, server)
        # Warm each worker (the JWKS is read on first use), then start from an empty table.
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(4 * args.workers):
            warm.request("POST", PATH, body=b"warm-up.not.a-token")
            warm.getresponse().read()
        warm.close()
        shares = [tokens[i :: args.clients] for i in range(args.clients)]
        cpu_before = cpu_seconds(server.pid)
        results: Any = multiprocessing.Queue()
        start_at = time.time() + 1.0
        clients = [multiprocessing.Process(target=client, args=(port, share, start_at, results))
                   for share in shares]
        for process in clients:
            process.start()
        reports = [results.get() for _ in clients]
        for process in clients:
            process.join()
        elapsed = max(report[2] for report in reports) - start_at
        server_cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(30)
    latencies = sorted(latency for report in reports for latency in report[0])
    failures = sum(report[1] for report in reports)
    db = ledger.connect(str(database))
    try:
        stored = ledger.live_event_count(db)
    finally:
        db.close()
    rate = args.events / elapsed
    print(f"events            {args.events} ({failures} not answered 200)")
    print(f"stored rows       {stored}")
    print(f"wall time         {elapsed:.2f} s")
    print(f"throughput        {rate:.0f} events/s (target {TARGET:.0f}): "
          f"{'met' if rate >= TARGET and stored == args.events else 'NOT met'}")
    print(f"latency ms        p50 {1000 * statistics.median(latencies):.1f}  "
          f"p95 {1000 * latencies[int(0.95 * len(latencies))]:.1f}  "
          f"p99 {1000 * latencies[int(0.99 * len(latencies))]:.1f}")
    client_cpu = sum(report[3] for report in reports)
    print(f"server CPU        {server_cpu:.1f} s: "
          f"{1e6 * server_cpu / args.events:.0f} us per event, "
          f"{args.events / server_cpu:.0f} events per CPU-second")
    print(f"client CPU        {client_cpu:.1f} s: "
          f"{1e6 * client_cpu / args.events:.0f} us per event")
    print(f"gunicorn          {args.workers} workers x {args.threads} threads; "
          f"{args.clients} client processes on keep-alive connections")
    print(f"machine           {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
