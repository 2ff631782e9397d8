"""Rails balances: token flow, request shape, parsing, envelopes, errors, limits, cassette."""

from __future__ import annotations

import asyncio
import decimal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance import _state
from bastion_balance._decimal import exact_context, loads
from bastion_balance._protocol import Acquire, Release, Throttle
from bastion_balance.providers._common import SignedRequest
from bastion_balance.providers.rails import (
    BALANCES_PATH,
    TOKEN_LIMIT,
    TOKEN_PATH,
    Rails,
    rails_error,
)
from bastion_balance.testing import Simulator, json_response, rate_limits_disabled
from bastion_balance.testing._rails import (
    RAILS_DOCUMENTED_BALANCES,
    RAILS_TEST_API_KEY,
    RAILS_TEST_API_SECRET,
    SimulatedRails,
    demo_pair,
)

from .._vcr import CASSETTES, SCRUBBED, cassette_vcr
from ._venue_cases import VenueCases

SANDBOX = "https://user-account.sandbox.rails.xyz"
SANDBOX_AUTH = "https://api-auth.sandbox.rails.xyz"


def rails(**overrides: object) -> Rails:
    settings: dict[str, object] = {"api_key": RAILS_TEST_API_KEY, "api_secret": RAILS_TEST_API_SECRET}
    settings.update(overrides)
    return Rails(**settings)  # type: ignore[arg-type]


def respond(provider: Rails, response: httpx.Response) -> bb.Balance:
    response.request = provider.build_request("token")
    return provider.parse_response(response)


def token_state(provider: Rails) -> _state.SharedState:
    return _state.shared_state("rails", provider.auth_url, provider.api_key)


