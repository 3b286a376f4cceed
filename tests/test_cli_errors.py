"""A user's mistake is one `Error: ...` line and exit status 1, never a traceback (issue 6).

Usage mistakes (a missing option, an unknown one) keep click's exit status 2, as in every
click or POSIX tool.
"""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from ledger_proxy.cli import main


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def run(tmp_path):
    """run(args, **env) -> (exit code, output); the ledger and key always in tmp_path."""

    def invoke(args: list[str], **env: str) -> tuple[int, str]:
        settings = {
            "LEDGER_PROXY_DATABASE": str(tmp_path / "ledger.sqlite3"),
            "LEDGER_PROXY_TOKEN_HASH_KEY": "k",
            **env,
        }
        result = CliRunner().invoke(main, args, env=settings)
        # An exception other than SystemExit would be a traceback for a real user.
        assert isinstance(result.exception, SystemExit | None), repr(result.exception)
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    return invoke


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(["audit", "1", "--token", "t"], {"LEDGER_PROXY_CANVAS_URL": "ftp://canvas"}, "Error: LEDGER_PROXY_CANVAS_URL=", id="malformed-setting"),
        pytest.param(["audit", "1", "--token", "t"], {"LEDGER_PROXY_CANVAS_URL": "https://x.test", "LEDGER_PROXY_CANVASURL": "x"}, "Error: unknown setting LEDGER_PROXY_CANVASURL", id="misspelt-setting"),
        pytest.param(["audit", "1", "--token", "t"], {"LEDGER_PROXY_CANVAS_URL": f"http://127.0.0.1:{closed_port()}"}, "Error: Canvas gave no answer", id="canvas-unreachable"),
        pytest.param(["export", "--since", "last tuesday"], {}, "Error: --since: Not a valid datetime", id="bad-export-filter"),
        pytest.param(["export", "-o", "/nonexistent-dir/ledger.csv"], {}, "Error: No such file or directory: /nonexistent-dir/ledger.csv", id="unwritable-output"),
        pytest.param(["serve"], {"LEDGER_PROXY_CANVAS_URL": "https://x.test", "LEDGER_PROXY_READ_TIMEOUT": "soon"}, "Error: LEDGER_PROXY_READ_TIMEOUT=", id="serve-bad-setting"),
    ],
)
def test_user_errors_are_one_line_and_exit_1(run, args, env, message):
    code, output = run(args, **env)
    assert code == 1, output
    assert output.startswith(message) or f"\n{message}" in output, output


def test_a_token_canvas_refuses_is_an_error_naming_canvas_answer(run, sim):
    code, output = run(["audit", "1", "--token", "not-a-token"], LEDGER_PROXY_CANVAS_URL=sim.url)
    assert (code, output.strip()) == (1, 'Error: Canvas answered 401: Invalid access token.')


def test_a_bad_sis_roster_is_refused_with_its_line_numbers(run, tmp_path):
    roster = tmp_path / "enrollments.csv"
    roster.write_text("course_id,user_id,role,status\nBIO-101,S-01,student,active\nBIO-101,,student,sometimes\n")
    code, output = run(["sis-roster", "load", str(roster)])
    assert code == 1
    assert "line 3" in output and "Error: " in output and "nothing was loaded" in output


def test_a_ledger_that_is_not_a_database_is_named(run, tmp_path):
    (tmp_path / "not-a-ledger").write_text("hello, I am a text file\n" * 100)
    code, output = run(["verify"], LEDGER_PROXY_DATABASE=str(tmp_path / "not-a-ledger"))
    assert code == 1
    assert output.startswith(f"Error: LEDGER_PROXY_DATABASE={tmp_path / 'not-a-ledger'}: cannot open the ledger")


def test_a_demo_port_in_use_is_named(run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, output = run(["demo", "--no-wait", "--port", str(port)])
    assert code == 1
    assert output.strip().splitlines()[-1] == f"Error: the proxy cannot listen on 127.0.0.1:{port} (in use)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["audit", "1"], "Error: Missing option '--token'", id="missing-option"),
        pytest.param(["serve", "--colour"], "Error: No such option '--colour'", id="unknown-option"),
        pytest.param(["sis-roster", "load", "/nonexistent.csv"], "Error: Invalid value for 'FILE'", id="missing-file"),
    ],
)
def test_usage_errors_keep_clicks_exit_status_2(run, args, message):
    code, output = run(args)
    assert code == 2
    assert message in output
