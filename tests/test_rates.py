"""Valuation: rate sources, ``bb.KrakenRates`` and ``Portfolio.rate_sources``.

Every figure expected here is computed from the simulators' own data (Kraken's documented
TradeBalance, the simulated ticker's prices) with exact Decimal arithmetic, never written out.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance._kraken_rates import PAIRS, TICKER_PATH
from bastion_balance.provider_kit import RateFlow
from bastion_balance.testing import (
    KRAKEN_DOCUMENTED_RESULT,
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    KRAKEN_TICKER_PRICES,
    FakeProvider,
    Fault,
    LoopbackServer,
    SimulatedKraken,
    SimulatedKrakenTicker,
    Simulator,
    demo_setup,
)
from tests import _harness
from tests._harness import MODES, FakeClock

NO_RETRY_CLIENT: dict[str, Any] = {"retry": bb.NO_RETRY}


def kraken(asset: str = "ZUSD", label: str | None = None, **kwargs: Any) -> bb.Kraken:  # noqa: ANN401
    settings = {"api_key": KRAKEN_TEST_KEY, "api_secret": KRAKEN_TEST_SECRET, **kwargs}
    return bb.Kraken(asset=asset, label=label, **settings)


def venues(host: str = "api.kraken.com", **prices: str) -> tuple[Simulator, SimulatedKrakenTicker]:
    ticker = SimulatedKrakenTicker(host=host, prices={**KRAKEN_TICKER_PRICES, **prices})
    return Simulator(SimulatedKraken(host=host), ticker), ticker


def price(pair: str) -> Decimal:
    return Decimal(KRAKEN_TICKER_PRICES[pair])


E, MF = Decimal(KRAKEN_DOCUMENTED_RESULT["e"]), Decimal(KRAKEN_DOCUMENTED_RESULT["mf"])


# --------------------------------------------------------------------------- the example


@pytest.mark.parametrize("mode", MODES)
def test_eur_kraken_and_bybit_are_complete_and_exact(mode: str) -> None:
    """``aggregate([kraken_eur, bybit], rates=bb.KrakenRates())`` is complete and exact, and says
    which rates it used and where they came from."""
    simulator, providers = demo_setup()
    bybit = next(p for p in providers if p.venue == "bybit")
    kraken_eur = kraken("ZEUR", label="kraken-eur")
    pf = _harness.aggregate(mode, [kraken_eur, bybit], simulator, rates=bb.KrakenRates())
    assert pf.complete, pf.errors
    eur = price("ZEURZUSD")
    bybit_balance = pf.balances["bybit"]
    assert bybit_balance.currency == "USD"
    assert pf.total_usd == E * eur + bybit_balance.total
    assert pf.available_margin_usd == MF * eur + bybit_balance.available
    assert pf.rates == {"EUR": eur, "USD": Decimal(1)}
    euro = pf.rate_sources["EUR"]
    assert (euro.value, euro.source, euro.detail, euro.assumed) == (
        eur,
        "kraken",
        "ZEURZUSD last trade",
        False,
    )
    assert euro.at is not None and euro.at <= datetime.now(UTC)
    assert pf.rate_sources["USD"].source == "unit" and pf.rate_sources["USD"].at is None


def test_par_is_labelled_as_an_assumption() -> None:
    """Without a source, USDT and USDC are par, labelled assumed in the Portfolio and its dict."""
    pf = bb.aggregate(
        [
            FakeProvider(label="t", total=Decimal(10), currency="USDT"),
            FakeProvider(label="e", total=Decimal(10), currency="EUR"),
        ],
        rates={"eur": "1.1"},
    )
    assert pf.rate_sources["USDT"].assumed and pf.rate_sources["USDT"].source == "par"
    assert pf.rate_sources["EUR"].source == "caller" and not pf.rate_sources["EUR"].assumed
    plain = pf.to_dict()["rate_sources"]
    assert plain["USDT"] == {
        "value": Decimal(1),
        "source": "par",
        "detail": "assumed at par with USD (no market was asked)",
        "at": None,
        "assumed": True,
    }
    assert plain["EUR"]["value"] == Decimal("1.1") and plain["EUR"]["assumed"] is False
    assert '"assumed": true' in pf.to_json()


def test_with_a_source_usdt_is_quoted_not_par() -> None:
    """With a rate source, USDT is asked for like any currency (USDT is not USD)."""
    simulator, ticker = venues()
    provider = FakeProvider(label="t", total=Decimal(1000), available=Decimal(900), currency="USDT")
    pf = bb.aggregate([provider], rates=bb.KrakenRates(), client=simulator.client())
    assert pf.complete
    assert pf.total_usd == Decimal(1000) * price("USDTZUSD")
    assert ticker.asked == [("USDTZUSD",)]
    assert pf.rate_sources["USDT"].source == "kraken"


# --------------------------------------------------------------------------- caching


def test_one_request_per_aggregate_and_cached_for_max_age() -> None:
    """An aggregate asks once, for every pair it needs; within max_age the next asks nothing;
    past it, the stale pairs are asked again; a new currency asks only for itself."""
    simulator, ticker = venues()
    clock = FakeClock()
    rates = bb.KrakenRates(max_age=30, clock=clock)
    accounts = [kraken("ZEUR", "eur"), kraken("XXBT", "btc"), kraken(label="usd")]
    with bb.BalanceClient(http_client=simulator.client()) as client:
        first = client.aggregate(accounts, rates=rates)
        assert ticker.asked == [("XXBTZUSD", "ZEURZUSD")]
        clock.now += 30
        second = client.aggregate(accounts, rates=rates)
        assert ticker.calls == 1
        assert second.rate_sources == first.rate_sources  # the same quotes, with their first time
        clock.now += 0.5
        client.aggregate(accounts, rates=rates)
        assert ticker.asked[1:] == [("XXBTZUSD", "ZEURZUSD")]
        client.aggregate([*accounts, kraken("XETH", "eth")], rates=rates)
        assert ticker.asked[2:] == [("XETHZUSD",)]
    assert first.total_usd == E * price("ZEURZUSD") + E * price("XXBTZUSD") + E


def test_nothing_to_quote_asks_nothing() -> None:
    """USD balances, failed fetches and no accounts at all never call the ticker."""
    simulator, ticker = venues()
    assert ticker in simulator.venues
    with bb.BalanceClient(http_client=simulator.client(), retry=bb.NO_RETRY) as client:
        client.aggregate([kraken()], rates=bb.KrakenRates())
        client.aggregate([], rates=bb.KrakenRates())
        broken = kraken("ZEUR", api_key="not-a-known-key")
        pf = client.aggregate([broken], rates=bb.KrakenRates())
    assert isinstance(pf.errors["kraken"], bb.AuthenticationError)
    assert ticker.calls == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_stale_cache_is_refreshed_once_under_concurrency(mode: str) -> None:
    """Eight aggregates that find the cache stale at once make one ticker call between them, over
    real sockets; every one of them gets the refreshed rate."""
    simulator, ticker = venues(host="127.0.0.1")
    clock = FakeClock()
    with LoopbackServer(simulator) as server:
        rates = bb.KrakenRates(base_url=server.url, clock=clock, max_age=10)
        accounts = [kraken("ZEUR", base_url=server.url)]
        _harness.aggregate(mode, accounts, rates=rates)  # primes the cache
        ticker.prices["ZEURZUSD"] = "1.10000"
        clock.now += 11
        server.script(Fault.delay(0.3))  # the refresh is slow: the others arrive while it runs
        portfolios = concurrent_aggregates(mode, server.url, rates, count=8)
    assert ticker.calls == 2
    assert {pf.rates["EUR"] for pf in portfolios} == {Decimal("1.10000")}
    assert all(pf.complete for pf in portfolios)


def concurrent_aggregates(mode: str, url: str, rates: bb.KrakenRates, *, count: int) -> list[bb.Portfolio]:
    """``count`` aggregates of one EUR Kraken account (own key each) started together."""
    accounts = [
        bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, asset="ZEUR", base_url=url)
        for _ in range(count)
    ]
    if mode == "sync":
        results: list[bb.Portfolio] = []
        barrier = threading.Barrier(count)

        def one(account: bb.Kraken) -> None:
            with bb.BalanceClient() as client:
                barrier.wait()
                results.append(client.aggregate([account], rates=rates))

        threads = [threading.Thread(target=one, args=(a,)) for a in accounts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return results

    async def run() -> list[bb.Portfolio]:
        async with bb.AsyncBalanceClient() as client:
            return list(await asyncio.gather(*(client.aggregate([a], rates=rates) for a in accounts)))

    return asyncio.run(run())


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_source_costs_only_the_balances_that_needed_it(mode: str) -> None:
    """The ticker is down: the EUR account is in errors with a MissingRateError naming the
    ticker's failure (its cause); the USD account still aggregates."""
    simulator, ticker = venues()
    ticker.fail_next(503)
    accounts = [kraken("ZEUR", "eur"), kraken(label="usd")]
    pf = _harness.aggregate(mode, accounts, simulator, rates=bb.KrakenRates(), **NO_RETRY_CLIENT)
    assert not pf.complete
    assert set(pf.errors) == {"eur"}
    error = pf.errors["eur"]
    assert isinstance(error, bb.MissingRateError) and error.currency == "EUR"
    assert isinstance(error.__cause__, bb.ServiceUnavailableError)
    assert "eur: no USD rate for EUR: the rate source 'kraken' failed: rates: kraken: HTTP 503" in str(error)
    assert pf.total_usd == E
    assert "eur" in pf.balances  # fetched, kept, not counted


