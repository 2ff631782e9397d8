"""Polymarket US retail balances: signer vector, request, parsing, errors, simulator, cassette."""

from __future__ import annotations

import base64
import copy
import decimal
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance import _state
from bastion_balance._protocol import Throttle
from bastion_balance.providers.polymarket_retail import (
    BALANCES_PATH,
    DEFAULT_BASE_URL,
    RATE_LIMIT,
    PolymarketUSRetail,
    polymarket_retail_sign,
)
from bastion_balance.testing import Simulator, json_response
from bastion_balance.testing._polymarket_retail import (
    POLYMARKET_RETAIL_DOCUMENTED_BALANCES,
    POLYMARKET_RETAIL_TEST_KEY_ID,
    POLYMARKET_RETAIL_TEST_PUBLIC_KEY,
    POLYMARKET_RETAIL_TEST_SECRET,
    POLYMARKET_RETAIL_TEST_SEED,
    SimulatedPolymarketRetail,
    demo_pair,
)

from .._harness import MODES, fetch
from .._vcr import SCRUBBED, _scrub_request
from ._venue_cases import VenueCases

STAMP = 1705420800000
NOW_NS = STAMP * 1_000_000
VECTOR = "Er2cdqZB9YUxY/+VC7NvqoyJEjmjhtpQMm3/TRsI0Hd7QeI+GWdJa2YsdtaotjO6uPQzQBA+pBYILlZpOQgVDA=="
OTHER_SEED = base64.b64encode(
    bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
).decode()

#: The documented buying-power example as the venue sends it: JSON numbers, a bare 0, no lastUpdated.
FORMULA_BODY = (
    b'{"balances": [{"currentBalance": 1000, "currency": "USD", "buyingPower": 850,'
    b' "assetNotional": 312.75, "assetAvailable": 250, "openOrders": 400, "marginRequirement": 0,'
    b' "pendingCredit": 0, "unsettledFunds": 0, "pendingWithdrawals": []}]}'
)


def retail(**overrides: object) -> PolymarketUSRetail:
    settings: dict[str, object] = {
        "key_id": POLYMARKET_RETAIL_TEST_KEY_ID,
        "secret_key": POLYMARKET_RETAIL_TEST_SECRET,
    }
    settings.update(overrides)
    return PolymarketUSRetail(**settings)  # type: ignore[arg-type]


def respond(provider: PolymarketUSRetail, response: httpx.Response) -> bb.Balance:
    response.request = provider.build_request(STAMP)
    return provider.parse_response(response)


def parse_body(body: bytes, provider: PolymarketUSRetail | None = None) -> bb.Balance:
    return respond(provider or retail(), httpx.Response(200, content=body))


def parse(balances: list[dict[str, Any]], provider: PolymarketUSRetail | None = None) -> bb.Balance:
    return respond(provider or retail(), json_response(200, {"balances": balances}))


def usd(**changes: Any) -> dict[str, Any]:  # noqa: ANN401
    entry = copy.deepcopy(dict(POLYMARKET_RETAIL_DOCUMENTED_BALANCES[0]))
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not ...}


