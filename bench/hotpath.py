"""The hot path, side by side (issue 12): ledger-proxy against nginx, the Python floor and a
naive forwarder, in front of the same instant upstream, in one run.

    .venv/bin/python bench/hotpath.py [--quick] [--rounds 3] [--duration 5]
    .venv/bin/python bench/hotpath.py --ledger-only        # the ledger layer alone
    .venv/bin/python bench/hotpath.py --profile DIR        # py-spy profiles (1 worker)

Starts on 127.0.0.1, on free ports, and stops at the end (also on Ctrl-C or an error):

- the instant upstream (`bench/instant_upstream.py`: Flask under gunicorn);
- nginx `proxy_pass` with upstream keepalive (Debian's nginx; skipped, with how to install
  it, when missing), with a generated config in a temporary folder;
- the Python floor (`bench/floor_forwarder.py`: a raw WSGI function and one urllib3 pool);
- the naive forwarder (`bench/naive_forwarder.py`: Flask + requests);
- ledger-proxy as the README tells operators to start it:
  `gunicorn -c python:ledger_proxy.gunicorn_conf --bind ... -w N wsgi:app` with
  LEDGER_PROXY_CANVAS_URL, a temporary ledger and instance folder.

Every Python server runs under gunicorn gthread with the same workers x threads (2 x 4).
Each round measures, in turn for every row (rounds interleaved: A B C D E, A B C D E, ...):
GET latency with 1 connection, GET throughput with 8 connections, enrollment POST latency
with 1 connection, then enrollments/s through ledger-proxy with 8 connections (the ledger's
rows counted afterwards), then the ledger layer alone (bench/ledger_writes.py, 8 threads).
Load: `wrk -t1` when installed, else a Python load generator (http.client threads); the
same for every row. Prints medians over the rounds, p99 beside the median, and the targets
of issue 12 with PASS/FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hotpath_procs import (  # noqa: E402
    BENCH,
    BIN,
    HOST,
    Processes,
    Request,
    Result,
    Server,
    clean_env,
    free_port,
    gunicorn_argv,
    load_generator,
    start_nginx,
    wait_ready,
)

WORKERS, THREADS = 2, 4
TOKEN = "bench-token"
GET = Request("GET", "/api/v1/courses/1", {"Authorization": f"Bearer {TOKEN}"})
POST = Request(
    "POST",
    "/api/v1/courses/1/enrollments",
    {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "hotpath-bench/1",
    },
    b"enrollment%5Buser_id%5D=4031&enrollment%5Btype%5D=StudentEnrollment",
)
ROWS = ("upstream", "nginx", "floor", "naive", "ledger-proxy")
LABELS = {
    "upstream": "instant upstream, direct (Flask, gunicorn gthread 2x8)",
    "nginx": "nginx proxy_pass, upstream keepalive",
    "floor": "Python floor: raw WSGI + urllib3 pool",
    "naive": "naive: Flask + requests",
    "ledger-proxy": "ledger-proxy (-c python:ledger_proxy.gunicorn_conf)",
}
POST_ROWS = ("upstream", "floor", "ledger-proxy")
TARGET_ENROLLMENTS = 1000
TARGET_LEDGER = 5000


def ledger_proxy_command(port: int, workers: int, threads: int) -> list[str]:
    """README, "In front of a real Canvas": gunicorn with the shipped settings and `-w N`."""
    return [
        str(BIN / "gunicorn"),
        "-c", "python:ledger_proxy.gunicorn_conf",
        "--bind", f"{HOST}:{port}",
        "-w", str(workers),
        "--threads", str(threads),
        "wsgi:app",
    ]  # fmt: skip


def start_servers(procs: Processes, *, workers: int, threads: int, only_proxy: bool = False):
    tmp = procs.tmp
    up_port = free_port()
    upstream = procs.start(
        "upstream",
        gunicorn_argv("instant_upstream:app", up_port, 2, 8, "--keep-alive", "75"),
        clean_env({}),
        f"http://{HOST}:{up_port}",
        cwd=BENCH,
    )
    servers: dict[str, Server | None] = {"upstream": upstream}
    forward_env = clean_env({"BENCH_UPSTREAM_URL": upstream.url})
    if not only_proxy:
        servers["nginx"] = start_nginx(procs, up_port)
        for name, module in (("floor", "floor_forwarder"), ("naive", "naive_forwarder")):
            port = free_port()
            argv = gunicorn_argv(f"{module}:app", port, workers, threads, "--keep-alive", "5")
            servers[name] = procs.start(name, argv, forward_env, f"http://{HOST}:{port}", BENCH)
    instance = tmp / "instance"
    instance.mkdir()
    database = tmp / "ledger.sqlite3"
    port = free_port()
    env = clean_env(
        {
            "LEDGER_PROXY_CANVAS_URL": upstream.url,
            "LEDGER_PROXY_DATABASE": str(database),
            "LEDGER_PROXY_INSTANCE_PATH": str(instance),
            "LEDGER_PROXY_TOKEN_HASH_KEY": "hotpath-bench-key",
        }
    )
    servers["ledger-proxy"] = procs.start(
        "ledger-proxy", ledger_proxy_command(port, workers, threads), env, f"http://{HOST}:{port}"
    )
    wait_ready(upstream, "/api/v1/users/self")
    for name, server in servers.items():
        if server is not None:
            wait_ready(server, "/healthz" if name == "ledger-proxy" else "/api/v1/users/self")
    return servers, database


def count_recorded(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def unsettled(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM requests WHERE status IN ('pending', 'unknown')"
            ).fetchone()[0]
        )


def check_forwarding(servers: dict[str, Server | None], database: Path) -> None:
    """Every row answers GET 200 with the upstream's JSON; ledger-proxy records a POST."""
    import http.client

    for name, server in servers.items():
        if server is None:
            continue
        host, port = server.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request(GET.method, GET.path, headers=GET.headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200 or b"Bench course" not in body:
            raise RuntimeError(f"{name}: GET answered {response.status} {body[:200]!r}")
        if name in POST_ROWS:
            conn.request(POST.method, POST.path, POST.body, POST.headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or b'"enrollment_state"' not in body:
                raise RuntimeError(f"{name}: POST answered {response.status} {body[:200]!r}")
        conn.close()
    if count_recorded(database) < 1:
        raise RuntimeError("ledger-proxy did not record the enrollment POST")


def ledger_layer(seconds: float) -> dict:
    """bench/ledger_writes.py in its own process (8 writers, one handle per thread and
    a handle per enrollment); its JSON lines by mode."""
    out = subprocess.run(
        [sys.executable, str(BENCH / "ledger_writes.py"), "--threads", "8",
         "--seconds", str(seconds), "--json"],
        capture_output=True, text=True, timeout=seconds * 4 + 60,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"ledger_writes.py failed:\n{out.stderr}")
    return {json.loads(line)["handles"]: json.loads(line) for line in out.stdout.splitlines()}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_ms(value: float, signed: bool = False) -> str:
    if value != value:
        return ""
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def report(results, rounds: int, seconds: int, generator: str, servers, ledger_runs) -> None:
    """The table, then the targets with PASS/FAIL."""

    def med(kind: str, row: str, attr: str) -> float:
        return median([getattr(r, attr) for r in results[kind].get(row, [])])

    def added(kind: str, row: str, attr: str) -> float:
        """Median over rounds of (row - upstream direct) in the same round."""
        pairs = zip(results[kind].get(row, []), results[kind].get("upstream", []), strict=False)
        return median([getattr(r, attr) - getattr(u, attr) for r, u in pairs])

    print()
    print(
        f"Medians of {rounds} interleaved round(s), {seconds} s per measurement, load: "
        f"{generator}. Every Python server: gunicorn gthread, {WORKERS} workers x "
        f"{THREADS} threads (the upstream: 2 x 8). Added = row minus upstream direct, same "
        "round. Times in ms; p99 beside the median."
    )
    print()
    header = (
        "| path | GET latency p50 / p99 | GET added p50 / p99 | GET/s, 8 conns "
        "| POST latency p50 / p99 | POST added p50 / p99 |"
    )
    print(header)
    print("|---|---:|---:|---:|---:|---:|")
    for row in ROWS:
        if servers.get(row) is None:
            print(f"| {LABELS[row]} | skipped: not installed | | | | |")
            continue
        get_lat = f"{fmt_ms(med('get_lat', row, 'p50_ms'))} / {fmt_ms(med('get_lat', row, 'p99_ms'))}"
        get_add = ""
        post_lat = post_add = ""
        if row != "upstream":
            get_add = (
                f"{fmt_ms(added('get_lat', row, 'p50_ms'), True)} / "
                f"{fmt_ms(added('get_lat', row, 'p99_ms'), True)}"
            )
        if row in POST_ROWS:
            post_lat = (
                f"{fmt_ms(med('post_lat', row, 'p50_ms'))} / "
                f"{fmt_ms(med('post_lat', row, 'p99_ms'))}"
            )
            if row != "upstream":
                post_add = (
                    f"{fmt_ms(added('post_lat', row, 'p50_ms'), True)} / "
                    f"{fmt_ms(added('post_lat', row, 'p99_ms'), True)}"
                )
        tput = f"{med('get_tput', row, 'rate'):,.0f}"
        print(f"| {LABELS[row]} | {get_lat} | {get_add} | {tput} | {post_lat} | {post_add} |")

    enroll = results["enroll"]["ledger-proxy"]
    recorded_rate = median([r.rate for r in enroll])
    print()
    print(
        "Recorded enrollments/s, 8 concurrent clients through ledger-proxy end to end: "
        f"{recorded_rate:,.0f}/s (median; per round: "
        + ", ".join(f"{r.rate:,.0f}" for r in enroll)
        + f"; POST p50 {med('enroll', 'ledger-proxy', 'p50_ms'):.2f} ms, "
        f"p99 {med('enroll', 'ledger-proxy', 'p99_ms'):.2f} ms)"
    )
    errors = {
        f"{kind}/{row}": sum(r.errors for r in runs)
        for kind, by_row in results.items()
        for row, runs in by_row.items()
        if sum(r.errors for r in runs)
    }
    if errors:
        print(f"Errors or non-2xx answers: {errors}")

    layer = {}
    for mode in ("request", "thread"):
        runs = [run[mode] for run in ledger_runs if mode in run]
        if runs:
            layer[mode] = median([run["per_second"] for run in runs])
    if layer:
        print(
            "Ledger layer alone (bench/ledger_writes.py, 8 writer threads, in "
            f"{ledger_runs[0]['thread']['module']}): "
            f"{layer.get('thread', float('nan')):,.0f}/s with one long-lived handle per "
            "thread (as the app does since issue 12: ledger.thread_handle, group commit), "
            f"{layer.get('request', float('nan')):,.0f}/s with a new handle per enrollment "
            "(as it did before)"
        )

    print()
    print("Targets (issue 12, item 2), each a ratio from this run:")
    floor_get = added("get_lat", "floor", "p50_ms")
    naive_get = added("get_lat", "naive", "p50_ms")
    proxy_get = added("get_lat", "ledger-proxy", "p50_ms")
    floor_post = added("post_lat", "floor", "p50_ms")
    proxy_post = added("post_lat", "ledger-proxy", "p50_ms")
    floor_tput = med("get_tput", "floor", "rate")
    proxy_tput = med("get_tput", "ledger-proxy", "rate")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    lines = [
        (
            "GET added latency <= 1.25 x the floor's",
            f"{proxy_get:.2f} / {floor_get:.2f} ms = {proxy_get / floor_get:.2f} x",
            proxy_get <= 1.25 * floor_get,
        ),
        (
            "GET added latency <= 0.75 x the naive forwarder's",
            f"{proxy_get:.2f} / {naive_get:.2f} ms = {proxy_get / naive_get:.2f} x",
            proxy_get <= 0.75 * naive_get,
        ),
        (
            "GET throughput >= 0.9 x the floor's",
            f"{proxy_tput:,.0f} / {floor_tput:,.0f} = {proxy_tput / floor_tput:.2f} x",
            proxy_tput >= 0.9 * floor_tput,
        ),
        (
            "POST added latency <= the floor's + 1.0 ms",
            f"{proxy_post:.2f} ms vs {floor_post:.2f} + 1.0 ms "
            f"(+{proxy_post - floor_post:.2f} ms over the floor)",
            proxy_post <= floor_post + 1.0,
        ),
        (
            f">= {TARGET_ENROLLMENTS:,} recorded enrollments/s end to end",
            f"{recorded_rate:,.0f}/s",
            recorded_rate >= TARGET_ENROLLMENTS,
        ),
    ]
    if layer:
        lines.append(
            (
                f">= {TARGET_LEDGER:,} enrollments/s in the ledger layer, 8 writers",
                f"{layer.get('thread', float('nan')):,.0f}/s as the app uses it (a handle "
                f"per thread); {layer.get('request', float('nan')):,.0f}/s a handle per "
                "enrollment",
                layer.get("thread", 0.0) >= TARGET_LEDGER,
            )
        )
    for name, value, ok in lines:
        print(f"  {verdict(ok)}  {name}: {value}")


def fsync_ms(folder: Path, count: int = 50) -> float:
    """Median time of a 4 KiB append plus fsync in `folder` (where the ledger lives)."""
    times = []
    with open(folder / "fsync-probe", "ab") as probe:
        for _ in range(count):
            started = time.perf_counter()
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
            times.append(time.perf_counter() - started)
    (folder / "fsync-probe").unlink()
    return statistics.median(times) * 1000


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"load average {load}"
    )


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def others_share(start: tuple[int, int], own_start: float) -> str:
    """How much of the machine's CPU other processes used while the bench ran."""
    busy, total = busy_jiffies()
    if not total or total == start[1]:
        return "unknown"
    tick = os.sysconf("SC_CLK_TCK")
    times = os.times()
    own = times.user + times.system + times.children_user + times.children_system - own_start
    machine_busy = (busy - start[0]) / tick
    capacity = (total - start[1]) / tick
    others = max(0.0, machine_busy - own)
    return (
        f"the bench's processes used {100 * own / capacity:.0f} % of the machine's CPU time, "
        f"other processes {100 * others / capacity:.0f} %"
    )


def run_bench(args: argparse.Namespace) -> None:
    cpu_start = busy_jiffies()
    t = os.times()
    own_start = t.user + t.system + t.children_user + t.children_system
    with tempfile.TemporaryDirectory(prefix="hotpath-") as tmp_name:
        procs = Processes(Path(tmp_name))
        try:
            generator = load_generator(procs.tmp, force_python=args.python_load)
            print(f"Machine: {machine()}; fsync of 4 KiB in the ledger's folder: "
                  f"{fsync_ms(procs.tmp):.2f} ms (median of 50)")
            started = time.monotonic()
            servers, database = start_servers(procs, workers=WORKERS, threads=THREADS)
            check_forwarding(servers, database)
            proxy_port = servers["ledger-proxy"].url.rsplit(":", 1)[1]
            print(
                "ledger-proxy started as the README says: "
                + " ".join(ledger_proxy_command(int(proxy_port), WORKERS, THREADS)[1:])
                + f"  (servers up in {time.monotonic() - started:.1f} s)"
            )
            live = [row for row in ROWS if servers.get(row) is not None]
            # Warm-up: pools, the actor cache, the ledger file; not measured.
            for row in live:
                generator.run(servers[row].url, GET, 8, 1)
            for row in POST_ROWS:
                generator.run(servers[row].url, POST, 2, 1)
            plan = [
                ("get_lat", GET, 1, live),
                ("get_tput", GET, 8, live),
                ("post_lat", POST, 1, [row for row in live if row in POST_ROWS]),
            ]
            results: dict[str, dict[str, list[Result]]] = defaultdict(lambda: defaultdict(list))
            ledger_runs = []
            for round_no in range(1, args.rounds + 1):
                for kind, request, connections, rows in plan:
                    for row in rows:
                        result = generator.run(servers[row].url, request, connections,
                                               args.duration)
                        results[kind][row].append(result)
                before = count_recorded(database)
                result = generator.run(servers["ledger-proxy"].url, POST, 8, args.duration)
                time.sleep(0.2)  # requests in flight when the load stopped still finish
                recorded = count_recorded(database) - before
                # Rows proven in the ledger, over the load's duration.
                results["enroll"]["ledger-proxy"].append(
                    Result(recorded, result.seconds, result.p50_ms, result.p99_ms, result.errors)
                )
                if not args.no_ledger_layer:
                    ledger_runs.append(ledger_layer(max(1.0, args.duration / 5)))
                print(
                    f"round {round_no}/{args.rounds} done: {time.monotonic() - started:.0f} s; "
                    f"{recorded:,} enrollments recorded from {result.requests:,} answered",
                    flush=True,
                )
            print(f"Unsettled requests in the ledger after the run: {unsettled(database)}")
            print(f"Ledger rows (events) in total: {count_recorded(database):,}")
            report(results, args.rounds, args.duration, generator.name, servers, ledger_runs)
            print()
            print(f"Finished in {time.monotonic() - started:.0f} s; machine: {machine()}")
        finally:
            procs.stop_all()
    print(f"CPU while it ran (servers included, once stopped): {others_share(cpu_start, own_start)}")
    print("(other work on the machine makes every row slower and noisier; compare rows of one run)")


def run_profile(args: argparse.Namespace) -> None:
    """py-spy on ledger-proxy's single worker under enrollment POSTs, then under GETs."""
    import shutil

    from hotpath_profile import summarise

    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(py_spy).exists():
        sys.exit("py-spy is missing: .venv/bin/pip install py-spy")
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hotpath-profile-") as tmp_name:
        procs = Processes(Path(tmp_name))
        try:
            generator = load_generator(procs.tmp, force_python=args.python_load)
            servers, database = start_servers(procs, workers=1, threads=THREADS, only_proxy=True)
            check_forwarding(servers, database)
            proxy = servers["ledger-proxy"]
            children = Path(f"/proc/{proxy.proc.pid}/task/{proxy.proc.pid}/children")
            worker = int(children.read_text().split()[0])
            plan = [  # (name, request, connections, py-spy --gil)
                ("post-c1", POST, 1, False),
                ("post-c8", POST, 8, False),
                ("post-c8", POST, 8, True),
                ("get-c1", GET, 1, False),
                ("get-c8", GET, 8, False),
                ("get-c8", GET, 8, True),
            ]
            for name, request, connections, gil in plan:
                generator.run(proxy.url, request, connections, 1)
                raw = out / f"ledger-proxy-{name}{'-gil' if gil else ''}.txt"
                argv = [py_spy, "record", "--pid", str(worker), "--rate", "200",
                        "--duration", str(args.duration), "--format", "raw",
                        "-o", str(raw), "--nonblocking", "--full-filenames"]  # fmt: skip
                if gil:  # only the thread holding the GIL: Python's own CPU time
                    argv.append("--gil")
                spy = procs.start("py-spy", argv, clean_env({}), "")
                time.sleep(0.5)
                result = generator.run(proxy.url, request, connections, max(1, args.duration - 1))
                if spy.proc.wait(timeout=args.duration + 60) != 0:
                    raise RuntimeError(f"py-spy failed:\n{spy.tail()}")
                procs.stop(spy)
                print(
                    f"\n== ledger-proxy, 1 worker x {THREADS} threads, {request.method} "
                    f"{request.path}, {connections} connection(s): {result.rate:,.0f}/s, "
                    f"p50 {result.p50_ms:.2f} ms; py-spy {'--gil ' if gil else ''}-> {raw}"
                )
                print(summarise(raw), flush=True)
        finally:
            procs.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick 2)")
    parser.add_argument(
        "--duration", type=int, help="seconds per measurement (default 5; --quick 1)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds of 1 s each: under a minute"
    )
    parser.add_argument(
        "--ledger-only", action="store_true", help="only the ledger layer (bench/ledger_writes.py)"
    )
    parser.add_argument("--no-ledger-layer", action="store_true", help="skip the ledger layer")
    parser.add_argument(
        "--python-load", action="store_true", help="use the Python load generator, even with wrk"
    )
    parser.add_argument("--profile", metavar="DIR", help="py-spy profiles of ledger-proxy into DIR")
    args = parser.parse_args()
    quick = args.quick
    args.rounds = args.rounds if args.rounds is not None else (2 if quick else 3)
    args.duration = args.duration if args.duration is not None else (1 if quick else 5)
    args.rounds = max(1, min(args.rounds, 50))
    args.duration = max(1, min(args.duration, 120))

    # SIGTERM / SIGHUP end the bench like Ctrl-C: the `finally` blocks stop every server.
    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        if args.ledger_only:
            os.execv(
                sys.executable,
                [sys.executable, str(BENCH / "ledger_writes.py"), "--threads", "8",
                 "--seconds", str(args.duration)],
            )  # fmt: skip
        elif args.profile:
            run_profile(args)
        else:
            run_bench(args)
    except KeyboardInterrupt:
        print("\ninterrupted; every server stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