class FakeClock:
    """Monotonic seconds that move only when told (or when a driver 'sleeps')."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def client_for(sim: Simulator) -> bb.BalanceClient:
    return bb.BalanceClient(http_client=sim.client(), retry=bb.NO_RETRY)


def async_client_for(sim: Simulator) -> bb.AsyncBalanceClient:
    return bb.AsyncBalanceClient(http_client=sim.async_client(), retry=bb.NO_RETRY)


class TestRequests:
    def test_token_request(self) -> None:
        """The token request is a bodiless POST with the key and secret in headers."""
        request = rails().build_token_request()
        assert request.method == "POST"
        assert str(request.url) == SANDBOX_AUTH + TOKEN_PATH
        assert request.headers["X-Api-Key"] == RAILS_TEST_API_KEY
        assert request.headers["X-Api-Secret"] == RAILS_TEST_API_SECRET
        assert request.content == b""
        assert "Authorization" not in request.headers
        assert request.headers["User-Agent"].startswith("bastion-balance/")

    def test_balance_request(self) -> None:
        """The balances request is a GET with the bearer token and no credentials."""
        request = rails().build_request("abc.def")
        assert request.method == "GET"
        assert str(request.url) == SANDBOX + BALANCES_PATH
        assert request.headers["Authorization"] == "Bearer abc.def"
        assert "X-Api-Secret" not in request.headers
        assert "X-Api-Key" not in request.headers

    def test_market_parameter(self) -> None:
        """market= is sent as the documented query parameter."""
        request = rails(market="ETH-USD").build_request("t")
        assert str(request.url) == SANDBOX + BALANCES_PATH + "?market=ETH-USD"


class TestParse:
    @pytest.mark.parametrize("wrapped", [False, True])
    def test_documented_example(self, wrapped: bool) -> None:
        """The documented example maps exactly, bare or wrapped in {"balances": ...}."""
        body = {"balances": RAILS_DOCUMENTED_BALANCES} if wrapped else RAILS_DOCUMENTED_BALANCES
        balance = respond(rails(), json_response(200, body))
        assert (balance.total, balance.available) == (
            Decimal("99996952.15429778"),
            Decimal("99521353.92161779"),
        )
        assert str(balance.total) == "99996952.15429778"
        assert str(balance.available) == "99521353.92161779"
        assert balance.wallet == balance.total
        assert str(balance.margin_used) == "7261788.9945241110003337"
        assert balance.unrealized_pnl is None
        assert (balance.currency, balance.exchange, balance.label) == ("USD", "rails", "rails")
        assert balance.raw == json_payload(body)

    def test_extra_keeps_every_other_figure_as_sent(self) -> None:
        """Every other top-level figure is in extra, digit for digit, never rounded."""
        balance = respond(rails(), json_response(200, RAILS_DOCUMENTED_BALANCES))
        assert {k: str(v) for k, v in balance.extra.items()} == {
            "deposit": "100000000",
            "withdraw": "879.12",
            "withdrawFees": "8.88",
            "fees": "608.02030021",
            "pnl": "-1292.78457349",
            "funding": "-259.04082851",
            "volume": "608020.300274",
            "margin": "7261788.9945241110003337",
            "maintenanceMargin": "475598.23267999",
            "leverage": "1",
            "promoCredit": "0",
        }

    def test_breakdown_is_margin_per_market(self) -> None:
        """Each market of marketBalancesMap is a USD Holding whose total is its margin."""
        balance = respond(rails(), json_response(200, RAILS_DOCUMENTED_BALANCES))
        assert dict(balance.breakdown) == {
            "BTC-USD": bb.Holding(currency="USD", total=Decimal("6498468.2474181248786156")),
            "ETH-USD": bb.Holding(currency="USD", total=Decimal("762320.7471059860003337")),
        }
        eth = balance.raw["marketBalancesMap"]["ETH-USD"]
        assert eth["position"] == "28894.648055999998"  # float artefact kept in raw as sent

    def test_sample_identity_holds_exactly(self) -> None:
        """In the sample, availableBalance == totalBalance - maintenanceMargin exactly."""
        balance = respond(rails(), json_response(200, RAILS_DOCUMENTED_BALANCES))
        with decimal.localcontext(exact_context()):
            assert balance.available == balance.total - balance.extra["maintenanceMargin"]

    def test_total_taken_as_sent_not_recomputed(self) -> None:
        """The documented formula gives ...779; the venue's printed ...778 is what we report."""
        balance = respond(rails(), json_response(200, RAILS_DOCUMENTED_BALANCES))
        e = balance.extra
        with decimal.localcontext(exact_context()):
            formula = e["deposit"] - e["withdraw"] - e["withdrawFees"] - e["fees"] + e["pnl"] + e["funding"]
        assert formula == Decimal("99996952.15429779")
        assert balance.total == Decimal("99996952.15429778")

    @pytest.mark.parametrize("wrapped", [False, True])
    @pytest.mark.parametrize("field", ["totalBalance", "availableBalance"])
    @pytest.mark.parametrize("value", [None, "", "NaN", "1_0", " 1", True, [1], {}])
    def test_required_figure_bad(self, wrapped: bool, field: str, value: object) -> None:
        """A missing or malformed total/available names venue, field path and value."""
        body: dict[str, Any] = dict(RAILS_DOCUMENTED_BALANCES)
        if value is None:
            del body[field]
        else:
            body[field] = value
        payload = {"balances": body} if wrapped else body
        with pytest.raises(bb.UnexpectedResponseError) as info:
            respond(rails(), httpx.Response(200, json=payload))
        assert info.value.venue == "rails"
        assert info.value.field == ("$.balances." if wrapped else "$.") + field

    @pytest.mark.parametrize("value", ["", None])
    def test_margin_empty_is_none(self, value: object) -> None:
        """An empty or null margin is None, never zero; absent markets give no breakdown."""
        body = {"totalBalance": "1", "availableBalance": "0.5", "margin": value}
        balance = respond(rails(), httpx.Response(200, json=body))
        assert balance.margin_used is None
        assert balance.breakdown == {}
        assert balance.extra == {}

    def test_balances_member_not_an_object_is_bare(self) -> None:
        """Only an object under "balances" is an envelope; otherwise the body itself is read."""
        body = {"balances": None, "totalBalance": "2", "availableBalance": "1"}
        assert respond(rails(), httpx.Response(200, json=body)).total == Decimal(2)

    @pytest.mark.parametrize(
        ("markets", "field"),
        [
            ([1], "$.marketBalancesMap"),
            ({"ETH-USD": "7"}, "$.marketBalancesMap.ETH-USD"),
            ({"ETH-USD": {"margin": "x"}}, "$.marketBalancesMap.ETH-USD.margin"),
        ],
    )
    def test_bad_market_map(self, markets: object, field: str) -> None:
        """A malformed marketBalancesMap is an UnexpectedResponseError naming where."""
        body = {"totalBalance": "1", "availableBalance": "1", "marketBalancesMap": markets}
        with pytest.raises(bb.UnexpectedResponseError) as info:
            respond(rails(), httpx.Response(200, json=body))
        assert info.value.field == field

    def test_market_without_margin(self) -> None:
        """A market that reports no margin has a Holding with total None."""
        body = {"totalBalance": "1", "availableBalance": "1", "marketBalancesMap": {"X-USD": {}}}
        balance = respond(rails(), httpx.Response(200, json=body))
        assert balance.breakdown["X-USD"] == bb.Holding(currency="USD", total=None)

    def test_not_a_json_object(self) -> None:
        """A JSON array where the object belongs is an UnexpectedResponseError (HTML: test_every_venue.py)."""
        with pytest.raises(bb.UnexpectedResponseError):
            respond(rails(), httpx.Response(200, json=[1, 2]))

    @given(
        st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,30})?", fullmatch=True),
        st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,30})?", fullmatch=True),
        st.booleans(),
    )
    def test_decimal_strings_round_trip(self, total: str, other: str, as_number: bool) -> None:
        """Any plain decimal figure, as a string or a JSON number, arrives digit for digit."""
        quote = "" if as_number else '"'
        body = (
            f'{{"totalBalance": {quote}{total}{quote}, "availableBalance": {quote}{other}{quote}, '
            f'"pnl": {quote}{other}{quote}, "marketBalancesMap": {{"M": {{"margin": {quote}{total}{quote}}}}}}}'
        )
        balance = respond(rails(), httpx.Response(200, content=body.encode()))
        assert balance.total.as_tuple() == Decimal(total).as_tuple()
        assert balance.available.as_tuple() == Decimal(other).as_tuple()
        assert balance.extra["pnl"].as_tuple() == Decimal(other).as_tuple()
        margin = balance.breakdown["M"].total
        assert margin is not None
        assert margin.as_tuple() == Decimal(total).as_tuple()


