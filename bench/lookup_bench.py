"""Benchmark: what the provenance lookup adds to walking a course's enrollment pages.

Starts the bundled Canvas simulator and the proxy (gunicorn, one worker) as separate
processes, builds a course of N enrollments of mixed origins, then measures, interleaved
round by round:

  (a) walk:   a client walking GET /api/v1/courses/<id>/enrollments (every state, 100 per
              page) straight from the simulator, following Link rel="next", JSON-decoding
              each page: what any client must do to see the roster;
  (b) lookup: GET /ledger/v1/courses/<id>/enrollments on the proxy with the same token,
              JSON-decoded (the proxy walks the same pages, then joins the ledger);
  (c) walk through the proxy's /api/ forwarding (forwarding overhead, for reference).

The overhead is median(b) / median(a) - 1. The ledger also holds an institution-sized SIS
roster (--roster-rows of other courses). The simulator answers a page far faster than Canvas
does; --canvas-latency adds a delay to each of its API answers. Run from the repository root:

    .venv/bin/python bench/lookup_bench.py [--enrollments N] [--rounds R]
        [--roster-rows N] [--canvas-latency SECONDS] [--no-forwarding] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger_proxy.core.lookup import Query  # noqa: E402  (the lookup's own Canvas target)
from ledger_proxy.devserver import (  # noqa: E402
    BIN,
    clean_environment,
    gunicorn_process,
    simulator_process,
)

COURSE_SIS_ID = "BENCH-101"
INTEGRATION = "bench-sync"


# --- processes -------------------------------------------------------------------------------


@contextlib.contextmanager
def simulator() -> Iterator[str]:
    with simulator_process() as service:
        yield service.url


@contextlib.contextmanager
def proxy(settings: dict[str, str], threads: int) -> Iterator[str]:
    with gunicorn_process(settings, workers=1, threads=threads) as service:
        yield service.url


# --- the world -------------------------------------------------------------------------------


class Sim:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.http.trust_env = False

    def control(self, method: str, endpoint: str, payload: dict[str, Any] | None = None) -> Any:
        url = f"{self.url}/_sim/{endpoint}"
        response = self.http.request(method, url, json=payload, timeout=60)
        if response.status_code >= 400:
            raise RuntimeError(f"/_sim/{endpoint}: {response.status_code} {response.text}")
        return response.json()

    def seed(self, course_id: int, count: int, **fields: Any) -> dict[str, Any]:
        return self.control("POST", "seed", {"course_id": course_id, "count": count, **fields})


def build_world(sim: Sim, proxy_url: str, course: dict[str, Any], admin: dict[str, Any], n: int,
                roster_path: Path, roster_rows: int) -> dict[str, int]:  # fmt: skip
    """Fill `course` with exactly `n` enrollments of mixed origins; returns counts by origin.

    Also writes the institution's SIS roster to `roster_path`: this course's SIS rows, then
    `roster_rows` rows of other courses (a roster covers the whole institution).
    """
    course_id = course["id"]
    through_proxy = min(300, n // 10)
    sis_new = n // 20
    seeded = n - through_proxy - sis_new
    # Users to enrol through the proxy and by SIS: made in a scratch course (seed is fast).
    scratch = sim.control("POST", "courses", {"name": "Scratch"})["id"]
    proxy_users = sim.seed(scratch, through_proxy)["user_ids"]
    sis_users = sim.seed(scratch, sis_new)["user_ids"]

    # Seeded rows: by hand in the UI, by scripts bypassing the proxy, bulk, in every state.
    mix = [("ui", None), ("api", None), ("seed", None), ("bulk", None), ("ui", "invited"),
           ("ui", "inactive"), ("ui", "completed"), ("ui", "creation_pending")]  # fmt: skip
    ui_rows: list[int] = []
    for index, (channel, state) in enumerate(mix):
        count = seeded // len(mix) + (1 if index < seeded % len(mix) else 0)
        fields: dict[str, Any] = {"channel": channel}
        if state:
            fields["enrollment_state"] = state
        made = sim.seed(course_id, count, **fields)
        if channel == "ui" and state is None:
            ui_rows = made["user_ids"]

    # Through the proxy, as an integration would: the ledger records each create.
    http = requests.Session()
    http.trust_env = False
    auth = {"Authorization": f"Bearer {admin['token']}"}
    enrol = f"{proxy_url}/i/{INTEGRATION}/api/v1/courses/{course_id}/enrollments"

    def through(user_id: int, state: str | None = None) -> None:
        form = {"enrollment[user_id]": str(user_id), "enrollment[type]": "StudentEnrollment"}
        if state:
            form["enrollment[enrollment_state]"] = state
        response = http.post(enrol, data=form, headers=auth, timeout=60)
        response.raise_for_status()

    for number, user_id in enumerate(proxy_users):
        through(user_id, "active" if number % 2 else None)
    # Made by hand, later re-enrolled through the proxy: the ledger says "adopted".
    adopted = ui_rows[: max(1, len(ui_rows) // 20)] if ui_rows else []
    for user_id in adopted:
        through(user_id)

    # SIS: new rows, hand-made rows it adopts, proxy-made rows it claims.
    sis_rows = [f"{COURSE_SIS_ID},seed-{user_id},student,,active" for user_id in sis_users]
    sis_rows += [f"{COURSE_SIS_ID},seed-{user_id},student,,active" for user_id in ui_rows[-25:]]
    sis_rows += [f"{COURSE_SIS_ID},seed-{user_id},student,,active" for user_id in proxy_users[:10]]
    header = "course_id,user_id,role,section_id,status\n"
    imported = sim.control("POST", "sis_imports", {"csv": header + "\n".join(sis_rows) + "\n"})
    if imported.get("workflow_state") not in ("imported", "imported_with_messages"):
        sim.control("POST", "jobs/run")
    # The institution's roster, against which every row of the lookup is matched.
    others = [f"OTHER-{k % 997},inst-{k // 4},student,,active" for k in range(roster_rows)]
    roster_path.write_text(header + "\n".join(sis_rows + others) + "\n")
    return {
        "seeded": seeded,
        "through_proxy": through_proxy,
        "adopted_through_proxy": len(adopted),
        "sis_new": sis_new,
        "sis_claimed": min(25, len(ui_rows)) + min(10, len(proxy_users)),
    }


# --- measurements ----------------------------------------------------------------------------


def walk(http: requests.Session, base: str, target: str, token: str) -> int:
    """Walk every page from `base`, following Link rel="next", decoding each; rows seen."""
    url: str | None = base + target
    rows = 0
    while url:
        response = http.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        response.raise_for_status()
        rows += len(response.json())
        url = response.links.get("next", {}).get("url")
    return rows


def lookup(http: requests.Session, base: str, course_id: int, token: str) -> int:
    response = http.get(
        f"{base}/ledger/v1/courses/{course_id}/enrollments",
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    response.raise_for_status()
    body = response.json()
    return len(body["enrollments"])


def measure(variants: dict[str, Callable[[], int]], rounds: int, n: int) -> dict[str, list[float]]:
    """Interleaved rounds (after one warm-up round); the order rotates from round to round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_number in range(rounds + 1):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            rows = variants[name]()
            elapsed = time.perf_counter() - started
            if rows != n:
                raise RuntimeError(f"{name}: {rows} rows, expected {n}")
            if round_number:
                times[name].append(elapsed)
        print(f"  round {round_number or 'warm-up'}: done", file=sys.stderr, flush=True)
    return times


