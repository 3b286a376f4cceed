"""The console script: help texts, and `serve` in front of the bundled simulator."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import pytest
import requests
from canvasapi import Canvas
from click.testing import CliRunner

from ledger_proxy.cli import main

from .helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


def every_command(group: click.Group = main, path: tuple[str, ...] = ()) -> list[list[str]]:
    """The group itself and every command under it, subgroups included (as they are added)."""
    found = [list(path)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += every_command(command, (*path, name))
        else:
            found.append([*path, name])
    return found


@pytest.mark.parametrize("command", every_command(), ids=lambda command: " ".join(command) or "ledger-proxy")
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    # The example is shown as written, one command per line, never rewrapped mid-command.
    example, *rest = result.output.split("Example:", 1)[1].strip().splitlines()
    assert example.split()[0].startswith(("ledger-proxy", "CANVAS_TOKEN=", "LEDGER_PROXY_"))
    assert rest == [] or rest[0].strip() == "", f"example rewrapped: {example!r} {rest[0]!r}"


@pytest.mark.slow
@pytest.mark.parametrize("mode", [pytest.param([], id="gunicorn"), pytest.param(["--dev"], id="dev-server")])
def test_serve_without_a_canvas_url_runs_in_front_of_the_simulator(tmp_path, mode):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_PROXY_")}
    env.update(
        LEDGER_PROXY_DATABASE=str(tmp_path / "l.sqlite3"),
        LEDGER_PROXY_TOKEN_HASH_KEY="k",
        LEDGER_PROXY_INSTANCE_PATH=str(tmp_path / "instance"),
    )
    script = Path(sys.executable).with_name("ledger-proxy")
    proc = subprocess.Popen(
        [str(script), "serve", "--port", str(port), "--workers", "1", *mode],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:  # readiness: poll until the proxy answers through to the simulator
            try:
                if requests.get(f"{base}/api/v1/users/self", headers={"Authorization": "Bearer sim-admin-token"}, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "".join(output)
            time.sleep(0.05)
        canvas = Canvas(base, "sim-admin-token")
        enrollments = list(canvas.get_course(1).get_enrollments())
        assert enrollments
    finally:
        proc.terminate()
        proc.wait(15)
        reader.join(5)
        proc.stdout.close()  # type: ignore[union-attr]
    text = "".join(output)
    assert "started the bundled Canvas simulator at http://127.0.0.1:" in text
    assert f"give scripts the Canvas base URL {base}" in text
    assert "sim-admin-token" in text  # the demo token is printed; real tokens never are


@pytest.mark.slow
def test_demo_with_a_canvas_url_only_serves_the_proxy_in_front_of_it(tmp_path, sim):
    """The README's run command is safe against a real Canvas: no demo data is made there."""
    admin = sim.add_user("Admin", admin=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_PROXY_")}
    env.update(
        LEDGER_PROXY_CANVAS_URL=sim.url,
        LEDGER_PROXY_DATABASE=str(tmp_path / "l.sqlite3"),
        LEDGER_PROXY_TOKEN_HASH_KEY="k",
        LEDGER_PROXY_INSTANCE_PATH=str(tmp_path / "instance"),
    )
    script = Path(sys.executable).with_name("ledger-proxy")
    proc = subprocess.Popen(
        [str(script), "demo", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/v1/users/self", headers={"Authorization": f"Bearer {admin['token']}"}, timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "".join(output)
                time.sleep(0.05)
        assert answer.json()["id"] == admin["id"]
    finally:
        proc.terminate()
        proc.wait(15)
        reader.join(5)
        proc.stdout.close()  # type: ignore[union-attr]
    assert "A Canvas URL is configured: serving the proxy in front of it" in "".join(output)
    assert sim.enrollments() == []