def json_payload(body: object) -> Any:
    return loads(json_response(200, body).content, venue="rails")


class TestTokenAnswer:
    def test_documented_answer(self) -> None:
        """The documented token answer gives the token and its 1800 s lifetime."""
        payload = {"access_token": "eyJ.a.b", "token_type": "Bearer", "expires_in": 1800}
        assert rails().parse_token_response(json_response(200, payload)) == ("eyJ.a.b", 1800.0)

    def test_missing_lifetime_is_documented_one(self) -> None:
        """Without expires_in the documented 30 minutes are assumed; token_type may be lower case."""
        payload = {"access_token": "t", "token_type": "bearer"}
        assert rails().parse_token_response(json_response(200, payload)) == ("t", 1800.0)

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"token_type": "Bearer", "expires_in": 1800}, "$.access_token"),
            ({"access_token": "", "expires_in": 1800}, "$.access_token"),
            ({"access_token": "secret token", "expires_in": 1800}, "$.access_token"),
            ({"access_token": 5, "expires_in": 1800}, "$.access_token"),
            ({"access_token": "t", "token_type": "MAC"}, "$.token_type"),
            ({"access_token": "t", "expires_in": 0}, "$.expires_in"),
            ({"access_token": "t", "expires_in": "soon"}, "$.expires_in"),
            ({"access_token": "t", "expires_in": -5}, "$.expires_in"),
        ],
    )
    def test_bad_answer(self, payload: dict[str, object], field: str) -> None:
        """A token answer without a usable bearer token is an UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            rails().parse_token_response(json_response(200, payload))
        assert info.value.field == field
        assert "secret token" not in str(info.value)


ERRORS = [
    ("token", 401, bb.AuthenticationError),
    ("token", 403, bb.AuthenticationError),
    ("token", 429, bb.RateLimitedError),
    ("token", 400, bb.ExchangeAPIError),
    ("token", 500, bb.ServiceUnavailableError),
    ("token", 503, bb.ServiceUnavailableError),
    ("balances", 401, bb.AuthenticationError),
    ("balances", 403, bb.AuthenticationError),
    ("balances", 429, bb.RateLimitedError),
    ("balances", 400, bb.ExchangeAPIError),
    ("balances", 404, bb.ExchangeAPIError),
    ("balances", 418, bb.ExchangeAPIError),
    ("balances", 500, bb.ServiceUnavailableError),
    ("balances", 502, bb.ServiceUnavailableError),
]


class TestErrors:
    @pytest.mark.parametrize(("endpoint", "status", "cls"), ERRORS)
    def test_status_maps_to_class(self, endpoint: str, status: int, cls: type[bb.ExchangeAPIError]) -> None:
        """Each status of each endpoint raises its class with the venue's message."""
        response = json_response(status, {"message": "Venue says no", "code": "E42"})
        provider = rails()
        parse = provider.parse_token_response if endpoint == "token" else provider.parse_response
        response.request = provider.build_request("t")
        with pytest.raises(bb.ExchangeAPIError) as info:
            parse(response)
        assert type(info.value) is cls
        assert (info.value.status_code, info.value.code, info.value.venue) == (status, "E42", "rails")
        assert "Venue says no" in str(info.value)
        assert RAILS_TEST_API_SECRET not in str(info.value)

    def test_token_401_says_key_or_secret(self) -> None:
        """A refused token request says the key or secret is wrong."""
        with pytest.raises(bb.AuthenticationError, match="key or secret"):
            rails().parse_token_response(json_response(401, {"message": "Unauthorized"}))

    def test_balance_403_says_permission(self) -> None:
        """A 403 on balances says the key lacks permission (read-only key on another API)."""
        with pytest.raises(bb.AuthenticationError, match="permission"):
            respond(rails(), json_response(403, {"error": "Forbidden"}))

    @pytest.mark.parametrize(
        ("response", "text", "code"),
        [
            (json_response(400, {"error": "bad market"}), "bad market", None),
            (json_response(400, {"message": " ", "error": "second"}), "second", None),
            (json_response(400, {"code": 7, "detail": "seven"}), "seven", 7),
            (
                httpx.Response(400, content=b'{"code": 7.5, "status": "no"}'),
                '{"code": 7.5, "status": "no"}',
                None,
            ),
            (httpx.Response(503, text="<html>\n  down  </html>"), "<html> down </html>", None),
            (httpx.Response(500, text=""), "(empty body)", None),
            (httpx.Response(502, text="x" * 500), "x" * 120 + "...", None),
        ],
    )
    def test_error_body_forms(self, response: httpx.Response, text: str, code: object) -> None:
        """Undocumented error bodies: message/error member, else a short snippet; non-JSON too."""
        error = rails_error(response, endpoint="balances")
        assert str(error).endswith(": " + text)
        assert error.code == code

    def test_retry_after_is_kept(self) -> None:
        """A 429 with Retry-After carries the wait."""
        response = json_response(429, {"message": "slow"}, **{"Retry-After": "12"})
        assert rails_error(response, endpoint="token").retry_after == 12  # type: ignore[attr-defined]


