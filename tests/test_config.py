"""Settings: documented defaults, coercion from the environment, clear start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger_proxy import create_app
from ledger_proxy.config import SETTINGS, ConfigError

ROOT = Path(__file__).resolve().parent.parent


def make(tmp_path, monkeypatch, env=None, **config):
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    return create_app(
        {"DATABASE": str(tmp_path / "l.sqlite3"), **config}, instance_path=str(tmp_path / "instance")
    )


def test_settings_come_from_prefixed_environment_variables(tmp_path, monkeypatch):
    app = make(
        tmp_path,
        monkeypatch,
        env={
            "LEDGER_PROXY_CANVAS_URL": "https://school.instructure.com/",
            "LEDGER_PROXY_ADMIN_USER_IDS": "17, 42",
            "LEDGER_PROXY_READ_TIMEOUT": "12.5",
            "LEDGER_PROXY_CONNECT_TIMEOUT": "3",
        },
    )
    assert app.config["CANVAS_URL"] == "https://school.instructure.com"
    assert app.config["ADMIN_USER_IDS"] == [17, 42]
    assert app.config["READ_TIMEOUT"] == 12.5
    assert app.config["CONNECT_TIMEOUT"] == 3.0


def test_a_single_admin_id_parsed_as_json_number_is_a_list(tmp_path, monkeypatch):
    app = make(tmp_path, monkeypatch, env={"LEDGER_PROXY_ADMIN_USER_IDS": "17"}, CANVAS_URL="http://c.test")
    assert app.config["ADMIN_USER_IDS"] == [17]


def test_instance_config_py_is_read(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text('CANVAS_URL = "https://from-instance.example"\n')
    app = create_app({"DATABASE": str(tmp_path / "l.sqlite3")}, instance_path=str(instance))
    assert app.config["CANVAS_URL"] == "https://from-instance.example"


def test_database_defaults_to_the_instance_folder(tmp_path, monkeypatch):
    app = create_app({"CANVAS_URL": "http://c.test"}, instance_path=str(tmp_path / "inst"))
    assert app.config["DATABASE"] == str(tmp_path / "inst" / "ledger.sqlite3")
    assert (tmp_path / "inst" / "ledger.sqlite3").exists()


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        pytest.param({}, "LEDGER_PROXY_CANVAS_URL is not set", id="missing-canvas-url"),
        pytest.param({"LEDGER_PROXY_CANVAS_URL": "school.instructure.com"}, "LEDGER_PROXY_CANVAS_URL", id="no-scheme"),
        pytest.param({"LEDGER_PROXY_CANVAS_URL": "https://x.test/api/v1"}, "without /api/v1", id="api-v1"),
        pytest.param({"LEDGER_PROXY_CANVAS_URL": "https://x.test:99999"}, "invalid port", id="bad-port"),
        pytest.param({"LEDGER_PROXY_CANVAS_URL": "https://x.test", "LEDGER_PROXY_READ_TIMEOUT": "soon"}, "LEDGER_PROXY_READ_TIMEOUT", id="bad-timeout"),
        pytest.param({"LEDGER_PROXY_CANVAS_URL": "https://x.test", "LEDGER_PROXY_CONNECT_TIMEOUT": "-1"}, "positive", id="negative-timeout"),
        pytest.param({"LEDGER_PROXY_CANVAS_URL": "https://x.test", "LEDGER_PROXY_ADMIN_USER_IDS": "1,bob"}, "'bob' is not a numeric", id="bad-admin-id"),
        pytest.param({"LEDGER_PROXY_CANVAS_URL": "https://x.test", "LEDGER_PROXY_CANVASURL": "x"}, "unknown setting LEDGER_PROXY_CANVASURL", id="typo"),
        pytest.param({"LEDGER_PROXY_CANVAS_URL": "https://x.test", "LEDGER_PROXY_MAX_BODY_BYTES": "0"}, "positive number of bytes", id="zero-max-body"),
    ],
)
def test_bad_settings_stop_start_up_with_a_clear_message(tmp_path, monkeypatch, env, fragment):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        create_app({"DATABASE": str(tmp_path / "l.sqlite3")}, instance_path=str(tmp_path / "i"))


def test_an_unopenable_database_is_a_start_up_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot open the ledger"):
        create_app({"CANVAS_URL": "http://c.test", "DATABASE": str(blocker / "sub" / "l.sqlite3")}, instance_path=str(tmp_path / "i"))


def test_wsgi_import_with_a_bad_setting_exits_with_one_line_not_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_PROXY_")}
    env["LEDGER_PROXY_CANVAS_URL"] = "ftp://nope"
    env["LEDGER_PROXY_DATABASE"] = str(tmp_path / "l.sqlite3")
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: LEDGER_PROXY_CANVAS_URL=")
    assert "Traceback" not in result.stderr


def test_token_hash_key_is_generated_once_and_private(tmp_path):
    first = create_app({"CANVAS_URL": "http://c.test"}, instance_path=str(tmp_path / "i"))
    second = create_app({"CANVAS_URL": "http://c.test"}, instance_path=str(tmp_path / "i"))
    key_file = tmp_path / "i" / "token_hash.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert first.extensions["ledger_proxy"].token_key == second.extensions["ledger_proxy"].token_key


def documented_default(setting) -> str | None:
    """What the README's Default column must say; None: a computed default, as its help says."""
    default = setting.default
    if default in (None, [], ""):
        return None if "Default:" in setting.help else "(none)"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


def test_every_setting_is_in_the_readme_table_with_its_default():
    """One row per setting, no row for a setting that is gone, and the registry's default."""
    readme = (ROOT / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `LEDGER_PROXY_") and len(cells) >= 3:
            assert cells[0] not in rows, f"{cells[0]} has two rows"
            rows[cells[0].strip("`")] = cells[1]
    assert sorted(rows) == sorted(s.env_name for s in SETTINGS)
    wrong = {
        s.env_name: (rows[s.env_name], documented_default(s))
        for s in SETTINGS
        if documented_default(s) is not None and rows[s.env_name] != documented_default(s)
    }
    assert wrong == {}, "README default differs from ledger_proxy/config.py: (README, registry)"
    computed = [s.env_name for s in SETTINGS if documented_default(s) is None and rows[s.env_name] == "(none)"]
    assert computed == [], "these have a computed default (their help says 'Default:'): name it"


def test_the_instance_folder_can_be_set_in_the_environment(tmp_path, monkeypatch):
    instance = tmp_path / "elsewhere"
    instance.mkdir()
    (instance / "config.py").write_text('CANVAS_URL = "https://from-elsewhere.example"\n')
    monkeypatch.setenv("LEDGER_PROXY_INSTANCE_PATH", str(instance))
    app = create_app()
    assert app.config["CANVAS_URL"] == "https://from-elsewhere.example"
    assert app.config["DATABASE"] == str(instance / "ledger.sqlite3")
    assert (instance / "token_hash.key").exists()
