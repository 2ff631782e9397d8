"""Polymarket US institutional: client assertion, token cache, parsing, errors, simulator, cassette."""

from __future__ import annotations

import asyncio
import base64
import decimal
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance import _state
from bastion_balance._protocol import Acquire, Release, Throttle
from bastion_balance.providers.polymarket_us import (
    ASSERTION_LIFETIME,
    BALANCE_PATH,
    CLIENT_ASSERTION_TYPE,
    PolymarketUS,
    camel_case,
    client_assertion,
    grpc_error,
    normalize,
    token_error,
)
from bastion_balance.testing import Simulator, json_response, rate_limits_disabled
from bastion_balance.testing._polymarket_us import (
    POLYMARKET_US_SYNTHETIC_BALANCE,
    POLYMARKET_US_TEST_ACCOUNT,
    POLYMARKET_US_TEST_CLIENT_ID,
    POLYMARKET_US_TEST_PARTICIPANT_ID,
    SimulatedPolymarketUS,
    demo_pair,
    polymarket_us_test_private_key_pem,
    polymarket_us_test_public_key_pem,
)

from .._vcr import SCRUBBED, _scrub_request
from ._venue_cases import VenueCases

AUTH_URL = "https://pmx-prod.us.auth0.com"
TOKEN_URL = AUTH_URL + "/oauth/token"
API_URL = "https://api.prod.polymarketexchange.com"
NOW_S = 1_795_000_000
PEM = polymarket_us_test_private_key_pem()
PUBLIC_PEM = polymarket_us_test_public_key_pem()
TOKEN = "opaque-token-1"


def pm(**overrides: object) -> PolymarketUS:
    settings: dict[str, object] = {
        "client_id": POLYMARKET_US_TEST_CLIENT_ID,
        "private_key": PEM,
        "participant_id": POLYMARKET_US_TEST_PARTICIPANT_ID,
        "account": POLYMARKET_US_TEST_ACCOUNT,
    }
    settings.update(overrides)
    return PolymarketUS(**settings)  # type: ignore[arg-type]


def respond(provider: PolymarketUS, response: httpx.Response) -> bb.Balance:
    response.request = provider.build_request(TOKEN)
    return provider.parse_response(response)


def decode_assertion(assertion: str, audience: str = TOKEN_URL) -> dict[str, Any]:
    return jwt.decode(
        assertion,
        PUBLIC_PEM,
        algorithms=["RS256"],
        audience=audience,
        options={
            "verify_exp": False,
            "verify_iat": False,
            "require": ["iss", "sub", "aud", "exp", "iat", "jti"],
        },
    )


def body_of(request: httpx.Request) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(request.content)
    return result