class TestConfiguration:
    @pytest.mark.parametrize(
        ("urls", "missing"),
        [
            ({}, "base_url"),
            ({"base_url": "https://user-account.example"}, "auth_url"),
            ({"auth_url": "https://api-auth.example"}, "base_url"),
        ],
    )
    def test_production_needs_both_urls(self, urls: dict[str, str], missing: str) -> None:
        """Rails publishes no production hosts: production without both URLs is refused."""
        with pytest.raises(bb.ConfigurationError, match="publishes no production hosts") as info:
            rails(environment="production", **urls)
        assert f"{missing} is missing" in str(info.value)

    def test_production_with_urls(self) -> None:
        """With both URLs given, production uses them as given (trailing slash dropped)."""
        provider = rails(
            environment="production",
            base_url="https://user-account.example/",
            auth_url="https://api-auth.example",
        )
        assert (provider.base_url, provider.auth_url) == (
            "https://user-account.example",
            "https://api-auth.example",
        )


def drive(flow: Any, answers: list[httpx.Response]) -> list[object]:
    """Run a flow by hand as a driver does: take and give back turns (and release whatever the
    flow still holds at its end), skip throttles, answer requests in order."""
    effects: list[object] = []
    reply: httpx.Response | None = None
    held: list[Any] = []
    try:
        while True:
            effect = flow.send(reply)
            effects.append(effect)
            reply = None
            if isinstance(effect, Acquire):
                assert effect.lock.acquire(timeout=0)
                held.append(effect.lock)
            elif isinstance(effect, Release):
                assert effect.lock.release()
                held.remove(effect.lock)
            elif isinstance(effect, httpx.Request):
                reply = answers.pop(0)
    except StopIteration as stop:
        effects.append(stop.value)
    finally:
        for lock in held:
            lock.release()
    return effects


TOKEN_OK = {"access_token": "tok", "token_type": "Bearer", "expires_in": 1800}


