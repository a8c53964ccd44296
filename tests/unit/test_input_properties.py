"""Properties of the checks that stand between outside input and the database, over generated input: whatever
arrives, each check answers with its own refusal (never another exception), and what it lets through is what a
database can bind and store."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jose import jwt
from litestar.exceptions import ClientException

from api.auth import InvalidToken, JwtSettings, JwtVerifier
from api.schemas import GenerateIn, decode_json_body
from domain.errors import InvalidInput
from domain.reports import INTEGER_RANGE, MAX_STRING_PARAMETER_LENGTH, ParameterType, coerce_parameter
from domain.text import UNSTORABLE, is_user_id

SECRET = "a-property-test-secret-of-32-chars!!"
NOW = 1_800_000_000.0

# Any text, lone surrogates and NUL included (hypothesis leaves surrogates out unless asked).
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=300) | st.sampled_from(
    ["", "\x00", "\ud800", "a\udfffb", "x" * 10_001, "2026-02-30", "2026-01-01"]
)
NUMBERS = st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=2**62, max_value=2**70)
JSON_SCALARS = st.none() | st.booleans() | NUMBERS | ANY_TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)
CLAIM_VALUES = st.none() | st.booleans() | NUMBERS | ANY_TEXT | st.lists(ANY_TEXT, max_size=3)


@given(kind=st.sampled_from(list(ParameterType)), value=JSON_VALUES)
def test_a_coerced_parameter_is_refused_or_bindable(kind: ParameterType, value: Any) -> None:
    try:
        coerced = coerce_parameter(kind, value)
    except ValueError:  # the refusal, with a message for the client
        return
    if coerced is None:
        assert value is None
    elif kind is ParameterType.INTEGER:
        assert isinstance(coerced, int)
        assert INTEGER_RANGE[0] <= coerced <= INTEGER_RANGE[1]
    elif kind is ParameterType.NUMBER:
        assert isinstance(coerced, int | float)
        assert math.isfinite(float(coerced))
    elif kind is ParameterType.STRING:
        assert isinstance(coerced, str)
        assert len(coerced) <= MAX_STRING_PARAMETER_LENGTH
    elif kind is ParameterType.DATE:
        assert isinstance(coerced, str)
        assert len(coerced) == 10
    else:
        assert isinstance(coerced, bool)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(parameters=st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=4))
def test_a_body_is_refused_as_a_client_error_or_holds_only_storable_text(parameters: dict[str, Any]) -> None:
    raw = json.dumps({"parameters": parameters}, allow_nan=True).encode("utf-8", "surrogatepass")
    try:
        body = decode_json_body(raw, GenerateIn)
    except (InvalidInput, ClientException):
        return
    assert not UNSTORABLE.search(msgspec.json.encode(body).decode("utf-8", "surrogatepass"))


@pytest.fixture(scope="module")
def verifier() -> JwtVerifier:
    return JwtVerifier(JwtSettings(secret=SECRET), clock=lambda: NOW)


@given(
    sub=CLAIM_VALUES,
    exp=CLAIM_VALUES | st.floats(min_value=NOW - 100, max_value=NOW + 10_000),
    nbf=st.none() | CLAIM_VALUES,
    iat=st.none() | CLAIM_VALUES,
    roles=CLAIM_VALUES,
)
def test_a_token_is_refused_as_invalid_or_names_a_sane_user_and_has_not_expired(
    verifier: JwtVerifier, sub: Any, exp: Any, nbf: Any, iat: Any, roles: Any
) -> None:
    claims = {"sub": sub, "exp": exp, "roles": roles}
    claims |= {name: value for name, value in (("nbf", nbf), ("iat", iat)) if value is not None}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    try:
        principal = verifier.verify(token)
    except InvalidToken:
        return
    assert is_user_id(principal.user_id)
    assert isinstance(exp, int | float)
    assert math.isfinite(exp)
    assert exp + 30 > NOW, "checked against the verifier's clock, with its leeway"