def other_key_pem(size: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=size)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class Clock:
    """One fake time for the provider (Unix ns), the simulator (Unix ns) and the token cache."""

    def __init__(self) -> None:
        self.seconds = float(NOW_S)

    def ns(self) -> int:
        return int(self.seconds * 10**9)

    def mono(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


def client_for(sim: Simulator) -> bb.BalanceClient:
    return bb.BalanceClient(http_client=sim.client(), retry=bb.NO_RETRY)


def token_cache() -> _state.TokenCache:
    return _state.shared_state("polymarket_us", AUTH_URL, f"{POLYMARKET_US_TEST_CLIENT_ID} {API_URL}").token


def frozen_firm_limiter() -> _state.RateLimiter:
    limiter = _state.shared_state("polymarket_us", API_URL, "firm:BASTION-TEST").limiter("firm", 20, 20)
    limiter.monotonic = lambda: 1000.0
    return limiter


class TestClientAssertion:
    def test_verifies_with_public_key(self) -> None:
        """The assertion is RS256, verifies with the registered public key and carries Auth0's claims."""
        assertion = client_assertion(
            client_id="cid", private_key=pm().private_key, token_url=TOKEN_URL, issued_at=NOW_S, jti="j-1"
        )
        assert jwt.get_unverified_header(assertion)["alg"] == "RS256"
        claims = decode_assertion(assertion)
        assert claims == {
            "iss": "cid",
            "sub": "cid",
            "aud": TOKEN_URL,
            "iat": NOW_S,
            "exp": NOW_S + ASSERTION_LIFETIME,
            "jti": "j-1",
        }
        assert 60 <= claims["exp"] - claims["iat"] <= 300

    def test_deterministic(self) -> None:
        """Same inputs, same assertion: RSASSA-PKCS1-v1_5 has no randomness."""
        key = pm().private_key
        args = {"client_id": "c", "private_key": key, "token_url": TOKEN_URL, "issued_at": 1, "jti": "x"}
        assert client_assertion(**args) == client_assertion(**args)  # type: ignore[arg-type]

    def test_signature_fails_with_another_key(self) -> None:
        """An assertion signed with another key does not verify with the registered one."""
        other = pm(private_key=other_key_pem()).private_key
        assertion = client_assertion(
            client_id="c", private_key=other, token_url=TOKEN_URL, issued_at=NOW_S, jti="j"
        )
        with pytest.raises(jwt.InvalidSignatureError):
            decode_assertion(assertion)

    @pytest.mark.parametrize("lifetime", [0, 301, -5])
    def test_lifetime_bounded(self, lifetime: int) -> None:
        """Auth0 accepts at most 300 s between iat and exp; we refuse to build more."""
        with pytest.raises(bb.ConfigurationError, match="300"):
            client_assertion(
                client_id="c",
                private_key=pm().private_key,
                token_url=TOKEN_URL,
                issued_at=1,
                jti="j",
                lifetime=lifetime,
            )

    def test_unique_jti_and_fresh_iat_across_token_requests(self) -> None:
        """Each token request carries a new jti and the clock's current iat."""
        clock = Clock()
        provider = pm(clock=clock.ns)
        seen = []
        for _ in range(3):
            request = provider.build_token_request(int(clock.seconds), str(uuid.uuid4()))
            seen.append(decode_assertion(body_of(request)["client_assertion"]))
            clock.advance(1)
        assert len({c["jti"] for c in seen}) == 3
        assert [c["iat"] for c in seen] == [NOW_S, NOW_S + 1, NOW_S + 2]

    def test_flow_uses_clock_and_uuid4(self) -> None:
        """The flow's assertion takes iat from the injected clock and a UUID4 jti."""
        provider = pm(clock=lambda: NOW_S * 10**9 + 999_999_999)
        flow = provider.balance_flow()
        effect = next(flow)
        assert isinstance(effect, Acquire)  # a cold cache: take the refresh lock first
        assert effect.lock is token_cache().refresh_lock
        effect.lock.acquire()  # as a driver does
        request = flow.send(None)
        flow.close()
        effect.lock.release()  # as a driver does with what the flow still holds at its end
        assert not token_cache().refresh_lock.locked()
        assert isinstance(request, httpx.Request)
        assert str(request.url) == TOKEN_URL
        claims = decode_assertion(body_of(request)["client_assertion"])
        assert claims["iat"] == NOW_S
        assert uuid.UUID(claims["jti"]).version == 4


class TestRequests:
    def test_token_request_shape(self) -> None:
        """The token request is a JSON client-credentials POST with a jwt-bearer client assertion."""
        request = pm().build_token_request(NOW_S, "jti-1")
        assert request.method == "POST"
        assert str(request.url) == TOKEN_URL
        assert request.headers["Content-Type"] == "application/json"
        assert "Authorization" not in request.headers
        body = body_of(request)
        assert set(body) == {
            "client_id",
            "client_assertion_type",
            "client_assertion",
            "audience",
            "grant_type",
        }
        assert body["client_id"] == POLYMARKET_US_TEST_CLIENT_ID
        assert body["client_assertion_type"] == CLIENT_ASSERTION_TYPE
        assert body["audience"] == API_URL
        assert body["grant_type"] == "client_credentials"
        assert decode_assertion(body["client_assertion"])["jti"] == "jti-1"

    def test_balance_request_shape(self) -> None:
        """The balance request carries the bearer token, the participant id and the account."""
        request = pm(currency="USD").build_request(TOKEN)
        assert request.method == "POST"
        assert str(request.url) == API_URL + BALANCE_PATH
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["x-participant-id"] == POLYMARKET_US_TEST_PARTICIPANT_ID
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("bastion-balance/")
        assert body_of(request) == {"name": POLYMARKET_US_TEST_ACCOUNT, "currency": "USD"}


SYNTH = POLYMARKET_US_SYNTHETIC_BALANCE


def snake(key: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in key)


def snake_body(payload: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "securities":
            out[key] = {sym: {snake(k): v for k, v in entry.items()} for sym, entry in value.items()}
        else:
            out[snake(key)] = value
    return out


def comparable(balance: bb.Balance) -> dict[str, Any]:
    data = balance.to_dict()
    del data["fetched_at"]
    return data


class TestParse:
    def test_synthetic_example(self) -> None:
        """The synthetic example maps exactly: total = balance + Σ marketValue, available = buyingPower."""
        balance = respond(pm(), json_response(200, SYNTH))
        assert balance.total == Decimal("1650.5050")
        assert balance.total == Decimal("1250.50") + Decimal("312.40") + Decimal("87.6050")
        assert balance.available == Decimal("1125.874")
        assert (balance.wallet, balance.margin_used, balance.unrealized_pnl) == (
            Decimal("1250.50"),
            Decimal("60.25"),
            None,
        )
        assert (balance.currency, balance.exchange, balance.label) == (
            "USD",
            "polymarket_us",
            "polymarket_us",
        )
        assert balance.breakdown == {
            "tec-nfl-2026-11-29-kc-lv": bb.Holding(
                currency="USD", total=Decimal("312.40"), available=Decimal("265.54")
            ),
            "pol-fed-rate-cut-2026-12": bb.Holding(
                currency="USD", total=Decimal("87.6050"), available=Decimal("70.084")
            ),
        }
        assert balance.extra == {
            "balance": Decimal("1250.50"),
            "capitalRequirement": Decimal("100.00"),
            "excessCapital": Decimal("1486.124"),
            "totalSecurityNotionalValue": Decimal("645.00"),
            "totalSecurityAvailableValue": Decimal("335.624"),
            "openOrders": Decimal("400.00"),
            "alternateCapitalRequirement": Decimal("0"),
            "unsettledFunds": Decimal("25.00"),
            "marginRequirement": Decimal("60.25"),
        }
        assert balance.raw == SYNTH

    def test_synthetic_example_is_self_consistent(self) -> None:
        """The synthetic figures agree with each other (sums of securities, illustrative formulas)."""
        d = {k: Decimal(v) for k, v in SYNTH.items() if k not in {"securities", "updateTime"} and v}
        secs = SYNTH["securities"].values()
        assert d["totalSecurityNotionalValue"] == sum(Decimal(s["notionalValue"]) for s in secs)
        assert d["totalSecurityAvailableValue"] == sum(Decimal(s["availableValue"]) for s in secs)
        assert d["excessCapital"] == d["balance"] + d["totalSecurityAvailableValue"] - d["capitalRequirement"]
        assert d["buyingPower"] == (
            d["balance"] + d["totalSecurityAvailableValue"] - d["openOrders"] - d["marginRequirement"]
        )

    @pytest.mark.parametrize("securities", ["absent", None, {}])
    def test_no_securities_total_is_balance(self, securities: object) -> None:
        """Without securities the total is the cash balance, as sent."""
        payload = {"balance": "10.000", "buyingPower": "9.5"}
        if securities != "absent":
            payload["securities"] = securities  # type: ignore[assignment]
        balance = respond(pm(), json_response(200, payload))
        assert (balance.total, balance.available, balance.breakdown) == (
            Decimal("10.000"),
            Decimal("9.5"),
            {},
        )
        assert balance.margin_used is None

    def test_snake_case_equals_camel_case(self) -> None:
        """The v1beta1 snake_case body gives the same Balance as the camelCase one."""
        camel = respond(pm(), json_response(200, SYNTH))
        snaked = snake_body(dict(SYNTH))
        assert "buying_power" in snaked
        assert "market_value" in snaked["securities"]["tec-nfl-2026-11-29-kc-lv"]
        assert comparable(respond(pm(), json_response(200, snaked))) == comparable(camel)

    @given(
        cash=st.decimals(
            allow_nan=False, allow_infinity=False, places=6, min_value=-(10**12), max_value=10**12
        ),
        values=st.dictionaries(
            st.text("abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=20),
            st.decimals(allow_nan=False, allow_infinity=False, places=18, min_value=0, max_value=10**15),
            max_size=8,
        ),
        use_snake=st.booleans(),
    )
    def test_total_is_exact_sum(self, cash: Decimal, values: dict[str, Decimal], use_snake: bool) -> None:
        """For any figures the total is balance + Σ marketValue, exactly, in either key style."""
        payload: dict[str, Any] = {
            "balance": str(cash),
            "buyingPower": "1",
            "securities": {sym: {"marketValue": str(v), "haircut": "0"} for sym, v in values.items()},
        }
        body = snake_body(payload) if use_snake else payload
        balance = respond(pm(), json_response(200, body))
        with decimal.localcontext(decimal.Context(prec=200, traps=[decimal.Inexact])):
            expected = cash + sum(values.values(), Decimal(0))
        assert balance.total == expected
        assert set(balance.breakdown) == set(values)  # symbols are names: never re-cased

    def test_symbols_keep_their_underscores(self) -> None:
        """Security symbols are names, not fields: snake_case normalisation leaves them alone."""
        payload = {"balance": "1", "buying_power": "1", "securities": {"a_b_c": {"market_value": "2"}}}
        assert set(respond(pm(), json_response(200, payload)).breakdown) == {"a_b_c"}

    def test_numbers_as_json_numbers_are_exact(self) -> None:
        """Figures sent as JSON numbers are decoded straight to Decimal."""
        body = b'{"balance": 0.1000000000000000055511151231257827, "buyingPower": 1, "securities": {}}'
        assert respond(pm(), httpx.Response(200, content=body)).total == Decimal(
            "0.1000000000000000055511151231257827"
        )

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"buyingPower": "1"}, "$.balance"),
            ({"balance": "1"}, "$.buyingPower"),
            ({"balance": "", "buyingPower": "1"}, "$.balance"),
            ({"balance": "1", "buyingPower": "NaN"}, "$.buyingPower"),
            (
                {"balance": "1", "buyingPower": "1", "securities": {"X": {"availableValue": "1"}}},
                "$.securities",
            ),
            (
                {"balance": "1", "buyingPower": "1", "securities": {"X": {"marketValue": "1e9999"}}},
                "$.securities",
            ),
        ],
    )
    def test_required_figures_bad(self, payload: dict[str, Any], field: str) -> None:
        """A missing or malformed balance, buyingPower or marketValue is an error naming the field."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            respond(pm(), json_response(200, payload))
        assert info.value.venue == "polymarket_us"
        assert str(info.value.field).startswith(field)

    @pytest.mark.parametrize("securities", [["X"], "X", {"X": "1"}])
    def test_securities_wrong_shape(self, securities: object) -> None:
        """A securities member that is not a map of objects is an UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError):
            respond(pm(), json_response(200, {"balance": "1", "buyingPower": "1", "securities": securities}))

    def test_optional_figures_empty_are_none(self) -> None:
        """An empty marginRequirement or availableValue is None, never zero."""
        payload = {
            "balance": "1",
            "buyingPower": "1",
            "marginRequirement": "",
            "securities": {"X": {"marketValue": "2", "availableValue": ""}},
        }
        balance = respond(pm(), json_response(200, payload))
        assert balance.margin_used is None
        assert balance.breakdown["X"].available is None
        assert balance.total == Decimal(3)

    def test_conflicting_key_styles(self) -> None:
        """One field sent in both styles with different values is refused, not guessed."""
        payload = {"balance": "1", "buyingPower": "1", "buying_power": "2"}
        with pytest.raises(bb.UnexpectedResponseError, match="camelCase and snake_case") as info:
            respond(pm(), json_response(200, payload))
        assert info.value.field == "$.buyingPower"

    def test_same_value_in_both_styles(self) -> None:
        """One field sent in both styles with the same value is fine."""
        payload = {"balance": "1", "buyingPower": "1", "buying_power": "1"}
        assert respond(pm(), json_response(200, payload)).available == Decimal(1)

    @pytest.mark.parametrize(
        ("key", "camel"),
        [
            ("buying_power", "buyingPower"),
            ("balance", "balance"),
            ("buyingPower", "buyingPower"),
            ("alternate_capital_requirement_currency", "alternateCapitalRequirementCurrency"),
        ],
    )
    def test_camel_case(self, key: str, camel: str) -> None:
        """snake_case keys become the camelCase of docs.polymarket.us."""
        assert camel_case(key) == camel

    def test_normalize_keeps_raw(self) -> None:
        """Normalisation copies: the raw payload kept on the Balance is untouched."""
        raw = snake_body(dict(SYNTH))
        normalize(raw)
        assert "buying_power" in raw

    def test_other_currency(self) -> None:
        """The Balance and its holdings are in the request's currency."""
        balance = respond(
            pm(currency="USDC"),
            json_response(
                200, {"balance": "1", "buyingPower": "1", "securities": {"X": {"marketValue": "1"}}}
            ),
        )
        assert balance.currency == balance.breakdown["X"].currency == "USDC"


