"""``KrakenRates``: USD rates from Kraken's public ``GET /0/public/Ticker`` (no key needed).

A rate source (see ``_rates``): asked for the currencies a Portfolio's balances need, it quotes
each through its USD pair, at the pair's last trade price (``c[0]``, a decimal string kept exact),
in one request for every pair it has no fresh quote of, and keeps the quotes for ``max_age``
seconds. Two aggregates that find the cache stale at once make one request: the refresh is
taken in turn, and the second finds the first's quotes (docs/decisions.md §25).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import attrs
import httpx

from ._decimal import parse_amount
from ._protocol import Acquire
from ._rates import Rate, RateFlow
from ._state import Turn, shared_state
from .exceptions import ConfigurationError, UnexpectedResponseError
from .providers._common import (
    USER_AGENT,
    check_base_url,
    decode_object,
    now_utc,
    status_error,
    throttled_call,
)
from .providers.kraken import DEFAULT_BASE_URL, kraken_error

__all__ = ["DEFAULT_MAX_AGE", "PAIRS", "TICKER_PATH", "KrakenRates"]

VENUE: Final = "kraken"
TICKER_PATH: Final = "/0/public/Ticker"
DEFAULT_MAX_AGE: Final = 60.0

#: Currency -> Kraken's name of its USD pair, as the Ticker answers it (the legacy X/Z names where
#: Kraken keeps them). Only pairs quoted in USD: a rate from a USD-based pair (USD/JPY) would need a
#: division, which is not exact. ``KrakenRates(pairs=...)`` adds or replaces entries.
PAIRS: Final[Mapping[str, str]] = {
    "USDT": "USDTZUSD",
    "USDC": "USDCUSD",
    "EUR": "ZEURZUSD",
    "GBP": "ZGBPZUSD",
    "BTC": "XXBTZUSD",
    "XBT": "XXBTZUSD",
    "ETH": "XETHZUSD",
    "SOL": "SOLUSD",
    "XRP": "XXRPZUSD",
    "LTC": "XLTCZUSD",
    "DOGE": "XDGUSD",
    "ADA": "ADAUSD",
    "DOT": "DOTUSD",
}

#: Kraken's public endpoints allow about one call a second per IP: the client keeps to it.
PUBLIC_LIMIT: Final = (1.0, 1.0)  # capacity, calls per second


def _pairs(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        msg = f"KrakenRates(pairs=...) is a mapping of currency -> Kraken pair, got {type(value).__name__}"
        raise ConfigurationError(msg)
    table = dict(PAIRS)
    for currency, pair in value.items():
        if not isinstance(currency, str) or not currency.isalnum() or not currency.isascii():
            msg = (
                f"KrakenRates(pairs=...): currency codes are letters and digits, e.g. 'AUD', got {currency!r}"
            )
            raise ConfigurationError(msg)
        if not isinstance(pair, str) or not pair.isalnum() or not pair.isascii():
            msg = (
                f"KrakenRates(pairs=...): {currency}'s pair must be Kraken's pair name such as "
                f"'AUDUSD' (letters and digits), got {pair!r}"
            )
            raise ConfigurationError(msg)
        table[currency.upper()] = pair
    return table


def _max_age(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        msg = f"KrakenRates(max_age=...) is the seconds a quote is kept, a number >= 0, got {value!r}"
        raise ConfigurationError(msg)
    return float(value)  # float-ok: seconds a quote is kept, not money


def _base_url(value: str | None) -> str:
    return check_base_url(value, default=DEFAULT_BASE_URL, venue=VENUE)


@attrs.define
class _Quote:
    price: Decimal
    stamp: float  # the source's clock when it arrived
    at: datetime


class _Cache:
    """The quotes of one KrakenRates, shared by every aggregate that uses it (any thread or loop)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refresh = Turn("kraken ticker refresh")  # one refresh at a time
        self.quotes: dict[str, _Quote] = {}

    def fresh(self, pairs: Iterable[str], now: float, max_age: float) -> dict[str, _Quote]:
        with self.lock:
            found = {pair: self.quotes.get(pair) for pair in pairs}
        return {pair: q for pair, q in found.items() if q is not None and now - q.stamp <= max_age}

    def store(self, prices: Mapping[str, Decimal], stamp: float, at: datetime) -> dict[str, _Quote]:
        stored = {pair: _Quote(price, stamp, at) for pair, price in prices.items()}
        with self.lock:
            self.quotes.update(stored)
        return stored


