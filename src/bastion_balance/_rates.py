"""Valuation: the USD rate of each currency, and where it came from (docs/decisions.md §25).

``rates=`` of ``aggregate`` takes a mapping (currency -> rate, on top of the defaults) or a
:class:`RateSource`: a sans-I/O flow, like a provider's, that yields requests and returns the
rates it found. The clients drive it with the same deadline, retries and typed errors as a
balance fetch. Every rate a Portfolio used is recorded as a :class:`Rate`: its value, its
source (``"unit"`` for USD, ``"par"`` for the USDT/USDC assumption, ``"caller"``, or the source's
name such as ``"kraken"``) and when it was observed.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Protocol, TypeAlias, runtime_checkable

import attrs
import httpx

from ._decimal import AmountError, to_decimal
from ._protocol import Effect
from .exceptions import ConfigurationError

__all__ = [
    "CALLER",
    "PAR",
    "UNIT",
    "Rate",
    "RateFlow",
    "RateSource",
    "Rates",
    "Valuation",
    "quotes_of",
    "valuation",
]

#: ``Rate.source`` of USD itself, the unit every total is counted in.
UNIT: Final = "unit"
#: ``Rate.source`` of the default 1:1 rates of USDT and USDC: an assumption, not a quote.
PAR: Final = "par"
#: ``Rate.source`` of a rate the caller gave in a ``rates=`` mapping.
CALLER: Final = "caller"

#: What a rate source's flow yields and returns: effects out, answers in, rates at the end.
RateFlow: TypeAlias = Generator[Effect, httpx.Response | None, "Mapping[str, Decimal | Rate]"]

#: What ``rates=`` accepts: currency -> rate (a Decimal, a decimal string or an int), or a source.
Rates: TypeAlias = "Mapping[str, Decimal | str | int] | RateSource"


def _positive(_instance: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        msg = f"{attribute.name} must be a positive, finite Decimal, got {value!r}"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class Rate:
    """One currency's USD rate as a Portfolio used it: 1 ``currency`` = ``value`` USD.

    ``source`` says where it came from: ``"unit"`` (USD itself), ``"par"`` (USDT and USDC
    assumed at 1 when no rate source is given: an assumption, see ``assumed``), ``"caller"`` (a
    ``rates=`` mapping), or a rate source's name (``"kraken"``). ``detail`` says more (the
    ticker pair and price field), ``at`` when the rate was observed (``None`` for the unit, par
    and caller's rates, which are not observations).
    """

    currency: str
    value: Decimal = attrs.field(validator=_positive)
    source: str
    detail: str = ""
    at: datetime | None = None

    @property
    def assumed(self) -> bool:
        """True for a par rate: USDT and USDC counted at 1 USD without asking any market."""
        return self.source == PAR

    def to_dict(self) -> dict[str, object]:
        """The rate as plain data (``at`` as an ISO 8601 string)."""
        return {
            "value": self.value,
            "source": self.source,
            "detail": self.detail,
            "at": None if self.at is None else self.at.isoformat(),
            "assumed": self.assumed,
        }


@runtime_checkable
class RateSource(Protocol):
    """What ``rates=`` accepts besides a mapping: anything with these two members.

    ``rates_flow(currencies)`` is asked for the currencies the balances need (never ``USD``) and
    returns currency -> rate for those it can quote (a ``Decimal``, recorded under the source's
    ``name`` and the time it returned, or a :class:`Rate`); a currency it leaves out is reported
    as a ``MissingRateError`` on the balances in it. It raises a
    :class:`~bastion_balance.BastionBalanceError` when it cannot quote at all.
    """

    @property
    def name(self) -> str:
        """Short name of the source, e.g. ``"kraken"``: ``Rate.source`` of what it quotes."""

    def rates_flow(self, currencies: frozenset[str]) -> RateFlow:
        """Yield effects (requests, throttles, turns); return currency -> rate."""


_UNIT_RATE: Final = Rate(currency="USD", value=Decimal(1), source=UNIT, detail="USD is the unit of account")
_PAR_DETAIL: Final = "assumed at par with USD (no market was asked)"
DEFAULT_RATES: Final[Mapping[str, Rate]] = MappingProxyType(
    {
        "USD": _UNIT_RATE,
        "USDT": Rate(currency="USDT", value=Decimal(1), source=PAR, detail=_PAR_DETAIL),
        "USDC": Rate(currency="USDC", value=Decimal(1), source=PAR, detail=_PAR_DETAIL),
    }
)


@attrs.frozen
class Valuation:
    """What ``rates=`` asked for, checked: fixed rates, and the source asked for the rest."""

    fixed: Mapping[str, Rate]
    source: RateSource | None = None

    @property
    def table(self) -> Mapping[str, Decimal]:
        """The fixed rates as currency -> Decimal."""
        return {currency: rate.value for currency, rate in self.fixed.items()}


def valuation(rates: object) -> Valuation:
    """``rates=`` checked: ``None``, a mapping currency -> rate, or a :class:`RateSource`.

    A mapping is overlaid on the defaults (USD at 1; USDT and USDC at par). Its keys are
    upper-cased, as balances carry upper-case currency codes (``"usd"`` is ``USD``); a key that is
    empty or holds whitespace, two keys that name one currency, and a rate that is not a positive
    Decimal, decimal string or int are refused. A rate source is asked for every currency but
    USD: with a source, USDT and USDC are quoted like any other currency, not assumed at par.
    """
    if rates is None:
        return Valuation(dict(DEFAULT_RATES))
    if isinstance(rates, RateSource):
        return Valuation({"USD": _UNIT_RATE}, rates)
    if not isinstance(rates, Mapping):
        msg = (
            "rates must be a mapping of currency -> Decimal or a rate source such as "
            f"bb.KrakenRates(), got {type(rates).__name__}"
        )
        raise ConfigurationError(msg)
    table = dict(DEFAULT_RATES)
    given: dict[str, str] = {}  # upper-cased code -> the caller's key
    for key, value in rates.items():
        if not isinstance(key, str) or not key or any(ch.isspace() for ch in key):
            msg = f"rate keys are currency codes such as 'EUR' (no spaces), got {key!r}"
            raise ConfigurationError(msg)
        currency = key.upper()
        if currency in given:
            msg = (
                f"rates has both {given[currency]!r} and {key!r}, which name one currency "
                f"({currency}): keep one of them"
            )
            raise ConfigurationError(msg)
        given[currency] = key
        try:
            rate = to_decimal(value)
        except AmountError as exc:
            msg = f"rate for {currency} must be a Decimal or decimal string: {exc.reason} ({value!r})"
            raise ConfigurationError(msg) from exc
        if rate <= 0:
            msg = f"rate for {currency} must be positive, got {value!r}"
            raise ConfigurationError(msg)
        table[currency] = Rate(currency=currency, value=rate, source=CALLER, detail="given in rates=")
    return Valuation(table)


def quotes_of(value: object, source: RateSource, currencies: frozenset[str]) -> Mapping[str, Rate]:
    """What a rate source's flow returned, checked: currency -> :class:`Rate` for each currency
    asked for (others are ignored). A bare Decimal is recorded under the source's name, observed
    now. Anything else is the source's bug: a ``TypeError`` that names it, which the Portfolio
    reports on the balances that needed a rate."""
    if not isinstance(value, Mapping):
        msg = f"{source!r}.rates_flow() returned {type(value).__name__}, not a mapping of currency -> rate"
        raise TypeError(msg)
    now = datetime.now(UTC)
    quotes: dict[str, Rate] = {}
    for currency, quote in value.items():
        if currency not in currencies:
            continue
        if isinstance(quote, Decimal) and quote.is_finite() and quote > 0:
            quotes[currency] = Rate(currency=currency, value=quote, source=str(source.name), at=now)
        elif isinstance(quote, Rate) and quote.currency == currency:
            quotes[currency] = quote
        else:
            msg = f"{source!r}.rates_flow() gave {quote!r} for {currency}: not a positive Decimal or its Rate"
            raise TypeError(msg)
    return quotes
