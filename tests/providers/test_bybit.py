"""Bybit V5 wallet-balance: signer vector, request shape, the recording, quirks, errors, skew, cassette."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance import _protocol as bb_protocol
from bastion_balance import _state
from bastion_balance._models import dumps
from bastion_balance.providers.bybit import (
    ACCOUNT_TYPES,
    CLASSIC_HELP,
    ENVIRONMENTS,
    TIMESTAMP_HELP,
    TOTALS,
    WALLET_BALANCE_PATH,
    Bybit,
    bybit_sign,
)
from bastion_balance.testing import Simulator, json_response, rate_limits_disabled
from bastion_balance.testing._bybit import (
    BYBIT_RECORDED_WALLET,
    BYBIT_TEST_KEY,
    BYBIT_TEST_SECRET,
    SimulatedBybit,
    demo_pair,
)

from .._harness import fetch
from .._vcr import SCRUBBED, _scrub_request, _scrub_response
from ._venue_cases import VenueCases

#: A real Bybit answer recorded by ccxt's static tests (provenance: tests/fixtures/README.md).
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "bybit_v5_wallet_balance_unified.json"
NOW_NS = 1_672_125_440_406 * 10**6  # the local vector's timestamp
NOW_MS = NOW_NS // 10**6
URL = "https://api.bybit.com"


def recording() -> dict[str, Any]:
    """The recorded fixture file, numbers as Decimal (fails loudly when it is missing)."""
    data: dict[str, Any] = json.loads(FIXTURE.read_text(), parse_float=Decimal)
    return data


def bybit(**overrides: object) -> Bybit:
    settings: dict[str, object] = {
        "api_key": BYBIT_TEST_KEY,
        "api_secret": BYBIT_TEST_SECRET,
        "clock": lambda: NOW_NS,
    }
    settings.update(overrides)
    return Bybit(**settings)  # type: ignore[arg-type]


def respond(response: httpx.Response, provider: Bybit | None = None) -> bb.Balance:
    provider = provider or bybit()
    response.request = provider.build_request(NOW_MS)
    return provider.parse_response(response)


def wallet(**changes: object) -> dict[str, Any]:
    """The recorded body with account-level fields changed."""
    body = json.loads(dumps(BYBIT_RECORDED_WALLET))
    body["result"]["list"][0].update(changes)
    return body


class TestSigner:
    def test_local_vector(self) -> None:
        """The local vector of docs/venues/bybit.md, 'Signing and the clock' reproduces."""
        assert bybit_sign(
            1672125440406, "XXXXXXXXXX", 5000, "accountType=UNIFIED", "test_secret_0123456789"
        ) == ("214a03ae51d93a9b33e732658b8e526e848acbf712c8f730d24d88b88f462734")

    def test_request_shape(self) -> None:
        """The request sends the key, timestamp, window and a sign over the exact query sent."""
        request = bybit(recv_window=7000).build_request(NOW_MS)
        query = request.url.query.decode()
        assert request.method == "GET"
        assert request.url.path == WALLET_BALANCE_PATH
        assert query == "accountType=UNIFIED"
        assert request.headers["X-BAPI-API-KEY"] == BYBIT_TEST_KEY
        assert request.headers["X-BAPI-TIMESTAMP"] == str(NOW_MS)
        assert request.headers["X-BAPI-RECV-WINDOW"] == "7000"
        assert request.headers["X-BAPI-SIGN"] == bybit_sign(
            NOW_MS, BYBIT_TEST_KEY, 7000, query, BYBIT_TEST_SECRET
        )
        assert request.headers["User-Agent"].startswith("bastion-balance/")

    def test_default_request_signs_to_the_vector(self) -> None:
        """With the vector's key, secret, window and timestamp the request carries the vector's sign."""
        assert bybit().build_request(NOW_MS).headers["X-BAPI-SIGN"] == (
            "214a03ae51d93a9b33e732658b8e526e848acbf712c8f730d24d88b88f462734"
        )

    @pytest.mark.parametrize("account_type", ACCOUNT_TYPES)
    def test_account_type_in_query(self, account_type: str) -> None:
        """account_type is the accountType query parameter."""
        request = bybit(account_type=account_type).build_request(NOW_MS)
        assert request.url.query.decode() == f"accountType={account_type}"

    def test_server_time_request_is_public(self) -> None:
        """The server-time read carries no key and no sign."""
        request = bybit().server_time_request()
        assert str(request.url) == "https://api.bybit.com/v5/market/time"
        assert "X-BAPI-API-KEY" not in request.headers


class TestRecordedWallet:
    def test_fixture_and_simulator_body_are_the_same(self) -> None:
        """The simulator answers exactly the recorded body of the fixture file."""
        assert json.loads(FIXTURE.read_text())["httpResponse"] == BYBIT_RECORDED_WALLET

    def test_recording_maps_field_by_field(self) -> None:
        """Every mapped figure of the recording is taken exactly as Bybit sent it."""
        body = recording()["httpResponse"]
        account = body["result"]["list"][0]
        balance = respond(json_response(200, body))
        assert body["retCode"] == "0"  # the quirk: a string
        assert balance.total == Decimal(account["totalEquity"]) == Decimal("92255.96988644")
        assert balance.available == Decimal(account["totalAvailableBalance"]) == Decimal("89987.9688149")
        assert balance.wallet == Decimal(account["totalWalletBalance"])
        assert balance.margin_used == Decimal(account["totalInitialMargin"])
        assert balance.unrealized_pnl == Decimal(account["totalPerpUPL"])
        assert (balance.currency, balance.exchange, balance.label) == ("USD", "bybit", "bybit")
        assert balance.raw["time"] == "1736866023302"

    def test_seven_coins_in_breakdown(self) -> None:
        """coin[] maps to breakdown keyed by coin, each at its equity, available unknown."""
        body = recording()["httpResponse"]
        balance = respond(json_response(200, body))
        coins = body["result"]["list"][0]["coin"]
        assert list(balance.breakdown) == ["USDC", "BTC", "ETH", "ADA", "XRP", "USDT", "LTC"]
        for row in coins:
            assert balance.breakdown[row["coin"]] == bb.Holding(
                currency=row["coin"], total=Decimal(row["equity"])
            )

    def test_extra_figures(self) -> None:
        """The other numeric account figures are kept under Bybit's names; "" ones are absent."""
        balance = respond(json_response(200, recording()["httpResponse"]))
        assert balance.extra["totalMarginBalance"] == Decimal("90042.2788482")
        assert balance.extra["totalMaintenanceMargin"] == Decimal("7.38826721")
        assert balance.extra["accountIMRate"] == Decimal("0.0006")
        assert "totalEquity" not in balance.extra
        assert "accountType" not in balance.extra

    def test_totals_taken_as_sent(self) -> None:
        """totalEquity differs from its formula (the sum of usdValue) in the last digit: kept as sent."""
        balance = respond(json_response(200, recording()["httpResponse"]))
        coins = balance.raw["result"]["list"][0]["coin"]
        formula = sum(Decimal(row["usdValue"]) for row in coins)
        assert balance.total - formula == Decimal("0.00000004")
        assert balance.total == Decimal("92255.96988644")

    def test_agrees_with_ccxt_where_exact(self) -> None:
        """ccxt's per-coin total (walletBalance) matches the recording's walletBalance by value."""
        fixture = recording()
        ccxt = fixture["ccxtParsedResponse_excerpt"]
        raw = respond(json_response(200, fixture["httpResponse"])).raw
        for row in raw["result"]["list"][0]["coin"]:
            assert ccxt[row["coin"]]["total"] == Decimal(row["walletBalance"])


