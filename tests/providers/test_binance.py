"""Binance USD-M futures: signer vectors, request shape, the recording, quirks, errors, skew, cassette."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance import _protocol as bb_protocol
from bastion_balance import _state
from bastion_balance._models import dumps
from bastion_balance.providers.binance import (
    ACCOUNT_PATH,
    ENVIRONMENTS,
    TIMESTAMP_HELP,
    BinanceFutures,
    binance_sign,
)
from bastion_balance.testing import Simulator, json_response, rate_limits_disabled
from bastion_balance.testing._binance import (
    BINANCE_RECORDED_ACCOUNT,
    BINANCE_TEST_KEY,
    BINANCE_TEST_SECRET,
    SimulatedBinance,
    demo_pair,
)

from .._harness import fetch
from ._venue_cases import VenueCases

#: A real Binance answer recorded by ccxt's static tests (provenance: tests/fixtures/README.md).
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "binance_usdm_fapi_v2_account.json"
NOW_NS = 1_700_000_000_000 * 10**6  # a fixed client clock: 2023-11-14T22:13:20Z
NOW_MS = NOW_NS // 10**6
URL = "https://fapi.binance.com"


def recording() -> dict[str, Any]:
    """The recorded fixture file, numbers as Decimal (fails loudly when it is missing)."""
    data: dict[str, Any] = json.loads(FIXTURE.read_text(), parse_float=Decimal)
    return data


def binance(**overrides: object) -> BinanceFutures:
    settings: dict[str, object] = {
        "api_key": BINANCE_TEST_KEY,
        "api_secret": BINANCE_TEST_SECRET,
        "clock": lambda: NOW_NS,
    }
    settings.update(overrides)
    return BinanceFutures(**settings)  # type: ignore[arg-type]


def respond(response: httpx.Response, provider: BinanceFutures | None = None) -> bb.Balance:
    provider = provider or binance()
    response.request = provider.build_request(NOW_MS)
    return provider.parse_response(response)


def account(**changes: object) -> dict[str, Any]:
    body = json.loads(dumps(BINANCE_RECORDED_ACCOUNT))
    body.update(changes)
    return body


def asset_row(
    asset: str, wallet: str, update_time: object = "1701270042059", margin: str | None = None
) -> dict:
    return {
        "asset": asset,
        "walletBalance": wallet,
        "marginBalance": wallet if margin is None else margin,
        "availableBalance": "31.02261200",
        "updateTime": update_time,
    }


class TestSigner:
    def test_official_vector(self) -> None:
        """Binance's published futures example (Example 1) signs to the published signature."""
        params = (
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
            "&recvWindow=5000&timestamp=1591702613943"
        )
        assert binance_sign(params, BINANCE_TEST_SECRET) == (
            "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
        )

    def test_local_vector(self) -> None:
        """The local vector of docs/venues/binance.md, 'Signing and the clock' (recvWindow, timestamp) reproduces."""
        assert binance_sign("recvWindow=5000&timestamp=1591702613943", BINANCE_TEST_SECRET) == (
            "5581570ecf76b9b74c6f1a66ef6520c2959a75c32641affb2634d655d6e64db8"
        )

    def test_request_signs_the_exact_query_with_signature_last(self) -> None:
        """timestamp and recvWindow come first; signature is last and covers what precedes it."""
        request = binance(recv_window=7000).build_request(1591702613943)
        query = request.url.query.decode()
        signed, _, signature = query.rpartition("&signature=")
        assert request.method == "GET"
        assert request.url.path == ACCOUNT_PATH == "/fapi/v2/account"
        assert signed == "timestamp=1591702613943&recvWindow=7000"
        assert signature == binance_sign(signed, BINANCE_TEST_SECRET)
        assert [k for k, _ in parse_qsl(query)] == ["timestamp", "recvWindow", "signature"]
        assert request.headers["X-MBX-APIKEY"] == BINANCE_TEST_KEY
        assert request.headers["User-Agent"].startswith("bastion-balance/")
        assert request.content == b""

    def test_server_time_request_is_public(self) -> None:
        """The server-time read carries no key and no signature."""
        request = binance().server_time_request()
        assert str(request.url) == "https://fapi.binance.com/fapi/v1/time"
        assert "X-MBX-APIKEY" not in request.headers