class TestTokenResponse:
    def test_documented_answer(self) -> None:
        """The documented token answer gives the token and its 180 s lifetime."""
        body = {"access_token": "eyJ.abc.def", "token_type": "Bearer", "expires_in": 180}
        assert pm().parse_token_response(json_response(200, body)) == ("eyJ.abc.def", 180.0)

    def test_expires_in_absent(self) -> None:
        """Without expires_in the documented 180 s is assumed."""
        assert pm().parse_token_response(json_response(200, {"access_token": "t"})) == ("t", 180.0)

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"token_type": "Bearer", "expires_in": 180}, "$.access_token"),
            ({"access_token": "", "expires_in": 180}, "$.access_token"),
            ({"access_token": "a b", "expires_in": 180}, "$.access_token"),
            ({"access_token": 5, "expires_in": 180}, "$.access_token"),
            ({"access_token": "t", "token_type": "mac", "expires_in": 180}, "$.token_type"),
            ({"access_token": "t", "expires_in": 0}, "$.expires_in"),
            ({"access_token": "t", "expires_in": "soon"}, "$.expires_in"),
        ],
    )
    def test_bad_answers(self, body: dict[str, Any], field: str) -> None:
        """A token answer without a usable bearer token or lifetime is an UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            pm().parse_token_response(json_response(200, body))
        assert info.value.field == field

    def test_token_never_in_error(self) -> None:
        """A refused token answer never echoes the token."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            pm().parse_token_response(json_response(200, {"access_token": "secret-tok", "token_type": "x y"}))
        assert "secret-tok" not in str(info.value)


