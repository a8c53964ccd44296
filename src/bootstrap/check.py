"""`reportgen check`: what the running configuration allows, in lines an operator reads."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from application.errors import StorageUnavailable
from bootstrap.container import open_container
from bootstrap.embedded import uses_dev_secret
from infrastructure.formats import OPTIONAL_ENCODERS, installed_encoders
from infrastructure.persistence.reporting_role import inspect
from settings import Settings


async def describe(settings: Settings) -> tuple[list[str], bool]:
    """The lines to print, and whether a worker would refuse to run reports with this configuration."""
    mode = "embedded (jobs run in the API process)" if settings.embedded else "production (arq workers, Redis)"
    reporting = settings.reporting_database_url
    lines = [
        f"mode: {mode}",
        f"database: {_safe(settings.effective_database_url)}",
        f"reporting database: {_safe(reporting) if reporting else 'the service database'}",
        *_token_lines(settings),
        f"limits: report {settings.report_timeout_seconds:g} s; request body {settings.max_body_bytes} bytes; "
        f"{settings.max_active_jobs_per_user or 'unlimited'} active jobs per user by default",
        f"service statements (PostgreSQL): lock wait {settings.database_lock_timeout_seconds:g} s, statement "
        f"{settings.database_statement_timeout_seconds:g} s, pool {settings.database_pool_size} connections "
        f"(wait {settings.database_pool_timeout_seconds:g} s)",
        _format_line(),
    ]
    refused = False
    async with open_container(settings, registry=CollectorRegistry()) as container:
        try:
            report = await inspect(container.reporting_engine, container.engine)
        except StorageUnavailable as exc:
            lines.append(f"reports: not checked: {exc}")
            return lines, True
    if report is None:
        lines.append("reports: read the whole SQLite file, reportgen's own tables (every user's jobs) included")
    elif not report.privileged:
        lines.append(f"reports: run as {report.role} on {report.database}, which may only read")
    else:
        allowed = settings.allow_privileged_reports
        verdict = "run anyway (REPORTGEN_ALLOW_PRIVILEGED_REPORTS=true)" if allowed else "refused by workers"
        lines.append(f"reports: run as {report.role} on {report.database}: {verdict}")
        lines += [f"  - {problem}" for problem in report.problems]
        refused = not allowed
    return lines, refused


def _format_line() -> str:
    installed = installed_encoders()
    missing = [
        f"{name} (needs the {extra} extra)" for name, (_, extra) in OPTIONAL_ENCODERS.items() if name not in installed
    ]
    return f"formats: {', '.join(installed)}" + (f"; not installed: {', '.join(missing)}" if missing else "")


def _token_lines(settings: Settings) -> list[str]:
    if settings.uses_jwks:
        source = settings.jwt_jwks_url or f"the discovery document of {settings.jwt_issuer}"
        keys = f"tokens: RS256/ES256 with the identity provider's keys (by kid) from {source}"
        if settings.jwt_secret:
            keys += ", and HS256 with REPORTGEN_JWT_SECRET"
    elif settings.jwt_public_key:
        keys = "tokens: RS256/ES256, verified with the configured public key"
    elif uses_dev_secret(settings):
        keys = f"tokens: HS256 with the development secret in {settings.dev_secret_file}"
    else:
        keys = "tokens: HS256 with REPORTGEN_JWT_SECRET"
    issuer = settings.jwt_issuer or "any (not checked)"
    audience = settings.jwt_audience or "any (not checked)"
    return [keys, f"token issuer: {issuer}; audience: {audience}"]


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
