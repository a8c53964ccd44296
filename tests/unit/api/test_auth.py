"""Bearer JWT authentication: which tokens are accepted, the 401s and their WWW-Authenticate, the verify cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt
from litestar.testing import AsyncTestClient

from api.app import build_app
from api.auth import InvalidToken, JwtSettings, JwtVerifier, issue_token
from tests.unit.api.conftest import SECRET, Backend, Client, bearer, claims, dependencies, hs256

REPORTS = "/api/v1/reports"
INVALID = 'Bearer error="invalid_token"'


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


@pytest.fixture(scope="module")
def rsa_pem() -> tuple[str, str]:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_pem() -> tuple[str, str]:
    return _pem(ec.generate_private_key(ec.SECP256R1()))


def _none_token() -> str:
    return _unsigned({"alg": "none", "typ": "JWT"}, claims()) + "."


def _tampered_token() -> str:
    header, _, signature = hs256(claims("alice")).split(".")
    forged = _b64(json.dumps(claims("alice", roles=["admin"])).encode())
    return f"{header}.{forged}.{signature}"


BAD_TOKENS: dict[str, Callable[[tuple[str, str]], str]] = {
    "expired": lambda _: hs256(claims(exp=int(time.time()) - 120)),
    "not-yet-valid": lambda _: hs256(claims(nbf=int(time.time()) + 120)),
    "tampered": lambda _: _tampered_token(),
    "alg-none": lambda _: _none_token(),
    "hs512": lambda _: jwt.encode(claims(), SECRET, algorithm="HS512"),
    "rs256-when-hs256-configured": lambda rsa_keys: jwt.encode(claims(), rsa_keys[0], algorithm="RS256"),
    "other-secret": lambda _: jwt.encode(claims(), "another-secret-of-sufficient-length!", algorithm="HS256"),
    "wrong-issuer": lambda _: hs256(claims(iss="https://evil.test")),
    "wrong-audience": lambda _: hs256(claims(aud="another-api")),
    "no-audience": lambda _: hs256({k: v for k, v in claims().items() if k != "aud"}),
    "no-exp": lambda _: hs256({k: v for k, v in claims().items() if k != "exp"}),
    "no-sub": lambda _: hs256({k: v for k, v in claims().items() if k != "sub"}),
    "roles-not-a-list": lambda _: hs256({**claims(), "roles": "admin"}),
    "garbage": lambda _: "not.a.jwt",
    "exp-nan": lambda _: hs256(claims(exp=float("nan"))),
    "exp-infinity": lambda _: hs256(claims(exp=float("inf"))),
    "exp-beyond-a-double": lambda _: hs256(claims(exp=10**400)),
    "nbf-nan": lambda _: hs256(claims(nbf=float("nan"))),
    "iat-nan": lambda _: hs256(claims(iat=float("nan"))),
    "iat-infinity": lambda _: hs256(claims(iat=float("inf"))),  # python-jose's own check raised OverflowError
    "iat-a-string": lambda _: hs256(claims(iat="yesterday")),
    "sub-lone-surrogate": lambda _: hs256(claims("\ud800")),
    "sub-nul": lambda _: hs256(claims("al\x00ice")),
    "sub-newline": lambda _: hs256(claims("alice\nadmin")),
    "sub-too-long": lambda _: hs256(claims("a" * 256)),
    "sub-empty": lambda _: hs256(claims("")),
    "sub-a-number": lambda _: hs256(claims(7)),  # type: ignore[arg-type]
    "claims-nested-deep": lambda _: _signed(b'{"sub": "alice", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
}


def _signed(payload: bytes) -> str:
    """An HS256 token with exactly these payload bytes, correctly signed."""
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(payload)}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


async def test_missing_token_is_401_with_bare_bearer_challenge(client: Client) -> None:
    response = await client.get(REPORTS)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401


async def test_other_authorization_scheme_counts_as_no_token(client: Client) -> None:
    response = await client.get(REPORTS, headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("make_token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_bad_token_is_401_invalid_token(
    client: Client, rsa_pem: tuple[str, str], make_token: Callable[[tuple[str, str]], str]
) -> None:
    token = make_token(rsa_pem)

    response = await client.get(REPORTS, headers=bearer(token))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID
    assert response.headers["content-type"] == "application/problem+json"
    assert token not in response.text


async def test_empty_bearer_token_is_401_invalid_token(client: Client) -> None:
    response = await client.get(REPORTS, headers={"Authorization": "Bearer "})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID


async def test_token_expired_within_the_leeway_is_accepted(client: Client) -> None:
    response = await client.get(REPORTS, headers=bearer(hs256(claims(exp=int(time.time()) - 10))))

    assert response.status_code == 200


async def test_issued_token_is_accepted_with_its_roles(client: Client, jwt_settings: JwtSettings) -> None:
    token = issue_token(jwt_settings, "carol", ["admin"], ttl_seconds=60)

    response = await client.post(REPORTS, json={"name": "Mine", "query": "SELECT 1"}, headers=bearer(token))

    assert response.status_code == 201


@pytest.fixture
async def rsa_client(backend: Backend, rsa_pem: tuple[str, str]) -> AsyncIterator[Client]:
    settings = JwtSettings(public_key=rsa_pem[1], issuer=claims()["iss"], audience=claims()["aud"])
    async with AsyncTestClient(app=build_app(dependencies(backend, settings))) as test_client:
        yield test_client


async def test_rs256_token_is_accepted_when_a_public_key_is_configured(
    rsa_client: Client, rsa_pem: tuple[str, str]
) -> None:
    response = await rsa_client.get(REPORTS, headers=bearer(jwt.encode(claims(), rsa_pem[0], algorithm="RS256")))

    assert response.status_code == 200


async def test_hs256_token_signed_with_the_public_key_is_refused(rsa_client: Client, rsa_pem: tuple[str, str]) -> None:
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT"}, claims())
    signature = hmac.new(rsa_pem[1].encode(), signing_input.encode(), hashlib.sha256).digest()

    response = await rsa_client.get(REPORTS, headers=bearer(f"{signing_input}.{_b64(signature)}"))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID


def test_ec_public_key_accepts_es256_tokens_only(ec_pem: tuple[str, str], rsa_pem: tuple[str, str]) -> None:
    verifier = JwtVerifier(JwtSettings(public_key=ec_pem[1]))

    assert verifier.verify(jwt.encode(claims("dave"), ec_pem[0], algorithm="ES256")).user_id == "dave"
    for refused in (jwt.encode(claims(), rsa_pem[0], algorithm="RS256"), hs256(claims())):
        with pytest.raises(InvalidToken, match="not accepted"):
            verifier.verify(refused)


@pytest.mark.parametrize(
    "settings",
    [{}, {"public_key": "not a pem"}, {"secret": ""}],
    ids=["no-key", "bad-pem", "empty-secret"],
)
def test_jwt_settings_without_a_usable_key_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"secret|public_key"):
        JwtSettings(**settings)


def test_issue_token_needs_the_shared_secret(rsa_pem: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="secret"):
        issue_token(JwtSettings(public_key=rsa_pem[1]), "alice")


def test_cached_token_stops_being_accepted_once_it_expires() -> None:
    now = [time.time()]
    verifier = JwtVerifier(JwtSettings(secret=SECRET, leeway_seconds=5), clock=lambda: now[0])
    token = jwt.encode({"sub": "alice", "exp": int(now[0]) + 60}, SECRET, algorithm="HS256")

    assert verifier.verify(token).user_id == "alice"
    now[0] += 60
    assert verifier.verify(token).user_id == "alice"
    now[0] += 6
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_token_not_yet_valid_becomes_valid_when_its_time_comes() -> None:
    now = [time.time()]
    verifier = JwtVerifier(JwtSettings(secret=SECRET, leeway_seconds=0), clock=lambda: now[0])
    token = jwt.encode({"sub": "alice", "nbf": int(now[0]) + 30, "exp": int(now[0]) + 90}, SECRET, algorithm="HS256")

    with pytest.raises(InvalidToken, match="not valid yet"):
        verifier.verify(token)
    now[0] += 31
    assert verifier.verify(token).user_id == "alice"


def test_cache_stays_bounded_and_correct_past_its_size() -> None:
    verifier = JwtVerifier(JwtSettings(secret=SECRET), cache_size=2)
    tokens = [
        jwt.encode({"sub": f"user{i}", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256") for i in range(5)
    ]

    assert [verifier.verify(t).user_id for t in tokens + tokens] == [f"user{i}" for i in range(5)] * 2


def test_public_key_of_another_curve_is_refused() -> None:
    _, p384_public = _pem(ec.generate_private_key(ec.SECP384R1()))

    with pytest.raises(ValueError, match="EC P-256"):
        JwtSettings(public_key=p384_public)