def test_strict_raises_the_missing_rate() -> None:
    """strict=True raises an AggregateError holding the MissingRateError."""
    simulator, ticker = venues()
    ticker.fail_next("EService:Unavailable")
    with bb.BalanceClient(http_client=simulator.client(), retry=bb.NO_RETRY) as client:
        with pytest.raises(bb.AggregateError) as info:
            client.aggregate([kraken("ZEUR")], rates=bb.KrakenRates(), strict=True)
    (error,) = info.value.exceptions
    assert isinstance(error, bb.MissingRateError)
    assert isinstance(error.__cause__, bb.ServiceUnavailableError)


def test_transient_ticker_failures_are_retried_over_real_sockets() -> None:
    """A reset and a 502 are retried within the aggregate's deadline, like a balance fetch."""
    simulator, ticker = venues(host="127.0.0.1")
    with LoopbackServer(simulator) as server:
        pf_rates = bb.KrakenRates(base_url=server.url)
        account = kraken("ZEUR", base_url=server.url)
        with bb.BalanceClient(retry=bb.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02)) as client:
            server.script(Fault.delay(0), Fault.reset(), Fault.status(502))  # the balance, then the ticker
            with bb.testing.rate_limits_disabled():
                pf = client.aggregate([account], rates=pf_rates, timeout=10)
    assert pf.complete, pf.errors
    assert ticker.calls == 1  # the reset and the 502 never reached the simulator
    assert pf.total_usd == E * price("ZEURZUSD")


