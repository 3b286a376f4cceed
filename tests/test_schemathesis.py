"""schemathesis fuzzes the proxy's own API (/ledger/v1/) from its OpenAPI document: whatever
it generates, the proxy answers with no server error of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_no_server_errors_on_the_ledger_api(world, sim, make_proxy, tmp_path):
    admin = world.admin
    proxy = make_proxy(sim.url, ADMIN_USER_IDS=[admin["id"]], LIVE_EVENTS_JWKS=sim.live_events_jwks_url)
    # Some ledger content, so that history and export have rows to serve.
    from canvasapi import Canvas

    Canvas(f"{proxy.url}/i/fuzz", admin["token"]).get_course(world.course["id"]).enroll_user(world.students[0]["id"])
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis), "run", f"{proxy.url}/ledger/v1/openapi.json",
            "--checks", "not_a_server_error",
            "--header", f"Authorization: Bearer {admin['token']}",
            "--max-examples", "30",
            "--seed", "20261127",
            "--generation-deterministic",
            "--request-timeout", "20",
            "--report-dir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,  # its cache stays out of the tree
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