class TestSigner:
    @pytest.mark.parametrize("secret", [POLYMARKET_RETAIL_TEST_SEED, POLYMARKET_RETAIL_TEST_SECRET])
    def test_local_vector(self, secret: str) -> None:
        """The local vector (docs/venues/polymarket-us-retail.md, 'Signing') reproduces from both secret forms."""
        assert VECTOR == polymarket_retail_sign(STAMP, "GET", "/v1/account/balances", secret)

    def test_method_upper_cased(self) -> None:
        """The method is signed upper-case."""
        assert VECTOR == polymarket_retail_sign(str(STAMP), "get", BALANCES_PATH, POLYMARKET_RETAIL_TEST_SEED)

    def test_secret_of_wrong_length(self) -> None:
        """The signer refuses a secret that is neither 32 nor 64 bytes."""
        with pytest.raises(ValueError, match="32 or 64 bytes"):
            polymarket_retail_sign(STAMP, "GET", BALANCES_PATH, base64.b64encode(b"x" * 33).decode())

    def test_signature_is_88_base64_chars(self) -> None:
        """A signature is 64 bytes, 88 base64 characters."""
        assert len(base64.b64decode(VECTOR)) == 64
        assert len(VECTOR) == 88

    def test_request_shape(self) -> None:
        """The request is a GET with the three X-PM headers, signed over the path only."""
        request = retail().build_request(STAMP)
        assert request.method == "GET"
        assert str(request.url) == "https://api.polymarket.us/v1/account/balances"
        assert request.content == b""
        assert request.headers["X-PM-Access-Key"] == POLYMARKET_RETAIL_TEST_KEY_ID
        assert request.headers["X-PM-Timestamp"] == str(STAMP)
        assert request.headers["X-PM-Signature"] == VECTOR
        assert request.headers["User-Agent"].startswith("bastion-balance/")

    def test_base_url_path_not_signed(self) -> None:
        """A base URL with a prefix (a proxy) still signs the documented endpoint path."""
        request = retail(base_url="https://proxy.example/pm").build_request(STAMP)
        assert request.url.path == "/pm/v1/account/balances"
        assert request.headers["X-PM-Signature"] == VECTOR

    def test_flow_signs_with_clock_in_milliseconds(self) -> None:
        """The flow's timestamp is the injected clock in milliseconds."""
        flow = retail(clock=lambda: NOW_NS + 999_999).balance_flow()
        next(flow)
        request = flow.send(None)
        assert isinstance(request, httpx.Request)
        assert request.headers["X-PM-Timestamp"] == str(STAMP)
        flow.close()


