"""Errors and warnings in the logs of the processes of a run (JSON lines from structlog, plain text otherwise)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ERROR_LEVELS = {"error", "critical", "exception", "fatal"}
SAMPLES = 5


def _level(line: str) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        return str(record.get("level") or record.get("log_level") or "").lower() or None
    upper = line.upper()
    if "TRACEBACK" in upper or "ERROR" in upper or "EXCEPTION" in upper:
        return "error"
    return "warning" if "WARNING" in upper else None


def scan(log_dir: Path) -> dict[str, dict[str, Any]]:
    """Per log file: how many lines are errors and warnings, and the first few error lines as evidence."""
    found: dict[str, dict[str, Any]] = {}
    for log in sorted(log_dir.glob("*.log")):
        errors, warnings, samples = 0, 0, list[str]()
        for line in log.read_text(errors="replace").splitlines():
            level = _level(line)
            if level in ERROR_LEVELS:
                errors += 1
                if len(samples) < SAMPLES:
                    samples.append(line[:500])
            elif level == "warning":
                warnings += 1
        found[log.stem] = {"errors": errors, "warnings": warnings, "error_samples": samples, "path": str(log)}
    return found
