"""Reading a request header straight from the ASGI scope, without building Litestar's `Headers` for one value."""

from __future__ import annotations

from litestar.types import Scope


def first_header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case), decoded as Latin-1, or None; header names may come in any
    case (ASGI asks servers for lower case, without requiring it)."""
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None
