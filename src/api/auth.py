"""Bearer JWT authentication (python-jose) for `/api/...`, the caller's principal, and the admin guard.

Only the algorithms that match a configured key are accepted: HS256 with the shared secret, RS256 or
ES256 with the public key (by the key's type) or with the identity provider's key that the token's `kid` names
(api.jwks: by that key's type and `alg`); `none` and every other algorithm are refused, and the key is chosen by
algorithm, so a public key is never used as an HMAC secret. `exp` and `sub` are required, `nbf` is
honoured, `iss` and `aud` are checked when configured, with `leeway_seconds` of clock skew. `exp`, `nbf` and `iat`
must be finite numbers, and `sub` a user id (`domain.text`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jose import JWTError, jwt
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from api.headers import first_header
from api.jwks import REMOTE_ALGORITHMS, RemoteKeySet, VerificationKey
from domain.text import MAX_USER_ID_LENGTH, is_user_id

ADMIN_ROLE = "admin"
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """How tokens are verified. At least one of `secret` (HS256), `public_key` (PEM text: RSA -> RS256,
    EC P-256 -> ES256) and `key_set` (an identity provider's keys, by `kid`) is required. Beside a `public_key`, a
    token whose `kid` the key set names is verified by that key, any other by the public key. A bad key raises
    ValueError naming the field."""

    secret: str | None = None
    public_key: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: int = 30
    key_set: RemoteKeySet | None = None

    def __post_init__(self) -> None:
        self.keys_by_algorithm()

    def keys_by_algorithm(self) -> dict[str, str]:
        """The fixed keys (secret, public key) by the one algorithm each verifies."""
        keys = {"HS256": self.secret} if self.secret else {}
        if self.public_key:
            keys[_public_key_algorithm(self.public_key)] = self.public_key
        if not keys and self.key_set is None:
            raise ValueError("JwtSettings needs a secret, a public_key or a key_set")
        return keys


def _public_key_algorithm(pem: str) -> str:
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise ValueError("public_key is not a PEM-encoded public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError("public_key must be an RSA key (RS256) or an EC P-256 key (ES256)")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: `sub` of the token and its `roles` claim."""

    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


AuthenticatedRequest: TypeAlias = Request[Principal, str, Any]
"""A request that passed JwtAuthenticationMiddleware: `request.user` is the caller, `request.auth` the token."""


class MissingToken(NotAuthorizedException):
    def __init__(self) -> None:
        super().__init__(
            detail="This resource needs an 'Authorization: Bearer <token>' header.",
            headers={"WWW-Authenticate": "Bearer"},
        )


class InvalidToken(NotAuthorizedException):
    def __init__(self, reason: str) -> None:
        super().__init__(
            detail=f"The bearer token was refused: {reason}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


class JwtVerifier:
    """Verifies tokens, remembering recently verified ones (by token string) until they expire.

    `exp` and `nbf` are checked here, against `clock`, rather than by python-jose (which reads the system
    clock), so that the cache and the checks share one clock. A cached token is exactly as valid as on its
    first check: its signature and claims cannot change, an accepted `nbf` stays accepted, and the entry
    is dropped once `exp` (plus the leeway) has passed, or once the key set no longer holds the key that verified
    it (a key the identity provider dropped stops its tokens at the next fetch).
    """

    def __init__(
        self, settings: JwtSettings, clock: Callable[[], float] = time.time, cache_size: int = _CACHE_SIZE
    ) -> None:
        self._settings = settings
        self._keys = settings.keys_by_algorithm()
        self._key_set = settings.key_set
        self._clock = clock
        self._cache_size = cache_size
        self._cache: dict[str, tuple[Principal, float, tuple[str, VerificationKey] | None]] = {}
        self._options = {
            "verify_exp": False,
            "verify_nbf": False,
            "require_sub": True,
            "verify_aud": settings.audience is not None,
            "require_aud": settings.audience is not None,
            "require_iss": settings.issuer is not None,
        }

    def verify(self, token: str) -> Principal:
        """With the fixed keys only (secret, public key): a token for the key set is refused here."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        algorithm, _ = _header(token)
        return self._remember(token, self._decode(token, algorithm, self._fixed_key(algorithm)), None)

    async def authenticate(self, token: str) -> Principal:
        """`verify`, and with a key set the key its `kid` names, which may need a fetch."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        algorithm, kid = _header(token)
        if self._key_set is None or algorithm not in REMOTE_ALGORITHMS:
            return self._remember(token, self._decode(token, algorithm, self._fixed_key(algorithm)), None)
        key = await self._remote_key(self._key_set, algorithm, kid, fallback=algorithm in self._keys)
        if key is None:  # beside a fixed public key: a token the key set does not name is the fixed key's
            return self._remember(token, self._decode(token, algorithm, self._fixed_key(algorithm)), None)
        return self._remember(token, self._decode(token, algorithm, key.pem), (kid, key))

    def _cached(self, token: str) -> Principal | None:
        entry = self._cache.get(token)
        if entry is None:
            return None
        principal, valid_until, remote = entry
        if valid_until > self._clock() and (remote is None or self._still_held(*remote)):
            return principal
        del self._cache[token]
        return None

    def _still_held(self, kid: str, key: VerificationKey) -> bool:
        return self._key_set is not None and self._key_set.cached(kid) == key

    def _remember(
        self, token: str, verified: tuple[Principal, float], remote: tuple[str, VerificationKey] | None
    ) -> Principal:
        if len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[token] = (*verified, remote)
        return verified[0]

    def _fixed_key(self, algorithm: str) -> str:
        key = self._keys.get(algorithm)
        if key is None:
            raise InvalidToken(f"the algorithm {algorithm!r} is not accepted")
        return key

    @staticmethod
    async def _remote_key(key_set: RemoteKeySet, algorithm: str, kid: Any, *, fallback: bool) -> VerificationKey | None:
        """The key set's key that `kid` names; None when there is none and `fallback` (a fixed key of the algorithm
        verifies such tokens instead)."""
        if not isinstance(kid, str) or not kid:
            if fallback:
                return None
            raise InvalidToken("the token names no key ('kid')")
        key = await key_set.key(kid)
        if key is None:
            if fallback:
                return None
            raise InvalidToken("the key its 'kid' names is not one of the identity provider's keys")
        if key.algorithm != algorithm:
            raise InvalidToken(f"the algorithm {algorithm!r} is not its key's ({key.algorithm})")
        return key

    def _decode(self, token: str, algorithm: str, key: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options=self._options,
            )
        except JWTError as exc:
            raise InvalidToken(str(exc) or type(exc).__name__) from None
        except (ValueError, TypeError, ArithmeticError, RecursionError):  # python-jose lets these through
            raise InvalidToken("the token is malformed") from None
        return _principal(claims), self._valid_until(claims)

    def _valid_until(self, claims: dict[str, Any]) -> float:
        now, leeway = self._clock(), self._settings.leeway_seconds
        expires = _numeric_date(claims, "exp")
        if expires is None:
            raise InvalidToken("the 'exp' claim is required")
        if expires + leeway <= now:
            raise InvalidToken("the token has expired")
        not_before = _numeric_date(claims, "nbf")
        if not_before is not None and not_before - leeway > now:
            raise InvalidToken("the token is not valid yet ('nbf')")
        _numeric_date(claims, "iat")
        return expires + leeway


def _header(token: str) -> tuple[str, Any]:
    """The token's `alg` ('' when not a string) and `kid`, unverified."""
    try:
        header = jwt.get_unverified_header(token)
    except JWTError as exc:
        raise InvalidToken(str(exc) or type(exc).__name__) from None
    except (ValueError, TypeError, ArithmeticError, RecursionError):
        raise InvalidToken("the token is malformed") from None
    algorithm = header.get("alg")
    return (algorithm if isinstance(algorithm, str) else ""), header.get("kid")


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"the '{name}' claim must be a number of seconds")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):  # NaN would pass every comparison: a token that never expires
        raise InvalidToken(f"the '{name}' claim must be a finite number of seconds")
    return seconds


