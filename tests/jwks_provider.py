"""A real identity provider on 127.0.0.1 for the tests: an HTTP server in a thread serving a JWKS document (and an
OIDC discovery document naming it), with signing keys the tests generate and tokens they sign."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt

from tests.loopback import free_port

JWKS_PATH = "/protocol/openid-connect/certs"
DISCOVERY_PATH = "/.well-known/openid-configuration"


def _b64(number: int) -> str:
    data = number.to_bytes((number.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: str
    public_pem: str
    jwk: dict[str, Any]

    @property
    def algorithm(self) -> str:
        return str(self.jwk["alg"])

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        headers = {"kid": self.kid, **header}
        return jwt.encode(claims, self.private_pem, algorithm=headers.pop("alg", self.algorithm), headers=headers)

    @classmethod
    def rsa(cls, kid: str, bits: int = 2048) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        numbers = key.public_key().public_numbers()
        jwk = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": _b64(numbers.n), "e": _b64(numbers.e)}
        return cls(kid, *_pems(key), jwk)

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        jwk = {"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256", "x": _b64(numbers.x), "y": _b64(numbers.y)}
        return cls(kid, *_pems(key), jwk)


def _pems(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


@dataclass
class IdentityProvider:
    """Serves `keys` at `jwks_url` with `cache_control`, and the discovery document at `issuer`'s well-known path.
    `status` other than 200 answers that instead; `delay` seconds before each answer (a frozen provider)."""

    keys: list[SigningKey] = field(default_factory=list)
    cache_control: str | None = "max-age=600"
    status: int = 200
    delay: float = 0.0
    discovery: dict[str, Any] | None = None
    """The discovery document; None: the one naming this provider as issuer and its JWKS."""
    port: int = field(default_factory=free_port)
    requests: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/realms/test"

    @property
    def jwks_url(self) -> str:
        return self.issuer + JWKS_PATH

    def jwks_fetches(self) -> int:
        return sum(path.endswith(JWKS_PATH) for path in self.requests)

    def _document(self, path: str) -> dict[str, Any] | None:
        if path == JWKS_PATH:
            return {"keys": [key.jwk for key in self.keys]}
        if path == DISCOVERY_PATH:
            return self.discovery or {"issuer": self.issuer, "jwks_uri": self.jwks_url}
        return None

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests.append(handler.path)
        time.sleep(self.delay)
        prefix = "/realms/test"
        document = self._document(handler.path.removeprefix(prefix)) if handler.path.startswith(prefix) else None
        status = self.status if document is not None else 404
        body = json.dumps(document).encode() if status == 200 else b"{}"
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        if self.cache_control is not None:
            handler.send_header("Cache-Control", self.cache_control)
        handler.end_headers()
        handler.wfile.write(body)

    def start(self) -> IdentityProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: nothing listens on the port any more (connections are refused)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
