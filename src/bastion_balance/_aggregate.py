"""Pure aggregation: labels checked, rates normalized, results turned into a Portfolio."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Final, TypeVar

from ._decimal import AmountError, to_decimal
from ._models import Balance, Portfolio
from ._protocol import BalanceProvider
from .exceptions import AggregateError, ConfigurationError, MissingRateError

__all__ = [
    "DEFAULT_RATES",
    "NO_ACCOUNTS",
    "build_portfolio",
    "check_provider",
    "check_labels",
    "check_providers",
    "normalize_rates",
]

DEFAULT_RATES: Final[Mapping[str, Decimal]] = MappingProxyType(
    {"USD": Decimal(1), "USDT": Decimal(1), "USDC": Decimal(1)}
)

#: The warning of a Portfolio built from no accounts at all (its total 0 is not a balance of 0).
NO_ACCOUNTS: Final = "no accounts were given"

P = TypeVar("P", bound=BalanceProvider)


def check_providers(providers: object, *, function: str = "aggregate") -> list[BalanceProvider]:
    """``providers`` as a list, once it is known to be a list (any iterable) of BalanceProviders
    with distinct labels. ``function`` names the caller in the messages.

    A single provider, a string, a mapping or anything that is not iterable is refused with a
    ConfigurationError that says what to pass instead. Strings are never echoed: a misplaced
    argument may be a secret.
    """
    if isinstance(providers, BalanceProvider):
        venue = getattr(providers, "venue", None)
        name = venue if isinstance(venue, str) and venue.isidentifier() else "provider"
        msg = f"{function}() takes a list of providers, not one provider: e.g. {function}([{name}])"
        raise ConfigurationError(msg)
    if isinstance(providers, str | bytes | bytearray | memoryview):
        msg = (
            f"{function}() takes a list of provider objects, got a {type(providers).__name__}: "
            f"build the provider first, e.g. {function}([bb.Kraken(api_key=..., api_secret=...)])"
        )
        raise ConfigurationError(msg)
    if isinstance(providers, Mapping):
        msg = (
            f"{function}() takes a list of providers, got a {type(providers).__name__}: pass its "
            f"providers, e.g. {function}(list(accounts.values())); each provider's label= names it"
        )
        raise ConfigurationError(msg)
    if not isinstance(providers, Iterable):
        msg = (
            f"{function}() takes a list of providers, got {type(providers).__name__}: "
            f"e.g. {function}([kraken, bybit])"
        )
        raise ConfigurationError(msg)
    return check_labels([check_provider(provider) for provider in providers])


def check_provider(provider: object) -> BalanceProvider:
    """``provider`` once it is known to fit the BalanceProvider protocol."""
    if not isinstance(provider, BalanceProvider):
        msg = f"{provider!r} is not a BalanceProvider (needs label, venue, balance_flow())"
        raise ConfigurationError(msg)
    return provider


def check_labels(providers: Sequence[P]) -> list[P]:
    """The providers, once each label is known to be a non-empty string used only once."""
    seen: set[str] = set()
    for provider in providers:
        label = provider.label
        if not isinstance(label, str) or not label:
            msg = f"{provider!r} has no usable label: {label!r}"
            raise ConfigurationError(msg)
        if label in seen:
            msg = f"two providers share the label {label!r}: give each account its own label="
            raise ConfigurationError(msg)
        seen.add(label)
    return list(providers)


def normalize_rates(rates: Mapping[str, object] | None) -> Mapping[str, Decimal]:
    """Default rates overlaid with the caller's; every rate an exact, positive Decimal.

    Keys are upper-cased, as balances carry upper-case currency codes (``"usd"`` is ``USD``);
    a key that is empty or holds whitespace, and two keys that name one currency, are refused.
    """
    table = dict(DEFAULT_RATES)
    if rates is None:
        return table
    if not isinstance(rates, Mapping):
        msg = f"rates must be a mapping of currency -> Decimal, got {type(rates).__name__}"
        raise ConfigurationError(msg)
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
        table[currency] = rate
    return table


def build_portfolio(
    results: Mapping[str, Balance | Exception],
    rates: Mapping[str, Decimal],
    *,
    strict: bool,
    fetched_at: datetime,
) -> Portfolio:
    """Sort fetch results into balances and errors, and value the balances in USD.

    A balance whose currency has no rate stays in ``balances``, is left out of the totals and
    gets a ``MissingRateError`` under its label. ``strict=True`` raises every error as one
    :class:`~bastion_balance.AggregateError` (an ``ExceptionGroup``) that carries this Portfolio.
    No results at all still make a Portfolio (total 0, complete), with a warning saying so.
    """
    balances: dict[str, Balance] = {}
    errors: dict[str, Exception] = {}
    used: dict[str, Decimal] = {}
    warnings: list[str] = [] if results else [NO_ACCOUNTS]
    for label, result in results.items():
        if not isinstance(result, Balance):
            errors[label] = result
            continue
        balances[label] = result
        if result.currency in rates:
            used[result.currency] = rates[result.currency]
        else:
            errors[label] = MissingRateError(
                f"{label}: no USD rate for {result.currency}; pass rates={{'{result.currency}': ...}}",
                currency=result.currency,
                venue=result.exchange,
            )
        if result.uncounted:
            warnings.append(
                f"{label}: the venue's totals leave out {', '.join(result.uncounted)} (see its breakdown)"
            )
    portfolio = Portfolio(
        balances=balances,
        errors=errors,
        rates=used,
        warnings=tuple(warnings),
        fetched_at=fetched_at,
    )
    if strict and errors:
        failed = ", ".join(sorted(errors))
        msg = f"{len(errors)} of {len(results)} accounts failed: {failed}"
        raise AggregateError(msg, list(errors.values()), errors=errors, portfolio=portfolio)
    return portfolio
