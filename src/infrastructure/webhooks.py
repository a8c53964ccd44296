"""Webhook POSTs over httpx: signed by the Standard Webhooks scheme, and safe from server-side request forgery.

The receiver's host is resolved here, once; every address it resolves to is checked (domain.callbacks'
`is_public_address`, unless the host is allowed), and the connection goes to the address that passed: the URL holds
that IP, the `Host` header and TLS's SNI (and certificate check) the host name, so no second lookup can answer with
another address (DNS rebinding). No redirect is followed; an attempt takes at most `timeout_seconds`, and at most
`max_answer_bytes` of an answer's body are read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx

from application.ports import WebhookAnswer, WebhookMessage, WebhookSender
from domain.callbacks import CallbackPolicy, is_public_address

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""The IP addresses of a host name (or of an IP literal: itself), for a TCP connection to `port`."""

USER_AGENT = "reportgen-webhooks"


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]).partition("%")[0] for info in infos]  # no IPv6 zone ("%eth0")


def signature(keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` for each key, space-separated (a
    receiver accepts the message if one of them verifies with its secret: secrets can be rotated)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys)


def signed_headers(keys: Sequence[bytes], message: WebhookMessage) -> dict[str, str]:
    timestamp = int(message.sent_at.timestamp())
    return {
        "webhook-id": message.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(keys, message.webhook_id, timestamp, message.body),
    }


class Refused(Exception):
    """The URL's host may not be called."""


ATTEMPT_SECONDS = 10.0
"""The longest one delivery attempt takes: name resolution, connecting, sending, and reading the answer."""


class HttpWebhookSender(WebhookSender):
    def __init__(
        self,
        keys: Sequence[bytes],
        policy: CallbackPolicy,
        *,
        timeout_seconds: float = ATTEMPT_SECONDS,
        max_answer_bytes: int = 4096,
        resolver: Resolver = resolve,
    ) -> None:
        self._keys = tuple(keys)
        self._policy = policy
        self._timeout = timeout_seconds
        self._max_answer_bytes = max_answer_bytes
        self._resolve = resolver
        # No keep-alive: a pooled connection is keyed by IP, and one made for a host's SNI must not carry another's.
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=timeout_seconds,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def send(self, message: WebhookMessage) -> WebhookAnswer:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._send(message)
        except Refused as exc:
            return WebhookAnswer(None, str(exc))
        except TimeoutError:
            return WebhookAnswer(None, f"no answer within {self._timeout:g} s")
        except (httpx.HTTPError, OSError) as exc:  # OSError: name resolution
            return WebhookAnswer(None, f"{type(exc).__name__}: {exc}".rstrip(": "))

    async def _send(self, message: WebhookMessage) -> WebhookAnswer:
        parts = urlsplit(message.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self._address(host, port)
        netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        headers = {
            "host": parts.netloc,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signed_headers(self._keys, message),
        }
        extensions: Mapping[str, str] = {"sni_hostname": host} if parts.scheme == "https" else {}
        request = self._client.build_request("POST", target, content=message.body, headers=headers)
        request.extensions.update(extensions)
        response = await self._client.send(request, stream=True)
        try:
            await self._read_some(response)
        finally:
            await response.aclose()
        return WebhookAnswer(response.status_code)

    async def _address(self, host: str, port: int) -> str:
        addresses = await self._resolve(host, port)
        if self._policy.host_allowed(host) and addresses:
            return addresses[0]
        for address in addresses:
            if is_public_address(ipaddress.ip_address(address)):
                return address
        # The job's owner reads this: it names no address, or a callback URL could map the internal network's names.
        log.warning("webhook refused", extra={"host": host, "addresses": addresses})
        raise Refused(f"refused: {host} does not resolve to a public address")

    async def _read_some(self, response: httpx.Response) -> None:
        """Read at most `max_answer_bytes` of the body (nothing of it is kept); the rest is dropped with the
        connection."""
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= self._max_answer_bytes:
                break

    async def aclose(self) -> None:
        await self._client.aclose()
