"""CoinSwitch PRO futures wallet_balance: signer vectors, request, parsing, errors, simulator, cassette."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance import _state
from bastion_balance._decimal import exact_sum
from bastion_balance._protocol import Throttle
from bastion_balance.providers.coinswitch import (
    DEFAULT_BASE_URL,
    RATE_LIMIT,
    WALLET_BALANCE_PATH,
    CoinSwitch,
    coinswitch_sign,
)
from bastion_balance.testing import Simulator, json_response
from bastion_balance.testing._coinswitch import (
    COINSWITCH_DOCUMENTED_DATA,
    COINSWITCH_TEST_KEY,
    COINSWITCH_TEST_SECRET,
    SimulatedCoinSwitch,
    demo_pair,
)

from .._vcr import SCRUBBED, _scrub_request
from ._venue_cases import VenueCases

EPOCH = 1719905777483
NOW_NS = EPOCH * 1_000_000
OTHER_SECRET = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"  # RFC 8032 test 2
OTHER_KEY = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"


def coinswitch(**overrides: object) -> CoinSwitch:
    settings: dict[str, object] = {"api_key": COINSWITCH_TEST_KEY, "api_secret": COINSWITCH_TEST_SECRET}
    settings.update(overrides)
    return CoinSwitch(**settings)  # type: ignore[arg-type]


def documented(**changes: Any) -> dict[str, Any]:  # noqa: ANN401
    data = copy.deepcopy(dict(COINSWITCH_DOCUMENTED_DATA))
    data.update(changes)
    return data


def respond(provider: CoinSwitch, response: httpx.Response) -> bb.Balance:
    response.request = provider.build_request(EPOCH)
    return provider.parse_response(response)


def parse(data: object, provider: CoinSwitch | None = None) -> bb.Balance:
    return respond(provider or coinswitch(), json_response(200, {"data": data}))


def usdt_entry(**balances: str) -> dict[str, Any]:
    return {"base_asset": balances.pop("asset", "USDT"), "balances": balances}


class TestSigner:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            (
                "/trade/api/v2/time",
                "bc94df6a14d69927f0387bde81be88de8d4068ed125b9defd38f34f31f9019cb"
                "4313ee7f3aa862f9b02277879889e428a6994b1655e95a1ae12a8967dce92f07",
            ),
            (
                "/trade/api/v2/futures/wallet_balance",
                "a864dbf8e769e474b13b301a74acb66c19576a2f87e37c24bf6ff5d1f7c2a02d"
                "8542074fef4279f0e740360e653cfb1da9afab64e61be5231d018df44140b302",
            ),
        ],
    )
    def test_local_vectors(self, path: str, expected: str) -> None:
        """The local vectors of docs/venues/coinswitch.md, 'Signing' (RFC 8032 test-1 key) reproduce exactly."""
        assert expected == coinswitch_sign("GET", path, EPOCH, COINSWITCH_TEST_SECRET)

    def test_rfc8032_empty_message(self) -> None:
        """With an empty message the signer gives RFC 8032 test 1's signature (sanity)."""
        assert coinswitch_sign("", "", "", COINSWITCH_TEST_SECRET) == (
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
            "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        )

    def test_method_upper_cased(self) -> None:
        """The method is signed upper-case whatever case it is given in."""
        lower = coinswitch_sign("get", WALLET_BALANCE_PATH, EPOCH, COINSWITCH_TEST_SECRET)
        assert lower == coinswitch_sign("GET", WALLET_BALANCE_PATH, EPOCH, COINSWITCH_TEST_SECRET)

    def test_query_is_url_decoded(self) -> None:
        """The path and query are signed URL-decoded (unquote_plus), as the reference client does."""
        encoded = coinswitch_sign("GET", "/x?symbol=BTC%2FUSDT&a=b+c", EPOCH, COINSWITCH_TEST_SECRET)
        assert encoded == coinswitch_sign("GET", "/x?symbol=BTC/USDT&a=b c", EPOCH, COINSWITCH_TEST_SECRET)

    def test_request_shape(self) -> None:
        """The request is a signed GET carrying every documented header."""
        request = coinswitch().build_request(EPOCH)
        assert request.method == "GET"
        assert str(request.url) == "https://coinswitch.co/trade/api/v2/futures/wallet_balance"
        assert request.content == b""
        assert request.headers["X-AUTH-APIKEY"] == COINSWITCH_TEST_KEY
        assert request.headers["X-AUTH-EPOCH"] == str(EPOCH)
        assert request.headers["X-AUTH-SIGNATURE"] == coinswitch_sign(
            "GET", WALLET_BALANCE_PATH, EPOCH, COINSWITCH_TEST_SECRET
        )
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("bastion-balance/")

    def test_flow_signs_with_clock_in_milliseconds(self) -> None:
        """The flow's epoch is the injected clock in milliseconds."""
        flow = coinswitch(clock=lambda: NOW_NS + 999_999).balance_flow()
        next(flow)  # the Throttle
        request = flow.send(None)
        assert isinstance(request, httpx.Request)
        assert request.headers["X-AUTH-EPOCH"] == str(EPOCH)
        flow.close()


class TestParse:
    def test_documented_example(self) -> None:
        """The documented wallet_balance example maps exactly onto the common model."""
        balance = parse(COINSWITCH_DOCUMENTED_DATA)
        assert (balance.total, balance.available) == (Decimal("60960.82599588"), Decimal("60910.77418715"))
        assert (balance.wallet, balance.margin_used) == (Decimal("60960.82599588"), Decimal("50.05180873"))
        assert balance.currency == "USDT"
        assert balance.exchange == balance.label == "coinswitch"
        assert balance.unrealized_pnl is None
        assert balance.extra == {
            "total_blocked_balance": Decimal("50.05180873"),
            "total_position_margin": Decimal("56.83032573"),
            "total_open_order_margin": Decimal("-6.778517"),
        }
        assert balance.breakdown == {
            "DOGEUSDT": bb.Holding(currency="USDT", total=Decimal("50.04968529"), available=None)
        }
        assert balance.uncounted == ()
        assert balance.raw == {"data": COINSWITCH_DOCUMENTED_DATA}

    def test_documented_identities_hold_exactly(self) -> None:
        """total - available == blocked and blocked == position + open-order margin, exactly."""
        balance = parse(COINSWITCH_DOCUMENTED_DATA)
        assert balance.margin_used is not None
        assert balance.total - balance.available == balance.margin_used == Decimal("50.05180873")
        assert balance.margin_used == exact_sum(
            (balance.extra["total_position_margin"], balance.extra["total_open_order_margin"])
        )
        row = COINSWITCH_DOCUMENTED_DATA["asset"][0]
        assert Decimal(row["blocked_balance"]) == Decimal(row["position_margin"]) + Decimal(
            row["open_order_margin"]
        )

    def test_negative_open_order_margin_accepted(self) -> None:
        """A negative total_open_order_margin (reduce-only orders) is kept as sent."""
        balance = parse(COINSWITCH_DOCUMENTED_DATA)
        assert balance.extra["total_open_order_margin"] == Decimal("-6.778517")
        assert balance.extra["total_open_order_margin"] < 0

    def test_total_taken_as_sent(self) -> None:
        """Totals that break the identity by a digit are taken as sent, never recomputed."""
        entry = usdt_entry(
            total_balance="100.00000001", total_available_balance="90", total_blocked_balance="10"
        )
        balance = parse({"base_asset_balances": [entry]})
        assert (balance.total, balance.available) == (Decimal("100.00000001"), Decimal(90))

    def test_optional_figures_absent(self) -> None:
        """Without blocked or margin figures, margin_used is None, never 0; asset[] may be absent."""
        balance = parse({"base_asset_balances": [usdt_entry(total_balance="5", total_available_balance="5")]})
        assert balance.margin_used is None
        assert balance.extra == {}
        assert balance.breakdown == {}

    def test_other_settlement_assets_in_breakdown(self) -> None:
        """Other settlement assets are in breakdown by name, and in uncounted when not zero."""
        data = documented(
            base_asset_balances=[
                usdt_entry(asset="INR", total_balance="1000.5", total_available_balance="900"),
                *COINSWITCH_DOCUMENTED_DATA["base_asset_balances"],
                usdt_entry(asset="USDC", total_balance="0", total_available_balance="0"),
            ]
        )
        balance = parse(data)
        assert balance.total == Decimal("60960.82599588")
        assert balance.breakdown["INR"] == bb.Holding(
            currency="INR", total=Decimal("1000.5"), available=Decimal(900)
        )
        assert balance.breakdown["USDC"].total == 0
        assert balance.uncounted == ("INR",)
        assert set(balance.breakdown) == {"INR", "USDC", "DOGEUSDT"}

    def test_other_base_asset_counted(self) -> None:
        """base_asset= picks which settlement asset is the Balance; USDT then goes to breakdown."""
        data = documented(
            base_asset_balances=[
                *COINSWITCH_DOCUMENTED_DATA["base_asset_balances"],
                usdt_entry(asset="INR", total_balance="7", total_available_balance="6"),
            ]
        )
        balance = parse(data, coinswitch(base_asset="inr"))
        assert (balance.currency, balance.total, balance.available) == ("INR", Decimal(7), Decimal(6))
        assert balance.uncounted == ("USDT",)
        assert balance.breakdown["USDT"].total == Decimal("60960.82599588")

    def test_symbol_row_without_base_asset(self) -> None:
        """A symbol row without its base_asset is valued in the provider's base asset."""
        data = documented(asset=[{"symbol": "BTCUSDT", "blocked_balance": "1.5"}])
        assert parse(data).breakdown["BTCUSDT"] == bb.Holding(currency="USDT", total=Decimal("1.5"))

    @pytest.mark.parametrize(
        "entries", [[], [usdt_entry(asset="INR", total_balance="1", total_available_balance="1")]]
    )
    def test_missing_base_asset_entry(self, entries: list[dict[str, Any]]) -> None:
        """No entry for the base asset is an UnexpectedResponseError that says so."""
        with pytest.raises(
            bb.UnexpectedResponseError, match="no base_asset_balances entry for base_asset 'USDT'"
        ) as info:
            parse({"base_asset_balances": entries, "asset": []})
        assert info.value.field == "$.data.base_asset_balances"

    @pytest.mark.parametrize(
        "data",
        [
            documented(base_asset_balances=COINSWITCH_DOCUMENTED_DATA["base_asset_balances"] * 2),
            documented(asset=COINSWITCH_DOCUMENTED_DATA["asset"] * 2),
        ],
    )
    def test_duplicates_refused(self, data: dict[str, Any]) -> None:
        """A settlement asset or symbol listed twice is an error, never a silent overwrite."""
        with pytest.raises(bb.UnexpectedResponseError, match="twice"):
            parse(data)

    @pytest.mark.parametrize("field", ["total_balance", "total_available_balance"])
    @pytest.mark.parametrize("value", [None, "", "NaN", "1_0", " 1", "1e999999", True, {"v": "1"}])
    def test_required_figure_bad(self, field: str, value: object) -> None:
        """A missing or malformed total/available names venue, field path and value."""
        data = documented()
        balances = data["base_asset_balances"][0]["balances"]
        if value is None:
            del balances[field]
        else:
            balances[field] = value
        with pytest.raises(bb.UnexpectedResponseError) as info:
            parse(data)
        assert info.value.venue == "coinswitch"
        assert info.value.field == f"$.data.base_asset_balances[0].balances.{field}"

    @pytest.mark.parametrize(
        "payload", [{}, {"data": None}, {"data": []}, {"data": {}}, {"data": {"base_asset_balances": {}}}, []]
    )
    def test_bad_envelope(self, payload: object) -> None:
        """An envelope of the wrong shape is an UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError):
            respond(coinswitch(), json_response(200, payload))

    @given(
        total=st.decimals(
            allow_nan=False, allow_infinity=False, places=8, min_value=-(10**12), max_value=10**12
        ),
        available=st.decimals(
            allow_nan=False, allow_infinity=False, places=18, min_value=0, max_value=10**12
        ),
    )
    def test_figures_exact(self, total: Decimal, available: Decimal) -> None:
        """Any plain decimal string comes back digit for digit."""
        entry = usdt_entry(total_balance=str(total), total_available_balance=f"{available:f}")
        balance = parse({"base_asset_balances": [entry]})
        assert (str(balance.total), balance.available) == (str(total), available)


ERRORS = [
    (401, {"message": "Invalid signature"}, bb.AuthenticationError),
    (403, {"message": "Forbidden"}, bb.AuthenticationError),
    (422, {"message": "symbol is invalid"}, bb.ExchangeAPIError),
    (400, {"message": "bad request"}, bb.ExchangeAPIError),
    (404, {}, bb.ExchangeAPIError),
    (429, {"message": "Too many requests"}, bb.RateLimitedError),
    (500, {"message": "Internal error"}, bb.ServiceUnavailableError),
    (503, None, bb.ServiceUnavailableError),
]


class TestErrors:
    @pytest.mark.parametrize(("status", "body", "cls"), ERRORS)
    def test_status_maps_to_class(self, status: int, body: object, cls: type[bb.ExchangeAPIError]) -> None:
        """Each HTTP status raises its class, with the status as code and the body's message."""
        response = json_response(status, body) if body is not None else httpx.Response(status, text="<html/>")
        with pytest.raises(bb.ExchangeAPIError) as info:
            respond(coinswitch(), response)
        assert type(info.value) is cls
        assert (info.value.code, info.value.status_code, info.value.venue) == (status, status, "coinswitch")
        if isinstance(body, dict) and "message" in body:
            assert body["message"] in str(info.value)

    def test_422_names_the_field(self) -> None:
        """A 422 carries CoinSwitch's message (which names the field) and is not retried."""
        with pytest.raises(bb.ExchangeAPIError, match="exchange is required") as info:
            respond(coinswitch(), json_response(422, {"message": "exchange is required"}))
        assert not info.value.transient

    def test_401_explains_clock(self) -> None:
        """The 401 text points at the key, the signature and the clock."""
        with pytest.raises(bb.AuthenticationError, match="60 s"):
            respond(coinswitch(), json_response(401, {"message": "Unauthorized"}))

    def test_rate_limit_is_transient_without_retry_after(self) -> None:
        """429 is retryable; CoinSwitch sends no Retry-After, so none is invented."""
        with pytest.raises(bb.RateLimitedError) as info:
            respond(coinswitch(), json_response(429, {"message": "Too many requests"}))
        assert info.value.transient
        assert info.value.retry_after is None


class TestConfiguration:
    def test_secret_error_names_parameter(self) -> None:
        """A malformed secret's error names api_secret and the expected form."""
        with pytest.raises(bb.ConfigurationError, match="api_secret must be 64 hex"):
            coinswitch(api_secret="zz" * 32)


def client_for(sim: Simulator) -> bb.BalanceClient:
    return bb.BalanceClient(http_client=sim.client(), retry=bb.NO_RETRY)


class TestAgainstSimulator:
    @pytest.mark.parametrize(
        ("provider", "message"),
        [
            (lambda: coinswitch(api_key=OTHER_KEY, api_secret=OTHER_SECRET), "Invalid API key"),
            (lambda: coinswitch(api_secret=OTHER_SECRET), "Invalid signature"),
        ],
    )
    def test_refused_credentials(self, provider: Any, message: str) -> None:  # noqa: ANN401
        """An unregistered key or a secret that does not match the key gets CoinSwitch's 401."""
        venue = SimulatedCoinSwitch()
        with (
            client_for(Simulator(venue)) as client,
            pytest.raises(bb.AuthenticationError, match=message) as info,
        ):
            client.fetch(provider())
        assert info.value.status_code == 401
        assert venue.epochs == []

    @pytest.mark.parametrize(
        ("skew_ms", "accepted"), [(59_999, True), (-60_000, True), (60_001, False), (-90_000, False)]
    )
    def test_epoch_window(self, skew_ms: int, accepted: bool) -> None:  # noqa: FBT001
        """An epoch more than 60,000 ms from the server's clock is refused with 401."""
        venue = SimulatedCoinSwitch(clock=lambda: NOW_NS)
        provider = coinswitch(clock=lambda: NOW_NS + skew_ms * 1_000_000)
        with client_for(Simulator(venue)) as client:
            if accepted:
                assert client.fetch(provider).total == Decimal("60960.82599588")
            else:
                with pytest.raises(bb.AuthenticationError, match="too far from server time"):
                    client.fetch(provider)

    def test_tampered_signature(self) -> None:
        """A request whose signed path differs from the one sent is refused."""
        venue = SimulatedCoinSwitch(clock=lambda: NOW_NS)
        request = coinswitch().build_request(EPOCH)
        request.headers["X-AUTH-SIGNATURE"] = coinswitch_sign(
            "GET", "/trade/api/v2/time", EPOCH, COINSWITCH_TEST_SECRET
        )
        assert venue.handle(request).status_code == 401
        request.headers["X-AUTH-EPOCH"] = "soon"
        assert venue.handle(request).status_code == 401

    def test_unknown_path(self) -> None:
        """Another path is a 404 with the documented error shape."""
        response = SimulatedCoinSwitch().handle(httpx.Request("GET", "https://coinswitch.co/nope"))
        assert (response.status_code, response.json()) == (404, {"message": "Not Found"})

    def test_retry_resigns_with_fresh_epoch(self) -> None:
        """A 503 is retried and the retry is signed with a new epoch."""
        ticks: Iterator[int] = iter([NOW_NS, NOW_NS + 5_000_000])
        venue = SimulatedCoinSwitch(clock=lambda: NOW_NS)
        venue.fail_next(503)
        retry = bb.RetryPolicy(attempts=2, jitter=lambda _low, _high: 0.0)
        with bb.BalanceClient(http_client=Simulator(venue).client(), retry=retry) as client:
            client.fetch(coinswitch(clock=lambda: next(ticks)))
        assert venue.calls == 2
        assert venue.epochs == [EPOCH + 5]

    def test_scripted_message(self) -> None:
        """A scripted (status, message) answer reaches the caller as CoinSwitch's message."""
        venue = SimulatedCoinSwitch()
        venue.fail_next((422, "exchange is required"))
        with (
            client_for(Simulator(venue)) as client,
            pytest.raises(bb.ExchangeAPIError, match="exchange is required"),
        ):
            client.fetch(coinswitch())

    def test_rate_limit_drains_our_limiter(self) -> None:
        """After CoinSwitch's 429 the client-side limiter makes the next call wait."""
        venue = SimulatedCoinSwitch()
        venue.fail_next((429, "Too many requests"))
        with client_for(Simulator(venue)) as client:
            with pytest.raises(bb.RateLimitedError):
                client.fetch(coinswitch())
            with pytest.raises(bb.RateLimitedError, match="client-side rate limit"):
                client.fetch(coinswitch(), timeout=0.5)
        assert venue.calls == 1

    def test_burst_of_twenty_then_wait(self) -> None:
        """Twenty calls per key go straight out; the 21st waits for the first to leave the 60 s
        window (a bucket would let it through after 3 s) and is refused at once."""
        state = _state.shared_state("coinswitch", DEFAULT_BASE_URL, COINSWITCH_TEST_KEY)
        limit, window = RATE_LIMIT
        state.limiters["wallet_balance"] = _state.WindowLimiter(
            limit, limit / window, "wallet_balance", monotonic=lambda: 0.0, window=window
        )
        venue = SimulatedCoinSwitch()
        with client_for(Simulator(venue)) as client:
            for _ in range(20):
                client.fetch(coinswitch(label="a"), timeout=0.5)
            with pytest.raises(bb.RateLimitedError) as info:
                client.fetch(coinswitch(label="b"), timeout=0.5)
        assert info.value.retry_after == pytest.approx(60.0)
        assert venue.calls == 20

    def test_limiter_is_per_key(self) -> None:
        """The flow uses a 20 per 60 s limiter keyed on the API key, shared by equal providers."""
        flow = coinswitch(label="one").balance_flow()
        throttle = next(flow)
        flow.close()
        assert isinstance(throttle, Throttle)
        assert isinstance(throttle.limiter, _state.WindowLimiter)
        assert (throttle.limiter.capacity, throttle.limiter.window) == (20, 60 + _state.window_margin(60))
        other = coinswitch(label="two").balance_flow()
        assert next(other).limiter is throttle.limiter  # type: ignore[union-attr]
        other.close()


def _scrub_epoch(request: Any) -> Any:  # noqa: ANN401  # a vcrpy request
    """X-AUTH-EPOCH is a timestamp: scrubbed like the credentials (tests/_vcr.py does not know it)."""
    for name in list(request.headers):
        if name.lower() == "x-auth-epoch":
            request.headers[name] = SCRUBBED
    return request


CASES = VenueCases(
    make=coinswitch,
    venue=SimulatedCoinSwitch,
    demo=demo_pair,
    respond=lambda response: respond(coinswitch(), response),
    secrets=(COINSWITCH_TEST_SECRET, COINSWITCH_TEST_KEY),
    bad_settings=(
        {"api_key": ""},
        {"api_key": None},
        {"api_key": " key"},
        {"api_secret": COINSWITCH_TEST_SECRET[:-2]},
        {"api_secret": COINSWITCH_TEST_SECRET[:-1] + "g"},
        {"api_secret": ""},
        {"api_secret": 12},
        {"base_url": "http://coinswitch.co"},
        {"base_url": "https://coinswitch.co/?x=1"},
        {"base_asset": "US/DT"},
        {"base_asset": ""},
        {"label": ""},
    ),
    error_secrets=(COINSWITCH_TEST_SECRET,),
    defaults={"base_url": DEFAULT_BASE_URL, "base_asset": "USDT"},
    fetch_hosts=("coinswitch.co",),
    fetched={
        "total": Decimal("60960.82599588"),
        "available": Decimal("60910.77418715"),
        "margin_used": Decimal("50.05180873"),
    },
    venue_after_fetch={"calls": 1, "len(epochs)": 1},
    demo_fetched={"total": Decimal("60960.82599588")},
    cassette="coinswitch/wallet_balance.yaml",
    cassette_hooks={"before_record_request": [_scrub_request, _scrub_epoch]},
    cassette_uris=(DEFAULT_BASE_URL + WALLET_BALANCE_PATH,),
    cassette_fetched={
        "total": Decimal("60960.82599588"),
        "extra.total_open_order_margin": Decimal("-6.778517"),
    },
    timestamp_headers=("X-AUTH-EPOCH",),
)
