"""Pure aggregation: labels checked, rates normalized, results turned into a Portfolio."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Final, TypeVar

from ._decimal import AmountError, to_decimal
from ._models import Balance, Portfolio
from ._protocol import BalanceProvider
from .exceptions import ConfigurationError, MissingRateError

__all__ = ["DEFAULT_RATES", "build_portfolio", "check_labels", "normalize_rates"]

DEFAULT_RATES: Final[Mapping[str, Decimal]] = MappingProxyType(
    {"USD": Decimal(1), "USDT": Decimal(1), "USDC": Decimal(1)}
)

P = TypeVar("P", bound=BalanceProvider)


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
    """Default rates overlaid with the caller's; every rate an exact, positive Decimal."""
    table = dict(DEFAULT_RATES)
    if rates is None:
        return table
    if not isinstance(rates, Mapping):
        msg = f"rates must be a mapping of currency -> Decimal, got {type(rates).__name__}"
        raise ConfigurationError(msg)
    for currency, value in rates.items():
        if not isinstance(currency, str) or not currency:
            msg = f"rate keys are currency codes, got {currency!r}"
            raise ConfigurationError(msg)
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
    ``ExceptionGroup``.
    """
    balances: dict[str, Balance] = {}
    errors: dict[str, Exception] = {}
    used: dict[str, Decimal] = {}
    warnings: list[str] = []
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
    if strict and errors:
        failed = ", ".join(sorted(errors))
        msg = f"{len(errors)} of {len(results)} accounts failed: {failed}"
        raise ExceptionGroup(msg, list(errors.values()))
    return Portfolio(
        balances=balances,
        errors=errors,
        rates=used,
        warnings=tuple(warnings),
        fetched_at=fetched_at,
    )