class TestRecordedAccount:
    def test_fixture_and_simulator_body_are_the_same(self) -> None:
        """The simulator answers exactly the recorded body of the fixture file."""
        assert json.loads(FIXTURE.read_text())["httpResponse"] == BINANCE_RECORDED_ACCOUNT

    def test_recording_maps_field_by_field(self) -> None:
        """Every mapped figure of the recording is taken exactly as Binance sent it."""
        body = recording()["httpResponse"]
        balance = respond(json_response(200, body))
        assert balance.total == Decimal(body["totalMarginBalance"]) == Decimal("31.02261200")
        assert balance.available == Decimal(body["availableBalance"])
        assert balance.wallet == Decimal(body["totalWalletBalance"])
        assert balance.margin_used == Decimal(body["totalInitialMargin"])
        assert balance.unrealized_pnl == Decimal(body["totalUnrealizedProfit"])
        assert str(balance.total) == "31.02261200"  # digits kept as sent
        assert (balance.currency, balance.exchange, balance.label) == ("USDT", "binance", "binance")
        assert balance.uncounted == ()
        assert balance.breakdown == {
            "USDT": bb.Holding(currency="USDT", total=Decimal(body["assets"][0]["marginBalance"]))
        }
        assert balance.raw["assets"][0]["updateTime"] == "1701270042059"

    def test_extra_keeps_other_money_figures_only(self) -> None:
        """extra holds every other numeric account figure, not ids, flags or times."""
        body = recording()["httpResponse"]
        balance = respond(json_response(200, body))
        assert balance.extra == {
            name: Decimal(body[name])
            for name in (
                "totalInitialMargin",
                "totalMaintMargin",
                "totalWalletBalance",
                "totalUnrealizedProfit",
                "totalPositionInitialMargin",
                "totalOpenOrderInitialMargin",
                "totalCrossWalletBalance",
                "totalCrossUnPnl",
                "maxWithdrawAmount",
            )
        }

    def test_agrees_with_ccxt_where_exact(self) -> None:
        """ccxt's parsed USDT figures of the same recording agree by value with ours."""
        fixture = recording()
        ccxt = fixture["ccxtParsedResponse_excerpt"]["USDT"]
        balance = respond(json_response(200, fixture["httpResponse"]))
        assert ccxt["total"] == balance.breakdown["USDT"].total == balance.total
        assert ccxt["free"] == balance.available
        assert ccxt["used"] == balance.margin_used