class TestQuirks:
    def test_ret_code_int_or_string_give_equal_balances(self) -> None:
        """retCode and time as JSON integers (Bybit) or strings (recorders) give the same Balance."""
        as_strings = json.loads(dumps(BYBIT_RECORDED_WALLET))
        as_ints = {**as_strings, "retCode": 0, "time": 1736866023302}
        one = respond(json_response(200, as_strings))
        two = respond(json_response(200, as_ints))
        assert attrs.evolve(one, fetched_at=two.fetched_at) == two

    @pytest.mark.parametrize("code", [0, "0", "0.0", "00"])
    def test_ret_code_zero_by_value(self, code: object) -> None:
        """retCode is compared by value."""
        body = {**wallet(), "retCode": code}
        assert respond(json_response(200, body)).total == Decimal("92255.96988644")

    @pytest.mark.parametrize("code", ["OK", None, "", True, "1.5"])
    def test_ret_code_not_a_number(self, code: object) -> None:
        """A retCode that is not an integer is an UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            respond(json_response(200, {**wallet(), "retCode": code}))
        assert info.value.field == "$.retCode"

    def test_ret_code_missing(self) -> None:
        """An envelope without retCode is an UnexpectedResponseError."""
        body = wallet()
        del body["retCode"]
        with pytest.raises(bb.UnexpectedResponseError, match="retCode"):
            respond(json_response(200, body))

    def test_deprecated_empty_fields_are_none(self) -> None:
        """ "" in an optional figure is missing (None), never zero."""
        balance = respond(
            json_response(200, wallet(totalWalletBalance="", totalPerpUPL="", totalInitialMargin=""))
        )
        assert (balance.wallet, balance.unrealized_pnl, balance.margin_used) == (None, None, None)

    def test_coin_equity_empty_is_none(self) -> None:
        """A coin whose equity is "" has an unknown total, not zero."""
        body = wallet(coin=[{"coin": "USDT", "equity": ""}])
        assert respond(json_response(200, body)).breakdown["USDT"].total is None

    def test_classic_account_is_a_typed_error(self) -> None:
        """A classic account whose totals are all "" raises an error that says so, never a zero."""
        body = wallet(**dict.fromkeys(TOTALS, ""), accountType="CONTRACT")
        with pytest.raises(bb.UnexpectedResponseError) as info:
            respond(json_response(200, body))
        assert CLASSIC_HELP in str(info.value)
        assert info.value.field == "$.result.list[0].totalEquity"

    @pytest.mark.parametrize("field", ["totalEquity", "totalAvailableBalance"])
    @pytest.mark.parametrize("value", ["", "NaN", " 1", True])
    def test_required_figure_bad(self, field: str, value: object) -> None:
        """A missing or malformed total/available (with other totals present) names the field."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            respond(json_response(200, wallet(**{field: value})))
        assert (info.value.venue, info.value.field) == ("bybit", f"$.result.list[0].{field}")

    @pytest.mark.parametrize("result", [{"list": []}, {"list": "x"}, {"list": [1]}, {}, [], None])
    def test_bad_result(self, result: object) -> None:
        """A result without an account object is an UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError):
            respond(json_response(200, {"retCode": 0, "retMsg": "OK", "result": result}))

    @given(
        equity=st.decimals(
            allow_nan=False, allow_infinity=False, places=8, min_value=-(10**12), max_value=10**12
        ),
        empty=st.sampled_from(["", None]),
        as_int=st.booleans(),
    )
    def test_figures_round_trip_and_empty_is_none(self, equity: Decimal, empty: object, as_int: bool) -> None:
        """Any decimal figure comes back digit for digit; "" or null optional figures are None."""
        body = wallet(totalEquity=str(equity), totalPerpUPL=empty)
        if as_int:
            body["retCode"] = 0
        balance = respond(json_response(200, body))
        assert str(balance.total) == str(equity)
        assert balance.unrealized_pnl is None


ERRORS = [
    (10001, bb.ExchangeAPIError),
    (10002, bb.AuthenticationError),
    (10003, bb.AuthenticationError),
    (10004, bb.AuthenticationError),
    (10005, bb.AuthenticationError),
    (10006, bb.RateLimitedError),
    (10007, bb.AuthenticationError),
    (10010, bb.AuthenticationError),
    (10016, bb.ServiceUnavailableError),
    (10017, bb.ExchangeAPIError),
    (10028, bb.ExchangeAPIError),
    (33004, bb.AuthenticationError),
    (-2015, bb.AuthenticationError),
    (170001, bb.ExchangeAPIError),
]


class TestErrors:
    @pytest.mark.parametrize(("code", "cls"), ERRORS)
    @pytest.mark.parametrize("as_string", [False, True])
    def test_ret_code_maps_to_class(self, code: int, cls: type[bb.ExchangeAPIError], as_string: bool) -> None:
        """Each retCode (integer or string) raises its class, with the raw code kept as an int."""
        body = {"retCode": str(code) if as_string else code, "retMsg": "refused", "result": {}}
        with pytest.raises(bb.ExchangeAPIError) as info:
            respond(json_response(200, body))
        assert type(info.value) is cls
        assert (info.value.code, info.value.venue) == (code, "bybit")

    def test_rate_limit_retry_after_from_reset_header(self) -> None:
        """10006 waits until X-Bapi-Limit-Reset-Timestamp (ms epoch) minus now."""
        headers = {"X-Bapi-Limit-Reset-Timestamp": str(NOW_MS + 1500)}
        body = {"retCode": 10006, "retMsg": "Too many visits", "result": {}}
        with pytest.raises(bb.RateLimitedError) as info:
            respond(json_response(200, body, **headers))
        assert (info.value.retry_after, info.value.transient) == (1.5, True)

    def test_rate_limit_reset_in_the_past(self) -> None:
        """A reset time already past means no wait."""
        headers = {"X-Bapi-Limit-Reset-Timestamp": str(NOW_MS - 10)}
        with pytest.raises(bb.RateLimitedError) as info:
            respond(json_response(200, {"retCode": 10006, "retMsg": "x"}, **headers))
        assert info.value.retry_after == 0

    def test_rate_limit_without_header(self) -> None:
        """Without a reset header the wait is unknown."""
        with pytest.raises(bb.RateLimitedError) as info:
            respond(json_response(200, {"retCode": 10006, "retMsg": "x"}))
        assert info.value.retry_after is None

    def test_timestamp_error_explains(self) -> None:
        """A 10002 that escapes says what to do about the clock."""
        with pytest.raises(bb.AuthenticationError) as info:
            respond(json_response(200, {"retCode": 10002, "retMsg": "window"}))
        assert TIMESTAMP_HELP in str(info.value)

    @pytest.mark.parametrize(
        ("status", "cls", "transient"),
        [
            (401, bb.AuthenticationError, False),
            (403, bb.RateLimitedError, False),
            (429, bb.RateLimitedError, True),
            (500, bb.ServiceUnavailableError, True),
            (502, bb.ServiceUnavailableError, True),
            (503, bb.ServiceUnavailableError, True),
            (404, bb.ExchangeAPIError, False),
        ],
    )
    def test_http_status(self, status: int, cls: type[bb.ExchangeAPIError], transient: bool) -> None:
        """HTTP statuses without an envelope map as Bybit documents them."""
        with pytest.raises(bb.ExchangeAPIError) as info:
            respond(httpx.Response(status, text="<html>x</html>"))
        assert type(info.value) is cls
        assert (info.value.status_code, info.value.transient) == (status, transient)

    def test_403_asks_for_ten_minutes(self) -> None:
        """The IP limit of HTTP 403 asks to wait at least ten minutes."""
        with pytest.raises(bb.RateLimitedError) as info:
            respond(httpx.Response(403, text=""))
        assert info.value.retry_after == 600

    def test_429_reset_header(self) -> None:
        """HTTP 429 honours X-Bapi-Limit-Reset-Timestamp too."""
        response = httpx.Response(429, text="", headers={"X-Bapi-Limit-Reset-Timestamp": str(NOW_MS + 2000)})
        with pytest.raises(bb.RateLimitedError) as info:
            respond(response)
        assert info.value.retry_after == 2

    def test_envelope_on_error_status(self) -> None:
        """A non-200 answer that carries an envelope is mapped by its retCode."""
        with pytest.raises(bb.AuthenticationError) as info:
            respond(json_response(401, {"retCode": 10003, "retMsg": "API key is invalid."}))
        assert info.value.code == 10003

    def test_error_status_with_zero_ret_code(self) -> None:
        """A non-200 answer whose retCode says 0 is still an error, by its status."""
        with pytest.raises(bb.ServiceUnavailableError):
            respond(json_response(503, {"retCode": 0, "retMsg": "OK", "result": {}}))

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            ({"retCode": 0, "result": {"timeNano": "1688639403423213947"}, "time": 1}, 1688639403423),
            ({"retCode": 0, "result": {"timeSecond": "1688639403"}, "time": "1688639403499"}, 1688639403499),
        ],
    )
    def test_server_time(self, body: dict[str, Any], expected: int) -> None:
        """The server time is timeNano in ms, else the envelope's time."""
        provider = bybit()
        response = json_response(200, body)
        response.request = provider.server_time_request()
        assert provider.parse_server_time(response) == expected

    def test_bad_server_time(self) -> None:
        """A server-time answer without a usable time is refused."""
        provider = bybit()
        response = json_response(200, {"retCode": 0, "result": {}, "time": "soon"})
        response.request = provider.server_time_request()
        with pytest.raises(bb.UnexpectedResponseError) as info:
            provider.parse_server_time(response)
        assert info.value.field == "$.time"


