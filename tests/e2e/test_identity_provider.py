"""`reportgen serve` verifying tokens with an identity provider's keys, found by OIDC discovery on a local provider."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Deployment, _base_env
from tests.jwks_provider import IdentityProvider, SigningKey
from tests.loopback import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_serve_takes_its_keys_from_the_identity_provider(tmp_path: Path) -> None:
    key, forged = SigningKey.ec("idp-1"), SigningKey.ec("idp-forged")
    provider = IdentityProvider(keys=[key]).start()
    port = free_port()
    env = _base_env(tmp_path) | {
        "REPORTGEN_JWT_ISSUER": provider.issuer,
        "REPORTGEN_JWT_OIDC_DISCOVERY": "true",
        "REPORTGEN_DEMO": "false",
    }
    deployment = Deployment(f"http://127.0.0.1:{port}", env, tmp_path)
    deployment.start("embedded", "serve", "--port", str(port))
    try:
        deployment.wait_ready(timeout=60)  # ready once the keys are in
        now = int(time.time())
        claims = {"sub": "erin", "iss": provider.issuer, "iat": now, "exp": now + 300}
        reports = f"{deployment.base_url}/api/v1/reports"
        good = httpx.get(reports, headers={"Authorization": f"Bearer {key.sign(claims)}"})
        bad = httpx.get(reports, headers={"Authorization": f"Bearer {forged.sign(claims)}"})

        assert good.status_code == 200, good.text
        assert bad.status_code == 401
        assert bad.headers["content-type"] == "application/problem+json"
        assert not (tmp_path / "var" / "dev-jwt-secret").exists(), "no development secret beside the provider's keys"
        assert provider.requests[:2] == [
            "/realms/test/.well-known/openid-configuration",
            "/realms/test/protocol/openid-connect/certs",
        ]
    finally:
        deployment.stop_all()
        provider.stop()