class TestQuirks:
    @pytest.mark.parametrize(("flag", "currency"), [(True, "USD"), (False, "USDT")])
    def test_multi_assets_flag_sets_currency(self, flag: bool, currency: str) -> None:
        """multiAssetsMargin true means totals in USD; false means USDT."""
        assert respond(json_response(200, account(multiAssetsMargin=flag))).currency == currency

    def test_multi_assets_absent_is_single_asset(self) -> None:
        """Older and v3 bodies carry no multiAssetsMargin: single-asset mode, USDT."""
        body = account()
        del body["multiAssetsMargin"]
        assert respond(json_response(200, body)).currency == "USDT"

    @pytest.mark.parametrize("value", ["false", "true", 0, 1, "", {}])
    def test_multi_assets_not_a_boolean(self, value: object) -> None:
        """A multiAssetsMargin that is not a JSON boolean is refused, never guessed."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            respond(json_response(200, account(multiAssetsMargin=value)))
        assert info.value.field == "$.multiAssetsMargin"

    def test_single_asset_other_wallets_are_uncounted(self) -> None:
        """Non-USDT assets with a wallet balance are in breakdown and listed as uncounted."""
        rows = [
            asset_row("USDT", "31.02261200"),
            asset_row("BTC", "0.50000000"),
            asset_row("USDC", "-1.5"),
            asset_row("BNB", "0.00000000"),
        ]
        balance = respond(json_response(200, account(assets=rows)))
        assert balance.uncounted == ("BTC", "USDC")
        assert list(balance.breakdown) == ["USDT", "BTC", "USDC", "BNB"]
        assert balance.breakdown["BTC"] == bb.Holding(currency="BTC", total=Decimal("0.50000000"))

    def test_multi_assets_counts_everything(self) -> None:
        """In Multi-Assets mode the USD totals include every asset: nothing is uncounted."""
        rows = [asset_row("USDT", "1"), asset_row("BTC", "0.5")]
        balance = respond(json_response(200, account(assets=rows, multiAssetsMargin=True)))
        assert balance.uncounted == ()
        assert set(balance.breakdown) == {"USDT", "BTC"}

    @pytest.mark.parametrize("update_time", ["0", 0])
    def test_stale_empty_rows_are_skipped(self, update_time: object) -> None:
        """Rows never updated (updateTime 0) and holding nothing are placeholders: skipped."""
        rows = [asset_row("USDT", "31.02261200"), asset_row("FDUSD", "0.00000000", update_time)]
        balance = respond(json_response(200, account(assets=rows)))
        assert list(balance.breakdown) == ["USDT"]

    def test_stale_row_with_a_balance_is_kept(self) -> None:
        """A row with updateTime 0 that still holds something is kept and counted as uncounted."""
        rows = [asset_row("USDT", "31.02261200"), asset_row("BTC", "0.1", "0")]
        balance = respond(json_response(200, account(assets=rows)))
        assert "BTC" in balance.breakdown
        assert balance.uncounted == ("BTC",)

    def test_per_asset_available_is_not_exposed(self) -> None:
        """Per-asset availableBalance is the shared cross-margin figure: never put per holding."""
        balance = respond(json_response(200, account()))
        assert all(h.available is None for h in balance.breakdown.values())

    def test_asset_without_margin_balance(self) -> None:
        """A row without marginBalance has an unknown total (None), not zero."""
        rows = [{"asset": "USDT", "walletBalance": "5", "updateTime": 1}]
        assert respond(json_response(200, account(assets=rows))).breakdown["USDT"].total is None

    def test_optional_totals_empty_are_none(self) -> None:
        """An empty optional figure is None, never 0."""
        balance = respond(json_response(200, account(totalInitialMargin="", totalUnrealizedProfit=None)))
        assert (balance.margin_used, balance.unrealized_pnl) == (None, None)

    @pytest.mark.parametrize("field", ["totalMarginBalance", "availableBalance"])
    @pytest.mark.parametrize("value", [None, "", "NaN", "1,0", " 1", True, {}])
    def test_required_figure_bad(self, field: str, value: object) -> None:
        """A missing or malformed total/available names venue, field and value."""
        body = account()
        if value is None:
            del body[field]
        else:
            body[field] = value
        with pytest.raises(bb.UnexpectedResponseError) as info:
            respond(json_response(200, body))
        assert (info.value.venue, info.value.field) == ("binance", f"$.{field}")

    @pytest.mark.parametrize("assets", [{"USDT": {}}, [{"asset": "USDT"}], "x"])
    def test_bad_assets(self, assets: object) -> None:
        """An assets member of the wrong shape is an UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError):
            respond(json_response(200, account(assets=assets)))

    def test_json_number_figure_is_exact(self) -> None:
        """A figure sent as a JSON number is decoded straight to Decimal, digit for digit."""
        body = '{"totalMarginBalance": 0.1000000000000000055511151231257827, "availableBalance": 1}'
        assert respond(httpx.Response(200, content=body.encode())).total == Decimal(
            "0.1000000000000000055511151231257827"
        )

    @given(
        total=st.decimals(
            allow_nan=False, allow_infinity=False, places=8, min_value=-(10**12), max_value=10**12
        ),
        available=st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=0, max_value=10**12),
    )
    def test_figures_round_trip_exactly(self, total: Decimal, available: Decimal) -> None:
        """Any 8-decimal figure Binance sends comes back digit for digit."""
        body = account(totalMarginBalance=str(total), availableBalance=str(available))
        balance = respond(json_response(200, body))
        assert (str(balance.total), str(balance.available)) == (str(total), str(available))


