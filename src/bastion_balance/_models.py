"""Public models: Holding, Balance, Portfolio, and ``dumps`` for exact JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, NoReturn

import attrs

from ._decimal import exact_mul, exact_sum
from .exceptions import ConfigurationError

__all__ = ["Balance", "Holding", "Portfolio", "dumps"]


class FrozenDict(dict[str, Any]):
    """A read-only dict: the mappings of the models. Unlike ``MappingProxyType`` it pickles
    and copies, so balances and portfolios can cross process boundaries and caches."""

    __slots__ = ()

    def _read_only(self, *_args: object, **_kwargs: object) -> NoReturn:
        msg = f"{type(self).__name__} is read-only"
        raise TypeError(msg)

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


_EMPTY: Mapping[str, Any] = FrozenDict()


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(value, FrozenDict):
        return value
    return FrozenDict(value)


def _aware_utc(_instance: object, attribute: attrs.Attribute[datetime], value: datetime) -> None:
    if not isinstance(value, datetime) or value.utcoffset() != timedelta(0):
        msg = f"{attribute.name} must be an aware UTC datetime, got {value!r}"
        raise ValueError(msg)


_decimal = attrs.validators.instance_of(Decimal)
_optional_decimal = attrs.validators.optional(_decimal)


@attrs.frozen(kw_only=True)
class Holding:
    """One asset, market or security inside a venue's account (``Balance.breakdown``).

    Figures are in ``currency`` where the venue says which, and ``None`` where it does not
    report them.
    """

    currency: str | None
    total: Decimal | None = attrs.field(default=None, validator=_optional_decimal)
    available: Decimal | None = attrs.field(default=None, validator=_optional_decimal)


@attrs.frozen(kw_only=True)
class Balance:
    """One account's balance at one venue, with the venue's figures kept exact.

    ``total`` and ``available`` are in ``currency``. ``extra`` keeps every other numeric
    top-level figure under the venue's own field name (Kraken ``eb`` ...), ``raw`` the decoded
    payload untouched. ``uncounted`` lists currencies the venue's totals leave out.
    """

    label: str
    exchange: str
    currency: str
    total: Decimal = attrs.field(validator=_decimal)
    available: Decimal = attrs.field(validator=_decimal)
    wallet: Decimal | None = attrs.field(default=None, validator=_optional_decimal)
    margin_used: Decimal | None = attrs.field(default=None, validator=_optional_decimal)
    unrealized_pnl: Decimal | None = attrs.field(default=None, validator=_optional_decimal)
    breakdown: Mapping[str, Holding] = attrs.field(default=_EMPTY, converter=_frozen_mapping)
    extra: Mapping[str, Decimal] = attrs.field(default=_EMPTY, converter=_frozen_mapping)
    uncounted: tuple[str, ...] = ()
    fetched_at: datetime = attrs.field(validator=_aware_utc)
    raw: Any = attrs.field(default=None, eq=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The balance as plain data (Decimals kept; ``raw`` left out)."""
        return {
            "label": self.label,
            "exchange": self.exchange,
            "currency": self.currency,
            "total": self.total,
            "available": self.available,
            "wallet": self.wallet,
            "margin_used": self.margin_used,
            "unrealized_pnl": self.unrealized_pnl,
            "breakdown": {
                name: {"currency": h.currency, "total": h.total, "available": h.available}
                for name, h in self.breakdown.items()
            },
            "extra": dict(self.extra),
            "uncounted": list(self.uncounted),
            "fetched_at": self.fetched_at.isoformat(),
        }