@attrs.frozen(kw_only=True)
class KrakenRates:
    """USD rates from Kraken's public ticker, for ``rates=`` of ``aggregate`` (no key needed).

    Each currency is quoted at its USD pair's last trade price (``PAIRS``: USDT, USDC, EUR,
    GBP, BTC, ETH, SOL, XRP, LTC, DOGE, ADA, DOT; ``pairs=`` adds others, e.g.
    ``{"AUD": "AUDUSD"}``). Quotes are kept ``max_age`` seconds (default 60); one aggregate makes
    at most one request, for the pairs it has no fresh quote of. USD is never asked for; with a
    rate source, USDT and USDC are quoted like the rest instead of assumed at par. Share one
    instance between aggregates so they share its quotes. ``clock`` (seconds, monotonic) is for
    tests.

    >>> pf = bb.aggregate([kraken_eur, bybit], rates=bb.KrakenRates())   # doctest: +SKIP
    >>> pf.rate_sources["EUR"].source, pf.rate_sources["EUR"].detail     # doctest: +SKIP
    ('kraken', 'ZEURZUSD last trade')
    """

    base_url: str = attrs.field(default=None, converter=_base_url)
    max_age: float = attrs.field(default=DEFAULT_MAX_AGE, converter=_max_age)
    pairs: Mapping[str, str] = attrs.field(factory=dict, converter=_pairs)
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False, eq=False)
    _cache: _Cache = attrs.field(factory=_Cache, init=False, repr=False, eq=False)

    @property
    def name(self) -> str:
        """``"kraken"``: ``Rate.source`` of every rate this source quotes."""
        return VENUE

    def build_request(self, pairs: Iterable[str]) -> httpx.Request:
        """The public Ticker request for ``pairs`` (comma-separated; no key, no signature)."""
        query = ",".join(pairs)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        return httpx.Request("GET", f"{self.base_url}{TICKER_PATH}?pair={query}", headers=headers)

    def parse_response(self, response: httpx.Response) -> dict[str, Decimal]:
        """Pair -> last trade price of a Ticker answer, or the exception its ``error`` array means."""
        status = response.status_code
        if status >= 500 or status == 429:
            raise status_error(response, venue=VENUE, message="Kraken's ticker did not answer")
        try:
            payload = decode_object(response, venue=VENUE)
        except UnexpectedResponseError:
            if status != 200:  # a proxy's or a firewall's page: the status says more than the body
                raise status_error(response, venue=VENUE, message="unexpected status") from None
            raise
        errors = payload.get("error", [])
        if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
            msg = "the error member is not a list of strings"
            raise UnexpectedResponseError(msg, venue=VENUE, field="$.error", value=errors)
        failures = [e for e in errors if not e.startswith("W")]
        if failures:
            raise kraken_error(failures[0], status_code=status, now_s=int(time.time()))
        if status != 200:
            raise status_error(response, venue=VENUE, message="unexpected status")
        result = payload.get("result")
        if not isinstance(result, dict):
            msg = "the result member is missing or not an object"
            raise UnexpectedResponseError(msg, venue=VENUE, field="$.result", value=result)
        return {pair: _last_trade(pair, ticker) for pair, ticker in result.items()}

    def rates_flow(self, currencies: frozenset[str]) -> RateFlow:
        """Quote ``currencies`` from the cache, refreshing (once, in turn) what is missing or stale."""
        wanted = {currency: self.pairs[currency] for currency in sorted(currencies) if currency in self.pairs}
        quotes = self._cache.fresh(wanted.values(), self.clock(), self.max_age)
        if len(quotes) < len(set(wanted.values())):
            yield Acquire(self._cache.refresh)  # released by the driver when the flow ends
            quotes = self._cache.fresh(
                wanted.values(), self.clock(), self.max_age
            )  # maybe refreshed meanwhile
            missing = sorted(set(wanted.values()) - quotes.keys())
            if missing:
                limiter = shared_state(VENUE, self.base_url, "public").limiter("ticker", *PUBLIC_LIMIT)
                prices = yield from throttled_call(
                    limiter, lambda: self.build_request(missing), self.parse_response
                )
                answered = {pair: prices[pair] for pair in missing if pair in prices}
                quotes.update(self._cache.store(answered, self.clock(), now_utc()))
        return {
            currency: Rate(
                currency=currency,
                value=quotes[pair].price,
                source=VENUE,
                detail=f"{pair} last trade",
                at=quotes[pair].at,
            )
            for currency, pair in wanted.items()
            if pair in quotes
        }


def _last_trade(pair: str, ticker: Any) -> Decimal:  # noqa: ANN401  # decoded JSON
    """A pair's last trade price (``c[0]``): a positive decimal string."""
    field = f"$.result.{pair}.c[0]"
    closed = ticker.get("c") if isinstance(ticker, dict) else None
    if not isinstance(closed, list) or not closed:
        msg = "the ticker has no last trade (c)"
        raise UnexpectedResponseError(msg, venue=VENUE, field=f"$.result.{pair}.c", value=closed)
    price = parse_amount(closed[0], venue=VENUE, field=field)
    if price <= 0:
        msg = "a last trade price must be positive"
        raise UnexpectedResponseError(msg, venue=VENUE, field=field, value=closed[0])
    return price