class TestConfiguration:
    @pytest.mark.parametrize(("environment", "url"), list(ENVIRONMENTS.items()))
    def test_environment_picks_base_url(self, environment: str, url: str) -> None:
        """environment= picks each documented host (testnet, demo, regional sites)."""
        assert bybit(environment=environment).base_url == url

    def test_regional_hosts(self) -> None:
        """Every regional mainnet of docs/venues/bybit.md, 'Hosts' is selectable."""
        assert {k: ENVIRONMENTS[k] for k in ("nl", "tr", "kz", "ge", "ae", "eu", "id", "jp")} == {
            "nl": "https://api.bybit.nl",
            "tr": "https://api.bybit.tr",
            "kz": "https://api.bybit.kz",
            "ge": "https://api.bybitgeorgia.ge",
            "ae": "https://api.bybit.ae",
            "eu": "https://api.bybit.eu",
            "id": "https://api.bybit.id",
            "jp": "https://api.manepa.jp",
        }

    def test_base_url_wins(self) -> None:
        """An explicit base_url is used as given."""
        assert (
            bybit(environment="testnet", base_url="https://api.bytick.com/").base_url
            == "https://api.bytick.com"
        )


def client_for(sim: Simulator) -> bb.BalanceClient:
    return bb.BalanceClient(http_client=sim.client(), retry=bb.NO_RETRY)