def grpc(status: int, code: object, **headers: str) -> httpx.Response:
    response = json_response(status, {"code": code, "message": "msg", "details": []}, **headers)
    response.request = pm().build_request(TOKEN)
    return response


GRPC_ERRORS = [
    (401, 16, bb.AuthenticationError),
    (403, 7, bb.AuthenticationError),
    (429, 8, bb.RateLimitedError),
    (503, 14, bb.ServiceUnavailableError),
    (500, 13, bb.ServiceUnavailableError),
    (504, 4, bb.ServiceUnavailableError),
    (400, 3, bb.ExchangeAPIError),
    (404, 5, bb.ExchangeAPIError),
    (409, 6, bb.ExchangeAPIError),
    # by code first: the gRPC code wins over a surprising HTTP status
    (400, 16, bb.AuthenticationError),
    (200, 14, bb.ServiceUnavailableError),
    # unknown code: by HTTP status
    (503, 2, bb.ServiceUnavailableError),
    (429, 99, bb.RateLimitedError),
    (403, 2, bb.AuthenticationError),
]


class TestErrors:
    @pytest.mark.parametrize(("status", "code", "cls"), GRPC_ERRORS)
    def test_grpc_code_maps_to_class(self, status: int, code: int, cls: type[bb.ExchangeAPIError]) -> None:
        """Each gRPC code raises its class (code first, HTTP status second), raw code kept."""
        error = grpc_error(grpc(status, code))
        assert type(error) is cls
        assert (error.code, error.status_code, error.venue) == (code, status, "polymarket_us")

    @pytest.mark.parametrize("code", ["16", Decimal(16)])
    def test_code_as_string_or_decimal(self, code: object) -> None:
        """A gRPC code sent as a string (or decoded as Decimal) is read as the integer."""
        assert grpc_error(grpc(401, code)).code == 16

    @pytest.mark.parametrize("code", [True, "x", Decimal("1.5"), None])
    def test_odd_code_falls_back_to_status(self, code: object) -> None:
        """A code that is not an integer is ignored in favour of the HTTP status."""
        error = grpc_error(grpc(503, code))
        assert type(error) is bb.ServiceUnavailableError
        assert error.code is None

    def test_parse_response_raises(self) -> None:
        """parse_response raises the mapped error for a non-200 answer."""
        with pytest.raises(bb.AuthenticationError, match="PERMISSION_DENIED"):
            respond(pm(), grpc(403, 7))

    def test_rate_limit_retry_after(self) -> None:
        """A 429 (code 8) carries the Retry-After header in seconds."""
        error = grpc_error(grpc(429, 8, **{"Retry-After": "3"}))
        assert isinstance(error, bb.RateLimitedError)
        assert error.retry_after == 3
        assert error.transient

    @pytest.mark.parametrize(
        ("status", "cls"),
        [(502, bb.ServiceUnavailableError), (401, bb.AuthenticationError), (418, bb.ExchangeAPIError)],
    )
    def test_html_error_pages(self, status: int, cls: type[bb.ExchangeAPIError]) -> None:
        """An error page that is not JSON maps by HTTP status."""
        error = grpc_error(httpx.Response(status, text="<html>bad gateway</html>"))
        assert type(error) is cls
        assert error.code is None

    def test_long_message_shortened(self) -> None:
        """A very long venue message is cut short in our message."""
        response = json_response(500, {"code": 13, "message": "x" * 1000})
        assert len(str(grpc_error(response))) < 400

    def test_non_string_message(self) -> None:
        """A message that is not a string is still shown, as JSON."""
        response = json_response(500, {"code": 13, "message": {"a": 1}})
        assert '{"a": "1"}' in str(grpc_error(response))

    @pytest.mark.parametrize(
        ("status", "error", "cls"),
        [
            (401, "invalid_client", bb.AuthenticationError),
            (401, "invalid_client_assertion", bb.AuthenticationError),
            (403, "unauthorized_client", bb.AuthenticationError),
            (403, "access_denied", bb.AuthenticationError),
            (400, "invalid_grant", bb.AuthenticationError),
            (400, "invalid_scope", bb.AuthenticationError),
            (429, "too_many_requests", bb.RateLimitedError),
            (500, "server_error", bb.ServiceUnavailableError),
            (503, "temporarily_unavailable", bb.ServiceUnavailableError),
            (400, "invalid_request", bb.AuthenticationError),
            (404, "not_found", bb.ExchangeAPIError),
            (503, "something_new", bb.ServiceUnavailableError),
        ],
    )
    def test_token_error_maps_to_class(self, status: int, error: str, cls: type[bb.ExchangeAPIError]) -> None:
        """Each OAuth error of the token endpoint raises its class, the error string kept as code."""
        response = json_response(status, {"error": error, "error_description": "why"})
        with pytest.raises(bb.ExchangeAPIError) as info:
            pm().parse_token_response(response)
        assert type(info.value) is cls
        assert info.value.code == error
        assert "why" in str(info.value)

    @pytest.mark.parametrize(
        ("status", "cls"),
        [(500, bb.ServiceUnavailableError), (429, bb.RateLimitedError), (401, bb.AuthenticationError)],
    )
    def test_token_error_without_body(self, status: int, cls: type[bb.ExchangeAPIError]) -> None:
        """A token error page without an OAuth body maps by HTTP status."""
        with pytest.raises(bb.ExchangeAPIError) as info:
            pm().parse_token_response(httpx.Response(status, text="<html/>", headers={"Retry-After": "2"}))
        assert type(info.value) is cls
        assert info.value.code is None

    def test_token_rate_limit_retry_after(self) -> None:
        """Auth0's too_many_requests carries Retry-After."""
        response = json_response(429, {"error": "too_many_requests"}, **{"Retry-After": "7"})
        error = token_error(response)
        assert isinstance(error, bb.RateLimitedError)
        assert error.retry_after == 7


