"""Tokens verified with an identity provider's keys (a JWKS on a real local server, fetched over HTTP): selection by
`kid`, rotation, refresh limits, the provider down, algorithm pinning, and the HTTP layer's answers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.app import build_app
from api.auth import InvalidToken, JwtSettings, JwtVerifier
from api.jwks import RemoteKeySet, parse_jwks
from infrastructure.key_fetch import JwksFetcher
from tests.jwks_provider import JWKS_PATH, IdentityProvider, SigningKey
from tests.unit.api.conftest import AUDIENCE, ISSUER, SECRET, Backend, bearer, claims, dependencies

REPORTS = "/api/v1/reports"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def old_key() -> SigningKey:
    return SigningKey.rsa("2024-old")


@pytest.fixture(scope="module")
def new_key() -> SigningKey:
    return SigningKey.rsa("2025-new")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey.ec("ec-1")


@pytest.fixture(scope="module")
def unpublished() -> SigningKey:
    return SigningKey.rsa("never-published")


@pytest.fixture
def provider(old_key: SigningKey) -> Iterator[IdentityProvider]:
    provider = IdentityProvider(keys=[old_key]).start()
    yield provider
    provider.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def verifier_for(provider: IdentityProvider, clock: Clock, **settings: Any) -> JwtVerifier:
    key_set = RemoteKeySet(JwksFetcher(provider.jwks_url, timeout_seconds=0.5), clock=clock)
    return JwtVerifier(JwtSettings(key_set=key_set, issuer=ISSUER, audience=AUDIENCE, **settings))


def _b64_bytes(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_rotation_accepts_old_and_new_keys_during_the_overlap_then_refuses_the_dropped_one(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey, new_key: SigningKey
) -> None:
    verifier = verifier_for(provider, clock)
    old_token = old_key.sign(claims("alice"))
    assert (await verifier.authenticate(old_token)).user_id == "alice"

    provider.keys = [old_key, new_key]  # the provider publishes the next key before signing with it
    clock.now += 31
    assert (await verifier.authenticate(new_key.sign(claims("bob")))).user_id == "bob"
    assert (await verifier.authenticate(old_token)).user_id == "alice"

    provider.keys = [new_key]  # and drops the old one once its tokens should be gone
    clock.now += 31
    with pytest.raises(InvalidToken, match="identity provider's keys"):
        await verifier.authenticate(SigningKey.rsa("2026-next").sign(claims()))  # an unknown kid: a fetch
    with pytest.raises(InvalidToken, match="identity provider's keys"):
        await verifier.authenticate(old_token)  # verified (and cached) before, refused now
    assert (await verifier.authenticate(new_key.sign(claims("bob")))).user_id == "bob"


async def test_the_set_is_fetched_again_in_the_background_when_it_goes_stale(
    provider: IdentityProvider, old_key: SigningKey, new_key: SigningKey
) -> None:
    key_set = RemoteKeySet(JwksFetcher(provider.jwks_url), min_lifetime=0.2, max_lifetime=0.2, refresh_interval=0.1)
    verifier = JwtVerifier(JwtSettings(key_set=key_set, issuer=ISSUER, audience=AUDIENCE))
    old_token = old_key.sign(claims())
    async with key_set.running():
        await _until(lambda: key_set.loaded)
        assert (await verifier.authenticate(old_token)).user_id == "alice"
        provider.keys = [new_key]
        await _until(lambda: key_set.cached(old_key.kid) is None)
        with pytest.raises(InvalidToken):
            await verifier.authenticate(old_token)
    assert provider.jwks_fetches() >= 2


async def _until(condition: Any, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


async def test_unknown_kids_cost_one_fetch_per_interval_however_many_arrive(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey, unpublished: SigningKey
) -> None:
    verifier = verifier_for(provider, clock)
    await verifier.authenticate(old_key.sign(claims()))
    assert provider.jwks_fetches() == 1

    signed = unpublished.sign(claims())
    _, payload, signature = signed.split(".")

    async def forged(n: int) -> BaseException | None:
        header = _b64_bytes(json.dumps({"alg": "RS256", "kid": f"forged-{n}"}).encode())
        try:
            await verifier.authenticate(f"{header}.{payload}.{signature}")
        except InvalidToken as exc:
            return exc
        return None

    clock.now += 31
    answers = await asyncio.gather(*(forged(n) for n in range(50)))
    assert all(isinstance(answer, InvalidToken) for answer in answers)
    assert provider.jwks_fetches() == 2  # the 50 shared one fetch

    clock.now += 10
    await asyncio.gather(*(forged(n) for n in range(50, 100)))
    assert provider.jwks_fetches() == 2  # within the interval: none

    clock.now += 25
    await asyncio.gather(*(forged(n) for n in range(100, 150)))
    assert provider.jwks_fetches() == 3


async def test_provider_down_keeps_the_cached_keys_and_refuses_only_unknown_kids(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey, new_key: SigningKey
) -> None:
    verifier = verifier_for(provider, clock)
    await verifier.authenticate(old_key.sign(claims()))
    provider.stop()
    clock.now += 90_000  # past any lifetime and refresh interval

    assert (await verifier.authenticate(old_key.sign(claims("carol")))).user_id == "carol"
    with pytest.raises(InvalidToken, match="identity provider's keys"):
        await verifier.authenticate(new_key.sign(claims()))


async def test_a_frozen_provider_costs_a_request_the_fetch_timeout_at_most(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey, new_key: SigningKey
) -> None:
    verifier = verifier_for(provider, clock)
    await verifier.authenticate(old_key.sign(claims()))
    provider.delay = 2.0
    clock.now += 31

    started = time.monotonic()
    with pytest.raises(InvalidToken):
        await verifier.authenticate(new_key.sign(claims()))
    assert time.monotonic() - started < 1.5
    assert (await verifier.authenticate(old_key.sign(claims("carol")))).user_id == "carol"
    provider.delay = 0.0


async def test_first_fetch_failing_refuses_tokens_until_the_keys_arrive(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey
) -> None:
    provider.status = 503
    verifier = verifier_for(provider, clock)
    token = old_key.sign(claims())
    with pytest.raises(InvalidToken):
        await verifier.authenticate(token)

    provider.status = 200
    clock.now += 31
    assert (await verifier.authenticate(token)).user_id == "alice"


def _hs256_with(header: dict[str, Any], secret: str) -> str:
    payload = _b64_bytes(json.dumps(claims()).encode())
    signing_input = f"{_b64_bytes(json.dumps(header).encode())}.{payload}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64_bytes(signature)}"


@pytest.mark.parametrize("with_secret", [False, True], ids=["jwks-only", "jwks-beside-a-secret"])
async def test_hs256_signed_with_the_public_key_is_refused(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey, with_secret: bool
) -> None:
    verifier = verifier_for(provider, clock, secret=SECRET if with_secret else None)
    await verifier.authenticate(old_key.sign(claims()))

    for secret in (old_key.public_pem, json.dumps(old_key.jwk)):
        with pytest.raises(InvalidToken):
            await verifier.authenticate(_hs256_with({"alg": "HS256", "kid": old_key.kid}, secret))


async def test_alg_none_and_foreign_algorithms_are_refused(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey, ec_key: SigningKey
) -> None:
    provider.keys = [old_key, ec_key]
    verifier = verifier_for(provider, clock)
    unsigned = f"{_b64_bytes(json.dumps({'alg': 'none', 'kid': old_key.kid}).encode())}."
    unsigned += f"{_b64_bytes(json.dumps(claims()).encode())}."

    with pytest.raises(InvalidToken, match="'none' is not accepted"):
        await verifier.authenticate(unsigned)
    with pytest.raises(InvalidToken, match="not its key's"):  # an ES256 token naming the RSA key
        await verifier.authenticate(ec_key.sign(claims(), kid=old_key.kid))
    with pytest.raises(InvalidToken, match="'RS384' is not accepted"):
        await verifier.authenticate(old_key.sign(claims(), alg="RS384"))
    with pytest.raises(InvalidToken, match="names no key"):
        await verifier.authenticate(old_key.sign(claims(), kid=None))
    assert (await verifier.authenticate(ec_key.sign(claims("dave")))).user_id == "dave"


async def test_jwks_beside_a_secret_accepts_both_kinds_of_token(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey
) -> None:
    verifier = verifier_for(provider, clock, secret=SECRET)
    hs_token = _hs256_with({"alg": "HS256", "typ": "JWT"}, SECRET)

    assert (await verifier.authenticate(hs_token)).user_id == "alice"
    assert (await verifier.authenticate(old_key.sign(claims("bob")))).user_id == "bob"


@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [("max-age=5", 300), ("max-age=600", 600), ("public, max-age=999999", 86_400), ("no-store", 300), (None, 300)],
)
async def test_the_cache_control_lifetime_is_bounded(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey, cache_control: str | None, lifetime: float
) -> None:
    provider.cache_control = cache_control
    key_set = RemoteKeySet(JwksFetcher(provider.jwks_url), clock=clock)

    assert await key_set.key(old_key.kid) is not None
    assert key_set.fresh_until - clock.now == lifetime


async def test_keys_found_by_oidc_discovery(provider: IdentityProvider, clock: Clock, old_key: SigningKey) -> None:
    key_set = RemoteKeySet(JwksFetcher(provider.issuer, discovery=True), clock=clock)
    verifier = JwtVerifier(JwtSettings(key_set=key_set, audience=AUDIENCE))

    assert (await verifier.authenticate(old_key.sign(claims()))).user_id == "alice"
    assert provider.requests == ["/realms/test/.well-known/openid-configuration", f"/realms/test{JWKS_PATH}"]


@pytest.mark.parametrize(
    "discovery",
    [
        {"issuer": "https://someone.else", "jwks_uri": "http://127.0.0.1:1/keys"},
        {"issuer": "{issuer}", "jwks_uri": "http://idp.example/keys"},
        {"issuer": "{issuer}"},
    ],
    ids=["another-issuer", "plain-http-jwks-uri", "no-jwks-uri"],
)
async def test_an_unusable_discovery_document_yields_no_keys(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey, discovery: dict[str, str]
) -> None:
    provider.discovery = {name: value.format(issuer=provider.issuer) for name, value in discovery.items()}
    key_set = RemoteKeySet(JwksFetcher(provider.issuer, discovery=True), clock=clock)

    assert await key_set.key(old_key.kid) is None
    assert provider.jwks_fetches() == 0


def test_only_signing_keys_of_the_accepted_kinds_are_kept(old_key: SigningKey, ec_key: SigningKey) -> None:
    small = SigningKey.rsa("small", bits=1024)
    keys = parse_jwks(
        {
            "keys": [
                old_key.jwk,
                ec_key.jwk,
                small.jwk,
                {**old_key.jwk, "kid": "for-encryption", "use": "enc"},
                {**old_key.jwk, "kid": "rs384", "alg": "RS384"},
                {**ec_key.jwk, "kid": "twice"},
                {**old_key.jwk, "kid": "twice"},
                {"kty": "oct", "kid": "symmetric", "k": "c2VjcmV0"},
                {**ec_key.jwk, "kid": "off-curve", "y": ec_key.jwk["x"]},
                {k: v for k, v in old_key.jwk.items() if k != "kid"},
                "not a key",
            ]
        }
    )

    assert {kid: key.algorithm for kid, key in keys.items()} == {old_key.kid: "RS256", ec_key.kid: "ES256"}
    with pytest.raises(ValueError, match="'keys'"):
        parse_jwks({"issuer": "x"})


async def test_jwks_beside_a_public_key_verifies_its_kids_by_the_set_and_the_others_by_the_fixed_key(
    provider: IdentityProvider, clock: Clock, old_key: SigningKey, unpublished: SigningKey
) -> None:
    verifier = verifier_for(provider, clock, public_key=unpublished.public_pem)

    assert (await verifier.authenticate(old_key.sign(claims("bob")))).user_id == "bob", "a kid of the set"
    assert (await verifier.authenticate(unpublished.sign(claims("carol"), kid=None))).user_id == "carol"
    assert (await verifier.authenticate(unpublished.sign(claims("dave")))).user_id == "dave", "a kid not in the set"
    with pytest.raises(InvalidToken):  # signed by the set's key, but naming none of its kids: the fixed key refuses
        await verifier.authenticate(old_key.sign(claims("eve"), kid=None))


@pytest.fixture
async def idp_client(provider: IdentityProvider, backend: Backend) -> AsyncIterator[AsyncTestClient[Any]]:
    key_set = RemoteKeySet(JwksFetcher(provider.jwks_url))
    settings = JwtSettings(key_set=key_set, issuer=ISSUER, audience=AUDIENCE)
    async with AsyncTestClient(app=build_app(dependencies(backend, settings))) as client:
        await _until(lambda: key_set.loaded)
        yield client


async def test_http_layer_answers_200_for_a_good_token_and_a_401_problem_for_a_bad_one(
    idp_client: AsyncTestClient[Any], old_key: SigningKey, unpublished: SigningKey
) -> None:
    good = await idp_client.get(REPORTS, headers=bearer(old_key.sign(claims())))
    bad = await idp_client.get(REPORTS, headers=bearer(unpublished.sign(claims())))
    ready = await idp_client.get("/health/ready")

    assert good.status_code == 200
    assert bad.status_code == 401
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert ready.json()["checks"]["keys"] is True


async def test_readiness_waits_for_the_keys_and_the_api_starts_without_them(
    provider: IdentityProvider, backend: Backend, old_key: SigningKey
) -> None:
    provider.stop()
    settings = JwtSettings(key_set=RemoteKeySet(JwksFetcher(provider.jwks_url)), issuer=ISSUER, audience=AUDIENCE)
    async with AsyncTestClient(app=build_app(dependencies(backend, settings))) as client:
        ready = await client.get("/health/ready")
        refused = await client.get(REPORTS, headers=bearer(old_key.sign(claims())))

    assert ready.status_code == 503
    assert ready.json()["checks"]["keys"] is False
    assert refused.status_code == 401