def server(skew_ms: int = 0) -> SimulatedBybit:
    return SimulatedBybit(clock=lambda: NOW_NS, skew_ms=skew_ms)


class TestAgainstSimulator:
    @pytest.mark.parametrize(
        ("overrides", "code"),
        [({"api_secret": "wrong-secret"}, 10004), ({"api_key": "unknown-key"}, 10003)],
    )
    def test_bad_credentials_are_refused(self, overrides: dict[str, object], code: int) -> None:
        """A wrong secret or unknown key fails as Bybit fails."""
        with client_for(Simulator(server())) as client, pytest.raises(bb.AuthenticationError) as info:
            client.fetch(bybit(**overrides))
        assert info.value.code == code

    @pytest.mark.parametrize("skew_ms", [10_000, -5_000])
    def test_clock_skew_corrected_once(self, skew_ms: int) -> None:
        """A 10002 reads the server time once, re-signs, succeeds; the next fetch goes straight through."""
        venue = server(skew_ms)
        with client_for(Simulator(venue)) as client:
            client.fetch(bybit())
            assert (venue.calls, venue.time_calls) == (2, 1)
            assert _state.clock_offset("bybit", URL) == skew_ms
            client.fetch(bybit(label="again"))
        assert (venue.calls, venue.time_calls) == (3, 1)
        assert venue.timestamps == [NOW_MS + skew_ms, NOW_MS + skew_ms]

    def test_clock_skew_async(self) -> None:
        """The skew correction works the same from the async client."""
        venue = server(-20_000)
        balance = fetch("async", bybit(), Simulator(venue), retry=bb.NO_RETRY)
        assert balance.total == Decimal("92255.96988644")
        assert (venue.calls, venue.time_calls) == (2, 1)

    def test_second_timestamp_error_is_raised(self) -> None:
        """After one server-time read and re-sign, a second 10002 is raised."""
        venue = server()
        venue.fail_next(10002, 10002)
        with client_for(Simulator(venue)) as client, pytest.raises(bb.AuthenticationError) as info:
            client.fetch(bybit())
        assert info.value.code == 10002
        assert (venue.calls, venue.time_calls) == (2, 1)

    def test_rate_limited_answer_drains_limiter(self) -> None:
        """After a 10006 our per-key limiter makes the next call wait."""
        venue = server()
        venue.fail_next(10006)
        with client_for(Simulator(venue)) as client:
            with pytest.raises(bb.RateLimitedError):
                client.fetch(bybit())
            with pytest.raises(bb.RateLimitedError, match="client-side"):
                client.fetch(bybit(), timeout=0.005)
        assert venue.calls == 1

    def test_limit_status_header_drains_limiter(self) -> None:
        """When Bybit reports no calls left this second, the next call waits."""
        venue = server()
        venue.fail_next(json_response(200, BYBIT_RECORDED_WALLET, **{"X-Bapi-Limit-Status": "0"}))
        with client_for(Simulator(venue)) as client:
            client.fetch(bybit())
            with pytest.raises(bb.RateLimitedError, match="client-side"):
                client.fetch(bybit(), timeout=0.005)

    def test_limiter_is_per_key(self) -> None:
        """Another key (another UID) is not slowed by the first key's limit."""
        venue = server()
        venue.keys["other"] = "other-secret"
        venue.fail_next(10006)
        with client_for(Simulator(venue)) as client:
            with pytest.raises(bb.RateLimitedError):
                client.fetch(bybit())
            client.fetch(bybit(api_key="other", api_secret="other-secret"), timeout=0.5)

    def test_limiter_allows_the_published_burst(self) -> None:
        """50 calls per second go through without waiting."""
        venue = server()
        with client_for(Simulator(venue)) as client:
            for _ in range(50):
                client.fetch(bybit(), timeout=0.5)
            with pytest.raises(bb.RateLimitedError):
                client.fetch(bybit(), timeout=0.005)

    def test_server_error_is_retried_by_the_client(self) -> None:
        """A 10016 is transient: the default policy retries it and the fetch succeeds."""
        venue = server()
        venue.fail_next(10016)
        policy = bb.RetryPolicy(backoff=0.001, max_backoff=0.001)
        with bb.BalanceClient(http_client=Simulator(venue).client(), retry=policy) as client:
            assert client.fetch(bybit()).total == Decimal("92255.96988644")
        assert venue.calls == 2

    def test_aggregate_in_usd(self) -> None:
        """Bybit's USD total enters a Portfolio at par."""
        with rate_limits_disabled(), client_for(Simulator(server())) as client:
            portfolio = client.aggregate([bybit()])
        assert portfolio.total_usd == Decimal("92255.96988644")