class TestFlow:
    def test_cold_flow_effects(self) -> None:
        """With no token: take the refresh lock, throttle, ask for a token, then the balances."""
        provider = rails()
        flow = provider.balance_flow()
        effects = drive(flow, [json_response(200, TOKEN_OK), json_response(200, RAILS_DOCUMENTED_BALANCES)])
        assert [type(e) for e in effects] == [
            Acquire,
            Throttle,
            SignedRequest,
            Release,
            SignedRequest,
            bb.Balance,
        ]
        assert effects[1].limiter.name == "token"  # type: ignore[attr-defined]
        assert (effects[1].limiter.capacity, effects[1].limiter.rate) == TOKEN_LIMIT  # type: ignore[attr-defined]
        assert effects[4].headers["Authorization"] == "Bearer tok"  # type: ignore[attr-defined]
        assert not token_state(provider).token.refresh_lock.locked()

    def test_warm_flow_takes_no_lock(self) -> None:
        """With a valid cached token the flow only sends the balances request."""
        provider = rails()
        token_state(provider).token.store("cached", 1800)
        effects = drive(provider.balance_flow(), [json_response(200, RAILS_DOCUMENTED_BALANCES)])
        assert [type(e) for e in effects] == [SignedRequest, bb.Balance]

    def test_lock_released_when_closed_while_throttled(self) -> None:
        """A fetch that gives up waiting for the token limiter leaves the refresh lock free
        (the driver releases what the flow took)."""
        provider = rails()
        token_state(provider).limiter("token", *TOKEN_LIMIT).drain(TOKEN_LIMIT[0])
        with client_for(Simulator(SimulatedRails())) as client:
            with pytest.raises(bb.RateLimitedError, match="client-side"):
                client.fetch(provider, timeout=0.5)
        assert not token_state(provider).token.refresh_lock.locked()

    def test_other_fetch_refreshed_meanwhile(self) -> None:
        """A fetch that waited for the lock uses the token another fetch just stored."""
        provider = rails()
        flow = provider.balance_flow()
        acquire = next(flow)
        token_state(provider).token.store("from-other", 1800)
        assert isinstance(acquire, Acquire)
        assert acquire.lock.acquire(timeout=0)
        release = flow.send(None)
        assert isinstance(release, Release) and release.lock is acquire.lock
        release.lock.release()
        request = flow.send(None)
        assert isinstance(request, httpx.Request)
        assert request.headers["Authorization"] == "Bearer from-other"
        assert not acquire.lock.locked()

    def test_token_429_drains_limiter(self) -> None:
        """A 429 from the token endpoint empties our limiter, so we stop asking."""
        provider = rails()
        flow = provider.balance_flow()
        with pytest.raises(bb.RateLimitedError):
            drive(flow, [json_response(429, {"message": "Too many"})])
        limiter = token_state(provider).limiter("token", *TOKEN_LIMIT)
        assert limiter.reserve(1, max_wait=0)[0] is False