def test_a_deadline_past_leaves_the_balance_unvalued() -> None:
    """A ticker slower than the aggregate's deadline: a MissingRateError caused by the deadline."""
    simulator, _ = venues(host="127.0.0.1")
    with LoopbackServer(simulator) as server:
        account = kraken("ZEUR", base_url=server.url)
        with bb.BalanceClient() as client:
            server.script(Fault.delay(0), Fault.delay(2.0))  # the balance answers, the ticker is slow
            pf = client.aggregate([account], rates=bb.KrakenRates(base_url=server.url), timeout=0.5)
    error = pf.errors["kraken"]
    assert isinstance(error, bb.MissingRateError)
    assert isinstance(error.__cause__, bb.DeadlineExceededError)


@pytest.mark.parametrize(
    ("answer", "expected", "text"),
    [
        ("EQuery:Unknown asset pair", bb.ExchangeAPIError, "Kraken does not know a pair asked for"),
        ("EAPI:Rate limit exceeded", bb.RateLimitedError, "call counter is full"),
        (429, bb.RateLimitedError, "HTTP 429"),
        (403, bb.ExchangeAPIError, "unexpected status"),
    ],
)
def test_kraken_errors_are_typed(answer: str | int, expected: type[Exception], text: str) -> None:
    """Kraken's error strings and HTTP statuses become the library's typed errors."""
    simulator, ticker = venues()
    ticker.fail_next(answer)
    with bb.BalanceClient(http_client=simulator.client(), retry=bb.NO_RETRY) as client:
        pf = client.aggregate([kraken("ZEUR")], rates=bb.KrakenRates())
    cause = pf.errors["kraken"].__cause__
    assert isinstance(cause, expected), repr(cause)
    assert text in str(cause)