ERRORS = [
    (-2014, 401, bb.AuthenticationError),
    (-2015, 401, bb.AuthenticationError),
    (-1022, 400, bb.AuthenticationError),
    (-1021, 400, bb.AuthenticationError),
    (-1003, 429, bb.RateLimitedError),
    (-1000, 500, bb.ServiceUnavailableError),
    (-1001, 503, bb.ServiceUnavailableError),
    (-1007, 503, bb.ServiceUnavailableError),
    (-1007, 400, bb.ServiceUnavailableError),
    (-1131, 400, bb.ExchangeAPIError),
    (-4164, 400, bb.ExchangeAPIError),
    (-2015, 200, bb.AuthenticationError),
]


class TestErrors:
    @pytest.mark.parametrize(("code", "status", "cls"), ERRORS)
    def test_code_maps_to_class(self, code: int, status: int, cls: type[bb.ExchangeAPIError]) -> None:
        """Each Binance code raises its class, with the raw code and status kept."""
        with pytest.raises(bb.ExchangeAPIError) as info:
            respond(json_response(status, {"code": code, "msg": "refused"}))
        assert type(info.value) is cls
        assert (info.value.code, info.value.status_code, info.value.venue) == (code, status, "binance")

    def test_code_as_string(self) -> None:
        """A code sent as a string is read by value."""
        with pytest.raises(bb.AuthenticationError) as info:
            respond(json_response(401, {"code": "-2015", "msg": "x"}))
        assert info.value.code == -2015

    @pytest.mark.parametrize("code", ["abc", "1.5", True])
    def test_code_not_an_integer(self, code: object) -> None:
        """A code that is not an integer is an UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            respond(json_response(400, {"code": code, "msg": "x"}))
        assert info.value.field == "$.code"

    def test_success_code_is_not_an_error(self) -> None:
        """{"code": 200, "msg": "success"} is no error (then the account figures are missing)."""
        with pytest.raises(bb.UnexpectedResponseError, match="required field"):
            respond(json_response(200, {"code": 200, "msg": "success"}))

    def test_418_is_an_ip_ban(self) -> None:
        """HTTP 418 is an IP ban: rate limited, not transient, with Retry-After."""
        with pytest.raises(bb.RateLimitedError) as info:
            respond(httpx.Response(418, text="", headers={"Retry-After": "120"}))
        assert (info.value.retry_after, info.value.transient, info.value.code) == (120, False, None)

    def test_429_retry_after(self) -> None:
        """HTTP 429 carries Retry-After and stays transient."""
        with pytest.raises(bb.RateLimitedError) as info:
            respond(json_response(429, {"code": -1003, "msg": "Too many requests"}, **{"Retry-After": "7"}))
        assert (info.value.retry_after, info.value.transient) == (7, True)

    def test_banned_until(self) -> None:
        """-1003 'banned until <ms>' waits until then and is not retried soon."""
        message = f"Way too many requests; IP(1.2.3.4) banned until {NOW_MS + 90_000}. Use websocket."
        with pytest.raises(bb.RateLimitedError) as info:
            respond(json_response(418, {"code": -1003, "msg": message}))
        assert (info.value.retry_after, info.value.transient) == (90, False)

    @pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
    def test_server_errors(self, status: int) -> None:
        """Server error pages are ServiceUnavailableError (retryable)."""
        with pytest.raises(bb.ServiceUnavailableError) as info:
            respond(httpx.Response(status, text="<html>down</html>"))
        assert info.value.transient

    def test_403_is_the_waf(self) -> None:
        """HTTP 403 is Binance's firewall, not a credential problem."""
        with pytest.raises(bb.ExchangeAPIError, match="firewall") as info:
            respond(httpx.Response(403, text="<html>blocked</html>"))
        assert type(info.value) is bb.ExchangeAPIError

    def test_404_html(self) -> None:
        """An HTML 404 is an ExchangeAPIError with the status."""
        with pytest.raises(bb.ExchangeAPIError) as info:
            respond(httpx.Response(404, text="<html>nope</html>"))
        assert info.value.status_code == 404

    def test_timestamp_error_explains(self) -> None:
        """A -1021 that escapes says what to do about the clock."""
        with pytest.raises(bb.AuthenticationError) as info:
            respond(json_response(400, {"code": -1021, "msg": "outside recvWindow"}))
        assert TIMESTAMP_HELP in str(info.value)

    @pytest.mark.parametrize(
        ("response", "cls"),
        [
            (json_response(200, {"serverTime": "x"}), bb.UnexpectedResponseError),
            (json_response(200, {}), bb.UnexpectedResponseError),
            (httpx.Response(503, text="down"), bb.ServiceUnavailableError),
        ],
    )
    def test_bad_server_time(self, response: httpx.Response, cls: type[Exception]) -> None:
        """A server-time answer without an integer serverTime is refused."""
        provider = binance()
        response.request = provider.server_time_request()
        with pytest.raises(cls):
            provider.parse_server_time(response)


