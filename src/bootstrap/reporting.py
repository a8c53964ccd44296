"""Before a process runs reports: the reporting role may do no more than read (README, Security)."""

from __future__ import annotations

import asyncio
import logging
import time

from application.errors import StorageUnavailable
from bootstrap.container import Container
from infrastructure.persistence.reporting_role import RoleReport, inspect

log = logging.getLogger(__name__)
RETRY_SECONDS = 2.0
LOG_EVERY_SECONDS = 30.0


class PrivilegedReports(Exception):
    """The reporting role may do what a report must not, and privileged reports are not allowed: one line that says
    what and how to fix it."""


async def guard_reports(container: Container) -> RoleReport | None:
    """Check the reporting role (waiting for the database while it is unavailable): refuse a privileged one unless
    REPORTGEN_ALLOW_PRIVILEGED_REPORTS, which is then logged as a warning. None on SQLite (there is no role)."""
    report = await _inspect_when_reachable(container)
    if report is None:
        return None
    if not report.privileged:
        log.info("reports run as %s on %s, which may only read", report.role, report.database)
        return report
    problems = "; ".join(report.problems)
    if container.settings.allow_privileged_reports:
        log.warning("reports run with privileges (REPORTGEN_ALLOW_PRIVILEGED_REPORTS=true): %s", problems)
        return report
    raise PrivilegedReports(
        f"refusing to run reports: {problems}. Give REPORTGEN_REPORTING_DATABASE_URL a role that may only read "
        "(`reportgen migrate --reporting-role NAME`; README, Security), or set REPORTGEN_ALLOW_PRIVILEGED_REPORTS=true"
    )


async def _inspect_when_reachable(container: Container) -> RoleReport | None:
    last_logged = float("-inf")
    while True:
        try:
            return await inspect(container.reporting_engine, container.engine)
        except StorageUnavailable as exc:
            if time.monotonic() - last_logged >= LOG_EVERY_SECONDS:
                log.warning("the reporting role cannot be checked yet (%s); trying again", exc)
                last_logged = time.monotonic()
            await asyncio.sleep(RETRY_SECONDS)