def test_unknown_currency_is_not_asked_for() -> None:
    """A currency KrakenRates has no USD pair for is left out of the request (one unknown pair
    would fail Kraken's whole call) and reported as not quoted; the others are valued."""
    simulator, ticker = venues()
    accounts = [FakeProvider(label="jpy", currency="JPY"), kraken("ZEUR", "eur")]
    pf = bb.aggregate(accounts, rates=bb.KrakenRates(), client=simulator.client())
    assert ticker.asked == [("ZEURZUSD",)]
    error = pf.errors["jpy"]
    assert isinstance(error, bb.MissingRateError) and error.__cause__ is None
    assert "the rate source 'kraken' does not quote JPY; pass rates={'JPY': ...} instead" in str(error)
    assert set(pf.errors) == {"jpy"}


def test_pairs_adds_a_currency() -> None:
    """pairs={"AUD": "AUDUSD"} quotes AUD through that pair."""
    simulator, ticker = venues(AUDUSD="0.65430")
    rates = bb.KrakenRates(pairs={"aud": "AUDUSD"})
    pf = bb.aggregate(
        [FakeProvider(label="a", total=Decimal(2), currency="AUD")], rates=rates, client=simulator.client()
    )
    assert pf.total_usd == Decimal(2) * Decimal("0.65430")
    assert ticker.asked == [("AUDUSD",)]
    assert rates.pairs["AUD"] == "AUDUSD" and rates.pairs["EUR"] == PAIRS["EUR"]


def test_a_pair_left_out_of_the_answer_is_not_quoted() -> None:
    """Kraken answering without one of the pairs: that currency is not quoted, the rest are."""
    simulator, ticker = venues()

    def partial(request: httpx.Request) -> httpx.Response:
        if request.url.path == TICKER_PATH:
            body = {"error": [], "result": {"ZEURZUSD": {"c": ["1.5", "1"]}}}
            return httpx.Response(200, json=body)
        return simulator(request)

    accounts = [kraken("ZEUR", "eur"), kraken("XXBT", "btc")]
    pf = bb.aggregate(
        accounts, rates=bb.KrakenRates(), client=httpx.Client(transport=httpx.MockTransport(partial))
    )
    assert pf.rates["EUR"] == Decimal("1.5")
    assert set(pf.errors) == {"btc"} and isinstance(pf.errors["btc"], bb.MissingRateError)
    assert ticker.calls == 0


def test_ticker_requests_carry_no_credential() -> None:
    """The ticker call is a plain GET with no key or signature header (the simulator refuses one)."""
    simulator, _ = venues()
    bb.aggregate([kraken("ZEUR")], rates=bb.KrakenRates(), client=simulator.client())
    (request,) = [r for r in simulator.requests if r.url.path == TICKER_PATH]
    assert request.method == "GET"
    assert not {"api-key", "api-sign", "authorization"} & {name.lower() for name in request.headers}
    assert str(request.url) == "https://api.kraken.com/0/public/Ticker?pair=ZEURZUSD"


def test_the_simulated_ticker_refuses_what_kraken_refuses() -> None:
    """The simulator itself: POST, a key header, no pair and an unknown pair are refused."""
    ticker = SimulatedKrakenTicker()
    url = "https://api.kraken.com/0/public/Ticker"

    def errors(request: httpx.Request) -> list[str]:
        body: dict[str, list[str]] = ticker.handle(request).json()
        return body["error"]

    assert errors(httpx.Request("POST", url + "?pair=ZEURZUSD")) == ["EGeneral:Invalid arguments"]
    assert errors(httpx.Request("GET", url + "?pair=ZEURZUSD", headers={"API-Key": "k"}))[0].startswith(
        "EGeneral:Invalid arguments"
    )
    assert errors(httpx.Request("GET", url)) == ["EGeneral:Invalid arguments"]
    assert errors(httpx.Request("GET", url + "?pair=ZEURZUSD,NOPE")) == ["EQuery:Unknown asset pair"]
    assert ticker.calls == 2  # refused methods and key headers are not counted as ticker calls