class TestParse:
    def test_documented_formula_example(self) -> None:
        """1000 + 250 - 400 - 0 = 850: the documented figures come through exactly, as sent."""
        balance = parse_body(FORMULA_BODY)
        assert balance.available == Decimal(850)
        assert balance.wallet == Decimal(1000)
        assert balance.margin_used == Decimal(0)
        extra = balance.extra
        assert balance.wallet + extra["assetAvailable"] - extra["openOrders"] - balance.margin_used == (
            balance.available
        )
        assert balance.total == Decimal("1312.75")  # currentBalance + assetNotional
        assert balance.currency == "USD"
        assert balance.exchange == balance.label == "polymarket_us_retail"

    def test_simulator_example(self) -> None:
        """The simulator's documented-shape answer maps onto the common model."""
        balance = parse([dict(POLYMARKET_RETAIL_DOCUMENTED_BALANCES[0])])
        assert (balance.total, balance.available, balance.wallet) == (
            Decimal("1312.75"),
            Decimal("850.00"),
            Decimal("1000.00"),
        )
        assert set(balance.extra) == {
            "currentBalance",
            "assetNotional",
            "assetAvailable",
            "pendingCredit",
            "openOrders",
            "unsettledFunds",
            "marginRequirement",
        }
        assert balance.breakdown == {}
        assert balance.uncounted == ()

    def test_bare_integer_zero_is_exact(self) -> None:
        """A bare JSON integer 0 is Decimal zero, and JSON numbers keep every digit."""
        body = (
            b'{"balances": [{"currency": "USD", "currentBalance": 0, "assetNotional":'
            b' 0.1000000000000000055511151231257827, "buyingPower": 0, "marginRequirement": 0}]}'
        )
        balance = parse_body(body)
        assert balance.total == Decimal("0.1000000000000000055511151231257827")
        assert balance.available == 0
        assert isinstance(balance.margin_used, Decimal)

    @pytest.mark.parametrize("last_updated", [None, ..., "2026-11-24T10:00:00Z"])
    def test_last_updated_null_absent_or_set(self, last_updated: object) -> None:
        """lastUpdated may be null, absent or a date: the balance parses all the same."""
        balance = parse([usd(lastUpdated=last_updated)])
        assert balance.total == Decimal("1312.75")
        assert "lastUpdated" not in balance.extra

    def test_optional_figures_null(self) -> None:
        """A null marginRequirement is None, never 0; null figures stay out of extra."""
        balance = parse([usd(marginRequirement=None, balanceReservation=None)])
        assert balance.margin_used is None
        assert "balanceReservation" not in balance.extra

    def test_other_currencies_in_breakdown(self) -> None:
        """Other currencies' entries are in breakdown by currency, and uncounted unless zero."""
        eur = usd(
            currency="EUR", currentBalance=Decimal(20), assetNotional=Decimal("0.5"), buyingPower=Decimal(19)
        )
        cad = usd(currency="CAD", currentBalance=0, assetNotional=0, buyingPower=0)
        gbp = {"currency": "GBP", "buyingPower": Decimal(3)}
        balance = parse([eur, usd(), cad, gbp])
        assert balance.total == Decimal("1312.75")
        assert balance.breakdown["EUR"] == bb.Holding(
            currency="EUR", total=Decimal("20.5"), available=Decimal(19)
        )
        assert balance.breakdown["CAD"].total == 0
        assert balance.breakdown["GBP"] == bb.Holding(currency="GBP", total=None, available=Decimal(3))
        assert balance.uncounted == ("EUR", "GBP")

    def test_currency_parameter_picks_entry(self) -> None:
        """currency= picks the entry that is the Balance (case-insensitive)."""
        eur = usd(
            currency="EUR", currentBalance=Decimal(20), assetNotional=Decimal("0.5"), buyingPower=Decimal(19)
        )
        balance = parse([usd(), eur], retail(currency="eur"))
        assert (balance.currency, balance.total, balance.available) == ("EUR", Decimal("20.5"), Decimal(19))
        assert balance.uncounted == ("USD",)

    @pytest.mark.parametrize("entries", [[], [{"currency": "EUR", "currentBalance": 1}]])
    def test_missing_currency_entry(self, entries: list[dict[str, Any]]) -> None:
        """No entry for the provider's currency is an UnexpectedResponseError naming it."""
        with pytest.raises(bb.UnexpectedResponseError, match="no balances entry for currency 'USD'") as info:
            parse(entries)
        assert info.value.field == "$.balances"

    def test_duplicate_currency(self) -> None:
        """Two entries for one currency are an error, never a silent choice."""
        with pytest.raises(bb.UnexpectedResponseError, match="two balances entries"):
            parse([usd(), usd()])

    @pytest.mark.parametrize("field", ["currentBalance", "assetNotional", "buyingPower"])
    @pytest.mark.parametrize("value", [..., None])
    def test_required_figure_missing(self, field: str, value: object) -> None:
        """A missing or null figure that total or available needs is an error naming it."""
        with pytest.raises(bb.UnexpectedResponseError, match="required field is missing") as info:
            parse([usd(**{field: value})])
        assert info.value.field == f"$.balances[0].{field}"

    @pytest.mark.parametrize("value", ["NaN", "", "1,000", True, [1]])
    def test_bad_number(self, value: object) -> None:
        """A figure that is not a plain number names venue, field and value."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            parse([usd(buyingPower=value)])
        assert info.value.venue == "polymarket_us_retail"
        assert info.value.field == "$.balances[0].buyingPower"

    @pytest.mark.parametrize("body", [b'{"balances": [{"buyingPower": NaN}]}', b"[]"])
    def test_not_a_balances_object(self, body: bytes) -> None:
        """NaN and a non-object are UnexpectedResponseErrors (HTML: test_every_venue.py)."""
        with pytest.raises(bb.UnexpectedResponseError):
            parse_body(body)

    @pytest.mark.parametrize(
        "payload", [{}, {"balances": None}, {"balances": {}}, {"balances": [{"currentBalance": 1}]}]
    )
    def test_bad_envelope(self, payload: object) -> None:
        """An envelope of the wrong shape is an UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError):
            respond(retail(), json_response(200, payload))

    @given(
        cash=st.decimals(
            allow_nan=False, allow_infinity=False, places=6, min_value=-(10**15), max_value=10**15
        ),
        notional=st.decimals(allow_nan=False, allow_infinity=False, places=18, min_value=0, max_value=10**15),
    )
    def test_total_is_exact_sum(self, cash: Decimal, notional: Decimal) -> None:
        """total is currentBalance + assetNotional, exact to the last digit whatever the scale."""
        body = (
            f'{{"balances": [{{"currency": "USD", "currentBalance": {cash}, '
            f'"assetNotional": {notional:f}, "buyingPower": {cash}}}]}}'
        ).encode()
        balance = parse_body(body)
        with decimal.localcontext(prec=200):
            assert balance.total == cash + notional
            assert balance.total - notional == balance.wallet == cash


