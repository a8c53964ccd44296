"""`reportgen migrate --reporting-role NAME --print-sql`: the SQL an operator runs on the reporting database."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bootstrap.cli import main


def test_print_sql_gives_the_statements_that_make_a_role_that_may_only_read(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPORTGEN_DATABASE_URL", raising=False)
    code = main(["migrate", "--reporting-role", 'rep"orts', "--reporting-schema", "sales", "--print-sql"])

    sql = capsys.readouterr().out
    assert code == 0
    assert 'CREATE ROLE "rep""orts" LOGIN NOSUPERUSER' in sql, "the name is quoted as an identifier"
    assert 'GRANT SELECT ON ALL TABLES IN SCHEMA "sales" TO "rep""orts";' in sql
    assert "'jobs', 'reports'" in sql, "reportgen's own tables are revoked"
    assert "REVOKE ALL ON TABLE" in sql
    assert "public" not in sql
    assert "DEFAULT PRIVILEGES" not in sql, "they would cover the tables of reportgen's later migrations"


def test_a_reporting_role_on_sqlite_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("REPORTGEN_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    code = main(["migrate", "--reporting-role", "reports"])

    assert code == 2
    assert capsys.readouterr().err == (
        "reportgen: invalid configuration: --reporting-role: PostgreSQL only"
        " (on SQLite a report reads the whole file)\n"
    )


def test_output_into_a_pipe_whose_reader_left_ends_without_a_traceback() -> None:
    """`reportgen token ... | head -0`: the reader is gone before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bootstrap.cli", "token", "--sub", "alice"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=os.environ | {"REPORTGEN_JWT_SECRET": "s" * 64},
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == b""