def _principal(claims: dict[str, Any]) -> Principal:
    roles = claims.get("roles", [])
    subject = claims["sub"]
    if not isinstance(subject, str) or not is_user_id(subject):
        raise InvalidToken(
            f"the 'sub' claim must be 1 to {MAX_USER_ID_LENGTH} characters, none of them a control character"
        )
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise InvalidToken("the 'roles' claim must be an array of strings")
    return Principal(subject, frozenset(roles))


def issue_token(settings: JwtSettings, sub: str, roles: Sequence[str] = (), ttl_seconds: int = 3600) -> str:
    """An HS256 token that `settings` accepts (issuer and audience included when configured)."""
    if not settings.secret:
        raise ValueError("issue_token needs JwtSettings.secret (HS256)")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "roles": list(roles), "iat": now, "exp": now + ttl_seconds}
    if settings.issuer:
        claims["iss"] = settings.issuer
    if settings.audience:
        claims["aud"] = settings.audience
    return jwt.encode(claims, settings.secret, algorithm="HS256")


class JwtAuthenticationMiddleware(AbstractAuthenticationMiddleware):
    """Puts the caller's `Principal` in `request.user`; 401 (see MissingToken, InvalidToken) otherwise."""

    def __init__(self, app: ASGIApp, verifier: JwtVerifier) -> None:
        super().__init__(app)
        self._verifier = verifier

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        # Read from the raw ASGI headers: building `connection.headers` for one value cost more than verifying a
        # cached token.
        scheme, _, token = (first_header(connection.scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            raise MissingToken
        token = token.strip()
        if not token:
            raise InvalidToken("the token is empty")
        return AuthenticationResult(user=await self._verifier.authenticate(token), auth=token)


def admin_only(connection: ASGIConnection[Any, Principal, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the admin-only routes. An OPTIONS request passes: authentication skips that method (a CORS preflight
    carries no token), and its automatic handler only lists the path's methods."""
    if connection.scope.get("method") == "OPTIONS":
        return
    if not connection.user.is_admin:
        raise PermissionDeniedException(detail=f"This operation needs the '{ADMIN_ROLE}' role.")