ERRORS = [
    (401, b'{"status": 401, "message": "invalid signature"}', bb.AuthenticationError, 401),
    (403, b'{"code": 7, "message": "permission denied"}', bb.AuthenticationError, 7),
    (400, b'{"message": "bad request"}', bb.ExchangeAPIError, 400),
    (404, b"<html>not found</html>", bb.ExchangeAPIError, 404),
    (429, b'{"status": 429, "message": "Too Many Requests"}', bb.RateLimitedError, 429),
    (500, b'{"status": "INTERNAL", "message": "oops"}', bb.ServiceUnavailableError, "INTERNAL"),
    (502, b"<html>gateway</html>", bb.ServiceUnavailableError, 502),
    (503, b'{"status": 1.5, "message": ""}', bb.ServiceUnavailableError, 503),
]


class TestErrors:
    @pytest.mark.parametrize(("status", "body", "cls", "code"), ERRORS)
    def test_status_maps_to_class(
        self, status: int, body: bytes, cls: type[bb.ExchangeAPIError], code: object
    ) -> None:
        """Each status raises its class; the body's code or status (else the HTTP status) is the code."""
        with pytest.raises(bb.ExchangeAPIError) as info:
            respond(retail(), httpx.Response(status, content=body))
        assert type(info.value) is cls
        assert (info.value.code, info.value.status_code, info.value.venue) == (
            code,
            status,
            "polymarket_us_retail",
        )
        if b"oops" in body:
            assert "oops" in str(info.value)

    def test_429_has_no_retry_after(self) -> None:
        """Polymarket retail sends no Retry-After: none is invented, and 429 stays retryable."""
        with pytest.raises(bb.RateLimitedError) as info:
            respond(retail(), json_response(429, {"status": 429, "message": "Too Many Requests"}))
        assert info.value.retry_after is None
        assert info.value.transient

    def test_403_explains_permission(self) -> None:
        """A 403 says the key lacks permission."""
        with pytest.raises(bb.AuthenticationError, match="permission"):
            respond(retail(), json_response(403, {}))


class TestConfiguration:
    def test_mismatched_keypair(self) -> None:
        """A 64-byte secret whose second half is not its public key is refused."""
        raw = base64.b64decode(POLYMARKET_RETAIL_TEST_SECRET)
        broken = base64.b64encode(base64.b64decode(OTHER_SEED) + raw[32:]).decode()
        with pytest.raises(bb.ConfigurationError, match="second half"):
            retail(secret_key=broken)

    @pytest.mark.parametrize("secret", [POLYMARKET_RETAIL_TEST_SEED, POLYMARKET_RETAIL_TEST_SECRET])
    def test_both_secret_forms_accepted(self, secret: str) -> None:
        """The 32-byte seed and the 64-byte seed-and-public form both build a provider."""
        assert retail(secret_key=secret).build_request(STAMP).headers["X-PM-Signature"] == VECTOR


def client_for(sim: Simulator) -> bb.BalanceClient:
    return bb.BalanceClient(http_client=sim.client(), retry=bb.NO_RETRY)