class TestAgainstSimulator:
    def test_fetch_balance_function(self) -> None:
        """The module-level fetch_balance works with the simulator's httpx client (the demo pair)."""
        venue, provider = demo_pair()
        balance = bb.fetch_balance(provider, client=Simulator(venue).client())
        assert balance.margin_used == Decimal("7261788.9945241110003337")

    def test_wrapped_envelope(self) -> None:
        """The wrapped envelope gives the same Balance end to end."""
        with client_for(Simulator(SimulatedRails(wrapped=True))) as client:
            balance = client.fetch(rails())
        assert (balance.total, balance.available) == (
            Decimal("99996952.15429778"),
            Decimal("99521353.92161779"),
        )
        assert "balances" in balance.raw

    def test_market_filter(self) -> None:
        """market= returns only that market in the breakdown."""
        with client_for(Simulator(SimulatedRails())) as client:
            balance = client.fetch(rails(market="ETH-USD"))
        assert list(balance.breakdown) == ["ETH-USD"]

    def test_unknown_market(self) -> None:
        """An unknown market is a plain ExchangeAPIError (400), not retried."""
        with client_for(Simulator(SimulatedRails())) as client, pytest.raises(bb.ExchangeAPIError) as info:
            client.fetch(rails(market="DOGE-USD"))
        assert info.value.status_code == 400

    def test_wrong_secret(self) -> None:
        """A wrong secret fails at the token endpoint as AuthenticationError, no balance call."""
        venue = SimulatedRails()
        with client_for(Simulator(venue)) as client, pytest.raises(bb.AuthenticationError, match="secret"):
            client.fetch(rails(api_secret="wrong-secret"))
        assert (venue.token_calls, venue.calls) == (1, 0)

    def test_token_reused(self) -> None:
        """Later fetches, and other objects with the same key, reuse the cached token."""
        venue = SimulatedRails()
        with client_for(Simulator(venue)) as client:
            for label in ("a", "b", "c"):
                client.fetch(rails(label=label))
        assert (venue.token_calls, venue.calls) == (1, 3)

    def test_other_key_other_token(self) -> None:
        """Another API key has its own token."""
        venue = SimulatedRails(credentials={RAILS_TEST_API_KEY: RAILS_TEST_API_SECRET, "k2": "s2"})
        with client_for(Simulator(venue)) as client:
            client.fetch(rails())
            client.fetch(rails(api_key="k2", api_secret="s2"))
        assert venue.token_calls == 2

    def test_401_on_cached_token_refreshes_once(self) -> None:
        """A 401 on a cached token drops it, gets exactly one new token and retries once."""
        venue = SimulatedRails()
        with client_for(Simulator(venue)) as client:
            client.fetch(rails())
            venue.expire_tokens()
            balance = client.fetch(rails())
        assert balance.total == Decimal("99996952.15429778")
        assert (venue.token_calls, venue.calls) == (2, 3)

    def test_second_401_is_raised(self) -> None:
        """When the retried call is refused too, the AuthenticationError is raised."""
        venue = SimulatedRails()
        with client_for(Simulator(venue)) as client:
            client.fetch(rails())
            venue.fail_next(401, 401)
            with pytest.raises(bb.AuthenticationError) as info:
                client.fetch(rails())
        assert info.value.status_code == 401
        assert (venue.token_calls, venue.calls) == (2, 3)

    def test_401_on_new_token_not_refreshed(self) -> None:
        """A 401 on a token just issued is raised at once: refreshing cannot help."""
        venue = SimulatedRails()
        venue.fail_next(401)
        with client_for(Simulator(venue)) as client, pytest.raises(bb.AuthenticationError):
            client.fetch(rails())
        assert (venue.token_calls, venue.calls) == (1, 1)

    def test_403_keeps_token(self) -> None:
        """A 403 (permission) is raised without a refresh, and the token stays cached."""
        venue = SimulatedRails()
        venue.fail_next(403)
        with client_for(Simulator(venue)) as client:
            with pytest.raises(bb.AuthenticationError):
                client.fetch(rails())
            client.fetch(rails())
        assert venue.token_calls == 1

    def test_server_error_retried_with_cached_token(self) -> None:
        """A 503 is retried by the client's policy; the retry reuses the token."""
        venue = SimulatedRails()
        venue.fail_next(503)
        policy = bb.RetryPolicy(attempts=2, backoff=0.001)
        with bb.BalanceClient(http_client=Simulator(venue).client(), retry=policy) as client:
            assert client.fetch(rails()).total == Decimal("99996952.15429778")
        assert (venue.token_calls, venue.calls) == (1, 2)

    def test_venue_token_429(self) -> None:
        """A token 429 is a RateLimitedError; our limiter then refuses to ask again soon."""
        venue = SimulatedRails()
        venue.fail_next_token(429)
        with client_for(Simulator(venue)) as client:
            with pytest.raises(bb.RateLimitedError) as first:
                client.fetch(rails())
            with pytest.raises(bb.RateLimitedError, match="client-side rate limit") as second:
                client.fetch(rails(), timeout=0.5)
        assert first.value.status_code == 429
        assert not second.value.transient
        assert venue.token_calls == 1

    def test_near_expiry_token_refreshed(self) -> None:
        """A token with fewer than 300 s left is refreshed; with more it is reused."""
        clock = FakeClock()
        venue = SimulatedRails(clock=clock)
        provider = rails()
        token_state(provider).token.monotonic = clock
        with client_for(Simulator(venue)) as client:
            client.fetch(provider)
            clock.advance(1800 - 300 - 1)
            client.fetch(provider)
            assert venue.token_calls == 1
            clock.advance(1)
            client.fetch(provider)
            assert venue.token_calls == 2
            clock.advance(1499)
            client.fetch(provider)
        assert venue.token_calls == 2
        assert venue.tokens[1] != venue.tokens[0]

    def test_tiny_lifetime_store_forces_refresh(self) -> None:
        """TokenCache.store with a lifetime under the margin makes the next fetch refresh."""
        venue = SimulatedRails()
        provider = rails()
        with client_for(Simulator(venue)) as client:
            client.fetch(provider)
            token_state(provider).token.store(venue.tokens[0], 1)
            client.fetch(provider)
        assert venue.token_calls == 2


TOKEN_LATENCY = 0.1