class TestConfiguration:
    @pytest.mark.parametrize(("environment", "url"), list(ENVIRONMENTS.items()))
    def test_environment_picks_base_url(self, environment: str, url: str) -> None:
        """environment= picks the default base URL of each documented host."""
        assert binance(environment=environment).base_url == url

    def test_base_url_wins_over_environment(self) -> None:
        """An explicit base_url is used as given (trailing slash dropped)."""
        provider = binance(environment="demo", base_url="https://testnet.binancefuture.com/")
        assert provider.base_url == "https://testnet.binancefuture.com"


def client_for(sim: Simulator) -> bb.BalanceClient:
    return bb.BalanceClient(http_client=sim.client(), retry=bb.NO_RETRY)


def server(skew_ms: int = 0) -> SimulatedBinance:
    return SimulatedBinance(clock=lambda: NOW_NS, skew_ms=skew_ms)


class TestAgainstSimulator:
    @pytest.mark.parametrize(
        ("overrides", "code"),
        [({"api_secret": "0" * 64}, -1022), ({"api_key": "unknown-key"}, -2015)],
    )
    def test_bad_credentials_are_refused(self, overrides: dict[str, object], code: int) -> None:
        """A wrong secret or unknown key fails as Binance fails."""
        with client_for(Simulator(server())) as client, pytest.raises(bb.AuthenticationError) as info:
            client.fetch(binance(**overrides))
        assert info.value.code == code

    @pytest.mark.parametrize("skew_ms", [10_000, -5_000])
    def test_clock_skew_corrected_once(self, skew_ms: int) -> None:
        """A -1021 reads the server time once, re-signs, succeeds; the next fetch goes straight through."""
        venue = server(skew_ms)
        with client_for(Simulator(venue)) as client:
            client.fetch(binance())
            assert (venue.calls, venue.time_calls) == (2, 1)
            assert _state.clock_offset("binance", URL) == skew_ms
            client.fetch(binance(label="again"))
        assert (venue.calls, venue.time_calls) == (3, 1)
        assert venue.timestamps == [NOW_MS + skew_ms, NOW_MS + skew_ms]

    def test_clock_skew_async(self) -> None:
        """The skew correction works the same from the async client."""
        venue = server(20_000)
        balance = fetch("async", binance(), Simulator(venue), retry=bb.NO_RETRY)
        assert balance.total == Decimal("31.02261200")
        assert (venue.calls, venue.time_calls) == (2, 1)

    def test_second_timestamp_error_is_raised(self) -> None:
        """After one server-time read and re-sign, a second -1021 is raised."""
        venue = server()
        venue.fail_next(-1021, -1021)
        with client_for(Simulator(venue)) as client, pytest.raises(bb.AuthenticationError) as info:
            client.fetch(binance())
        assert info.value.code == -1021
        assert (venue.calls, venue.time_calls) == (2, 1)

    def test_offset_is_per_base_url(self) -> None:
        """A measured offset applies to its base URL only."""
        venue = server(10_000)
        with client_for(Simulator(venue)) as client:
            client.fetch(binance())
        assert _state.clock_offset("binance", ENVIRONMENTS["demo"]) is None

    def test_used_weight_drains_the_ip_limiter(self) -> None:
        """When Binance reports the IP's weight nearly spent, the next call (any key) waits for it."""
        venue = server()
        venue.keys["second-key"] = "second-secret"
        venue.extra_weight = 2430
        with client_for(Simulator(venue)) as client:
            client.fetch(binance())
            with pytest.raises(bb.RateLimitedError, match="client-side rate limit") as info:
                client.fetch(binance(api_key="second-key", api_secret="second-secret"), timeout=0.5)
        assert not info.value.transient
        assert venue.calls == 1

    def test_rate_limited_answer_drains_limiter(self) -> None:
        """After a -1003 our limiter makes the next call wait instead of hammering Binance."""
        venue = server()
        venue.fail_next(-1003)
        with client_for(Simulator(venue)) as client:
            with pytest.raises(bb.RateLimitedError):
                client.fetch(binance())
            with pytest.raises(bb.RateLimitedError, match="client-side"):
                client.fetch(binance(), timeout=0.05)
        assert venue.calls == 1

    def test_limiter_allows_the_published_burst(self) -> None:
        """2400 weight per minute allows 480 account calls before any wait."""
        venue = server()
        with client_for(Simulator(venue)) as client:
            for _ in range(480):
                client.fetch(binance(), timeout=0.5)
            with pytest.raises(bb.RateLimitedError):
                client.fetch(binance(), timeout=0.05)

    def test_server_error_is_retried_by_the_client(self) -> None:
        """A 503 is transient: the default policy retries it and the fetch succeeds."""
        venue = server()
        venue.fail_next(503)
        policy = bb.RetryPolicy(backoff=0.001, max_backoff=0.001)
        with bb.BalanceClient(http_client=Simulator(venue).client(), retry=policy) as client:
            assert client.fetch(binance()).total == Decimal("31.02261200")
        assert venue.calls == 2

    def test_uncounted_becomes_a_portfolio_warning(self) -> None:
        """A BTC wallet in single-asset mode is named in the Portfolio's warnings."""
        rows = [asset_row("USDT", "31.02261200"), asset_row("BTC", "0.5")]
        venue = SimulatedBinance(clock=lambda: NOW_NS, account=account(assets=rows))
        with client_for(Simulator(venue)) as client:
            portfolio = client.aggregate([binance()])
        assert portfolio.balances["binance"].uncounted == ("BTC",)
        assert any("BTC" in warning for warning in portfolio.warnings)

    def test_logs_show_no_signature_and_no_key(self, caplog: pytest.LogCaptureFixture) -> None:
        """httpx's request log line of a Binance call has the signature masked and no key (docs/decisions.md §17)."""
        provider = binance()
        expected = binance_sign(f"timestamp={NOW_MS}&recvWindow=5000", BINANCE_TEST_SECRET)
        with caplog.at_level(logging.DEBUG), client_for(Simulator(server())) as client:
            client.fetch(provider)
        lines = [record.getMessage() for record in caplog.records if record.name.startswith("httpx")]
        assert any("/fapi/v2/account" in line and "signature=***" in line for line in lines)
        text = "\n".join(record.getMessage() for record in caplog.records)
        for secret in (expected, BINANCE_TEST_KEY, BINANCE_TEST_SECRET):
            assert secret not in text

    def test_many_concurrent_fetches(self) -> None:
        """Threads of fetches share the IP limiter and all succeed."""
        venue = server()
        sim = Simulator(venue)
        with rate_limits_disabled(), client_for(sim) as client:
            portfolio = client.aggregate([binance(label=f"b{i}") for i in range(20)])
        assert portfolio.complete
        assert venue.calls == 20


