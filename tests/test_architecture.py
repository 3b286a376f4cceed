"""The layout's promises, checked: a Flask-free core, and one module that runs SQL on the ledger."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ledger_proxy"
CORE_MODULES = sorted(
    f"ledger_proxy.core.{path.stem}" for path in (PACKAGE / "core").glob("*.py")
)
# Statements on the ledger's tables (DDL aside, which only migrations write). SQL is written in
# capitals here, so prose ("chains from events") and imports ("from requests") do not count.
LEDGER_TABLES = r"(requests|events|enrollments|ledger_meta|actors|async_jobs|sis_roster|live_events|account_audits|page_view_attributions|sqlite_sequence)"
LEDGER_SQL = re.compile(rf"\b(FROM|INTO|UPDATE|JOIN)\s+{LEDGER_TABLES}\b")
# The ledger store itself, and the frozen migrations beside it.
SQL_HOMES = {PACKAGE / "core" / "ledger.py", PACKAGE / "core" / "migrations.py"}


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_imports_no_flask(module):
    """Importing a core module in a fresh interpreter leaves Flask and Werkzeug unloaded."""
    code = (
        f"import sys, {module}\n"
        "web = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug'))\n"
        "print(' '.join(web))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"{module} pulls in {done.stdout.strip()}"


def test_the_core_list_is_complete():
    assert "ledger_proxy.core.ledger" in CORE_MODULES
    assert "ledger_proxy.core.recording" in CORE_MODULES
    assert "ledger_proxy.core.lookup" in CORE_MODULES


def test_sql_on_ledger_tables_only_in_the_ledger_module():
    outside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in SQL_HOMES or "simulator" in path.relative_to(PACKAGE).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if LEDGER_SQL.search(line):
                outside.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert outside == []


def test_only_the_ledger_module_opens_sqlite():
    opened = [
        str(path.relative_to(PACKAGE.parent))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "sqlite3.connect(" in path.read_text() and "simulator" not in path.parts
    ]
    assert opened == ["ledger_proxy/core/ledger.py"]


def test_the_sql_check_sees_sql():
    """The pattern above finds the statements it is meant to keep out of other modules."""
    for statement in (
        "SELECT * FROM requests WHERE id = ?",
        "INSERT INTO events (seq) VALUES (1)",
        "UPDATE enrollments SET x = 1",
        "DELETE FROM ledger_meta WHERE key = ?",
        "INSERT OR IGNORE INTO async_jobs (job_id) VALUES (?)",
    ):
        assert LEDGER_SQL.search(statement), statement
    assert not LEDGER_SQL.search("seq 3 chains from events before it")
    assert not LEDGER_SQL.search("from requests.adapters import HTTPAdapter")


def test_only_the_ledger_module_runs_statements():
    """No db.execute / db.query / executemany outside the ledger store and its migrations."""
    statement = re.compile(r"\.(execute|executemany|executescript|query)\(")
    running = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in SQL_HOMES and "simulator" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if statement.search(line)
    ]
    assert running == []