@attrs.frozen(kw_only=True)
class Portfolio:
    """Balances of several accounts valued in USD, with what failed and why.

    ``balances`` holds every balance that was fetched, ``errors`` maps label -> exception for
    every venue that failed (and for balances whose currency has no rate: those are fetched
    but left out of the totals). ``rates`` are the USD rates applied.
    """

    balances: Mapping[str, Balance] = attrs.field(converter=_frozen_mapping)
    errors: Mapping[str, Exception] = attrs.field(default=_EMPTY, converter=_frozen_mapping)
    rates: Mapping[str, Decimal] = attrs.field(default=_EMPTY, converter=_frozen_mapping)
    warnings: tuple[str, ...] = ()
    fetched_at: datetime = attrs.field(validator=_aware_utc)

    @property
    def complete(self) -> bool:
        """True when every venue answered and every balance could be valued."""
        return not self.errors

    def _counted(self) -> list[Balance]:
        return [
            b for label, b in self.balances.items() if label not in self.errors and b.currency in self.rates
        ]

    def usd(self, balance: Balance) -> tuple[Decimal, Decimal]:
        """``(total, available)`` of one balance in USD through this portfolio's rates."""
        rate = self.rates[balance.currency]
        return exact_mul(balance.total, rate), exact_mul(balance.available, rate)

    @property
    def total_usd(self) -> Decimal:
        """Sum of every counted balance's ``total``, in USD, exact."""
        return exact_sum(self.usd(b)[0] for b in self._counted())

    @property
    def available_margin_usd(self) -> Decimal:
        """Sum of every counted balance's ``available``, in USD, exact."""
        return exact_sum(self.usd(b)[1] for b in self._counted())

    def to_bastion(self) -> dict[str, Any]:
        """The seed-000 ``bastion_get_balance`` shape: three keys, exact Decimals, USD."""
        exchanges: dict[str, dict[str, Decimal]] = {}
        for balance in self._counted():
            total, available = self.usd(balance)
            exchanges[balance.label] = {"total": total, "available": available}
        return {
            "total_usd": self.total_usd,
            "available_margin_usd": self.available_margin_usd,
            "exchanges": exchanges,
        }

    def to_dict(self) -> dict[str, Any]:
        """The full picture as plain data: balances, errors, rates, warnings, totals."""
        return {
            "total_usd": self.total_usd,
            "available_margin_usd": self.available_margin_usd,
            "complete": self.complete,
            "balances": {label: b.to_dict() for label, b in self.balances.items()},
            "errors": {
                label: {"type": type(exc).__name__, "message": str(exc)} for label, exc in self.errors.items()
            },
            "rates": dict(self.rates),
            "warnings": list(self.warnings),
            "fetched_at": self.fetched_at.isoformat(),
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """``to_dict()`` as JSON, Decimals written as numbers with every digit."""
        return dumps(self.to_dict(), indent=indent)


_WRITABLE: Final = "plain data (dict, list, tuple, str, int, bool, None, Decimal), a Portfolio or a Balance"


def _refusal(obj: object, path: str) -> ConfigurationError:
    """The ConfigurationError for a value ``dumps`` cannot write, saying what to pass instead."""
    if isinstance(obj, Decimal):
        msg = (
            f"dumps(): {path} is Decimal('{obj}'), which JSON has no number for; "
            "pass a finite Decimal or None"
        )
    elif isinstance(obj, float):
        example = f"Decimal('{obj!r}')" if math.isfinite(obj) else "a finite Decimal or None"
        msg = (
            f"dumps(): {path} is the float {obj!r}; floats are not written (a float cannot hold money "
            f"exactly): pass {example}"
        )
    elif isinstance(obj, datetime):
        msg = f"dumps(): {path} is a datetime; pass its .isoformat() string"
    else:
        msg = f"dumps(): {path} is of type {type(obj).__name__}, which it cannot write; pass {_WRITABLE}"
    return ConfigurationError(msg)


class _Unwritable(Exception):  # internal: becomes a ConfigurationError in dumps()
    """A value ``_encode`` cannot write; ``steps`` is its path, innermost first (built on the way out)."""

    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value
        self.steps: list[str] = []


def _encode(obj: object, indent: int | None, level: int) -> str:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise _Unwritable(obj)
        return str(obj)
    if obj is None or isinstance(obj, bool | str | int):
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, Portfolio | Balance):
        return _encode(obj.to_dict(), indent, level)
    if isinstance(obj, Mapping):
        items = []
        for k, v in obj.items():
            try:
                items.append(f"{json.dumps(str(k), ensure_ascii=False)}: {_encode(v, indent, level + 1)}")
            except _Unwritable as exc:
                exc.steps.append(f".{k}")
                raise
        return _join(items, "{", "}", indent, level)
    if isinstance(obj, list | tuple):
        values = []
        for i, v in enumerate(obj):
            try:
                values.append(_encode(v, indent, level + 1))
            except _Unwritable as exc:
                exc.steps.append(f"[{i}]")
                raise
        return _join(values, "[", "]", indent, level)
    raise _Unwritable(obj)


def _join(items: list[str], open_: str, close: str, indent: int | None, level: int) -> str:
    if not items:
        return open_ + close
    if indent is None:
        return open_ + ", ".join(items) + close
    inner = "\n" + " " * (indent * (level + 1))
    return open_ + inner + ("," + inner).join(items) + "\n" + " " * (indent * level) + close


def dumps(obj: object, *, indent: int | None = None) -> str:
    """Write ``obj`` as JSON with every Decimal as a number carrying all its digits.

    Accepts plain data (dicts, lists, str, int, bool, None, Decimal), a ``Portfolio`` or a
    ``Balance``. Anything else is a :class:`~bastion_balance.ConfigurationError` naming where
    it is (``$.a[0]``) and what to pass instead: floats (they cannot hold money exactly),
    Decimal NaN or Infinity (JSON has no such number), other objects.

    >>> dumps({"total_usd": Decimal("52340.10")})
    '{"total_usd": 52340.10}'
    """
    if indent is not None and (isinstance(indent, bool) or not isinstance(indent, int) or indent < 0):
        msg = f"dumps(indent={indent!r}): indent is None or a whole number of spaces >= 0, e.g. indent=2"
        raise ConfigurationError(msg)
    try:
        return _encode(obj, indent, 0)
    except _Unwritable as exc:
        raise _refusal(exc.value, "$" + "".join(reversed(exc.steps))) from None
