"""docs/integrations.md's @kth/canvas-api example, run as written through the proxy (under
gunicorn) against the simulator, when node and npm are at hand; the package comes from the
registry, installed once per session into a temporary folder."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ledger_proxy.devserver import PROJECT_ROOT

from .processes import gunicorn

pytestmark = pytest.mark.slow

DOC = PROJECT_ROOT / "docs" / "integrations.md"
EXAMPLE_URL = "https://ledger-proxy.example.edu/i/roster-sync/api/v1"


def _example() -> str:
    text = DOC.read_text()
    [block] = [
        code for code in re.findall(r"```js\n(.*?)```", text, re.S) if "@kth/canvas-api" in code
    ]
    return block


@pytest.fixture(scope="session")
def kth_canvas_api(tmp_path_factory: Any) -> Path:
    """A folder with @kth/canvas-api installed (major version 5); skips when it cannot be."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed to run the @kth/canvas-api example")
    folder = tmp_path_factory.mktemp("kth-canvas-api")
    try:
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", "@kth/canvas-api@5"],
            cwd=folder, check=True, capture_output=True, text=True, timeout=180,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"npm could not install @kth/canvas-api from the registry: {exc}")
    return folder


def test_the_kth_canvas_api_example_enrolls_through_the_proxy(kth_canvas_api, world, sim, tmp_path):
    student = world.students[0]
    code = (
        _example()
        .replace(EXAMPLE_URL, "PROXY/i/roster-sync/api/v1")
        .replace("courses/517/", f"courses/{world.course['id']}/")
        .replace("user_id: 4031", f"user_id: {student['id']}")
    )
    assert code.startswith('import { CanvasApi } from "@kth/canvas-api";')
    settings = {
        "LEDGER_PROXY_CANVAS_URL": sim.url,
        "LEDGER_PROXY_DATABASE": str(tmp_path / "ledger.sqlite3"),
        "LEDGER_PROXY_TOKEN_HASH_KEY": "k",
    }
    with gunicorn(settings, workers=1) as base:
        script = kth_canvas_api / "enroll.mjs"
        script.write_text(code.replace("PROXY", base))
        done = subprocess.run(
            [shutil.which("node") or "node", str(script)],
            cwd=kth_canvas_api, capture_output=True, text=True, timeout=60,
            env={"PATH": str(Path(shutil.which("node") or "node").parent), "CANVAS_TOKEN": world.admin["token"]},
        )
    assert done.returncode == 0, done.stderr
    [made] = [e for e in sim.enrollments(course_id=world.course["id"]) if e["user_id"] == student["id"]]
    assert done.stdout.strip().splitlines()[-1] == f"enrollment {made['id']}"  # after its banner
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:
        events = conn.execute("SELECT enrollment_id, action, integration FROM events").fetchall()
    assert events == [(made["id"], "created", "roster-sync")]
