"""The systemd units and the example environment file under deploy/: valid, hardened, and in step with Settings."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from infrastructure.object_store import AWS_VARIABLES
from settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
VENV_BIN = "/opt/reportgen/venv/bin/reportgen"
UNITS = ("reportgen-api.service", "reportgen-worker.service", "reportgen-worker@.service")
WORKER_UNITS = UNITS[1:]
SETTINGS_SOURCE = Path(__file__).resolve().parents[2] / "src" / "settings" / "__init__.py"


def service(unit: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(DEPLOY / unit)
    return parser["Service"]


def env_example() -> dict[str, str]:
    """Every variable of the example file, commented out or not, with its value."""
    text = (DEPLOY / "reportgen.env.example").read_text()
    return dict(re.findall(r"^#?([A-Z][A-Z0-9_]+)=(.*)$", text, flags=re.MULTILINE))


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s?", value)
    assert match, f"write {value!r} in plain seconds"
    return float(match.group(1))


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    fake = tmp_path / "reportgen"  # verify insists that ExecStart's program exists
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    for unit in UNITS:
        (tmp_path / unit).write_text((DEPLOY / unit).read_text().replace(VENV_BIN, str(fake)))

    names = ["reportgen-api.service", "reportgen-worker.service", "reportgen-worker@9465.service"]
    verified = subprocess.run(
        [analyze, "verify", *names], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )

    complaints = [line for line in (verified.stdout + verified.stderr).splitlines() if "reportgen" in line]
    assert (verified.returncode, complaints) == (0, [])


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_is_restarted_and_confined(unit: str) -> None:
    svc = service(unit)

    assert {key: svc.get(key) for key in REQUIRED} == REQUIRED
    assert svc["ExecStart"].endswith(("reportgen serve --host 0.0.0.0 --port 8000 --workers 2", "reportgen worker"))


REQUIRED = {
    "User": "reportgen",
    "Group": "reportgen",
    "EnvironmentFile": "/etc/reportgen/reportgen.env",
    "Restart": "on-failure",
    "KillSignal": "SIGTERM",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
}


def test_the_api_migrates_before_it_starts_and_writes_nothing() -> None:
    svc = service("reportgen-api.service")

    assert svc["ExecStartPre"] == f"{VENV_BIN} migrate"
    assert "ReadWritePaths" not in svc


@pytest.mark.parametrize("unit", WORKER_UNITS)
def test_workers_may_write_the_artifact_directory_and_finish_jobs_before_they_are_killed(unit: str) -> None:
    svc = service(unit)

    assert svc["ReadWritePaths"] == env_example()["REPORTGEN_ARTIFACT_DIR"]
    grace = Settings.from_env({}).shutdown_grace_seconds
    assert seconds(svc["TimeoutStopSec"]) >= grace + 15, "time to hand the remaining jobs back after the grace"


def test_the_worker_template_differs_from_the_worker_only_in_its_metrics_port() -> None:
    plain, template = service("reportgen-worker.service"), service("reportgen-worker@.service")

    assert dict(plain) | {"ExecStart": ""} == dict(template) | {"ExecStart": ""}
    assert template["ExecStart"] == f"/usr/bin/env REPORTGEN_WORKER_METRICS_PORT=%i {VENV_BIN} worker"


def test_the_example_environment_names_only_real_settings_and_loads() -> None:
    variables = env_example()
    known = {f"REPORTGEN_{name}" for name in re.findall(r'reader\.\w+\(\s*"([A-Z_]+)"', SETTINGS_SOURCE.read_text())}
    known |= AWS_VARIABLES  # the object store's, read as the AWS SDKs read them
    active = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in (DEPLOY / "reportgen.env.example").read_text().splitlines()
        if re.match(r"[A-Z]", line)
    }

    assert set(variables) <= known
    settings = Settings.from_env(active)
    assert not settings.embedded
    assert settings.log_format == "json"
