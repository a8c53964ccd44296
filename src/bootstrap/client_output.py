"""How the client commands show things: rich tables and progress bars on a terminal; tab-separated lines, JSON or
nothing but the result elsewhere."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from reportgen_client import Job
from reportgen_client.download import ProgressCallback


@dataclass
class Output:
    """Where results (stdout) and messages (stderr) go. `live` (stdout and stderr are terminals, neither `--quiet`
    nor `--json`): progress bars and coloured tables; otherwise only the result, plainly."""

    json: bool
    quiet: bool

    def __post_init__(self) -> None:
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)
        self.live = not (self.json or self.quiet) and self.out.is_terminal and self.err.is_terminal

    def result(self, text: str) -> None:
        """The command's answer (a file's path): always on stdout, except with `--quiet`."""
        if not self.quiet:
            print(text, flush=True)  # noqa: T201 - the result, as plain text for scripts

    def document(self, value: Any) -> None:
        """`--json`'s answer."""
        print(json.dumps(value, ensure_ascii=False, indent=2 if self.out.is_terminal else None), flush=True)  # noqa: T201

    def message(self, text: str) -> None:
        """A note for the person at the terminal (nothing when quiet or not on a terminal)."""
        if self.live:
            self.err.print(text)

    def error(self, text: str) -> None:
        """Why the command failed: always, on stderr."""
        print(f"reportgen: {text}", file=sys.stderr, flush=True)  # noqa: T201

    def table(self, title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A rich table on a terminal; tab-separated lines (header first) when stdout is a pipe or a file. The first
        column is an id."""
        if not self.out.is_terminal:
            for row in (header, *rows):
                print("\t".join(cell.replace("\t", " ") for cell in row))  # noqa: T201
            return
        table = Table(title=title, title_justify="left", highlight=False, box=box.SIMPLE_HEAD)
        widest_id = max((len(row[0]) for row in rows), default=0)
        table.add_column(header[0], no_wrap=True, min_width=widest_id)  # an id is copied whole, never cut
        for name in header[1:]:
            table.add_column(name)
        for row in rows:
            table.add_row(*row)
        self.out.print(table)

    @contextmanager
    def job_progress(self, title: str) -> Iterator[ProgressOfJob]:
        """A bar that follows the job's `progress` (0-100) and shows its status."""
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
        with Progress(*columns, TimeElapsedColumn(), console=self.err, disable=not self.live) as progress:
            task = progress.add_task(title, total=100)

            def update(job: Job) -> None:
                progress.update(task, completed=job.progress, description=f"{title} [bold]{job.status}[/]")

            yield ProgressOfJob(progress, update)

    @contextmanager
    def byte_progress(self, title: str) -> Iterator[ProgressCallback]:
        """A bar of the bytes downloaded, with the speed and the time left."""
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, TimeRemainingColumn(), console=self.err, disable=not self.live) as progress:
            task = progress.add_task(title, total=None)

            def update(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            yield update


@dataclass
class ProgressOfJob:
    progress: Progress
    update: Callable[[Job], None]

    def pause(self) -> None:
        """Stop drawing (to ask a question on the terminal)."""
        self.progress.stop()