class TestFlowByHand:
    def test_flow_without_weight_header(self) -> None:
        """Driven by hand, the flow throttles, sends one signed request and parses the answer."""
        provider = binance()
        flow = provider.balance_flow()
        throttle = next(flow)
        assert isinstance(throttle, bb_protocol.Throttle)
        assert throttle.cost == 5
        request = flow.send(None)
        assert isinstance(request, httpx.Request)
        response = json_response(200, account())
        response.request = request
        with pytest.raises(StopIteration) as stop:
            flow.send(response)
        assert stop.value.value.total == Decimal("31.02261200")
        assert throttle.limiter.reserve(2400, 0) == (True, 0.0)  # no header: nothing drained


class TestSimulatorChecks:
    """The simulator refuses what Binance refuses (requests made by hand)."""

    def send(self, url: str, headers: dict[str, str] | None = None, method: str = "GET") -> httpx.Response:
        with Simulator(server()).client() as http:
            default = {"X-MBX-APIKEY": BINANCE_TEST_KEY}
            return http.request(method, url, headers=default if headers is None else headers)

    def signed(self, query: str) -> str:
        return f"{URL}/fapi/v2/account?{query}&signature={binance_sign(query, BINANCE_TEST_SECRET)}"

    @pytest.mark.parametrize(
        ("url", "headers", "code"),
        [
            (f"{URL}/fapi/v2/account?timestamp={NOW_MS}", {}, -2014),
            (f"{URL}/fapi/v2/account?timestamp={NOW_MS}", None, -1022),
            (f"{URL}/fapi/v2/account?signature=00&timestamp={NOW_MS}", None, -1022),
        ],
    )
    def test_refusals(self, url: str, headers: dict[str, str] | None, code: int) -> None:
        """No key, no signature, or a signature not last are refused with Binance's codes."""
        assert json.loads(self.send(url, headers).content)["code"] == code

    @pytest.mark.parametrize(
        ("query", "code"),
        [("recvWindow=5000", -1102), (f"timestamp={NOW_MS}&recvWindow=60000", -1131)],
    )
    def test_parameter_checks(self, query: str, code: int) -> None:
        """A missing timestamp or a recvWindow of 60000 or more is refused."""
        assert json.loads(self.send(self.signed(query)).content)["code"] == code

    def test_unknown_path(self) -> None:
        """An unknown endpoint answers Binance's 404."""
        assert self.send(f"{URL}/fapi/v3/nothing").status_code == 404

    def test_scripted_response(self) -> None:
        """fail_next() accepts a ready response and gives it verbatim."""
        venue = server()
        venue.fail_next(httpx.Response(502, text="bad gateway"))
        with client_for(Simulator(venue)) as client, pytest.raises(bb.ServiceUnavailableError):
            client.fetch(binance())

    def test_weight_counts_per_minute(self) -> None:
        """X-MBX-USED-WEIGHT-1M counts this minute's weight, time calls included."""
        with Simulator(server()).client() as http:
            first = http.get(f"{URL}/fapi/v1/time")
            second = http.get(self.signed(f"timestamp={NOW_MS}"), headers={"X-MBX-APIKEY": BINANCE_TEST_KEY})
        assert (first.headers["X-MBX-USED-WEIGHT-1M"], second.headers["X-MBX-USED-WEIGHT-1M"]) == ("1", "6")


