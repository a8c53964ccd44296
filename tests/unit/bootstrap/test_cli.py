"""`reportgen migrate --reporting-role NAME --print-sql`: the SQL an operator runs on the reporting database."""

from __future__ import annotations

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