class TestAgainstSimulator:
    @pytest.mark.parametrize("mode", MODES)
    def test_fetch_with_seed(self, mode: str) -> None:
        """A provider built from the bare 32-byte seed fetches the same exact figures."""
        provider = retail(secret_key=POLYMARKET_RETAIL_TEST_SEED)
        balance = fetch(mode, provider, Simulator(SimulatedPolymarketRetail()), retry=bb.NO_RETRY)
        assert balance.wallet == Decimal("1000.00")

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"key_id": "00000000-0000-4000-8000-000000000000"}, "invalid API key"),
            ({"secret_key": OTHER_SEED}, "invalid signature"),
        ],
    )
    def test_refused_credentials(self, overrides: dict[str, object], message: str) -> None:
        """An unknown key id or a secret that does not match the key gets a 401."""
        venue = SimulatedPolymarketRetail()
        with (
            client_for(Simulator(venue)) as client,
            pytest.raises(bb.AuthenticationError, match=message) as info,
        ):
            client.fetch(retail(**overrides))
        assert info.value.status_code == 401
        assert venue.timestamps == []

    @pytest.mark.parametrize(
        ("skew_ms", "accepted"), [(29_999, True), (-30_000, True), (30_001, False), (-45_000, False)]
    )
    def test_timestamp_window(self, skew_ms: int, accepted: bool) -> None:  # noqa: FBT001
        """A timestamp more than 30 s from the server's clock is refused with 401."""
        venue = SimulatedPolymarketRetail(clock=lambda: NOW_NS)
        provider = retail(clock=lambda: NOW_NS + skew_ms * 1_000_000)
        with client_for(Simulator(venue)) as client:
            if accepted:
                assert client.fetch(provider).total == Decimal("1312.75")
            else:
                with pytest.raises(bb.AuthenticationError, match="30 second window"):
                    client.fetch(provider)

    def test_signature_covers_path_without_query(self) -> None:
        """The simulator verifies over the path without query; a mangled header is refused."""
        venue = SimulatedPolymarketRetail(clock=lambda: NOW_NS)
        request = retail().build_request(STAMP)
        with_query = httpx.Request("GET", str(request.url) + "?currency=USD", headers=request.headers)
        assert venue.handle(with_query).status_code == 200
        with_query.headers["X-PM-Signature"] = "%%%"
        assert venue.handle(with_query).status_code == 401
        with_query.headers["X-PM-Timestamp"] = "now"
        assert venue.handle(with_query).status_code == 401

    def test_unknown_path(self) -> None:
        """Another path is a 404."""
        response = SimulatedPolymarketRetail().handle(httpx.Request("GET", "https://api.polymarket.us/v1/x"))
        assert response.status_code == 404

    def test_retry_resigns_with_fresh_timestamp(self) -> None:
        """A 503 is retried, and the retry carries a new timestamp and signature."""
        ticks: Iterator[int] = iter([NOW_NS, NOW_NS + 7_000_000])
        venue = SimulatedPolymarketRetail(clock=lambda: NOW_NS)
        venue.fail_next(503)
        retry = bb.RetryPolicy(attempts=2, jitter=lambda _low, _high: 0.0)
        with bb.BalanceClient(http_client=Simulator(venue).client(), retry=retry) as client:
            client.fetch(retail(clock=lambda: next(ticks)))
        assert venue.timestamps == [STAMP + 7]

    def test_scripted_permission_denied(self) -> None:
        """A scripted 403 reaches the caller as AuthenticationError with the venue's message."""
        venue = SimulatedPolymarketRetail()
        venue.fail_next((403, "permission denied"))
        with (
            client_for(Simulator(venue)) as client,
            pytest.raises(bb.AuthenticationError, match="permission denied"),
        ):
            client.fetch(retail())

    def test_rate_limit_drains_our_limiter(self) -> None:
        """After the venue's 429 (documented body, no Retry-After) our limiter makes the next call wait."""
        venue = SimulatedPolymarketRetail()
        venue.fail_next(429)
        with client_for(Simulator(venue)) as client:
            with pytest.raises(bb.RateLimitedError, match="Too Many Requests") as info:
                client.fetch(retail())
            assert info.value.retry_after is None
            assert client.fetch(retail(), timeout=2.0).total == Decimal("1312.75")  # waits ~50 ms
        assert venue.calls == 2

    def test_burst_of_twenty_per_second(self) -> None:
        """Twenty calls per key go straight out; the 21st waits for the first to leave the one-second
        window (a bucket would let it through after 50 ms: 38 in a second), and a short deadline refuses it."""
        state = _state.shared_state("polymarket_us_retail", DEFAULT_BASE_URL, POLYMARKET_RETAIL_TEST_KEY_ID)
        limit, window = RATE_LIMIT
        state.limiters["requests"] = _state.WindowLimiter(
            limit, limit / window, "requests", monotonic=lambda: 0.0, window=window
        )
        venue = SimulatedPolymarketRetail()
        with client_for(Simulator(venue)) as client:
            for _ in range(20):
                client.fetch(retail(), timeout=0.5)
            with pytest.raises(bb.RateLimitedError, match="client-side rate limit") as info:
                client.fetch(retail(), timeout=0.5)
        assert info.value.retry_after == pytest.approx(1.0)
        assert venue.calls == 20

    def test_limiter_is_per_key(self) -> None:
        """The flow uses a 20 per second limiter keyed on this key id, shared by equal providers."""
        flow = retail(label="one").balance_flow()
        throttle = next(flow)
        flow.close()
        assert isinstance(throttle, Throttle)
        assert isinstance(throttle.limiter, _state.WindowLimiter)
        assert (throttle.limiter.capacity, throttle.limiter.window) == (20, 1 + _state.window_margin(1))
        other = retail(label="two").balance_flow()
        assert next(other).limiter is throttle.limiter  # type: ignore[union-attr]
        other.close()


