"""Fetching an identity provider's signing keys (httpx): its JWKS document, found directly or by OIDC discovery.

Keys travel over https only; plain http is allowed to a loopback host (tests, a sidecar on the same host). A fetch
has a short overall timeout and a size bound, follows no redirect, and reports every failure as `KeyFetchError`
(an OSError), with the `Cache-Control` lifetime of the JWKS response when it succeeds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import httpx

FETCH_TIMEOUT_SECONDS = 5.0
MAX_DOCUMENT_BYTES = 1_048_576
DISCOVERY_PATH = "/.well-known/openid-configuration"


class KeyFetchError(OSError):
    """The keys could not be fetched: unreachable, timed out, an error status, or not a usable document."""


def key_url_problem(url: str) -> str | None:
    """Why keys may not be fetched from `url`, or None when they may."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "not a valid URL"
    if not host or parts.scheme not in ("https", "http"):
        return "not a valid URL; expected one starting with https://"
    if parts.scheme == "http" and not _is_loopback(host):
        return "keys are fetched over https (plain http only from a loopback host such as 127.0.0.1)"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def cache_lifetime(headers: Mapping[str, str]) -> float | None:
    """Seconds the response may be reused by its `Cache-Control` (max-age less `Age`); 0 for no-store/no-cache;
    None when it says nothing."""
    directives = [d.strip().lower() for d in headers.get("cache-control", "").split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    for directive in directives:
        name, _, value = directive.partition("=")
        if name.strip() == "max-age" and value.strip().strip('"').isdigit():
            age = headers.get("age", "0").strip()
            return max(0.0, float(value.strip().strip('"')) - (float(age) if age.isdigit() else 0.0))
    return None


class JwksFetcher:
    """`await fetcher()` answers (the JWKS document, its cache lifetime or None). `url` is the JWKS URL, or with
    `discovery` the issuer: the JWKS URL is then read from `<issuer>/.well-known/openid-configuration` at each
    fetch, whose `issuer` must be the same."""

    def __init__(self, url: str, *, discovery: bool = False, timeout_seconds: float = FETCH_TIMEOUT_SECONDS) -> None:
        self._url = url
        self._discovery = discovery
        self._timeout = httpx.Timeout(timeout_seconds)

    async def __call__(self) -> tuple[Any, float | None]:
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            url = await _discover(client, self._url) if self._discovery else self._url
            return await _fetch_json(client, url)


async def _discover(client: httpx.AsyncClient, issuer: str) -> str:
    document, _ = await _fetch_json(client, issuer.rstrip("/") + DISCOVERY_PATH)
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        raise KeyFetchError(f"the discovery document's issuer is not {issuer!r}")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or key_url_problem(jwks_uri) is not None:
        raise KeyFetchError(f"the discovery document's jwks_uri is unusable: {jwks_uri!r}")
    return jwks_uri


async def _fetch_json(client: httpx.AsyncClient, url: str) -> tuple[Any, float | None]:
    problem = key_url_problem(url)
    if problem is not None:
        raise KeyFetchError(f"{url}: {problem}")
    try:
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise KeyFetchError(f"{url} answered {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise KeyFetchError(f"{url} sent more than {MAX_DOCUMENT_BYTES} bytes")
            return json.loads(body), cache_lifetime(response.headers)
    except httpx.HTTPError as exc:
        raise KeyFetchError(f"{url}: {type(exc).__name__} {exc}".rstrip()) from None
    except (ValueError, RecursionError):
        raise KeyFetchError(f"{url} did not send JSON") from None
