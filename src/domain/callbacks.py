"""Webhooks: the callback a job makes when it ends, the rule for callback URLs, and which addresses may be called."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from domain.errors import FieldError, InvalidParameters

CALLBACK_URL_FIELD = "callbackUrl"
MAX_CALLBACK_URL_LENGTH = 2048
LAST_ERROR_LENGTH = 500
"""A delivery's last error is cut to this many characters (a receiver's answer can be long)."""


class CallbackStatus(StrEnum):
    WAITING = "waiting"
    """The job has not ended yet."""
    PENDING = "pending"
    """The job ended: the delivery is due at `next_attempt_at` (the first attempt, or a retry)."""
    DELIVERED = "delivered"
    """The receiver answered 2xx."""
    GONE = "gone"
    """The receiver answered 410 Gone: it wants no more calls."""
    FAILED = "failed"
    """Every attempt of the schedule failed, or the job's result expired first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Callback:
    """Where a job announces its end, and how that announcement went. Immutable: each step returns a new one."""

    url: str
    status_url: str
    """The job's status URL as its requester reached the API: the links of the announced job start with it."""
    status: CallbackStatus = CallbackStatus.WAITING
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    """While pending: when the next attempt is due (or until when a worker delivering it holds it)."""

    def scheduled(self, now: datetime) -> Callback:
        """The job ended: the first attempt is due now."""
        return replace(self, status=CallbackStatus.PENDING, next_attempt_at=now)

    def delivered(self) -> Callback:
        return self._ended(CallbackStatus.DELIVERED, None)

    def gone(self, error: str) -> Callback:
        return self._ended(CallbackStatus.GONE, error)

    def failed(self, error: str) -> Callback:
        return self._ended(CallbackStatus.FAILED, error)

    def retry(self, error: str, at: datetime) -> Callback:
        return replace(self, attempts=self.attempts + 1, last_error=error[:LAST_ERROR_LENGTH], next_attempt_at=at)

    def _ended(self, status: CallbackStatus, error: str | None) -> Callback:
        last_error = None if error is None else error[:LAST_ERROR_LENGTH]
        return replace(self, status=status, attempts=self.attempts + 1, last_error=last_error, next_attempt_at=None)


def webhook_id(job_id: object) -> str:
    """The Standard Webhooks message id of a job's callback: one per job, the same on every retry."""
    return f"msg_{job_id}"


def _mapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (6to4, Teredo), which reach those hosts."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    teredo = address.teredo
    carried = [address.sixtofour, *(teredo or ())]
    return [v4 for v4 in carried if v4 is not None]


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An address a webhook may be sent to: a global unicast one. Loopback, private, link-local (the cloud
    metadata service 169.254.169.254 among them), shared, reserved, multicast and unspecified addresses are not,
    nor an IPv6 address that carries such an IPv4 address; an IPv4-mapped one is judged as its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public_address(address.ipv4_mapped)
    if (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_unspecified
    ):
        return False
    return all(is_public_address(v4) for v4 in _mapped(address))


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    """Which callback URLs are accepted: `https`, or `http` to a host of `allowed_hosts`. A host of `allowed_hosts`
    may also resolve to any address (a receiver inside the network); any other must resolve to public ones.
    `enabled` is False when the service has no webhook secret: then no callback URL is accepted."""

    allowed_hosts: frozenset[str] = frozenset()
    enabled: bool = True

    @classmethod
    def of(cls, allowed_hosts: Iterable[str], *, enabled: bool = True) -> CallbackPolicy:
        return cls(frozenset(host.lower() for host in allowed_hosts), enabled)

    def host_allowed(self, host: str) -> bool:
        return host.lower().strip("[]") in self.allowed_hosts

    def check(self, url: str) -> str:
        """The URL if a callback may go there; InvalidParameters naming `callbackUrl` otherwise."""
        problem = self._problem(url)
        if problem is not None:
            raise InvalidParameters([FieldError(CALLBACK_URL_FIELD, problem)])
        return url

    def _problem(self, url: str) -> str | None:
        if not self.enabled:
            return "webhooks are not enabled on this server (REPORTGEN_WEBHOOK_SECRET is not set)"
        if len(url) > MAX_CALLBACK_URL_LENGTH:
            return f"at most {MAX_CALLBACK_URL_LENGTH} characters"
        try:
            parts = urlsplit(url)
            host, _ = parts.hostname, parts.port  # a bad port raises here
        except ValueError:
            return "not a valid URL"
        if parts.scheme not in ("https", "http") or not host:
            return "expected an absolute https:// URL"
        if parts.username is not None or parts.password is not None:
            return "credentials in the URL are not accepted"
        if parts.fragment:
            return "a fragment (#...) is not accepted"
        if self.host_allowed(host):
            return None
        if parts.scheme == "http":
            return "only https:// is accepted (http:// only to the hosts in REPORTGEN_WEBHOOK_ALLOWED_HOSTS)"
        literal = ip_literal(host)
        if literal is not None and not is_public_address(literal):
            return f"{host} is not a public address"
        return None


SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MIN_SECRET_BYTES = 24


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: `whsec_` then the key in base64 (at least 24 bytes, as the
    secrets `standardwebhooks` generates). ValueError, saying what is wrong, for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX}")
    try:
        encoded = secret.removeprefix(SECRET_PREFIX)
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)  # padding is optional
    except binascii.Error:
        raise ValueError(f"a webhook secret is {SECRET_PREFIX} then base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret's key has at least {MIN_SECRET_BYTES} bytes")
    return key