def encrypted_pem() -> str:
    key = serialization.load_pem_private_key(PEM.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()


def ec_pem() -> str:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


class TestConfiguration:
    @pytest.mark.parametrize(
        ("factory", "match"),
        [(encrypted_pem, "encrypted"), (ec_pem, "RSA key"), (lambda: other_key_pem(1024), "2048")],
    )
    def test_unusable_keys(self, factory: Callable[[], str], match: str) -> None:
        """Encrypted, non-RSA and short keys are refused with a message that says why."""
        with pytest.raises(bb.ConfigurationError, match=match):
            pm(private_key=factory())

    def test_key_as_bytes(self) -> None:
        """The private key may be PEM bytes, with a trailing newline."""
        assert pm(private_key=(PEM + "\n").encode()).private_key.key_size == 2048

    def test_preprod(self) -> None:
        """environment='preprod' picks the pre-production hosts."""
        provider = pm(environment="preprod")
        assert provider.base_url == "https://api.preprod.polymarketexchange.com"
        assert provider.auth_url == "https://pmx-preprod.us.auth0.com"
        assert provider.audience == "https://api.preprod.polymarketexchange.com"

    def test_overrides(self) -> None:
        """Explicit URLs win; loopback http is allowed; the audience stays the environment's API."""
        provider = pm(base_url="http://127.0.0.1:9000/", auth_url="http://localhost:9001/")
        assert (provider.base_url, provider.auth_url) == ("http://127.0.0.1:9000", "http://localhost:9001")
        assert provider.token_url == "http://localhost:9001/oauth/token"
        assert provider.audience == API_URL
        assert pm(audience="urn:custom").audience == "urn:custom"

    def test_equality_ignores_key_object(self) -> None:
        """Two providers built from the same settings compare equal."""
        assert pm() == pm()
        assert pm() != pm(account="firms/BASTION-TEST/accounts/other")


class TestAgainstSimulator:
    def test_token_reused_while_valid(self) -> None:
        """Later fetches reuse the cached token: one token request for three balances."""
        venue = SimulatedPolymarketUS()
        with client_for(Simulator(venue)) as client:
            for _ in range(3):
                client.fetch(pm())
        assert (venue.token_calls, venue.calls) == (1, 3)

    def test_token_refreshed_near_expiry(self) -> None:
        """A token with less than 30 s left is replaced before use; before that it is reused."""
        clock = Clock()
        token_cache().monotonic = clock.mono
        venue = SimulatedPolymarketUS(clock=clock.ns)
        provider = pm(clock=clock.ns)
        with client_for(Simulator(venue)) as client:
            client.fetch(provider)
            clock.advance(149)
            client.fetch(provider)
            assert venue.token_calls == 1
            clock.advance(2)  # 151 s old: less than 30 s left of 180
            client.fetch(provider)
            assert venue.token_calls == 2
            clock.advance(151)
            client.fetch(provider)
        assert venue.token_calls == 3

    def test_token_expired_on_server_refreshed_once(self) -> None:
        """A 401 on a cached token drops it, gets exactly one new token and retries once."""
        venue = SimulatedPolymarketUS()
        with client_for(Simulator(venue)) as client:
            client.fetch(pm())
            venue.expire_tokens()
            assert client.fetch(pm()).total == Decimal("1650.5050")
        assert (venue.token_calls, venue.calls) == (2, 3)

    def test_second_401_raises(self) -> None:
        """A 401 on the refreshed token too is an AuthenticationError; no third token."""
        venue = SimulatedPolymarketUS()
        with client_for(Simulator(venue)) as client:
            client.fetch(pm())
            venue.fail_next(401, 401)
            with pytest.raises(bb.AuthenticationError) as info:
                client.fetch(pm())
        assert info.value.code == 16
        assert (venue.token_calls, venue.calls) == (2, 3)

    def test_401_on_fresh_token_not_retried(self) -> None:
        """A 401 on a token fetched for this very call is raised without another token request."""
        venue = SimulatedPolymarketUS()
        venue.fail_next(401)
        with client_for(Simulator(venue)) as client, pytest.raises(bb.AuthenticationError):
            client.fetch(pm())
        assert (venue.token_calls, venue.calls) == (1, 1)

    def test_403_not_retried(self) -> None:
        """A permission error (code 7) on a cached token is raised, the token kept."""
        venue = SimulatedPolymarketUS()
        with client_for(Simulator(venue)) as client:
            client.fetch(pm())
            with pytest.raises(bb.AuthenticationError) as info:
                client.fetch(pm(participant_id="firms/BASTION-TEST/users/someone-else"))
        assert info.value.code == 7
        assert venue.token_calls == 1

    @pytest.mark.parametrize(
        ("overrides", "code"),
        [
            ({"account": "firms/OTHER/accounts/main"}, 7),
            ({"currency": "EUR"}, 5),
        ],
    )
    def test_account_and_currency_checked(self, overrides: dict[str, object], code: int) -> None:
        """An account of another firm is refused (7); an unknown currency is not found (5)."""
        venue = SimulatedPolymarketUS()
        with client_for(Simulator(venue)) as client, pytest.raises(bb.ExchangeAPIError) as info:
            client.fetch(pm(**overrides))
        assert info.value.code == code

    def test_wrong_key_is_invalid_client(self) -> None:
        """A key that is not the registered one fails as Auth0 fails: invalid_client."""
        venue = SimulatedPolymarketUS()
        with client_for(Simulator(venue)) as client, pytest.raises(bb.AuthenticationError) as info:
            client.fetch(pm(private_key=other_key_pem()))
        assert info.value.code == "invalid_client"
        assert venue.calls == 0

    def test_unknown_client(self) -> None:
        """An unknown client id is invalid_client."""
        venue = SimulatedPolymarketUS()
        with client_for(Simulator(venue)) as client, pytest.raises(bb.AuthenticationError) as info:
            client.fetch(pm(client_id="nobody"))
        assert info.value.code == "invalid_client"

    def test_wrong_audience(self) -> None:
        """An audience the tenant does not know is access_denied."""
        venue = SimulatedPolymarketUS()
        with client_for(Simulator(venue)) as client, pytest.raises(bb.AuthenticationError) as info:
            client.fetch(pm(audience="https://api.example.com"))
        assert info.value.code == "access_denied"

    def test_skewed_clock_rejected(self) -> None:
        """An assertion whose exp has passed on the server's clock is invalid_client_assertion."""
        venue = SimulatedPolymarketUS()
        with client_for(Simulator(venue)) as client, pytest.raises(bb.AuthenticationError) as info:
            client.fetch(pm(clock=lambda: (NOW_S - 10**6) * 10**9))
        assert info.value.code == "invalid_client_assertion"

    def test_token_endpoint_down_then_retry(self) -> None:
        """A 503 from Auth0 is transient; the retried flow gets a token and the balance."""
        venue = SimulatedPolymarketUS()
        venue.fail_next_token(503)
        client = bb.BalanceClient(http_client=Simulator(venue).client(), retry=bb.RetryPolicy(backoff=0.001))
        with client:
            assert client.fetch(pm()).total == Decimal("1650.5050")
        assert venue.token_calls == 2

    def test_lock_released_after_token_failure(self) -> None:
        """A refused token request releases the refresh lock, so the next fetch can try."""
        venue = SimulatedPolymarketUS()
        venue.fail_next_token("invalid_client")
        with client_for(Simulator(venue)) as client:
            with pytest.raises(bb.AuthenticationError):
                client.fetch(pm())
            assert not token_cache().refresh_lock.locked()
            assert client.fetch(pm(), timeout=1).total == Decimal("1650.5050")

    def test_rate_limited_drains_firm_limiter(self) -> None:
        """After a 429 the firm's limiter is empty, so the next call cannot start within a short deadline."""
        venue = SimulatedPolymarketUS()
        venue.fail_next(429)
        provider = pm()
        frozen_firm_limiter()  # no refill while the test runs
        with client_for(Simulator(venue)) as client:
            with pytest.raises(bb.RateLimitedError) as info:
                client.fetch(provider)
            assert info.value.retry_after == 1
            with pytest.raises(bb.RateLimitedError, match="client-side rate limit"):
                client.fetch(provider, timeout=0.02)
        assert venue.calls == 1

    def test_limiter_is_per_firm(self) -> None:
        """Users of one firm share the 20/s limiter; a burst of 20 passes, the 21st must wait."""
        venue = SimulatedPolymarketUS(
            participants={
                POLYMARKET_US_TEST_PARTICIPANT_ID: (POLYMARKET_US_TEST_ACCOUNT,),
                "firms/BASTION-TEST/users/trader-2": (POLYMARKET_US_TEST_ACCOUNT,),
            }
        )
        users = [pm(), pm(participant_id="firms/BASTION-TEST/users/trader-2")]
        frozen_firm_limiter()
        with client_for(Simulator(venue)) as client:
            for i in range(20):
                client.fetch(users[i % 2], timeout=0.02)
            with pytest.raises(bb.RateLimitedError):
                client.fetch(users[0], timeout=0.02)
        assert venue.calls == 20
        one = _state.shared_state("polymarket_us", API_URL, "firm:BASTION-TEST")
        assert one.limiters["firm"].capacity == 20

    @pytest.mark.parametrize("status", [500, 503, 504])
    def test_server_errors_are_transient(self, status: int) -> None:
        """5xx answers are ServiceUnavailableError, retried by the default policy."""
        venue = SimulatedPolymarketUS()
        venue.fail_next(status)
        with client_for(Simulator(venue)) as client, pytest.raises(bb.ServiceUnavailableError) as info:
            client.fetch(pm())
        assert info.value.transient


def test_100_concurrent_fetches_one_token_request() -> None:
    """100 asyncio tasks and 4 threads at once against a cold cache cause exactly one token request.

    Auth0 is made slow (20 ms per token answer) so every fetch finds the cache empty and queues on
    the refresh lock while the first one is asking.
    """
    venue = SimulatedPolymarketUS()
    sim = Simulator(venue)
    providers = [pm(label=f"p{i}") for i in range(4)]  # one credential, four objects

    def sync_handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            time.sleep(0.02)
        return sim(request)

    async def async_handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            await asyncio.sleep(0.02)
        return sim(request)

    async def batch() -> list[bb.Balance]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(async_handler))
        async with bb.AsyncBalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
            return await asyncio.gather(*(client.fetch(providers[i % 4]) for i in range(100)))

    def sync_worker(count: int) -> int:
        http = httpx.Client(transport=httpx.MockTransport(sync_handler))
        with bb.BalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
            return sum(client.fetch(providers[i % 4]).total == Decimal("1650.5050") for i in range(count))

    with rate_limits_disabled(), ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(sync_worker, 5) for _ in range(4)]
        balances = asyncio.run(batch())
        assert [f.result() for f in futures] == [5, 5, 5, 5]
    assert all(b.total == Decimal("1650.5050") for b in balances)
    assert (venue.token_calls, venue.tokens_issued, venue.calls) == (1, 1, 120)


