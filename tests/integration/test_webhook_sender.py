"""The webhook sender against a real HTTP receiver on 127.0.0.1: what it sends (signed so that the Standard
Webhooks library verifies it), and what it refuses to do (private addresses, redirects, long answers, slow ones)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from application.ports import WebhookMessage
from domain.callbacks import CallbackPolicy, secret_key
from infrastructure.webhooks import HttpWebhookSender, signed_headers
from tests.loopback import free_port
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration

OLD = "whsec_" + base64.b64encode(b"o" * 24).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
BODY = json.dumps({"type": "job.succeeded", "data": {"jobId": "x"}}).encode()


def message(url: str) -> WebhookMessage:
    return WebhookMessage(webhook_id="msg_1", url=url, body=BODY, sent_at=datetime.now(UTC))


def sender(secret: str = NEW, *, timeout_seconds: float = 10.0) -> HttpWebhookSender:
    """A sender that may call 127.0.0.1 (the allow-list)."""
    return HttpWebhookSender([secret_key(secret)], CallbackPolicy.of(["127.0.0.1"]), timeout_seconds=timeout_seconds)


def test_the_signature_verifies_with_each_secret_of_a_rotation_and_with_no_other() -> None:
    headers = signed_headers([secret_key(OLD), secret_key(NEW)], message("https://x.example/"))

    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (OLD, NEW):
        assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"x" * 24).decode()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(BODY + b" ", headers)


async def test_a_post_reaches_the_receiver_signed_with_the_host_header_of_the_url() -> None:
    with Receiver(204) as receiver:
        answer = await sender().send(message(receiver.url + "?team=7"))

    assert (answer.status, answer.error) == (204, None)
    [received] = receiver.received
    assert received.path == "/hooks?team=7"
    assert received.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-id"] == "msg_1"
    assert Webhook(NEW).verify(received.body, received.headers) == json.loads(BODY)


async def test_a_host_that_resolves_to_a_private_address_is_refused_without_a_connection() -> None:
    with Receiver(204) as receiver:

        async def rebinding(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]  # what an attacker's DNS answers for its public-looking name

        refusing = HttpWebhookSender([secret_key(NEW)], CallbackPolicy.of([]), resolver=rebinding)
        answer = await refusing.send(message(f"https://innocent.example:{receiver.port}/hooks"))

    assert answer.status is None
    assert answer.error is not None
    assert answer.error == "refused: innocent.example does not resolve to a public address"
    assert "127.0.0.1" not in answer.error, "the owner learns nothing of the internal network's addresses"
    assert receiver.received == []


async def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    with Receiver(200) as receiver:
        lookups: list[str] = []

        async def resolver(host: str, port: int) -> list[str]:
            lookups.append(host)
            return ["127.0.0.1"]

        pinned = HttpWebhookSender([secret_key(NEW)], CallbackPolicy.of(["hooks.internal"]), resolver=resolver)
        answer = await pinned.send(message(f"http://hooks.internal:{receiver.port}/hooks"))

    assert answer.status == 200
    assert lookups == ["hooks.internal"]  # one lookup, ours: httpx connected to the IP it was given
    assert receiver.received[0].headers["host"] == f"hooks.internal:{receiver.port}"


async def test_a_redirect_is_not_followed() -> None:
    with Receiver(200) as target, Receiver(307, location=target.url) as redirecting:
        answer = await sender().send(message(redirecting.url))

    assert answer.status == 307
    assert target.received == []


async def test_an_endless_answer_is_read_no_further_than_the_limit() -> None:
    """The receiver announces a gigabyte and keeps sending: reading it all would end in the timeout."""

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        try:
            while True:
                writer.write(b"x" * 65536)
                await writer.drain()
        except ConnectionError:
            writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        answer = await sender(timeout_seconds=2).send(message(f"http://127.0.0.1:{port}/hooks"))

    assert (answer.status, answer.error) == (200, None)


async def test_a_receiver_that_does_not_answer_in_time_is_a_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    port = silent.getsockname()[1]
    try:
        answer = await sender(timeout_seconds=0.3).send(message(f"http://127.0.0.1:{port}/hooks"))
    finally:
        silent.close()

    assert answer == type(answer)(None, "no answer within 0.3 s")


async def test_a_receiver_that_is_down_is_a_connection_error() -> None:
    answer = await sender().send(message(f"http://127.0.0.1:{free_port()}/hooks"))

    assert answer.status is None
    assert answer.error is not None
    assert answer.error.startswith("ConnectError")


async def test_an_unknown_host_is_an_error_not_an_exception() -> None:
    answer = await asyncio.wait_for(sender().send(message("https://no-such-host.invalid/hooks")), 15)

    assert answer.status is None
    assert answer.error
