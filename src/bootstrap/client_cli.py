"""The client commands of `reportgen`: reports, jobs, run, download, over `reportgen_client.Client`.

Exit status: 0 when the command did what it was asked (`run`: the job Succeeded and its file is complete); 1 when
the job Failed or was Cancelled, or the server refused or could not be reached (the reason on stderr); 2 for a
mistake on the command line (or no token); 130 when interrupted (Ctrl-C)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

from rich.prompt import Confirm

from bootstrap.client_output import Output
from reportgen_client import TOKEN_ENV, URL_ENV, Client, ConfigurationError, Job, Report, ReportgenError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
STATUSES = ("Queued", "Running", "Succeeded", "Failed", "Cancelled")
MAX_PAGE = 100


class UsageError(Exception):
    """A command line the server need not see to refuse."""


class Interrupted(Exception):
    """Ctrl-C, after what it did to the job has been said."""


def add_client_commands(commands: Any) -> None:
    """Add `reports`, `jobs`, `run` and `download` to the `reportgen` parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the server (default: ${URL_ENV}, else http://127.0.0.1:8000)")
    common.add_argument("--token", help=f"a bearer token (default: ${TOKEN_ENV})")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars or messages, only the result")
    common.add_argument("--json", action="store_true", help="machine-readable output (the API's JSON bodies)")
    commands.add_parser("reports", parents=[common], help="list the reports you may generate (a table)")
    jobs = commands.add_parser("jobs", parents=[common], help="list your jobs, newest first (a table)")
    jobs.add_argument("--status", action="append", choices=STATUSES, default=[], help="repeatable")
    jobs.add_argument("--report", metavar="REPORT_ID", help="one report's jobs")
    jobs.add_argument("--owner", metavar="USER_ID", help="one user's jobs (admins)")
    jobs.add_argument("--created-after", metavar="TIME", help="RFC 3339, e.g. 2026-12-01T00:00:00Z")
    jobs.add_argument("--created-before", metavar="TIME")
    jobs.add_argument("--limit", type=int, default=20, help="how many jobs to show (default 20; 0: all)")
    run = commands.add_parser("run", parents=[common], help="generate a report, follow the job, download the result")
    run.add_argument("report_id", metavar="REPORT_ID")
    run.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="a report parameter (repeatable)"
    )
    run.add_argument("--format", help="an output format of the report (default: the report's first)")
    run.add_argument("-o", "--output", metavar="FILE", help="where to write the result (default: its file name)")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after this long")
    download = commands.add_parser("download", parents=[common], help="download a job's result (resumable)")
    download.add_argument("job_id", metavar="JOB_ID")
    download.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: its file name)")


