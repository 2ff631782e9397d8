"""Public models: Holding, Balance, Portfolio, and ``dumps`` for exact JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, NoReturn

import attrs

from ._decimal import exact_mul, exact_sum
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from ._rates import Rate

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


def _stale_ages(portfolio: Portfolio, _attribute: object, value: Mapping[str, object]) -> None:
    """A stale label keeps its last good balance and says why it is stale; its age is seconds."""
    for label, age in value.items():
        if label not in portfolio.balances or label not in portfolio.errors:
            msg = f"stale label {label!r} needs its last good balance in balances and its error in errors"
            raise ValueError(msg)
        if isinstance(age, bool) or not isinstance(age, int | float) or not 0 <= age < math.inf:
            msg = f"the age of stale label {label!r} must be a finite number of seconds >= 0, got {age!r}"
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
    total: Decimal | None = None
    available: Decimal | None = None

    def __attrs_post_init__(self) -> None:
        # As Balance's: the common case written out, the validators for anything else.
        if not (
            (self.total is None or self.total.__class__ is Decimal)
            and (self.available is None or self.available.__class__ is Decimal)
        ):
            for name in ("total", "available"):
                _optional_decimal(self, getattr(attrs.fields(Holding), name), getattr(self, name))


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
    total: Decimal
    available: Decimal
    wallet: Decimal | None = None
    margin_used: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    breakdown: Mapping[str, Holding] = attrs.field(default=_EMPTY, converter=_frozen_mapping)
    extra: Mapping[str, Decimal] = attrs.field(default=_EMPTY, converter=_frozen_mapping)
    uncounted: tuple[str, ...] = ()
    fetched_at: datetime
    raw: Any = attrs.field(default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # One check of the figures' types and the time, written out: every provider builds a
        # Balance per fetch, and six attrs validators cost twice as much (docs/performance.md).
        # Anything unusual (a Decimal subclass, another UTC tzinfo, a wrong type) takes the
        # validators, which raise the same errors they always did.
        if not (
            self.total.__class__ is Decimal
            and self.available.__class__ is Decimal
            and (self.wallet is None or self.wallet.__class__ is Decimal)
            and (self.margin_used is None or self.margin_used.__class__ is Decimal)
            and (self.unrealized_pnl is None or self.unrealized_pnl.__class__ is Decimal)
            and self.fetched_at.__class__ is datetime
            and self.fetched_at.tzinfo is UTC
        ):
            for name, check in _BALANCE_CHECKS:
                check(self, getattr(attrs.fields(Balance), name), getattr(self, name))

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

    def __str__(self) -> str:
        """``kraken (kraken): 382.2032 USD, 375.1678 available``: short, every digit kept."""
        from ._views import balance_str  # noqa: PLC0415  # loaded on first use: html is not cheap

        return balance_str(self)

    def _repr_html_(self) -> str:
        """An HTML table for notebooks (docs/decisions.md §22), every text escaped."""
        from ._views import balance_html  # noqa: PLC0415  # loaded on first use: html is not cheap

        return balance_html(self)


_BALANCE_CHECKS: Final = (
    ("total", _decimal),
    ("available", _decimal),
    ("wallet", _optional_decimal),
    ("margin_used", _optional_decimal),
    ("unrealized_pnl", _optional_decimal),
    ("fetched_at", _aware_utc),
)


@attrs.frozen(kw_only=True)
class Portfolio:
    """Balances of several accounts valued in USD, with what failed and why.

    ``balances`` holds every balance that was fetched, ``errors`` maps label -> exception for
    every venue that failed (and for balances whose currency has no rate: those are fetched
    but left out of the totals). ``rates`` are the USD rates applied, ``rate_sources`` the same
    rates as :class:`~bastion_balance.Rate` records: each one's value, source (par assumption,
    caller, a rate source such as Kraken's ticker) and time.

    ``stale`` (a watch's portfolios, ``bb.watch``): label -> age in seconds of a balance kept from
    an earlier round because the account failed this one; the label is in ``errors`` too (so
    ``complete`` is False), its last good balance in ``balances``. ``total_usd`` and
    ``available_margin_usd`` count stale balances, ``fresh_total_usd`` and
    ``fresh_available_margin_usd`` leave them out.
    """

    balances: Mapping[str, Balance] = attrs.field(converter=_frozen_mapping)
    errors: Mapping[str, Exception] = attrs.field(default=_EMPTY, converter=_frozen_mapping)
    rates: Mapping[str, Decimal] = attrs.field(default=_EMPTY, converter=_frozen_mapping)
    rate_sources: Mapping[str, Rate] = attrs.field(default=_EMPTY, converter=_frozen_mapping)
    warnings: tuple[str, ...] = ()
    fetched_at: datetime = attrs.field(validator=_aware_utc)
    stale: Mapping[str, float] = attrs.field(default=_EMPTY, converter=_frozen_mapping, validator=_stale_ages)

    @property
    def complete(self) -> bool:
        """True when every venue answered and every balance could be valued."""
        return not self.errors

    def _counted(self) -> list[Balance]:
        # A stale balance (a watch's last good one, docs/decisions.md §31) counts; a failed one does not.
        return [
            b
            for label, b in self.balances.items()
            if (label not in self.errors or label in self.stale) and b.currency in self.rates
        ]

    def _fresh(self) -> list[Balance]:  # counted and not stale: no error at all (stale labels have one)
        return [b for key, b in self.balances.items() if key not in self.errors and b.currency in self.rates]

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

    @property
    def fresh_total_usd(self) -> Decimal:
        """``total_usd`` without the stale balances (see ``stale``), exact."""
        return exact_sum(self.usd(b)[0] for b in self._fresh())

    @property
    def fresh_available_margin_usd(self) -> Decimal:
        """``available_margin_usd`` without the stale balances: what a bot may size a position from."""
        return exact_sum(self.usd(b)[1] for b in self._fresh())

    @property
    def free_ratio(self) -> Decimal | None:
        """``available_margin_usd / total_usd`` (28 digits, docs/decisions.md §21); ``None`` at total 0."""
        from ._views import free_ratio  # noqa: PLC0415  # loaded on first use: html is not cheap

        return free_ratio(self)

    @property
    def shares(self) -> Mapping[str, Decimal | None]:
        """Label -> share of ``total_usd`` (28 digits) of every counted balance; ``None`` at total 0."""
        from ._views import shares  # noqa: PLC0415  # loaded on first use: html is not cheap

        return shares(self)

    def summary(self) -> str:
        """One line, e.g. ``$52,340.00 across 2 exchanges, $31,200.00 available (59.6% free)``.

        The only rounded display of the library: dollars are rounded half-even to the cent
        (``$1,234.56``, ``-$3.10``), the free share half-even to a tenth of a percent; a value
        that is not zero but would round to zero shows as ``<$0.01`` / ``-<$0.01`` (``<0.1%``),
        never as zero. The percentage is left out when the total is 0. Then
        ``; 1 failed: bybit`` when labels failed (sorted; past five, ``and N more``). The exact
        figures are ``total_usd``, ``available_margin_usd`` and ``free_ratio``.
        """
        from ._views import summary  # noqa: PLC0415  # loaded on first use: html is not cheap

        return summary(self)

    def __str__(self) -> str:
        """One line: USD total and available (exact), accounts counted, labels failed."""
        from ._views import portfolio_str  # noqa: PLC0415  # loaded on first use: html is not cheap

        return portfolio_str(self)

    def _repr_html_(self) -> str:
        """An HTML table for notebooks (docs/decisions.md §22), every text escaped."""
        from ._views import portfolio_html  # noqa: PLC0415  # loaded on first use: html is not cheap

        return portfolio_html(self)

    def to_dataframe(self) -> Any:  # noqa: ANN401  # pandas is optional
        """A pandas DataFrame, one row per label, failed ones included (extra ``pandas``).

        Index ``label``; columns ``exchange, currency, total, available, total_usd,
        available_usd, share, status``. Figures are ``Decimal`` objects (dtype object, never
        floats), ``None`` where not known or not counted; ``status`` is ``ok``,
        ``error: <type>`` or ``stale: <type>``. Without pandas: ``ImportError``.
        """
        from ._views import dataframe  # noqa: PLC0415  # loaded on first use: html is not cheap

        return dataframe(self)

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
            "rate_sources": {currency: rate.to_dict() for currency, rate in self.rate_sources.items()},
            "warnings": list(self.warnings),
            "fetched_at": self.fetched_at.isoformat(),
            "stale": {label: Decimal(f"{age:.3f}") for label, age in self.stale.items()},
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


def decimal_text(value: Decimal) -> str:
    """How ``dumps`` writes a finite Decimal: every digit, tiny figures positional.

    ``0E-8`` is ``0.00000000`` down to the bound of figures; ``str()`` is positional above them
    and keeps ``1E-100000`` short (docs/decisions.md §13 and §32).
    """
    return format(value, "f") if -100 <= value.adjusted() < -6 else str(value)


def _encode(obj: object, indent: int | None, level: int) -> str:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise _Unwritable(obj)
        return decimal_text(obj)
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