def test_waiter_uses_token_refreshed_meanwhile() -> None:
    """A flow that queued on the refresh lock uses the token the lock holder stored: no second request."""
    provider = pm()
    first, second = provider.balance_flow(), provider.balance_flow()
    lock = token_cache().refresh_lock
    assert next(first).lock is lock  # type: ignore[union-attr]
    assert next(second).lock is lock  # type: ignore[union-attr]  # both saw an empty cache
    lock.acquire()
    assert isinstance(first.send(None), httpx.Request)  # the token request
    answer = json_response(200, {"access_token": "tok", "token_type": "Bearer", "expires_in": 180})
    assert isinstance(first.send(answer), Release)  # token stored, lock given back
    lock.release()
    assert isinstance(first.send(None), Throttle)
    lock.acquire()
    assert isinstance(second.send(None), Release)  # found the token, asked nobody
    lock.release()
    assert isinstance(second.send(None), Throttle)
    request = second.send(None)
    assert request.headers["Authorization"] == "Bearer tok"  # type: ignore[union-attr]
    first.close()
    second.close()


def token_body(assertion: str | None = None, **overrides: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": POLYMARKET_US_TEST_CLIENT_ID,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion if assertion is not None else signed(),
        "audience": API_URL,
        "grant_type": "client_credentials",
    }
    body.update(overrides)
    return body


def signed(*, key: str = PEM, alg: str = "RS256", **claims: object) -> str:
    base: dict[str, Any] = {
        "iss": POLYMARKET_US_TEST_CLIENT_ID,
        "sub": POLYMARKET_US_TEST_CLIENT_ID,
        "aud": TOKEN_URL,
        "iat": NOW_S,
        "exp": NOW_S + 60,
        "jti": str(uuid.uuid4()),
    }
    base.update(claims)
    base = {k: v for k, v in base.items() if v is not None}
    return jwt.encode(
        base, key if alg.startswith("RS") else "a-hmac-secret-of-32-bytes-or-more!", algorithm=alg
    )