class TestSimulatorChecks:
    """The simulator refuses what Bybit refuses (requests made by hand)."""

    def send(self, path: str, headers: dict[str, str]) -> httpx.Response:
        with Simulator(server()).client() as http:
            return http.get(URL + path, headers=headers)

    def headers(self, query: str, stamp: str = str(NOW_MS), window: str = "5000") -> dict[str, str]:
        sign = bybit_sign(stamp, BYBIT_TEST_KEY, window, query, BYBIT_TEST_SECRET)
        return {
            "X-BAPI-API-KEY": BYBIT_TEST_KEY,
            "X-BAPI-TIMESTAMP": stamp,
            "X-BAPI-RECV-WINDOW": window,
            "X-BAPI-SIGN": sign,
        }

    def test_missing_headers(self) -> None:
        """Missing authentication headers are a bare HTTP 401."""
        assert self.send(WALLET_BALANCE_PATH + "?accountType=UNIFIED", {}).status_code == 401

    @pytest.mark.parametrize(
        ("query", "stamp", "code"),
        [
            ("accountType=FUND", str(NOW_MS), 10001),
            ("accountType=UNIFIED", "soon", 10001),
            ("accountType=UNIFIED", str(NOW_MS - 5001), 10002),
            ("accountType=UNIFIED", str(NOW_MS + 1000), 10002),
        ],
    )
    def test_parameter_checks(self, query: str, stamp: str, code: int) -> None:
        """A bad account type, timestamp, or one outside the window is refused."""
        response = self.send(f"{WALLET_BALANCE_PATH}?{query}", self.headers(query, stamp))
        assert json.loads(response.content)["retCode"] == code

    def test_window_edges_accepted(self) -> None:
        """server - recv_window and server + 999 are inside the window."""
        for stamp in (NOW_MS - 5000, NOW_MS + 999):
            query = "accountType=UNIFIED"
            response = self.send(f"{WALLET_BALANCE_PATH}?{query}", self.headers(query, str(stamp)))
            assert json.loads(response.content)["retCode"] == "0"

    def test_unknown_path(self) -> None:
        """An unknown endpoint answers 404."""
        assert self.send("/v5/nothing", {}).status_code == 404

    def test_scripted_http_status(self) -> None:
        """fail_next() accepts an HTTP status and answers it with an HTML page."""
        venue = server()
        venue.fail_next(403)
        with client_for(Simulator(venue)) as client, pytest.raises(bb.RateLimitedError) as info:
            client.fetch(bybit())
        assert not info.value.transient


