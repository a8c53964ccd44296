"""The docs page at /schema renders in a real browser with no internet: Swagger UI comes from the installed package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import httpx
import pytest

from tests.e2e.conftest import Deployment, Process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def chromium() -> str:
    """The headless browser; CI (.ci/run) installs it, elsewhere the test skips with the reason."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("REPORTGEN_REQUIRE_SERVICES") == "1":
            pytest.fail("chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")
    return found


def rendered_page(url: str) -> str:
    """The page's DOM after its scripts ran, in a browser that can reach 127.0.0.1 and nothing else."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=15000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_docs_page_renders_every_route_offline(embedded: tuple[Deployment, Process]) -> None:
    deployment, _ = embedded
    document = httpx.get(f"{deployment.base_url}/schema/openapi.json", timeout=10).json()
    routes = {(method.upper(), path) for path, item in document["paths"].items() for method in item}

    page = rendered_page(f"{deployment.base_url}/schema")

    shown = set(re.findall(r'data-path="([^"]+)"', page))
    assert "swagger-ui" in page, page[:2000]
    assert {path for _, path in routes} <= shown, sorted({path for _, path in routes} - shown)
    assert "cdn." not in page, "every asset comes from this server"
