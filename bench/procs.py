"""Child processes of a run: start with a log file, stop by pid, and read the kernel's figures about them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL after `timeout`; only this process (servers stop their own children)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def memory_kb(self, field: str = "VmHWM") -> int:
        """A `/proc/<pid>/status` figure in kB: VmHWM is the peak resident set size, VmRSS the current one."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise LookupError(f"{field} not in /proc/{self.pid}/status")

    def tree_cpu_seconds(self) -> float:
        """User + system CPU time of this process and its live descendants (granian's workers)."""
        return sum(_cpu_seconds(pid) for pid in _descendants(self.pid) | {self.pid})


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (those that have exited count 0)."""
    return sum(_cpu_seconds(pid) for pid in pids)


def start(name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    number = len(list(log_dir.glob(f"{name}*.log")))
    log = log_dir / (f"{name}.log" if number == 0 else f"{name}-{number}.log")
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd)  # noqa: S603
    return Proc(name, popen, log)


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd on; the name may hold spaces


def _cpu_seconds(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except (OSError, ValueError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
            except (OSError, ValueError, IndexError):
                continue
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