class TestFlowByHand:
    def test_flow_without_limit_headers(self) -> None:
        """Driven by hand, the flow throttles once, sends one signed request and parses the answer."""
        flow = bybit().balance_flow()
        throttle = next(flow)
        assert isinstance(throttle, bb_protocol.Throttle)
        request = flow.send(None)
        assert isinstance(request, httpx.Request)
        response = json_response(200, BYBIT_RECORDED_WALLET)
        response.request = request
        with pytest.raises(StopIteration) as stop:
            flow.send(response)
        assert stop.value.value.total == Decimal("92255.96988644")
        assert throttle.limiter.reserve(50, 0) == (True, 0.0)  # no header: nothing drained


def _scrub_timestamp(request: Any) -> Any:
    request = _scrub_request(request)
    for name in list(request.headers):
        if name.lower() == "x-bapi-timestamp":
            request.headers[name] = SCRUBBED
    return request


def _scrub_reset(response: dict[str, Any]) -> dict[str, Any]:
    response = _scrub_response(response)
    for name in list(response["headers"]):
        if name.lower() == "x-bapi-limit-reset-timestamp":
            response["headers"][name] = [SCRUBBED]
    return response


def test_cassette_is_scrubbed() -> None:
    """The cassette holds no key, sign or timestamp, and the real venue URL."""
    text = (Path(__file__).resolve().parents[2] / "cassettes/bybit/wallet_balance.yaml").read_text()
    assert "uri: https://api.bybit.com/v5/account/wallet-balance?accountType=UNIFIED" in text
    assert text.count(SCRUBBED) == 4  # key, sign, timestamp; the limit's reset time
    assert BYBIT_TEST_KEY not in text
    assert BYBIT_TEST_SECRET not in text