def _scrub_timestamp(request: Any) -> Any:  # noqa: ANN401  # a vcrpy request
    """X-PM-Timestamp is a timestamp: scrubbed like the credentials (tests/_vcr.py does not know it)."""
    for name in list(request.headers):
        if name.lower() == "x-pm-timestamp":
            request.headers[name] = SCRUBBED
    return request


CASES = VenueCases(
    make=retail,
    venue=SimulatedPolymarketRetail,
    demo=demo_pair,
    respond=lambda response: respond(retail(), response),
    secrets=(POLYMARKET_RETAIL_TEST_SECRET, POLYMARKET_RETAIL_TEST_KEY_ID),
    bad_settings=(
        {"key_id": ""},
        {"key_id": None},
        {"key_id": "id\n"},
        {"secret_key": ""},
        {"secret_key": "not base64!"},
        {"secret_key": base64.b64encode(b"x" * 31).decode()},
        {"secret_key": base64.b64encode(b"x" * 48).decode()},
        {"secret_key": POLYMARKET_RETAIL_TEST_SEED[:-4] + POLYMARKET_RETAIL_TEST_PUBLIC_KEY},
        {"base_url": "http://api.polymarket.us"},
        {"currency": "U$D"},
        {"currency": 840},
        {"label": " "},
    ),
    error_secrets=(POLYMARKET_RETAIL_TEST_SECRET, POLYMARKET_RETAIL_TEST_SEED),
    defaults={"base_url": DEFAULT_BASE_URL, "currency": "USD"},
    fetch_hosts=("api.polymarket.us",),
    fetched={"total": Decimal("1312.75"), "available": Decimal("850.00"), "wallet": Decimal("1000.00")},
    venue_after_fetch={"calls": 1, "len(timestamps)": 1},
    demo_fetched={"available": Decimal("850.00")},
    cassette="polymarket_us_retail/balances.yaml",
    cassette_hooks={"before_record_request": [_scrub_request, _scrub_timestamp]},
    cassette_uris=(DEFAULT_BASE_URL + BALANCES_PATH,),
    cassette_fetched={"total": Decimal("1312.75"), "available": Decimal("850.00"), "margin_used": Decimal(0)},
    timestamp_headers=("X-PM-Timestamp",),
)
