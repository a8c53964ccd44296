"""Text from outside the service (request bodies, token claims, paths): the one rule of what any part of it can
store, bind and log, and the rule of a user id."""

from __future__ import annotations

import re

UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
"""NUL, which PostgreSQL's text cannot hold, and lone surrogates, which are not Unicode text (UTF-8 cannot encode
them). JSON can smuggle either in as an escape (`\\u0000`, `\\ud800`)."""

MAX_USER_ID_LENGTH = 255
USER_ID_PATTERN = rf"^[^\x00-\x1f\x7f]{{1,{MAX_USER_ID_LENGTH}}}$"
"""A user id (a token's `sub`, a `userId` in a path): 1 to 255 characters, none a control character, and text by
`text_problem`'s rule (no lone surrogate: a pattern tool may not read one). Written with escapes, so that it reads the
same in Python and in the OpenAPI document."""
_USER_ID = re.compile(USER_ID_PATTERN)


def text_problem(value: str) -> str | None:
    """What is wrong with `value` as text the service can store, or None."""
    found = UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain the NUL character (U+0000)"
    return "must be valid Unicode text (it holds a lone surrogate)"


def is_user_id(value: str) -> bool:
    return _USER_ID.match(value) is not None and text_problem(value) is None
