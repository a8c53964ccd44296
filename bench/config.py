"""Command line of `python -m bench` and what each mode runs."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

PARTS = ("generate", "status", "pipeline", "bigreport", "joblist", "wait", "objectstore", "scaling")


@dataclass(frozen=True)
class Options:
    parts: tuple[str, ...]
    quick: bool
    duration: int
    """Seconds of each measured wrk run."""
    warmup: int
    concurrencies: tuple[int, ...]
    api_workers: int
    pipeline_jobs: int
    big_rows: tuple[int, ...]
    artifact_bytes: int
    """Size of the large artifact of the object-store part (1 GiB; quick: 64 MiB)."""
    """Row counts of the big report, smallest first: memory must stay flat from the first to the last."""
    worker_during_load: bool
    """Keep `reportgen worker` running during the HTTP load (for both apps); stopped by default."""
    noise_budget: float
    """Seconds the run may spend waiting for others to be quiet and measuring disturbed runs again."""
    service_env: dict[str, str]
    """REPORTGEN_* overrides for every service process (`--set`), for experiments."""
    backlog: int
    """Queued jobs of the single client before its second run at each concurrency."""
    warning_run: bool
    """Also run a second `reportgen serve` at log level WARNING in the many-users case, for the logging's cost."""
    rounds: int
    """Many-users case: runs of each app, taken in turn; the figures are those of each app's median run."""


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description="reportgen against the floor (see README)")
    parser.add_argument("--quick", action="store_true", help="short runs for a smoke test (figures are not targets)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of: {', '.join(PARTS)}")
    parser.add_argument("--duration", type=int, help="seconds per measured wrk run (10; quick: 3)")
    parser.add_argument("--workers", type=int, default=2, help="API processes of both servers (2)")
    parser.add_argument(
        "--worker-during-load",
        action="store_true",
        help="keep reportgen's worker running during the HTTP load (it then drains both apps' jobs)",
    )
    parser.add_argument("--backlog", type=int, help="the single client's Queued backlog (20000; quick: 2000)")
    parser.add_argument(
        "--no-warning-run", action="store_true", help="skip the reportgen at log level WARNING beside the default"
    )
    parser.add_argument(
        "--rounds", type=int, help="many-users case: runs of each app in turn, the median kept (3; quick: 1)"
    )
    parser.add_argument(
        "--noise-budget",
        type=float,
        help="seconds to spend at most on waiting for a quiet machine and re-measuring disturbed runs (120; quick: 20)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="REPORTGEN_X=VALUE",
        help="an environment variable for the service processes (repeatable), e.g. REPORTGEN_WORKER_CONCURRENCY=20",
    )
    args = parser.parse_args(argv)
    service_env = dict(item.partition("=")[::2] for item in args.set)
    if any(not key.startswith("REPORTGEN_") for key in service_env):
        parser.error("--set takes REPORTGEN_NAME=VALUE")
    parts = tuple(part.strip() for part in args.only.split(",") if part.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        parser.error(f"--only: unknown part(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(PARTS)}")
    quick = bool(args.quick)
    return Options(
        parts=tuple(part for part in PARTS if part in parts),
        quick=quick,
        duration=args.duration or (3 if quick else 10),
        warmup=1 if quick else 3,
        concurrencies=(16, 64),
        api_workers=args.workers,
        pipeline_jobs=300 if quick else 2000,
        big_rows=(10_000, 100_000) if quick else (100_000, 1_000_000),
        artifact_bytes=(64 if quick else 1024) << 20,
        worker_during_load=bool(args.worker_during_load),
        noise_budget=args.noise_budget if args.noise_budget is not None else 20 if quick else 120,
        service_env=service_env,
        backlog=args.backlog if args.backlog is not None else 2_000 if quick else 20_000,
        warning_run=not args.no_warning_run,
        rounds=args.rounds or (1 if quick else 3),
    )
