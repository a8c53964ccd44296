"""The floor: generate and status with the same I/O as reportgen and no layers (raw asyncpg, raw arq, python-jose).

generate = verify the JWT, SELECT the report, INSERT the job row (same table, same columns), `enqueue_job` to arq
(same function, arq job id and queue as reportgen), 202 with the same body shape. status = verify + one SELECT.
Deliberately naive: two autocommit statements, no caches. Served like reportgen: granian, ASGI, same workers.
`python -m bench.floor_app --port N --workers 2`, configured by the same REPORTGEN_* variables.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg  # type: ignore[import-untyped]
from arq.connections import ArqRedis
from jose import JWTError, jwt
from litestar import Litestar, Request, Response, get, post

JOB_FUNCTION = "run_report_job"  # what reportgen's worker runs; the arq job id is "<job id>:<attempt>"
TERMINAL = ("Succeeded", "Failed", "Cancelled")
SELECT_REPORT = "SELECT * FROM reports WHERE id = $1 AND deleted_at IS NULL"
SELECT_JOB = "SELECT * FROM jobs WHERE id = $1"
INSERT_JOB = """INSERT INTO jobs (id, report_id, owner_id, report_name, query, format, parameters, parameter_types,
    status, progress, attempts, created_at, started_at, finished_at, error_code, error_message, artifact_key,
    artifact_size, artifact_sha256, request_id, version, lease_expires_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, 'Queued', 0, 0, $9, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    $10, 0, NULL, NULL)"""
ENV = os.environ
STATE: dict[str, Any] = {}


def claims(request: Request[Any, Any, Any]) -> dict[str, Any]:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return {}
    try:
        decoded: dict[str, Any] = jwt.decode(
            token,
            ENV["REPORTGEN_JWT_SECRET"],
            algorithms=["HS256"],
            audience=ENV.get("REPORTGEN_JWT_AUDIENCE"),
            issuer=ENV.get("REPORTGEN_JWT_ISSUER"),
            options={"require_sub": True, "require_exp": True},
        )
    except JWTError:
        return {}
    return decoded


def problem(status: int, title: str) -> Response[Any]:
    return Response({"title": title, "status": status}, status_code=status, media_type="application/problem+json")


def urls(request: Request[Any, Any, Any], job_id: UUID) -> dict[str, str]:
    status_url = f"{str(request.base_url).rstrip('/')}/api/v1/jobs/{job_id}"
    return {"statusUrl": status_url, "resultUrl": f"{status_url}/result"}


def resolve(report: asyncpg.Record, body: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    """(format, parameter values, parameter types), or None when the request does not fit the report."""
    formats, given = json.loads(report["formats"]), body.get("parameters") or {}
    fmt = body.get("format") or formats[0]
    declared = json.loads(report["parameters"])
    if fmt not in formats or set(given) - {p["name"] for p in declared}:
        return None
    values = {p["name"]: given.get(p["name"], p["default"]) for p in declared}
    return fmt, values, {p["name"]: p["type"] for p in declared}


@post("/api/v1/reports/{report_id:uuid}/generate", status_code=202)
async def generate(request: Request[Any, Any, Any], report_id: UUID) -> Response[Any]:
    user = claims(request)
    if not user:
        return problem(401, "Unauthorized")
    body = json.loads(await request.body() or b"{}")
    report = await STATE["db"].fetchrow(SELECT_REPORT, report_id)
    if report is None:
        return problem(404, "Report not found")
    resolved = resolve(report, body)
    if resolved is None or not report["async_enabled"] or report["delivery_target"] != "API_RESPONSE":
        return problem(422, "Invalid request")
    fmt, values, types = resolved
    job_id, now = uuid4(), datetime.now(UTC)
    row = (job_id, report_id, user["sub"], report["name"], report["query"], fmt, json.dumps(values), json.dumps(types))
    await STATE["db"].execute(INSERT_JOB, *row, now, uuid4().hex)
    await STATE["redis"].enqueue_job(
        JOB_FUNCTION, str(job_id), _job_id=f"{job_id}:1", _queue_name=ENV["REPORTGEN_QUEUE_NAME"]
    )
    links = urls(request, job_id)
    headers = {"Location": links["statusUrl"], "Retry-After": "2"}
    return Response({"jobId": job_id, "status": "Queued", **links}, status_code=202, headers=headers)


@get("/api/v1/jobs/{job_id:uuid}")
async def status(request: Request[Any, Any, Any], job_id: UUID) -> Response[Any]:
    user = claims(request)
    if not user:
        return problem(401, "Unauthorized")
    job = await STATE["db"].fetchrow(SELECT_JOB, job_id)
    if job is None or (job["owner_id"] != user["sub"] and "admin" not in user.get("roles", [])):
        return problem(404, "Job not found")
    error = None if job["error_code"] is None else {"code": job["error_code"], "message": job["error_message"]}
    body = {
        "jobId": job["id"],
        "reportId": job["report_id"],
        "status": job["status"],
        "progress": job["progress"],
        "format": job["format"],
        "parameters": json.loads(job["parameters"]),
        "attempts": job["attempts"],
        "createdAt": job["created_at"],
        "startedAt": job["started_at"],
        "finishedAt": job["finished_at"],
        "expiresAt": job["expires_at"],
        "error": error,
        **urls(request, job_id),
    }
    return Response(body, headers={} if job["status"] in TERMINAL else {"Retry-After": "2"})


@get("/ready")
async def ready() -> str:
    return "ready"


async def startup() -> None:
    database_url = ENV["REPORTGEN_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    STATE["db"] = await asyncpg.create_pool(database_url, min_size=1, max_size=15)  # SQLAlchemy's 5 + 10 overflow
    STATE["redis"] = ArqRedis.from_url(ENV["REPORTGEN_REDIS_URL"])


async def shutdown() -> None:
    await STATE["db"].close()
    await STATE["redis"].aclose()


def create_app() -> Litestar:
    return Litestar([generate, status, ready], on_startup=[startup], on_shutdown=[shutdown])


def main() -> None:
    from granian.constants import Interfaces
    from granian.server import Server

    parser = argparse.ArgumentParser(prog="python -m bench.floor_app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    Server(
        "bench.floor_app:create_app",
        address="127.0.0.1",
        port=args.port,
        workers=args.workers,
        interface=Interfaces.ASGI,
        factory=True,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