# --------------------------------------------------------------------------- parsing (sans-I/O)


def ticker_response(result: object, *, status: int = 200, errors: object = ()) -> httpx.Response:
    body = bb.dumps({"error": list(errors) if isinstance(errors, tuple) else errors, "result": result})
    return httpx.Response(status, content=body.encode(), headers={"Content-Type": "application/json"})


@given(
    st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e9"), places=8, allow_nan=False),
    st.sampled_from(sorted(set(PAIRS.values()))),
)
def test_parse_keeps_every_digit(value: Decimal, pair: str) -> None:
    """A last trade price comes back exactly as Kraken wrote it (string in, same Decimal out)."""
    text = format(value, "f")
    parsed = bb.KrakenRates().parse_response(ticker_response({pair: {"c": [text, "1"]}}))
    assert parsed == {pair: Decimal(text)}
    assert parsed[pair].as_tuple() == Decimal(text).as_tuple()  # the same digits and exponent


@pytest.mark.parametrize(
    ("ticker", "field"),
    [
        ({"c": ["0", "1"]}, "$.result.ZEURZUSD.c[0]"),
        ({"c": ["-1.2", "1"]}, "$.result.ZEURZUSD.c[0]"),
        ({"c": ["1,2", "1"]}, "$.result.ZEURZUSD.c[0]"),
        ({"c": []}, "$.result.ZEURZUSD.c"),
        ({"a": ["1", "1", "1"]}, "$.result.ZEURZUSD.c"),
        ("1.2", "$.result.ZEURZUSD.c"),
    ],
)
def test_parse_refuses_bad_prices(ticker: object, field: str) -> None:
    """No price, a zero, a negative and a non-number are UnexpectedResponseErrors naming the field."""
    with pytest.raises(bb.UnexpectedResponseError) as info:
        bb.KrakenRates().parse_response(ticker_response({"ZEURZUSD": ticker}))
    assert info.value.field == field


@pytest.mark.parametrize(
    ("response", "field"),
    [
        (ticker_response({}, errors="EGeneral:Internal error"), "$.error"),
        (ticker_response({}, errors=[1]), "$.error"),
        (ticker_response(["ZEURZUSD"]), "$.result"),
    ],
)
def test_parse_refuses_bad_shapes(response: httpx.Response, field: str) -> None:
    """An error member that is not a list of strings, a result that is not an object."""
    with pytest.raises(bb.UnexpectedResponseError) as info:
        bb.KrakenRates().parse_response(response)
    assert info.value.field == field


def test_parse_of_odd_statuses() -> None:
    """A 200 that is not JSON is an UnexpectedResponseError; a 404 with a JSON body and no error is
    an ExchangeAPIError by its status."""
    with pytest.raises(bb.UnexpectedResponseError, match="not JSON"):
        bb.KrakenRates().parse_response(httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(bb.ExchangeAPIError, match="HTTP 404: unexpected status") as info:
        bb.KrakenRates().parse_response(ticker_response({}, status=404))
    assert info.value.status_code == 404


def test_parse_ignores_warnings() -> None:
    """Kraken's warnings (``W...``) in the error array do not fail the answer."""
    response = ticker_response({"ZEURZUSD": {"c": ["1.08", "1"]}}, errors=("WGeneral:Deprecated",))
    assert bb.KrakenRates().parse_response(response) == {"ZEURZUSD": Decimal("1.08")}


# --------------------------------------------------------------------------- exactness


@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e9"), places=8, allow_nan=False),
            st.sampled_from(["EUR", "BTC", "USDT", "USD", "GBP"]),
        ),
        min_size=1,
        max_size=6,
    ),
    st.dictionaries(
        st.sampled_from(["ZEURZUSD", "XXBTZUSD", "USDTZUSD", "ZGBPZUSD"]),
        st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1e5"), places=6, allow_nan=False),
    ),
)
def test_totals_are_exact_products(
    accounts: list[tuple[Decimal, str]], changes: Mapping[str, Decimal]
) -> None:
    """Whatever the balances and the prices, the total is the exact sum of total x rate."""
    prices = {pair: format(value, "f") for pair, value in changes.items()}
    simulator, _ = venues(**prices)
    quoted = {
        **{k: Decimal(v) for k, v in KRAKEN_TICKER_PRICES.items()},
        **{k: Decimal(v) for k, v in prices.items()},
    }
    providers = [
        FakeProvider(label=f"a{i}", total=total, available=total, currency=currency)
        for i, (total, currency) in enumerate(accounts)
    ]
    with bb.testing.rate_limits_disabled():
        pf = bb.aggregate(providers, rates=bb.KrakenRates(), client=simulator.client())
    expected = sum(
        (
            total * (Decimal(1) if currency == "USD" else quoted[PAIRS[currency]])
            for total, currency in accounts
        ),
        Decimal(0),
    )
    assert pf.complete
    assert pf.total_usd == expected