def run_client_command(args: argparse.Namespace) -> int:
    output = Output(json=args.json, quiet=args.quiet)
    try:
        with Client(args.url, args.token) as client:
            return _COMMANDS[args.command](client, args, output)
    except UsageError as exc:
        output.error(f"{args.command}: {exc}")
        return EXIT_USAGE
    except ConfigurationError as exc:
        output.error(str(exc))
        return EXIT_USAGE
    except ReportgenError as exc:
        output.error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        output.error("interrupted")
        return EXIT_INTERRUPTED
    except Interrupted:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `reportgen jobs | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return EXIT_FAILED


def _reports(client: Client, args: argparse.Namespace, output: Output) -> int:
    reports = client.reports()
    if output.json:
        output.document([report.raw for report in reports])
        return EXIT_OK
    rows = [(r.id, r.name, ", ".join(r.formats), _parameters(r), r.description) for r in reports]
    output.table("Reports", ("ID", "Name", "Formats", "Parameters", "Description"), rows)
    return EXIT_OK


def _parameters(report: Report) -> str:
    return ", ".join(
        f"{p.name}: {p.type}" + ("" if p.default is None else f" = {p.default}") + (" (required)" if p.required else "")
        for p in report.parameters
    )


def _jobs(client: Client, args: argparse.Namespace, output: Output) -> int:
    if args.limit < 0:
        raise UsageError("--limit: 0 (all) or more")
    found = client.jobs(
        status=args.status,
        report_id=args.report,
        owner_id=args.owner,
        created_after=args.created_after,
        created_before=args.created_before,
        page_size=min(args.limit or MAX_PAGE, MAX_PAGE),
    )
    jobs = list(islice(found, args.limit or None))
    if output.json:
        output.document([job.raw for job in jobs])
        return EXIT_OK
    names = {report.id: report.name for report in client.reports()} if jobs else {}
    header = ("Job ID", "Report", "Status", "Progress", "Format", "Created (UTC)", "Error")  # --json: the messages
    output.table("Jobs, newest first", header, [_job_row(job, names) for job in jobs])
    return EXIT_OK


def _job_row(job: Job, report_names: dict[str, str]) -> tuple[str, ...]:
    created = job.created_at.strftime("%Y-%m-%d %H:%M:%S")
    report = report_names.get(job.report_id, job.report_id)
    return (
        job.job_id,
        report,
        job.status,
        f"{job.progress}%",
        job.format,
        created,
        job.error.code if job.error else "",
    )


def _run(client: Client, args: argparse.Namespace, output: Output) -> int:
    report = client.report(args.report_id)
    submitted = client.submit(report.id, typed_parameters(report, args.param), args.format)
    output.message(f"Job {submitted.job_id}" + (" (submitted before: the same job)" if submitted.replayed else ""))
    job = _follow(client, submitted.job_id, report.name, args.timeout, output)
    if job.status != "Succeeded":
        if output.json:
            output.document(job.raw)
        reason = "" if job.error is None else f": {job.error.code}: {job.error.message}"
        output.error(f"job {job.job_id} {job.status}{reason}")
        return EXIT_FAILED
    path = _download(client, job.job_id, args.output, output)
    if output.json:
        output.document({**job.raw, "file": str(path)})
    else:
        output.result(str(path))
    return EXIT_OK


def _follow(client: Client, job_id: str, title: str, timeout: float | None, output: Output) -> Job:
    """Wait for the job with a progress bar; Ctrl-C asks (on a terminal) whether to cancel it."""
    with output.job_progress(title) as bar:
        try:
            return client.wait_for(job_id, timeout=timeout, on_update=bar.update)
        except KeyboardInterrupt:
            bar.pause()
            _offer_cancel(client, job_id, output)
            raise Interrupted from None


def _offer_cancel(client: Client, job_id: str, output: Output) -> None:
    if sys.stdin.isatty() and output.err.is_terminal:
        try:
            cancel = Confirm.ask(f"Cancel job {job_id}?", default=False, console=output.err)
        except (KeyboardInterrupt, EOFError):
            cancel = False
        if cancel:
            job = client.cancel(job_id)
            output.error(f"job {job_id} {job.status}")
            return
    output.error(f"job {job_id} keeps running; `reportgen download {job_id}` fetches its result once it is done")


def _download(client: Client, job_id: str, path: str | None, output: Output) -> str:
    """The result to `path` (or its own name); Ctrl-C keeps what arrived, for the same command to resume."""
    try:
        with output.byte_progress("Downloading") as on_progress:
            return str(client.download(job_id, path, on_progress=on_progress))
    except KeyboardInterrupt:
        again = f"reportgen download {job_id}" + ("" if path is None else f" -o {path}")
        output.error(f"download interrupted; `{again}` resumes it")
        raise Interrupted from None


def _download_command(client: Client, args: argparse.Namespace, output: Output) -> int:
    path = _download(client, args.job_id, args.output, output)
    if output.json:
        output.document({"jobId": args.job_id, "file": path})
    else:
        output.result(path)
    return EXIT_OK


_TEXT_TO_JSON: dict[str, Callable[[str], object]] = {
    "integer": int,
    "number": float,
    "boolean": lambda text: {"true": True, "false": False}[text.lower()],
}


def typed_parameters(report: Report, pairs: Sequence[str]) -> dict[str, object]:
    """`-p NAME=VALUE` as the JSON values the report's parameter types call for (a date and a string stay text;
    a name the report does not declare is sent as text, for the server to name in its answer)."""
    types = {p.name: p.type for p in report.parameters}
    values: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"-p {pair}: write NAME=VALUE")
        kind = types.get(name, "string")
        try:
            values[name] = _TEXT_TO_JSON.get(kind, str)(text)
        except (ValueError, KeyError):
            raise UsageError(f"-p {pair}: {name} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}") from None
    return values


_COMMANDS: dict[str, Callable[[Client, argparse.Namespace, Output], int]] = {
    "reports": _reports,
    "jobs": _jobs,
    "run": _run,
    "download": _download_command,
}
CLIENT_COMMANDS = frozenset(_COMMANDS)