CASES = VenueCases(
    make=bybit,
    venue=server,
    demo=demo_pair,
    respond=respond,
    secrets=(BYBIT_TEST_SECRET, BYBIT_TEST_KEY),
    bad_settings=(
        {"api_key": ""},
        {"api_key": None},
        {"api_secret": "secret\n"},
        {"api_secret": ""},
        {"base_url": "http://api.bybit.com"},
        {"base_url": "https://api.bybit.com/#x"},
        {"environment": "us"},
        {"account_type": "unified"},
        {"account_type": "FUND"},
        {"recv_window": 0},
        {"recv_window": 60_001},
        {"recv_window": 5000.0},
        {"label": " "},
    ),
    error_secrets=(BYBIT_TEST_SECRET,),
    defaults={"base_url": URL, "account_type": "UNIFIED", "recv_window": 5000},
    fetch_hosts=("api.bybit.com",),
    fetched={"total": Decimal("92255.96988644"), "available": Decimal("89987.9688149")},
    venue_after_fetch={"calls": 1, "time_calls": 0, "timestamps": [NOW_MS]},
    demo_fetched={"len(breakdown)": 7},
    cassette="bybit/wallet_balance.yaml",
    cassette_hooks={"before_record_request": _scrub_timestamp, "before_record_response": _scrub_reset},
    cassette_uris=("https://api.bybit.com/v5/account/wallet-balance?accountType=UNIFIED",),
    cassette_fetched={"total": Decimal("92255.96988644"), "len(breakdown)": 7},
    timestamp_headers=("X-BAPI-TIMESTAMP",),
)
