"""`reportgen`: serve, worker, migrate, token, check; and the client commands (bootstrap.client_cli)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bootstrap.client_cli import CLIENT_COMMANDS, add_client_commands, run_client_command

if TYPE_CHECKING:
    from settings import Settings

# The server's modules (the API, SQLAlchemy, ...) take seconds to import: each command imports what it needs, so
# the client commands start at once.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reportgen", description="On-demand asynchronous report generation.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API (and, without REPORTGEN_REDIS_URL, the worker too)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="API processes (production mode only)")
    commands.add_parser("worker", help="run an arq worker for REPORTGEN_REDIS_URL")
    migrate = commands.add_parser(
        "migrate", help="apply database migrations to REPORTGEN_DATABASE_URL (safe to repeat)"
    )
    migrate.add_argument(
        "--reporting-role",
        metavar="NAME",
        help="also create (or update) a PostgreSQL role that may only read the reporting schemas, for "
        "REPORTGEN_REPORTING_DATABASE_URL; it gets no password (ALTER ROLE NAME PASSWORD '...')",
    )
    migrate.add_argument(
        "--reporting-schema",
        metavar="SCHEMA",
        action="append",
        help="a schema the reporting role may read (repeatable; default: public, reportgen's own tables excepted)",
    )
    migrate.add_argument(
        "--print-sql",
        action="store_true",
        help="with --reporting-role: print the SQL that creates the role instead of running anything "
        "(to run on the reporting database as its owner)",
    )
    commands.add_parser(
        "check", help="print what the configuration allows (operators); exit 1 if reports would be refused"
    )
    token = commands.add_parser("token", help="print a JWT that the configured service accepts (development)")
    token.add_argument("--sub", required=True, help="the user id")
    token.add_argument("--role", action="append", default=[], help="a role, e.g. admin (repeatable)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    add_client_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `reportgen jobs | head`: the reader left; no traceback, nothing more to write
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush must not fail too
        return 1


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command in CLIENT_COMMANDS:  # a client needs none of the server's configuration
        return run_client_command(args)
    from bootstrap.formats import OutputFormatMismatch, encoders_for
    from settings import Settings, SettingsError

    try:
        encoders_for()  # before any server or worker process starts, which would each refuse it in a traceback
        settings = Settings.from_env(os.environ)
        _COMMANDS[args.command](settings, args)
    except SettingsError as exc:
        for line in exc.problems:
            print(f"reportgen: invalid configuration: {line}", file=sys.stderr)  # noqa: T201
        return 2
    except OutputFormatMismatch as exc:
        print(f"reportgen: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from granian.constants import Interfaces
    from granian.server import Server

    from api.auth import issue_token
    from bootstrap.embedded import DEV_TOKEN_TTL_SECONDS, DEV_USER, banner, uses_dev_secret, with_dev_secret
    from bootstrap.web import jwt_settings, log_format, secrets_of
    from infrastructure.logs import configure_logging

    dev_secret = uses_dev_secret(settings)
    settings = with_dev_secret(settings)  # a no-op outside the embedded mode
    configure_logging(fmt=log_format(settings), level=settings.log_level, secrets=secrets_of(settings))
    workers = args.workers
    if settings.embedded:
        _migrate(settings, args)
        asyncio.run(_prepare_embedded(settings))
        # A token is minted only with the secret generated for development: an operator's own key signs no
        # long-lived admin token that would land in a terminal's scrollback or a log.
        token = issue_token(jwt_settings(settings), DEV_USER, ["admin"], DEV_TOKEN_TTL_SECONDS) if dev_secret else None
        print(banner(settings, f"http://{_display_host(args.host)}:{args.port}", token, _demo_report()), flush=True)  # noqa: T201
        workers = 1  # one process holds the in-process worker and the SQLite file
    with _metrics_across(workers):
        Server(
            "bootstrap.web:create_app",
            address=args.host,
            port=args.port,
            workers=workers,
            interface=Interfaces.ASGI,
            factory=True,
            log_access=False,  # the app writes one line per request itself
            log_dictconfig=_GRANIAN_LOGS_TO_ROOT,
        ).serve()


# The server's own lines (start, workers spawned, shutdown) go through our handler, so stdout is one format.
_GRANIAN_LOGS_TO_ROOT = {"loggers": {"_granian": {"handlers": [], "propagate": True}}}


@contextmanager
def _metrics_across(workers: int) -> Iterator[None]:
    """With several API processes, /metrics must count them all: prometheus-client's multiprocess mode, in
    PROMETHEUS_MULTIPROC_DIR when set (a directory for this server alone; emptied at start), else a fresh
    temporary directory that is removed when the server stops."""
    from bootstrap.metrics import MULTIPROCESS_DIR_ENV, use_multiprocess_metrics

    if workers <= 1:
        yield
        return
    preset = os.environ.get(MULTIPROCESS_DIR_ENV)
    path = Path(preset) if preset else Path(tempfile.mkdtemp(prefix="reportgen-metrics-"))
    use_multiprocess_metrics(path)
    try:
        yield
    finally:
        if not preset:
            shutil.rmtree(path, ignore_errors=True)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host  # noqa: S104


def _demo_report() -> str:
    from infrastructure.demo import SALES_SUMMARY_ID

    return str(SALES_SUMMARY_ID)


async def _prepare_embedded(settings: Settings) -> None:
    """Seed the demo, and check the reporting role, since this process will run the reports."""
    from prometheus_client import CollectorRegistry

    from bootstrap.container import open_container
    from bootstrap.reporting import PrivilegedReports, guard_reports
    from infrastructure.demo import seed_demo

    # A registry of its own: this short-lived container must not claim the process's metric names.
    async with open_container(settings, registry=CollectorRegistry()) as container:
        if settings.seeds_demo:
            await seed_demo(container.reporting_engine, container.unit_of_work)
        try:
            await guard_reports(container)
        except PrivilegedReports as exc:
            raise SystemExit(f"reportgen serve: {exc}") from None


def _worker(settings: Settings, args: argparse.Namespace) -> None:
    from bootstrap.worker import run

    run(settings)


def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    from infrastructure.persistence.migrate import migrate
    from infrastructure.persistence.reporting_role import grant_sql
    from settings import SettingsError

    role: str | None = getattr(args, "reporting_role", None)
    schemas: list[str] = getattr(args, "reporting_schema", None) or ["public"]
    if role is not None and args.print_sql:
        print(";\n".join(grant_sql(role, schemas)) + ";")  # noqa: T201
        return
    if role is not None and not settings.effective_database_url.startswith("postgresql"):
        raise SettingsError(["--reporting-role: PostgreSQL only (on SQLite a report reads the whole file)"])
    migrate(settings.effective_database_url)
    print("reportgen: the database schema is up to date", file=sys.stderr)  # noqa: T201
    if role is not None:
        asyncio.run(_create_reporting_role(settings, role, schemas))
        print(f"reportgen: role {role} may read {', '.join(schemas)} and none of reportgen's tables", file=sys.stderr)  # noqa: T201


async def _create_reporting_role(settings: Settings, role: str, schemas: list[str]) -> None:
    from infrastructure.persistence.engine import create_engine
    from infrastructure.persistence.reporting_role import create_role

    engine = create_engine(settings.effective_database_url)
    try:
        await create_role(engine, role, schemas)
    finally:
        await engine.dispose()


def _check(settings: Settings, args: argparse.Namespace) -> None:
    from bootstrap.check import describe

    lines, refused = asyncio.run(describe(settings))
    print("\n".join(lines))  # noqa: T201
    if refused:
        raise SystemExit(1)


def _token(settings: Settings, args: argparse.Namespace) -> None:
    from api.auth import issue_token
    from bootstrap.embedded import with_dev_secret
    from bootstrap.web import jwt_settings
    from settings import SettingsError

    settings = with_dev_secret(settings)
    if not settings.jwt_secret:
        raise SettingsError(["REPORTGEN_JWT_SECRET: `reportgen token` signs with the HS256 secret; none is set"])
    print(issue_token(jwt_settings(settings), args.sub, args.role, args.ttl))  # noqa: T201


_COMMANDS = {"serve": _serve, "worker": _worker, "migrate": _migrate, "token": _token, "check": _check}

if __name__ == "__main__":
    sys.exit(main())