def slow_token_clients(sim: Simulator) -> tuple[httpx.Client, httpx.AsyncClient]:
    """Clients whose token answers take TOKEN_LATENCY s, so concurrent fetches really overlap."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            time.sleep(TOKEN_LATENCY)
        return sim(request)

    async def async_handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            await asyncio.sleep(TOKEN_LATENCY)
        return sim(request)

    return (
        httpx.Client(transport=httpx.MockTransport(handler)),
        httpx.AsyncClient(transport=httpx.MockTransport(async_handler)),
    )


class TestConcurrency:
    def test_100_concurrent_fetches_one_token(self) -> None:
        """Async tasks on two event loops plus worker threads: exactly one token request."""
        venue = SimulatedRails()
        sim = Simulator(venue)
        providers = [rails(label=f"r{i}") for i in range(4)]
        failures: list[BaseException] = []
        start = threading.Barrier(2 + 4)

        async def batch(count: int) -> None:
            _, http = slow_token_clients(sim)
            async with bb.AsyncBalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
                await asyncio.gather(*(client.fetch(providers[i % 4]) for i in range(count)))
            await http.aclose()

        def loop_worker(count: int) -> None:
            start.wait()
            try:
                asyncio.run(batch(count))
            except BaseException as exc:
                failures.append(exc)

        def sync_worker(count: int) -> None:
            http, _ = slow_token_clients(sim)
            start.wait()
            with http, bb.BalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
                for i in range(count):
                    client.fetch(providers[i % 4])

        loops = [threading.Thread(target=loop_worker, args=(40,)) for _ in range(2)]
        for thread in loops:
            thread.start()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(sync_worker, [5, 5, 5, 5]))
        for thread in loops:
            thread.join()
        assert failures == []
        assert venue.token_calls == 1
        assert venue.calls == 100

    @pytest.mark.anyio
    async def test_burst_needing_new_tokens_stays_under_limit(self) -> None:
        """40 concurrent fetches that each need a new token: the venue never says 429."""
        venue = SimulatedRails(token_lifetime=60)  # under the 300 s margin: never reused
        async with async_client_for(Simulator(venue)) as client:
            results = await asyncio.gather(
                *(client.fetch(rails(), timeout=1) for _ in range(40)), return_exceptions=True
            )
        refused = [r for r in results if isinstance(r, bb.RateLimitedError)]
        assert venue.rate_limited == 0
        assert venue.token_calls == TOKEN_LIMIT[0] == 40 - len(refused)
        assert all("client-side" in str(r) for r in refused)

    def test_sustained_refreshes_wait_and_never_pass_20_per_minute(self) -> None:
        """Sixty fetches that each need a token wait for the limiter; the venue never refuses."""
        clock = FakeClock()
        venue = SimulatedRails(clock=clock, token_lifetime=60)
        provider = rails()
        token_state(provider).limiter("token", *TOKEN_LIMIT).monotonic = clock
        with client_for(Simulator(venue)) as client:
            client._sleep = clock.advance
            for _ in range(60):
                client.fetch(provider, timeout=10)
                clock.advance(0.01)
        assert (venue.token_calls, venue.rate_limited) == (60, 0)
        assert clock.now >= (60 - TOKEN_LIMIT[0]) / TOKEN_LIMIT[1] - 1

    def test_bucket_of_20_would_break_the_window(self) -> None:
        """Why the bucket is (10, 10/60): a (20, 20/60) bucket lets the 21st through in 3 s."""
        clock = FakeClock()
        venue = SimulatedRails(clock=clock, token_lifetime=60)
        provider = rails()
        state = token_state(provider)
        state.limiters["token"] = _state.RateLimiter(20, 20 / 60, "token", monotonic=clock)
        with client_for(Simulator(venue)) as client:
            client._sleep = clock.advance
            for _ in range(20):
                client.fetch(provider, timeout=10)
            with pytest.raises(bb.RateLimitedError) as info:
                client.fetch(provider, timeout=10)
        assert (info.value.status_code, venue.rate_limited, venue.token_calls) == (429, 1, 21)
        assert clock.now < 60

    def test_disabled_limits_reach_the_venue_limit(self) -> None:
        """With client limits off, the simulator itself enforces 20 per 60 s per key."""
        venue = SimulatedRails(token_lifetime=60)
        with rate_limits_disabled(), client_for(Simulator(venue)) as client:
            for _ in range(20):
                client.fetch(rails())
            with pytest.raises(bb.RateLimitedError) as info:
                client.fetch(rails())
        assert (info.value.status_code, venue.rate_limited) == (429, 1)


class TestSimulator:
    def test_unknown_route(self) -> None:
        """Paths and methods Rails does not serve are a 404."""
        venue = SimulatedRails()
        answer = venue.handle(httpx.Request("GET", SANDBOX_AUTH + TOKEN_PATH))
        assert answer.status_code == 404

    def test_expired_token_refused(self) -> None:
        """A token past its expires_in is refused with 401."""
        clock = FakeClock()
        venue = SimulatedRails(clock=clock)
        token = venue.handle(
            httpx.Request(
                "POST",
                SANDBOX_AUTH + TOKEN_PATH,
                headers={"X-Api-Key": RAILS_TEST_API_KEY, "X-Api-Secret": RAILS_TEST_API_SECRET},
            )
        )
        bearer = {"Authorization": "Bearer " + json_payload_of(token)["access_token"]}
        assert venue.handle(httpx.Request("GET", SANDBOX + BALANCES_PATH, headers=bearer)).status_code == 200
        clock.advance(1800)
        assert venue.handle(httpx.Request("GET", SANDBOX + BALANCES_PATH, headers=bearer)).status_code == 401

    def test_scripted_response(self) -> None:
        """fail_next accepts whole responses, e.g. an HTML page."""
        venue = SimulatedRails()
        venue.fail_next(httpx.Response(502, text="<html>bad gateway</html>"))
        with client_for(Simulator(venue)) as client, pytest.raises(bb.ServiceUnavailableError):
            client.fetch(rails())


def json_payload_of(response: httpx.Response) -> Any:
    return loads(response.content, venue="rails")


def test_cassette_is_scrubbed() -> None:
    """The token call keeps no key or secret, the balances call no token, the answer no token.

    (The replay itself, with figures and URLs, is test_every_venue.py's test_cassette_replay.)
    """
    with cassette_vcr().use_cassette("rails/balances.yaml") as cassette:
        token_request, balance_request = cassette.requests
    assert token_request.headers["X-Api-Key"] == token_request.headers["X-Api-Secret"] == SCRUBBED
    assert balance_request.headers["Authorization"] == SCRUBBED
    text = (CASSETTES / "rails" / "balances.yaml").read_text()
    for secret in (RAILS_TEST_API_KEY, RAILS_TEST_API_SECRET, "Bearer "):
        assert secret not in text
    token_answer = loads(cassette.responses[0]["body"]["string"], venue="rails")
    assert token_answer["access_token"] == SCRUBBED


def test_deprecated_names_still_work() -> None:
    """balance_requests, token_requests and revoke_tokens() are aliases of the unified names."""
    venue = SimulatedRails()
    with client_for(Simulator(venue)) as client:
        client.fetch(rails())
        venue.revoke_tokens()
        client.fetch(rails())  # 401 on the revoked token, one new token, the retry
    assert (venue.token_requests, venue.balance_requests) == (venue.token_calls, venue.calls) == (2, 3)
    venue.token_requests, venue.balance_requests = 0, 0
    assert (venue.token_calls, venue.calls) == (0, 0)


CASES = VenueCases(
    make=rails,
    venue=SimulatedRails,
    demo=demo_pair,
    respond=lambda response: respond(rails(), response),
    secrets=(RAILS_TEST_API_SECRET, RAILS_TEST_API_KEY),
    bad_settings=(
        {"api_key": ""},
        {"api_key": None},
        {"api_secret": ""},
        {"api_secret": "secret\n"},
        {"environment": "prod"},
        {"environment": None},
        {"base_url": "http://user-account.sandbox.rails.xyz"},
        {"auth_url": "ftp://api-auth.sandbox.rails.xyz"},
        {"base_url": ""},
        {"market": "ETH USD"},
        {"market": ""},
        {"market": 5},
        {"label": ""},
    ),
    error_secrets=(RAILS_TEST_API_SECRET,),
    defaults={"environment": "sandbox", "base_url": SANDBOX, "auth_url": SANDBOX_AUTH, "market": None},
    url_settings=("base_url", "auth_url"),
    fetch_hosts=("api-auth.sandbox.rails.xyz", "user-account.sandbox.rails.xyz"),
    fetched={"total": Decimal("99996952.15429778"), "available": Decimal("99521353.92161779")},
    venue_after_fetch={"token_calls": 1, "calls": 1, "len(tokens)": 1},
    demo_fetched={"margin_used": Decimal("7261788.9945241110003337")},
    cassette="rails/balances.yaml",
    cassette_uris=(SANDBOX_AUTH + TOKEN_PATH, SANDBOX + BALANCES_PATH),
    cassette_fetched={"total": Decimal("99996952.15429778")},
)
