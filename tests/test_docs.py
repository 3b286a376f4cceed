"""The documentation names what the code has: commands, metrics, deployment facts (issue 6).

(The settings table is checked against the registry in tests/test_config.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from ledger_proxy.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def command_paths(group: click.Group = main, prefix: str = "ledger-proxy") -> list[str]:
    paths = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, f"{prefix} {name}")
        else:
            paths.append(f"{prefix} {name}")
    return paths


@pytest.mark.parametrize("command", command_paths())
def test_every_command_is_named_in_the_readme(command):
    assert f"`{command}" in README


def test_the_readme_names_every_metric_and_only_those(app):
    registry = app.extensions["ledger_proxy_metrics"].registry
    exposed = {family.name + ("_total" if family.type == "counter" else "") for family in registry.collect()}
    operations = README.split("## Operations", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"ledger_proxy_[a-z_]+", operations)) == exposed


def test_the_quick_start_gives_the_run_and_the_test_command_and_ci_runs_the_latter():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    run, test = (block.split("```", 1)[0].strip() for block in quick_start.split("```sh\n")[1:3])
    assert run == "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/ledger-proxy demo"
    assert test == "bash scripts/test"
    assert "bash scripts/test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize(
    ("document", "facts"),
    [
        pytest.param("deploy.md", ["gthread", "--threads", "--timeout", "LEDGER_PROXY_READ_TIMEOUT", "[Service]", "proxy_set_header X-Forwarded-Proto", "LEDGER_PROXY_TRUSTED_PROXIES", "client_max_body_size", ".backup", "PROMETHEUS_MULTIPROC_DIR", "/readyz"], id="deploy"),
        pytest.param("integrations.md", ["canvasapi", "canvas-api", "access_token", "pandarus", "curl", "@kth/canvas-api", "/i/", "X-Ledger-Integration", "X-Ledger-Request-Id"], id="integrations"),
    ],
)
def test_the_guides_cover_their_ground(document, facts):
    text = (ROOT / "docs" / document).read_text()
    assert [fact for fact in facts if fact not in text] == []