# --------------------------------------------------------------------------- third-party sources


@attrs.frozen
class Source:
    """A rate source of a test's own: returns ``answer`` without asking anything."""

    answer: object
    name: str = "mine"

    def rates_flow(self, currencies: frozenset[str]) -> RateFlow:
        self.asked.append(currencies)
        return self.answer  # type: ignore[return-value]
        yield  # a generator with no effect

    @property
    def asked(self) -> list[frozenset[str]]:
        return ASKED


ASKED: list[frozenset[str]] = []


def test_a_source_of_ones_own_is_driven_and_recorded() -> None:
    """Decimals from a third-party source are recorded under its name, observed now; a currency
    it was not asked for is ignored; a Rate it returns is kept as is."""
    ASKED.clear()
    mine = bb.Rate(currency="GBP", value=Decimal("1.25"), source="my-desk", detail="fixing")
    source = Source({"EUR": Decimal("1.1"), "GBP": mine, "CHF": Decimal(3)})
    assert isinstance(source, bb.RateSource)
    providers = [FakeProvider(label=c, total=Decimal(1), currency=c) for c in ("EUR", "GBP", "USD")]
    before = datetime.now(UTC)
    pf = bb.aggregate(providers, rates=source)
    assert ASKED == [frozenset({"EUR", "GBP"})]
    assert pf.total_usd == Decimal("1.1") + Decimal("1.25") + 1
    assert pf.rate_sources["EUR"].source == "mine"
    eur_at = pf.rate_sources["EUR"].at
    assert eur_at is not None and eur_at >= before
    assert pf.rate_sources["GBP"] is mine or pf.rate_sources["GBP"] == mine
    assert "CHF" not in pf.rates


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        ([("EUR", Decimal(1))], "returned list, not a mapping"),
        ({"EUR": 1.1}, "gave 1.1 for EUR"),
        ({"EUR": Decimal(0)}, "gave Decimal('0') for EUR"),
        (
            {"EUR": bb.Rate(currency="GBP", value=Decimal(1), source="x")},
            "for EUR: not a positive Decimal or its Rate",
        ),
    ],
)
def test_a_buggy_source_is_reported_not_raised(answer: object, text: str) -> None:
    """What a source returns is checked: a bad answer is a TypeError, the cause of the missing
    rates, and the aggregate still returns."""
    pf = bb.aggregate([FakeProvider(label="e", currency="EUR")], rates=Source(answer))
    error = pf.errors["e"]
    assert isinstance(error, bb.MissingRateError)
    assert isinstance(error.__cause__, TypeError) and text in str(error.__cause__)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"max_age": -1}, "max_age"),
        ({"max_age": True}, "max_age"),
        ({"max_age": float("nan")}, "max_age"),
        ({"max_age": "60"}, "max_age"),
        ({"pairs": ["AUDUSD"]}, "mapping of currency -> Kraken pair"),
        ({"pairs": {"A UD": "AUDUSD"}}, "currency codes"),
        ({"pairs": {"AUD": "AUD/USD"}}, "Kraken's pair name"),
        ({"pairs": {"AUD": 1}}, "Kraken's pair name"),
        ({"base_url": "ftp://kraken"}, "base_url"),
    ],
)
def test_bad_settings_are_configuration_errors(kwargs: dict[str, Any], text: str) -> None:
    with pytest.raises(bb.ConfigurationError, match=text):
        bb.KrakenRates(**kwargs)