def profile_in_process(settings: dict[str, str], course_id: int, token: str) -> None:
    """cProfile of three lookups inside this process: the request thread (ledger, verdicts,
    JSON); Canvas pages are read in a helper thread, which cProfile does not see."""
    import cProfile
    import pstats

    from ledger_proxy import create_app

    config = {name.removeprefix("LEDGER_PROXY_"): value for name, value in settings.items()}
    app = create_app(config, instance_path=tempfile.mkdtemp(prefix="bench-instance-"))
    client = app.test_client()
    path = f"/ledger/v1/courses/{course_id}/enrollments"
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(path, headers=headers).status_code == 200  # warm
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3):
        client.get(path, headers=headers).get_data()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative")
    stats.print_stats(30)
    stats.sort_stats("tottime").print_stats(20)


# --- report ----------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def report(times: dict[str, list[float]], args: argparse.Namespace, origins: dict[str, int],
           labels: dict[str, str]) -> None:  # fmt: skip
    median = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    command = shlex.join([".venv/bin/python", "bench/lookup_bench.py", *sys.argv[1:]])
    print(f"command:     {command}")
    print(f"enrollments: {args.enrollments}  ({', '.join(f'{k} {v}' for k, v in origins.items())})")
    print(f"roster:      {args.roster_rows} SIS rows of other courses + this course's")
    print(f"canvas:      simulator, {args.canvas_latency:g} s added latency per request")
    print(f"rounds:      {args.rounds} (+1 warm-up), interleaved")
    print(f"machine:     {os.cpu_count()} CPUs (nproc {_nproc()}), {cpu_model()}")
    print(f"python:      {platform.python_version()} ({platform.python_implementation()})")
    print(f"proxy:       gunicorn, 1 worker, {args.threads} threads (gthread)")
    print()
    print(f"{'variant':<48} {'median ms':>10} {'min ms':>10}")
    for name in times:
        print(f"{labels[name]:<48} {median[name] * 1000:>10.1f} {best[name] * 1000:>10.1f}")
    print()
    for other in [name for name in times if name != "walk"]:
        print(
            f"overhead of {other} over walk: median {median[other] / median['walk'] - 1:+.1%}, "
            f"min {best[other] / best['walk'] - 1:+.1%} "
            f"({(median[other] - median['walk']) * 1000:+.1f} ms)"
        )


