"""Helpers of bench/hotpath.py: processes on free loopback ports, nginx, and the load generator.

Every process is started in its own session and registered with a `Processes`, which stops
them all (SIGTERM to the group, then SIGKILL) when the bench ends, fails or is interrupted.
The load generator is `wrk` when installed, else `PyLoad` (http.client keep-alive connections
in threads); whichever is picked serves every row of one run.
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout: wsgi.py, bench/
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without LEDGER_PROXY_*, proxy variables or a metrics folder."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LEDGER_PROXY_")
        and name != "PROMETHEUS_MULTIPROC_DIR"
        and name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.update(extra)
    return env


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Processes:
    """Every process the bench started; `stop_all` ends them, newest first."""

    tmp: Path
    servers: list[Server] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], env: dict[str, str], url: str, cwd: Path = ROOT
    ) -> Server:
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        server = Server(name, url, proc, log)
        self.servers.append(server)
        return server

    def stop(self, server: Server) -> None:
        proc = server.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Workers left behind by a master that died first.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        for server in reversed(list(self.servers)):
            self.stop(server)


def wait_ready(server: Server, path: str, timeout: float = START_TIMEOUT) -> None:
    """Poll `path` until it answers HTTP (any status below 500)."""
    host, port = server.url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start-up:\n{server.tail()}")
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            conn.request("GET", path, headers={"Authorization": "Bearer bench-token"})
            status = conn.getresponse().status
            conn.close()
            if status < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} does not answer {path}:\n{server.tail()}")
        time.sleep(0.1)


def gunicorn_argv(app: str, port: int, workers: int, threads: int, *extra: str) -> list[str]:
    return [
        str(BIN / "gunicorn"),
        "--bind", f"{HOST}:{port}",
        "--worker-class", "gthread",
        "--workers", str(workers),
        "--threads", str(threads),
        *extra,
        app,
    ]  # fmt: skip


# nginx

NGINX_HINT = "apt-get update && apt-get install -y nginx-light   (or: nginx)"
WRK_HINT = "apt-get update && apt-get install -y wrk"


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def nginx_config(tmp: Path, port: int, upstream_port: int, binary: str) -> str:
    """nginx in the foreground as the current user, every file in `tmp`."""
    built = subprocess.run([binary, "-V"], capture_output=True, text=True).stderr
    temp_paths = [f"client_body_temp_path {tmp}/body;", f"proxy_temp_path {tmp}/proxy;"]
    for module in ("fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in built:
            temp_paths.append(f"{module}_temp_path {tmp}/{module};")
    user = ""
    if os.geteuid() == 0:  # otherwise workers would switch to `nobody`
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    paths = "\n    ".join(temp_paths)
    return f"""
{user}
daemon off;
worker_processes auto;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/nginx-access.log;
    {paths}
    upstream canvas {{
        server {HOST}:{upstream_port};
        keepalive 32;
    }}
    server {{
        listen {HOST}:{port};
        location / {{
            proxy_pass http://canvas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def start_nginx(procs: Processes, upstream_port: int) -> Server | None:
    binary = find_nginx()
    if binary is None:
        print(f"nginx not found: skipping its row. Install it with: {NGINX_HINT}")
        return None
    tmp = Path(tempfile.mkdtemp(prefix="nginx-", dir=procs.tmp))
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_config(tmp, port, upstream_port, binary))
    argv = [binary, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)]
    return procs.start("nginx", argv, clean_env({}), f"http://{HOST}:{port}", cwd=tmp)


# Load generation


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # connection errors, timeouts and non-2xx/3xx answers

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


WRK_SCRIPT = """
wrk.method = "{method}"
wrk.path = "{path}"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK-RESULT %d %d %.1f %.1f %d %d %d %d %d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Wrk:
    name = "wrk -t1"

    def __init__(self, binary: str, tmp: Path) -> None:
        self.binary = binary
        self.tmp = tmp

    def run(self, url: str, request: Request, connections: int, seconds: int) -> Result:
        headers = "\n".join(
            f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in request.headers.items()
        )
        script = self.tmp / f"wrk-{request.method.lower()}.lua"
        script.write_text(
            WRK_SCRIPT.format(
                method=request.method,
                path=request.path,
                body=_lua_string(request.body.decode()) if request.body else "nil",
                headers=headers,
            )
        )
        argv = [
            self.binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
            "-s", str(script), url,
        ]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        for line in out.stdout.splitlines():
            if line.startswith("WRK-RESULT"):
                n, duration_us, p50, p99, *errors = line.split()[1:]
                return Result(
                    requests=int(n),
                    seconds=int(duration_us) / 1e6,
                    p50_ms=float(p50) / 1000,
                    p99_ms=float(p99) / 1000,
                    errors=sum(int(e) for e in errors),
                )
        raise RuntimeError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")


class PyLoad:
    """http.client keep-alive connections, one thread each; bounded in time and count."""

    name = "Python http.client, one thread per connection"
    MAX_PER_CONNECTION = 200_000

    def run(self, url: str, request: Request, connections: int, seconds: int) -> Result:
        host, port = url.removeprefix("http://").split(":")
        deadline = time.perf_counter() + seconds
        latencies: list[list[float]] = [[] for _ in range(connections)]
        errors = [0] * connections
        headers = dict(request.headers)
        if request.body:
            headers["Content-Length"] = str(len(request.body))

        def client(index: int) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            own = latencies[index]
            while time.perf_counter() < deadline and len(own) < self.MAX_PER_CONNECTION:
                started = time.perf_counter()
                try:
                    conn.request(request.method, request.path, request.body or None, headers)
                    response = conn.getresponse()
                    response.read()
                    if response.status >= 400:
                        errors[index] += 1
                except (OSError, http.client.HTTPException):
                    errors[index] += 1
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=5)
                    continue
                own.append(time.perf_counter() - started)
            conn.close()

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        merged = sorted(x for own in latencies for x in own)
        if not merged:
            return Result(0, elapsed, float("nan"), float("nan"), sum(errors))
        p99 = merged[min(len(merged) - 1, int(len(merged) * 0.99))]
        return Result(len(merged), elapsed, statistics.median(merged) * 1000, p99 * 1000,
                      sum(errors))


def load_generator(tmp: Path, force_python: bool = False) -> Wrk | PyLoad:
    binary = None if force_python else shutil.which("wrk")
    if binary:
        return Wrk(binary, tmp)
    if not force_python:
        print(f"wrk not found: using the Python load generator. Install wrk with: {WRK_HINT}")
    return PyLoad()
