"""Fetching the identity provider's keys: what `Cache-Control` grants, the bounds on what a fetch accepts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infrastructure.key_fetch import MAX_DOCUMENT_BYTES, JwksFetcher, KeyFetchError, cache_lifetime, key_url_problem
from tests.jwks_provider import IdentityProvider, SigningKey


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({"cache-control": "public, max-age=600"}, 600.0),
        ({"cache-control": "max-age=600", "age": "100"}, 500.0),
        ({"cache-control": "max-age=600", "age": "900"}, 0.0),
        ({"cache-control": "no-cache, max-age=600"}, 0.0),
        ({"cache-control": "no-store"}, 0.0),
        ({"cache-control": "max-age=soon"}, None),
        ({}, None),
    ],
)
def test_cache_lifetime_follows_cache_control(headers: dict[str, str], lifetime: float | None) -> None:
    assert cache_lifetime(headers) == lifetime


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://idp.example/keys", True),
        ("http://127.0.0.1:8080/keys", True),
        ("http://127.5.0.1/keys", True),
        ("http://[::1]/keys", True),
        ("http://localhost/keys", True),
        ("http://idp.example/keys", False),
        ("http://192.168.1.10/keys", False),
        ("http://localhost.evil.example/keys", False),
        ("file:///etc/passwd", False),
        ("https:///keys", False),
    ],
)
def test_keys_travel_over_https_or_loopback_http(url: str, allowed: bool) -> None:
    assert (key_url_problem(url) is None) == allowed


@pytest.fixture
def provider() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(keys=[SigningKey.ec("k")]).start()
    yield provider
    provider.stop()


async def test_a_fetch_answers_the_document_and_its_lifetime(provider: IdentityProvider) -> None:
    document, lifetime = await JwksFetcher(provider.jwks_url)()

    assert [key["kid"] for key in document["keys"]] == ["k"]
    assert lifetime == 600.0


async def test_an_oversized_document_an_error_status_or_an_unknown_path_is_a_fetch_error(
    provider: IdentityProvider,
) -> None:
    provider.keys = [SigningKey("big", "", "", {"kid": "big", "pad": "x" * MAX_DOCUMENT_BYTES, "alg": "ES256"})]
    with pytest.raises(KeyFetchError, match="more than"):
        await JwksFetcher(provider.jwks_url)()
    provider.status = 500
    with pytest.raises(KeyFetchError, match="answered 500"):
        await JwksFetcher(provider.jwks_url)()
    with pytest.raises(KeyFetchError, match="answered 404"):
        await JwksFetcher(provider.issuer + "/elsewhere")()


async def test_a_provider_that_is_down_is_a_fetch_error(provider: IdentityProvider) -> None:
    provider.stop()

    with pytest.raises(KeyFetchError, match="ConnectError"):
        await JwksFetcher(provider.jwks_url)()
