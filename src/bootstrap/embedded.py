"""The embedded, single-process mode: a dev secret under ./var, demo data, and a banner a new user can paste from."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
from dataclasses import replace

from settings import Settings

DEV_USER = "dev"
DEV_TOKEN_TTL_SECONDS = 86_400


def uses_dev_secret(settings: Settings) -> bool:
    """Whether tokens are signed with the development secret under var/: embedded mode with no key configured."""
    return settings.embedded and not (settings.jwt_secret or settings.jwt_public_key or settings.uses_jwks)


def with_dev_secret(settings: Settings) -> Settings:
    """In embedded mode without a configured key, use (and on first start create) a secret kept under var/."""
    if not uses_dev_secret(settings):
        return settings
    path = settings.dev_secret_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return replace(settings, jwt_secret=path.read_text().strip())


def banner(settings: Settings, base_url: str, token: str | None, report_id: str) -> str:
    """What `reportgen serve` prints at start in embedded mode: where it runs, a token (None when the operator
    configured a key: then no token is minted, and the banner says how to get one), and curl commands."""
    auth = '-H "Authorization: Bearer $TOKEN"'
    body = shlex.quote('{"parameters": {"region": "EU"}, "format": "csv"}')
    if token is None:
        get_token = [
            "Try it in another terminal, with a token your configured key signs (with REPORTGEN_JWT_SECRET:",
            f"reportgen token --sub {DEV_USER} --role admin):",
            "",
            "export TOKEN=<your token>",
        ]
    else:
        get_token = [
            f"Try it in another terminal (a development token: user '{DEV_USER}', role admin, valid 24 h):",
            "",
            f"export TOKEN={token}",
        ]
    return "\n".join(
        [
            "",
            f"reportgen is running in embedded mode at {base_url}",
            f"  database: {settings.effective_database_url}",
            f"  artifacts: {settings.artifact_url or settings.artifact_dir.resolve()}",
            f"  API docs: {base_url}/schema    metrics: {base_url}/metrics",
            "",
            *get_token,
            f"JOB=$(curl -s -X POST {base_url}/api/v1/reports/{report_id}/generate {auth} \\",
            f"  -H 'Content-Type: application/json' -d {body} \\",
            "  | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"jobId\"])')",
            f"curl -s {base_url}/api/v1/jobs/$JOB {auth}",
            f"curl -s {base_url}/api/v1/jobs/$JOB/result {auth}",
            "",
            f"All demo reports: curl -s {base_url}/api/v1/reports {auth}",
            "",
        ]
    )
