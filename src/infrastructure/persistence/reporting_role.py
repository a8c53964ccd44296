"""The role that report queries run as on PostgreSQL: what it may do that a report must not (`inspect`), and the SQL
that creates one that may only read the reporting schemas (`grant_sql`).

A report is SQL an admin wrote, run by a worker; the read-only transaction and the time limit bound what it does
through SQL, but not what the role may do through functions: a superuser reads and writes the database host's files
(`pg_read_file`, `lo_export`), a member of `pg_signal_backend` ends the service's connections, a role that can
read reportgen's tables reads every user's jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from infrastructure.persistence.engine import storage_errors
from infrastructure.persistence.tables import metadata

SERVICE_TABLES = (*sorted(metadata.tables), "alembic_version")
"""reportgen's own tables; a reporting role must read none of them."""
PRIVILEGED_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program", "pg_signal_backend")
"""Predefined roles whose powers reach past the database: the host's files and programs, other sessions."""
CONNECTION_FUNCTIONS = ("dblink_connect", "dblink_connect_u", "dblink_exec")
"""Functions that open a connection of their own, outside the report's read-only transaction."""

_WHERE_AM_I = sa.text("SELECT pg_postmaster_start_time() AS started, current_database() AS name")
_SERVICE_TABLE_OIDS = sa.text(
    "SELECT name, to_regclass(name)::oid AS oid FROM unnest(CAST(:names AS text[])) AS name"
).bindparams(names=list(SERVICE_TABLES))
_ROLE = sa.text(
    """
    SELECT current_user AS role,
           r.rolsuper AS superuser,
           ARRAY(SELECT p FROM unnest(CAST(:privileged AS text[])) AS p
                  WHERE pg_has_role(current_user, p, 'MEMBER')) AS member_of,
           ARRAY(SELECT DISTINCT f.proname::text FROM pg_proc AS f
                  WHERE f.proname = ANY(CAST(:connecting AS text[]))
                    AND has_function_privilege(current_user, f.oid, 'EXECUTE')) AS connecting_functions
      FROM pg_roles AS r WHERE r.rolname = current_user
    """
).bindparams(privileged=list(PRIVILEGED_ROLES), connecting=list(CONNECTION_FUNCTIONS))
_READABLE = sa.text(
    "SELECT array_agg(t.name ORDER BY t.name) FROM unnest(CAST(:names AS text[]), CAST(:oids AS oid[])) AS t(name, oid)"
    " WHERE has_table_privilege(current_user, t.oid, 'SELECT')"
)


@dataclass(frozen=True, slots=True)
class RoleReport:
    """What the reporting role may do that a report must not; `problems` empty means none of it."""

    role: str
    database: str
    problems: tuple[str, ...]

    @property
    def privileged(self) -> bool:
        return bool(self.problems)


async def inspect(reporting: AsyncEngine, service: AsyncEngine) -> RoleReport | None:
    """The reporting role's powers, on PostgreSQL (None on SQLite, where a report reads the whole file: there is no
    role). reportgen's tables are looked for only when both engines reach the same database of the same server."""
    if reporting.dialect.name != "postgresql":
        return None
    with storage_errors():
        async with service.connect() as conn:
            service_db = (await conn.execute(_WHERE_AM_I)).one()
            oids = {row.name: row.oid for row in await conn.execute(_SERVICE_TABLE_OIDS) if row.oid is not None}
        async with reporting.connect() as conn:
            here = (await conn.execute(_WHERE_AM_I)).one()
            role = (await conn.execute(_ROLE)).one()
            readable: Sequence[str] = []
            if tuple(here) == tuple(service_db) and oids:
                tables = {"names": list(oids), "oids": list(oids.values())}
                readable = (await conn.scalar(_READABLE, tables)) or []
    problems: list[str] = []
    if role.superuser:
        problems.append(f"{role.role} is a superuser: a report can read and write files on the database host")
    problems += [f"{role.role} is a member of {name}" for name in role.member_of]
    if role.connecting_functions:
        functions = ", ".join(role.connecting_functions)
        problems.append(f"{role.role} may open connections of its own ({functions}), outside the read-only transaction")
    if readable:
        problems.append(f"{role.role} can read reportgen's own tables ({', '.join(readable)})")
    return RoleReport(role=role.role, database=here.name, problems=tuple(problems))


def grant_sql(role: str, schemas: Sequence[str]) -> list[str]:
    """Statements that create `role` (if it does not exist) able to log in to the database they run on and read
    every table of `schemas` there, and nothing of reportgen's. Safe to run again, e.g. after reporting tables were
    added. The role gets no password: set one (`ALTER ROLE ... PASSWORD`) unless the server trusts it otherwise."""
    quote = _identifier
    statements = [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(role)}) THEN"
        f" CREATE ROLE {quote(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;"
        " END IF; END $$",
        f"DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {_literal(role)});"
        " END $$",
    ]
    for schema in schemas:
        statements += [
            f"GRANT USAGE ON SCHEMA {quote(schema)} TO {quote(role)}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {quote(schema)} TO {quote(role)}",
        ]
    # Whatever the grants above reached of reportgen's own tables (they may share a schema with reporting data).
    tables = ", ".join(map(_literal, SERVICE_TABLES))
    revoke = (
        "DO $$ DECLARE t regclass; BEGIN"  # noqa: S608 - the names and the role are quoted as literals
        f" FOREACH t IN ARRAY ARRAY(SELECT to_regclass(n) FROM unnest(ARRAY[{tables}]) AS n"
        " WHERE to_regclass(n) IS NOT NULL) LOOP"
        f" EXECUTE format('REVOKE ALL ON TABLE %s FROM %I', t, {_literal(role)}); END LOOP; END $$"
    )
    statements.append(revoke)
    return statements


async def create_role(engine: AsyncEngine, role: str, schemas: Sequence[str]) -> None:
    """Run `grant_sql` on `engine`'s database, as a role that may create roles and owns what it grants."""
    with storage_errors():
        async with engine.begin() as conn:
            for statement in grant_sql(role, schemas):
                await conn.exec_driver_sql(statement)


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
