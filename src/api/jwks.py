"""An identity provider's signing keys (a JWKS), cached, selected by `kid`, refreshed without a refresh storm.

- A key is usable when it is RSA (2048 bits or more) for RS256, or EC P-256 for ES256, by its `alg` when it states
  one; its `use`, when stated, is `sig`. Symmetric (`oct`) keys, other algorithms and keys without a `kid` are
  ignored, and a `kid` that two keys share is dropped (which one would verify is ambiguous).
- The set is fresh for the lifetime its response states in `Cache-Control`, bounded to `min_lifetime` ..
  `max_lifetime`; a background task (`running`, a lifespan) fetches it at start and again when it goes stale.
- A fetch replaces the whole set: a key the provider dropped stops verifying at once. A failed fetch keeps the
  keys it has, and is retried `refresh_interval` later.
- An unknown `kid` waits for a fetch: the one in flight if there is one, else a new one unless the last attempt
  was less than `refresh_interval` ago (then the `kid` is unknown at once): forged `kid`s cost at most one fetch
  per interval. Concurrent requests share one fetch.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FetchKeys = Callable[[], Awaitable[tuple[Any, float | None]]]
"""Fetches the JWKS document: (the parsed JSON, its cache lifetime in seconds or None); raises OSError."""

MIN_LIFETIME_SECONDS = 300.0
MAX_LIFETIME_SECONDS = 86_400.0
REFRESH_INTERVAL_SECONDS = 30.0
MIN_RSA_BITS = 2048
REMOTE_ALGORITHMS = frozenset({"RS256", "ES256"})

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class VerificationKey:
    algorithm: str
    """RS256 or ES256: the only algorithm a token verified with this key may state."""
    pem: str


class RemoteKeySet:
    def __init__(
        self,
        fetch: FetchKeys,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_lifetime: float = MIN_LIFETIME_SECONDS,
        max_lifetime: float = MAX_LIFETIME_SECONDS,
        refresh_interval: float = REFRESH_INTERVAL_SECONDS,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lifetime = (min_lifetime, max_lifetime)
        self._refresh_interval = refresh_interval
        self._keys: dict[str, VerificationKey] = {}
        self._fresh_until = -float("inf")
        self._next_attempt = -float("inf")
        self._in_flight: asyncio.Task[None] | None = None
        self.loaded = False
        """Whether a key set has been fetched at least once."""
        self.fetches = 0

    @property
    def fresh_until(self) -> float:
        """When (by `clock`) the set goes stale and is fetched again."""
        return self._fresh_until

    def cached(self, kid: str) -> VerificationKey | None:
        """The key named `kid` in the set as last fetched, without fetching."""
        return self._keys.get(kid)

    async def key(self, kid: str) -> VerificationKey | None:
        """The key named `kid`; unknown, it waits for a fetch (at most one per refresh interval)."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        fetch = self._start_fetch()
        if fetch is not None:
            await asyncio.shield(fetch)  # a request that gives up does not cancel the fetch the others wait for
        return self._keys.get(kid)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Fetches the keys at start (without waiting for them) and whenever they go stale."""
        task = asyncio.create_task(self._keep_fresh())
        try:
            yield
        finally:
            task.cancel()
            in_flight = self._in_flight
            if in_flight is not None:
                in_flight.cancel()
            await asyncio.gather(task, *([in_flight] if in_flight else []), return_exceptions=True)

    async def _keep_fresh(self) -> None:
        while True:
            fetch = self._start_fetch()
            if fetch is not None:
                await asyncio.shield(fetch)
            now = self._clock()
            await asyncio.sleep(max(self._fresh_until - now, self._next_attempt - now, self._refresh_interval))

    def _start_fetch(self) -> asyncio.Task[None] | None:
        if self._in_flight is not None:
            return self._in_flight
        if self._clock() < self._next_attempt:
            return None
        self._next_attempt = self._clock() + self._refresh_interval
        self._in_flight = asyncio.create_task(self._refresh())
        return self._in_flight

    async def _refresh(self) -> None:
        try:
            self.fetches += 1
            document, lifetime = await self._fetch()
            keys = parse_jwks(document)
        except (OSError, ValueError) as exc:
            log.warning("jwks_fetch_failed", error=str(exc), keys_kept=len(self._keys))
            return
        finally:
            self._in_flight = None
        low, high = self._lifetime
        self._fresh_until = self._clock() + min(max(lifetime or 0.0, low), high)
        if set(keys) != set(self._keys) or not self.loaded:
            log.info("jwks_loaded", kids=sorted(keys))
        self._keys, self.loaded = keys, True


def parse_jwks(document: Any) -> dict[str, VerificationKey]:
    """The usable keys of a JWKS document by `kid`; ValueError if it is not a JWKS at all."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("the JWKS document has no 'keys' array")
    keys: dict[str, VerificationKey] = {}
    shared: set[str] = set()
    for entry in entries:
        kid = entry.get("kid") if isinstance(entry, dict) else None
        key = _verification_key(entry) if isinstance(kid, str) and kid else None
        if key is None or kid is None:
            continue
        if kid in keys:
            shared.add(kid)
        keys[kid] = key
    return {kid: key for kid, key in keys.items() if kid not in shared}


def _verification_key(jwk: dict[str, Any]) -> VerificationKey | None:
    if jwk.get("use", "sig") != "sig":
        return None
    try:
        if jwk.get("kty") == "RSA" and jwk.get("alg", "RS256") == "RS256":
            public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = rsa.RSAPublicNumbers(
                _integer(jwk["e"]), _integer(jwk["n"])
            ).public_key()
            algorithm = "RS256"
            if public.key_size < MIN_RSA_BITS:
                return None
        elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256" and jwk.get("alg", "ES256") == "ES256":
            public = ec.EllipticCurvePublicNumbers(_integer(jwk["x"]), _integer(jwk["y"]), ec.SECP256R1()).public_key()
            algorithm = "ES256"
        else:
            return None
    except (KeyError, ValueError, TypeError):
        return None
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return VerificationKey(algorithm, pem)


def _integer(value: Any) -> int:
    if not isinstance(value, str):
        raise TypeError("a JWK number is a base64url string")
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")