def test_cassette_is_scrubbed() -> None:
    """The cassette holds no key, signature or timestamp, and the real venue URL."""
    text = (Path(__file__).resolve().parents[2] / "cassettes/binance/account.yaml").read_text()
    assert (
        "https://fapi.binance.com/fapi/v2/account?timestamp=<scrubbed>&recvWindow=5000&signature=<scrubbed>"
        in text
    )
    assert BINANCE_TEST_KEY not in text
    assert BINANCE_TEST_SECRET not in text


CASES = VenueCases(
    make=binance,
    venue=server,
    demo=demo_pair,
    respond=respond,
    secrets=(BINANCE_TEST_SECRET, BINANCE_TEST_KEY),
    bad_settings=(
        {"api_key": ""},
        {"api_key": None},
        {"api_secret": " secret"},
        {"api_secret": ""},
        {"base_url": "http://fapi.binance.com"},
        {"base_url": "https://fapi.binance.com/?x=1"},
        {"environment": "live"},
        {"recv_window": 60_000},
        {"recv_window": 0},
        {"recv_window": "5000"},
        {"recv_window": True},
        {"label": ""},
    ),
    error_secrets=(BINANCE_TEST_SECRET,),
    defaults={"base_url": URL, "recv_window": 5000},
    fetch_hosts=("fapi.binance.com",),
    fetched={"total": Decimal("31.02261200"), "available": Decimal("31.02261200")},
    venue_after_fetch={"calls": 1, "time_calls": 0, "timestamps": [NOW_MS]},
    demo_fetched={"wallet": Decimal("31.02261200")},
    cassette="binance/account.yaml",
    cassette_uris=(
        "https://fapi.binance.com/fapi/v2/account?timestamp=<scrubbed>&recvWindow=5000&signature=<scrubbed>",
    ),
    cassette_fetched={"total": Decimal("31.02261200"), "breakdown.USDT.total": Decimal("31.02261200")},
)