def post_token(venue: SimulatedPolymarketUS, body: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return venue.handle(httpx.Request("POST", TOKEN_URL, content=content))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TestSimulatedAuth0:
    def sim(self) -> SimulatedPolymarketUS:
        return SimulatedPolymarketUS(clock=lambda: NOW_S * 10**9)

    def test_accepts_a_good_assertion(self) -> None:
        """A correct request gets an opaque bearer token for 180 s."""
        response = post_token(self.sim(), token_body())
        payload = json.loads(response.content)
        assert response.status_code == 200
        assert (payload["token_type"], payload["expires_in"]) == ("Bearer", 180)
        assert payload["access_token"].count(".") == 0

    def test_jti_reuse_rejected(self) -> None:
        """The same assertion (same jti) twice is invalid_client_assertion the second time."""
        venue = self.sim()
        assertion = signed()
        assert post_token(venue, token_body(assertion)).status_code == 200
        second = post_token(venue, token_body(assertion))
        assert second.status_code == 401
        assert json.loads(second.content)["error"] == "invalid_client_assertion"
        assert venue.token_calls == 2
        assert venue.tokens_issued == 1

    def test_aud_may_be_a_list(self) -> None:
        """An aud array that holds the token URL is accepted."""
        assert post_token(self.sim(), token_body(signed(aud=[TOKEN_URL, "x"]))).status_code == 200

    @pytest.mark.parametrize(
        ("body", "status", "error"),
        [
            (b"not json", 400, "invalid_request"),
            (b"[1]", 400, "invalid_request"),
            (token_body(grant_type="password"), 400, "unsupported_grant_type"),
            (token_body(client_assertion_type="urn:other"), 400, "invalid_request"),
            (token_body(client_id=None), 401, "invalid_client"),
            (token_body("not-a-jwt"), 401, "invalid_client_assertion"),
            (token_body("a.b.c"), 401, "invalid_client_assertion"),
            (token_body(signed(alg="HS256")), 401, "invalid_client_assertion"),
            (token_body(signed(key=other_key_pem())), 401, "invalid_client"),
            (token_body(signed(iss="someone")), 401, "invalid_client_assertion"),
            (token_body(signed(sub="someone")), 401, "invalid_client_assertion"),
            (token_body(signed(aud=API_URL)), 401, "invalid_client_assertion"),
            (token_body(signed(exp=None)), 401, "invalid_client_assertion"),
            (token_body(signed(iat=None)), 401, "invalid_client_assertion"),
            (token_body(signed(exp=NOW_S + 301, iat=NOW_S)), 401, "invalid_client_assertion"),
            (token_body(signed(exp=NOW_S, iat=NOW_S - 60)), 401, "invalid_client_assertion"),
            (token_body(signed(iat=NOW_S + 120, exp=NOW_S + 180)), 401, "invalid_client_assertion"),
            (token_body(signed(jti=None)), 401, "invalid_client_assertion"),
            (token_body(signed(jti="")), 401, "invalid_client_assertion"),
            (token_body(audience="https://elsewhere"), 403, "access_denied"),
        ],
    )
    def test_refusals(self, body: object, status: int, error: str) -> None:
        """Each broken request is refused with Auth0's status and error code."""
        response = post_token(self.sim(), body)
        assert response.status_code == status
        assert json.loads(response.content)["error"] == error

    def test_claims_not_an_object(self) -> None:
        """A JWT whose claims are not an object is invalid_client_assertion."""
        key = serialization.load_pem_private_key(PEM.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        head = b64(b'{"alg":"RS256","typ":"JWT"}')
        claims = b64(b"[1,2]")
        sig = b64(key.sign(f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()))
        response = post_token(self.sim(), token_body(f"{head}.{claims}.{sig}"))
        assert json.loads(response.content)["error"] == "invalid_client_assertion"

    def test_wrong_path(self) -> None:
        """Other paths of the tenant are not found."""
        assert self.sim().handle(httpx.Request("GET", AUTH_URL + "/authorize")).status_code == 404

    def test_scripted_token_answers(self) -> None:
        """fail_next_token gives scripted OAuth errors, statuses and responses in order."""
        venue = self.sim()
        venue.fail_next_token("server_error", 502, httpx.Response(418))
        assert json.loads(post_token(venue, token_body()).content)["error"] == "server_error"
        assert post_token(venue, token_body()).status_code == 502
        assert post_token(venue, token_body()).status_code == 418
        assert post_token(venue, token_body()).status_code == 200


class TestSimulatedAPI:
    def post(
        self, venue: SimulatedPolymarketUS, *, headers: dict[str, str], content: bytes
    ) -> httpx.Response:
        return venue.handle(httpx.Request("POST", API_URL + BALANCE_PATH, headers=headers, content=content))

    def test_good_call(self) -> None:
        """A valid token, participant and account get the synthetic balance."""
        venue = SimulatedPolymarketUS(clock=lambda: NOW_S * 10**9)
        token = json.loads(post_token(venue, token_body()).content)["access_token"]
        request = pm().build_request(token)
        response = venue.handle(request)
        assert response.status_code == 200
        assert json.loads(response.content) == SYNTH

    @pytest.mark.parametrize(
        ("headers", "content", "status", "code"),
        [
            (
                {"Authorization": "Bearer nope", "x-participant-id": POLYMARKET_US_TEST_PARTICIPANT_ID},
                b"{}",
                401,
                16,
            ),
            (
                {"Authorization": "Basic TOKEN", "x-participant-id": POLYMARKET_US_TEST_PARTICIPANT_ID},
                b"{}",
                401,
                16,
            ),
            ({"Authorization": "Bearer TOKEN"}, b"{}", 403, 7),
            ({"Authorization": "Bearer TOKEN", "x-participant-id": "firms/X/users/Y"}, b"{}", 403, 7),
            (
                {"Authorization": "Bearer TOKEN", "x-participant-id": POLYMARKET_US_TEST_PARTICIPANT_ID},
                b"{",
                400,
                3,
            ),
            (
                {"Authorization": "Bearer TOKEN", "x-participant-id": POLYMARKET_US_TEST_PARTICIPANT_ID},
                b"[]",
                400,
                3,
            ),
            (
                {"Authorization": "Bearer TOKEN", "x-participant-id": POLYMARKET_US_TEST_PARTICIPANT_ID},
                b'{"name": "firms/BASTION-TEST/accounts/main"}',
                400,
                3,
            ),
        ],
    )
    def test_refusals(self, headers: dict[str, str], content: bytes, status: int, code: int) -> None:
        """Bad tokens, participants and bodies get the venue's gRPC error bodies."""
        venue = SimulatedPolymarketUS(clock=lambda: NOW_S * 10**9)
        token = json.loads(post_token(venue, token_body()).content)["access_token"]
        headers = {k: v.replace("TOKEN", token) for k, v in headers.items()}
        response = self.post(venue, headers=headers, content=content)
        assert response.status_code == status
        assert json.loads(response.content)["code"] == code

    def test_token_expires_after_180_s(self) -> None:
        """A token is refused once 180 s have passed on the simulator's clock."""
        clock = Clock()
        venue = SimulatedPolymarketUS(clock=clock.ns)
        token = json.loads(post_token(venue, token_body()).content)["access_token"]
        clock.advance(179)
        assert venue.handle(pm().build_request(token)).status_code == 200
        clock.advance(1)
        assert venue.handle(pm().build_request(token)).status_code == 401

    def test_wrong_path(self) -> None:
        """Other API paths are not found."""
        response = SimulatedPolymarketUS().handle(httpx.Request("GET", API_URL + "/v1/health"))
        assert response.status_code == 404

    def test_scripted_answers(self) -> None:
        """fail_next gives statuses with their gRPC body, or responses, in order."""
        venue = SimulatedPolymarketUS()
        venue.fail_next(429, 418, httpx.Response(502))
        first = self.post(venue, headers={}, content=b"")
        assert (first.status_code, json.loads(first.content)["code"], first.headers["Retry-After"]) == (
            429,
            8,
            "1",
        )
        assert json.loads(self.post(venue, headers={}, content=b"").content)["code"] == 2
        assert self.post(venue, headers={}, content=b"").status_code == 502


def test_cassette_is_scrubbed() -> None:
    """The cassette holds no assertion, token, client id or participant id."""
    from .._vcr import CASSETTES

    text = (CASSETTES / "polymarket_us" / "balance.yaml").read_text()
    assert "eyJ" not in text  # no JWT (assertion) anywhere
    assert POLYMARKET_US_TEST_CLIENT_ID not in text
    assert POLYMARKET_US_TEST_PARTICIPANT_ID not in text
    assert text.count(SCRUBBED) >= 5
    assert "Bearer" not in text.replace('"token_type": "Bearer"', "")


def test_token_cache_is_per_audience() -> None:
    """A cached token serves its own audience only: another audience asks for a new one."""
    with client_for(Simulator(SimulatedPolymarketUS())) as client:
        client.fetch(pm())
    same = pm().balance_flow()
    other = pm(audience="https://other.example").balance_flow()
    assert isinstance(next(same), Throttle)  # token from the cache: straight to the call
    assert isinstance(next(other), Acquire)  # no token for this audience yet
    same.close()
    other.close()


def test_deprecated_names_still_work() -> None:
    """balance_calls and token_requests are aliases of calls and token_calls, read and written."""
    venue = SimulatedPolymarketUS()
    with client_for(Simulator(venue)) as client:
        client.fetch(pm())
        venue.expire_tokens()
        client.fetch(pm())  # 401 on the expired token, one new token, the retry
    assert (venue.token_requests, venue.balance_calls) == (venue.token_calls, venue.calls) == (2, 3)
    venue.token_requests, venue.balance_calls = 0, 0
    assert (venue.token_calls, venue.calls) == (0, 0)


def _scrub_client_id(request: Any) -> Any:  # noqa: ANN401  # a vcrpy request
    """The client id sits in the token request's JSON body: scrubbed when recording."""
    request = _scrub_request(request)
    if request.body:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        request.body = body.replace(POLYMARKET_US_TEST_CLIENT_ID, SCRUBBED).encode()
    return request


CASES = VenueCases(
    make=pm,
    venue=SimulatedPolymarketUS,
    demo=demo_pair,
    respond=lambda response: respond(pm(), response),
    secrets=("PRIVATE", "RSAPrivateKey", POLYMARKET_US_TEST_CLIENT_ID, POLYMARKET_US_TEST_PARTICIPANT_ID),
    bad_settings=(
        {"private_key": "not a pem"},
        {"private_key": PEM.replace("A", "B", 40)},
        {"private_key": PUBLIC_PEM},
        {"private_key": None},
        {"private_key": 42},
        {"client_id": ""},
        {"client_id": " id"},
        {"participant_id": "F/U"},
        {"participant_id": "firms/F/accounts/A"},
        {"participant_id": "firms//users/U"},
        {"account": "firms/F/users/U"},
        {"account": "main"},
        {"currency": "usd"},
        {"currency": ""},
        {"environment": "dev01"},
        {"environment": "production"},
        {"base_url": "http://api.prod.polymarketexchange.com"},
        {"auth_url": "http://pmx-prod.us.auth0.com"},
        {"auth_url": "https://pmx-prod.us.auth0.com/oauth/token"},
        {"base_url": ""},
        {"base_url": 5},
        {"audience": " padded"},
        {"label": ""},
    ),
    error_secrets=(*PEM.splitlines()[1:-1], *PUBLIC_PEM.splitlines()[1:-1]),
    defaults={
        "currency": "USD",
        "base_url": API_URL,
        "auth_url": AUTH_URL,
        "audience": API_URL,
        "token_url": TOKEN_URL,
        "firm": "BASTION-TEST",
    },
    url_settings=("base_url", "auth_url"),
    fetch_hosts=("pmx-prod.us.auth0.com", "api.prod.polymarketexchange.com"),
    fetched={"total": Decimal("1650.5050"), "available": Decimal("1125.874")},
    venue_after_fetch={"token_calls": 1, "tokens_issued": 1, "calls": 1},
    demo_fetched={"total": Decimal("1650.5050")},
    cassette="polymarket_us/balance.yaml",
    cassette_hooks={"before_record_request": _scrub_client_id},
    cassette_uris=(TOKEN_URL, API_URL + BALANCE_PATH),
    cassette_fetched={"total": Decimal("1650.5050"), "available": Decimal("1125.874")},
)
