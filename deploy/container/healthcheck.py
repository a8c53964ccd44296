"""The image's HEALTHCHECK (standard library only: no curl in the image). It finds the container's reportgen process:
`serve` is healthy when GET /health/ready on its --host and --port answers 200; `worker` when its metrics endpoint
(REPORTGEN_WORKER_METRICS_PORT, 9464) answers, or, with that port 0, while it runs. Exit status 0 healthy, 1 not."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def reportgen_argv() -> list[str]:
    """The arguments after `reportgen` of the container's serve or worker process (its own PID namespace)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process is gone
            continue
        for i, arg in enumerate(argv[:-1]):
            if Path(arg).name == "reportgen" and argv[i + 1] in ("serve", "worker"):
                return argv[i + 1 :]
    return []


def option(argv: list[str], name: str, default: str) -> str:
    """The last value of `--name value` or `--name=value`, as argparse takes it."""
    value = default
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
    return value


def probe_url(argv: list[str]) -> str | None:
    if argv[0] == "worker":
        port = os.environ.get("REPORTGEN_WORKER_METRICS_PORT", "9464")
        return None if port == "0" else f"http://127.0.0.1:{port}/metrics"
    host = option(argv, "--host", "127.0.0.1")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 (where to connect)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{option(argv, '--port', '8000')}/health/ready"


def main() -> int:
    argv = reportgen_argv()
    if not argv:
        print("no reportgen serve or worker process", file=sys.stderr)  # noqa: T201
        return 1
    url = probe_url(argv)
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 (a loopback URL built above)
            return 0 if response.status == 200 else 1
    except OSError as exc:  # refused, timed out, or an HTTP error status (HTTPError is an OSError)
        print(f"{url}: {exc}", file=sys.stderr)  # noqa: T201
        return 1


if __name__ == "__main__":
    sys.exit(main())