def test_rates_of_the_wrong_kind_are_refused() -> None:
    """rates= that is neither a mapping nor a source says what it takes."""
    with pytest.raises(bb.ConfigurationError, match=r"mapping of currency -> Decimal or a rate source"):
        bb.aggregate([], rates=[("EUR", 1)])  # type: ignore[arg-type]


def test_a_rate_is_positive() -> None:
    """A Rate holds a positive, finite Decimal."""
    for bad in (Decimal(0), Decimal(-1), Decimal("NaN"), 1):
        with pytest.raises(ValueError, match="positive, finite Decimal"):
            bb.Rate(currency="EUR", value=bad, source="x")  # type: ignore[arg-type]


def test_max_age_zero_always_asks() -> None:
    """max_age=0: every aggregate asks again (a quote is never reused)."""
    simulator, ticker = venues()
    clock = FakeClock()
    rates = bb.KrakenRates(max_age=0, clock=clock)
    with bb.BalanceClient(http_client=simulator.client()) as client, bb.testing.rate_limits_disabled():
        client.aggregate([kraken("ZEUR")], rates=rates)
        clock.now += 0.001
        client.aggregate([kraken("ZEUR")], rates=rates)
    assert ticker.calls == 2


def test_the_docs_example_source_runs() -> None:
    """docs/rates.md's own rate source runs as written, against a simulated desk service."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "rates.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", page, re.DOTALL) if "class DeskRates" in b]

    def desk(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "rates.desk.example"
        return httpx.Response(200, content=b'{"EUR": "1.0842", "GBP": "1.2675"}')

    namespace: dict[str, object] = {
        "accounts": [FakeProvider(label="e", total=Decimal(10), currency="EUR")],
        "http_client": httpx.Client(transport=httpx.MockTransport(desk)),
    }
    exec(compile(block, "docs/rates.md", "exec"), namespace)  # noqa: S102  # our own docs
    pf = namespace["pf"]
    assert isinstance(pf, bb.Portfolio) and pf.complete
    assert pf.total_usd == Decimal("10.842") and pf.rate_sources["EUR"].source == "desk"


def test_the_notebook_table_says_where_rates_came_from() -> None:
    """The HTML table notes each non-USD rate with its source: par as an assumption, the caller's
    as given, the ticker's pair and time; escaped; USD (the unit) is not noted."""
    simulator, _ = venues()
    pf = bb.aggregate(
        [kraken("ZEUR", "eur"), FakeProvider(label="t", currency="USDT")],
        rates=bb.KrakenRates(),
        client=simulator.client(),
    )
    page = pf._repr_html_()
    eur = pf.rate_sources["EUR"]
    assert eur.at is not None
    assert f"EUR 1.08420 (kraken ZEURZUSD last trade, {eur.at:%H:%M:%S}Z)" in page
    assert "USDT 0.99985000 (kraken USDTZUSD last trade" in page
    assert "USD 1 (" not in page
    par = bb.aggregate(
        [FakeProvider(label="t", currency="USDT"), FakeProvider(label="g", currency="GBP")],
        rates={"GBP": "1.2675"},
    )
    assert "rates: USDT 1 (par, assumed); GBP 1.2675 (given)" in par._repr_html_()
    odd = bb.Portfolio(
        balances={},
        rate_sources={"X<Y": bb.Rate(currency="X<Y", value=Decimal(2), source="<b>", detail="&\nx")},
        fetched_at=datetime.now(UTC),
    )
    assert "X&lt;Y 2 (&#x27;&lt;b&gt; &amp;\\nx&#x27;)" in odd._repr_html_()  # one line, escaped
    assert "rates:" not in bb.aggregate([])._repr_html_()