def _nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(len(os.sched_getaffinity(0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=3000, help="Enrollments in the course.")
    parser.add_argument("--rounds", type=int, default=7, help="Measured rounds (after a warm-up).")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads (one worker).")
    parser.add_argument(
        "--roster-rows",
        type=int,
        default=50_000,
        help="SIS roster rows of other courses (the institution's enrollments.csv).",
    )
    parser.add_argument(
        "--canvas-latency",
        type=float,
        default=0.0,
        help="Seconds the simulator adds to every API request (real Canvas is far slower).",
    )
    parser.add_argument("--no-forwarding", action="store_true", help="Skip variant (c).")
    parser.add_argument(
        "--profile", action="store_true", help="Also cProfile one lookup in-process (stderr)."
    )
    args = parser.parse_args()
    if args.enrollments < 100 or args.rounds < 1:
        parser.error("--enrollments must be at least 100 and --rounds at least 1")

    with tempfile.TemporaryDirectory(prefix="lookup-bench-") as tmp, simulator() as sim_url:
        sim = Sim(sim_url)
        admin = sim.control("POST", "users", {"name": "Bench Admin", "admin": True})
        course = sim.control("POST", "courses", {"name": "Bench", "sis_course_id": COURSE_SIS_ID})
        settings = {
            "LEDGER_PROXY_CANVAS_URL": sim_url,
            "LEDGER_PROXY_DATABASE": str(Path(tmp) / "ledger.sqlite3"),
            "LEDGER_PROXY_TOKEN_HASH_KEY": "bench-token-hash-key",
        }
        with proxy(settings, args.threads) as proxy_url:
            print(f"simulator {sim_url}, proxy {proxy_url}; building the course", file=sys.stderr)
            roster = Path(tmp) / "enrollments.csv"
            origins = build_world(
                sim, proxy_url, course, admin, args.enrollments, roster, args.roster_rows
            )
            subprocess.run(
                [str(BIN / "ledger-proxy"), "sis-roster", "load", str(roster)],
                cwd=ROOT, env=clean_environment(settings), check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            sim.control("POST", "settings", {"latency_seconds": args.canvas_latency})
            target = Query("courses", str(course["id"])).canvas_target()
            http = requests.Session()
            http.trust_env = False
            token = admin["token"]
            variants: dict[str, Callable[[], int]] = {
                "walk": lambda: walk(http, sim_url, target, token),
                "lookup": lambda: lookup(http, proxy_url, course["id"], token),
            }
            labels = {
                "walk": "(a) walk the pages, straight from Canvas",
                "lookup": "(b) provenance lookup through the proxy",
                "forwarded": "(c) walk the pages through the proxy's /api/",
            }
            if not args.no_forwarding:
                variants["forwarded"] = lambda: walk(http, proxy_url, target, token)
            times = measure(variants, args.rounds, args.enrollments)
            if args.profile:
                profile_in_process(settings, course["id"], token)
    report(times, args, origins, labels)


if __name__ == "__main__":
    main()
