"""Views of a Portfolio or a Balance: ratios, the summary line, ``str``, HTML, a DataFrame.

Pure functions over the models; ``Portfolio`` and ``Balance`` delegate to them. They count what
the portfolio counts (``Portfolio._counted()``, ``Portfolio.usd()``), so they follow it.

Money is shown exact everywhere except in :func:`summary`, the one rounded display.
Ratios are not money: they are divided in a 28-digit context (docs/decisions.md §21). The
HTML tables escape every text; the DataFrame keeps Decimal objects (docs/decisions.md §22).
"""

from __future__ import annotations

import decimal
import html
import importlib
from collections.abc import Iterable, Mapping
from datetime import UTC
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._decimal import exact_context

if TYPE_CHECKING:
    from ._models import Balance, Portfolio

__all__ = [
    "DATAFRAME_COLUMNS",
    "PANDAS_MISSING",
    "RATIO_PRECISION",
    "Row",
    "balance_html",
    "balance_str",
    "dataframe",
    "exact_percent",
    "free_ratio",
    "money",
    "named",
    "percent_display",
    "portfolio_html",
    "portfolio_str",
    "rate_notes",
    "ratio_context",
    "rows",
    "shares",
    "summary",
    "usd_display",
]

#: Significant digits of a ratio (shares, the free ratio): docs/decisions.md §21.
RATIO_PRECISION: Final = 28

#: How many labels a one-line text names before it says "and N more".
_NAMED: Final = 5

_CENT: Final = Decimal("0.01")
_TENTH: Final = Decimal("0.1")


def ratio_context() -> decimal.Context:
    """The context ratios are divided in: 28 digits, half-even, no ``Inexact`` trap."""
    return decimal.Context(
        prec=RATIO_PRECISION,
        rounding=decimal.ROUND_HALF_EVEN,
        traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
    )


def _ratio(part: Decimal, whole: Decimal) -> Decimal | None:
    if not whole:
        return None
    with decimal.localcontext(ratio_context()):
        return part / whole


def free_ratio(portfolio: Portfolio) -> Decimal | None:
    """``available_margin_usd / total_usd`` in 28 digits; ``None`` when the total is 0."""
    return _ratio(portfolio.available_margin_usd, portfolio.total_usd)


def shares(portfolio: Portfolio) -> Mapping[str, Decimal | None]:
    """Label -> its share of ``total_usd`` (28 digits), for every counted balance.

    Every share is ``None`` when ``total_usd`` is 0 (a share of nothing is not a number).
    """
    counted = portfolio._counted()  # the portfolio's own counting
    total = portfolio.total_usd
    return {b.label: _ratio(portfolio.usd(b)[0], total) for b in counted}


def money(value: Decimal) -> str:
    """``value`` in full positional notation, every digit kept (``1E+5`` is ``100000``)."""
    return format(value, "f")


def _rounded(value: Decimal, step: Decimal, prefix: str, suffix: str, *, thousands: bool) -> str:
    """``value`` rounded half-even to ``step``; a non-zero value that would round to zero is
    shown as ``<step`` (``-<step`` below zero), so it never reads as zero."""
    if not value:
        return f"{prefix}{format(Decimal(0).quantize(step), 'f')}{suffix}"
    sign = "-" if value < 0 else ""
    magnitude = value.copy_abs()  # abs() would round to the caller's context
    context = decimal.Context(prec=max(10, magnitude.adjusted() + 10), rounding=decimal.ROUND_HALF_EVEN)
    rounded = magnitude.quantize(step, context=context)
    if not rounded:
        return f"{sign}<{prefix}{format(step, 'f')}{suffix}"
    return f"{sign}{prefix}{format(rounded, ',f' if thousands else 'f')}{suffix}"


def usd_display(value: Decimal) -> str:
    """``value`` as dollars and cents for the summary line: ``$52,340.00``, ``-$3.10``, ``<$0.01``."""
    return _rounded(value, _CENT, "$", "", thousands=True)


def percent_display(ratio: Decimal) -> str:
    """``ratio`` as a percentage with one decimal: ``59.6%``, ``<0.1%``."""
    return _rounded(_hundredfold(ratio), _TENTH, "", "%", thousands=True)


def _hundredfold(ratio: Decimal) -> Decimal:
    """``ratio`` x 100, exact: a shift of the exponent (not rounded to the caller's context)."""
    return ratio.scaleb(2, context=exact_context())


def exact_percent(ratio: Decimal) -> str:
    """``ratio`` as a percentage with every digit: ``0.5961...`` is ``59.61...%``."""
    return f"{money(_hundredfold(ratio))}%"


def _label_text(label: str) -> str:
    """A label fit for one line: as is when printable, else its ``repr`` (no newline gets in)."""
    return label if label.isprintable() else repr(label)


def named(labels: Iterable[str]) -> str:
    """``a, b, c`` for a few labels, ``a, b, c, d, e and 7 more`` for many."""
    names = [_label_text(label) for label in labels]
    if len(names) <= _NAMED:
        return ", ".join(names)
    return f"{', '.join(names[:_NAMED])} and {len(names) - _NAMED} more"


def _failed(portfolio: Portfolio) -> list[str]:
    stale = portfolio.stale
    return sorted(label for label in portfolio.errors if label not in stale)


def _not_fresh(portfolio: Portfolio) -> str:
    """``; 1 stale: k; 2 failed: a, b`` (empty when every label is fresh)."""
    text = ""
    stale = portfolio.stale
    if stale:
        text += f"; {len(stale)} stale: {named(sorted(stale))}"
    failed = _failed(portfolio)
    if failed:
        text += f"; {len(failed)} failed: {named(failed)}"
    return text


def summary(portfolio: Portfolio) -> str:
    """One line: ``$52,340.00 across 2 exchanges, $31,200.00 available (59.6% free)``.

    See :meth:`bastion_balance.Portfolio.summary` for the rounding rules.
    """
    count = len(portfolio._counted())  # the portfolio's own counting
    noun = "exchange" if count == 1 else "exchanges"
    line = (
        f"{usd_display(portfolio.total_usd)} across {count} {noun}, "
        f"{usd_display(portfolio.available_margin_usd)} available"
    )
    ratio = free_ratio(portfolio)
    if ratio is not None:
        line += f" ({percent_display(ratio)} free)"
    return line + _not_fresh(portfolio)


def balance_str(balance: Balance) -> str:
    """``kraken (kraken): 382.2032 USD, 375.1678 available``, every digit kept."""
    return (
        f"{_label_text(balance.label)} ({_label_text(balance.exchange)}): "
        f"{money(balance.total)} {_label_text(balance.currency)}, {money(balance.available)} available"
    )


def portfolio_str(portfolio: Portfolio) -> str:
    """One line: totals in USD (exact), how many accounts are counted, and which failed."""
    count = len(portfolio._counted())  # the portfolio's own counting
    noun = "account" if count == 1 else "accounts"
    line = (
        f"Portfolio: {money(portfolio.total_usd)} USD, {money(portfolio.available_margin_usd)} available, "
        f"{count} {noun}"
    )
    return line + _not_fresh(portfolio)


@attrs.frozen
class Row:
    """One label of a Portfolio as the table views show it (``None``: not known or not counted)."""

    label: str
    exchange: str | None
    currency: str | None
    total: Decimal | None
    available: Decimal | None
    total_usd: Decimal | None
    available_usd: Decimal | None
    share: Decimal | None
    error: Exception | None
    age: float | None  # seconds, when the balance is a watch loop's stale one

    @property
    def status(self) -> str:
        """``ok``, ``stale: <error type>`` or ``error: <error type>``."""
        if self.error is None:
            return "ok"
        kind = "stale" if self.age is not None else "error"
        return f"{kind}: {type(self.error).__name__}"


def rows(portfolio: Portfolio) -> list[Row]:
    """Every label once: the fetched balances in order, then the labels that have no balance."""
    counted = {b.label for b in portfolio._counted()}  # the portfolio's own counting
    share_of = shares(portfolio)
    stale = portfolio.stale
    table: list[Row] = []
    for label, balance in portfolio.balances.items():
        usd: tuple[Decimal | None, Decimal | None] = (None, None)
        if label in counted:
            usd = portfolio.usd(balance)
        table.append(
            Row(
                label=label,
                exchange=balance.exchange,
                currency=balance.currency,
                total=balance.total,
                available=balance.available,
                total_usd=usd[0],
                available_usd=usd[1],
                share=share_of.get(label),
                error=portfolio.errors.get(label),
                age=stale.get(label),
            )
        )
    for label, error in portfolio.errors.items():
        if label in portfolio.balances:
            continue
        venue = getattr(error, "venue", None)
        table.append(
            Row(
                label=label,
                exchange=venue if isinstance(venue, str) else None,
                currency=None,
                total=None,
                available=None,
                total_usd=None,
                available_usd=None,
                share=None,
                error=error,
                age=None,
            )
        )
    return table


def _cell(text: str, tag: str = "td") -> str:
    return f"<{tag}>{html.escape(text, quote=True)}</{tag}>"


def _figure(value: Decimal | None) -> str:
    return _cell("" if value is None else money(value))


def _error_text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


_STYLE: Final = ' class="bastion-balance" style="text-align: right"'


def balance_html(balance: Balance) -> str:
    """A one-row HTML table: label, venue, currency, total, available; every text escaped."""
    head = "".join(_cell(name, "th") for name in ("label", "venue", "currency", "total", "available"))
    body = (
        _cell(balance.label)
        + _cell(balance.exchange)
        + _cell(balance.currency)
        + _figure(balance.total)
        + _figure(balance.available)
    )
    return f"<table{_STYLE}><thead><tr>{head}</tr></thead><tbody><tr>{body}</tr></tbody></table>"


_COLUMNS: Final = ("label", "venue", "currency", "total", "available", "total USD", "share", "status")


def _status_html(row: Row) -> str:
    if row.error is None:
        return _cell("ok")
    if row.age is not None:
        return _cell(f"stale ({row.age!r} s): {_error_text(row.error)}")
    return _cell(_error_text(row.error))


def rate_notes(portfolio: Portfolio) -> list[str]:
    """One note per rate the totals used but USD's own, saying where it came from, exact:
    ``USDT 1 (par, assumed)``, ``GBP 1.2675 (given)``, ``EUR 1.08420 (kraken ZEURZUSD last
    trade, 12:00:01Z)``. The CLI and the HTML table show them."""
    notes = []
    for currency, rate in portfolio.rate_sources.items():
        if rate.source == "unit":
            continue
        if rate.assumed:
            origin = "par, assumed"
        elif rate.source == "caller":
            origin = "given"
        else:
            origin = _label_text(f"{rate.source} {rate.detail}".strip())
            if rate.at is not None:
                origin += f", {rate.at.astimezone(UTC):%H:%M:%S}Z"
        notes.append(f"{_label_text(currency)} {money(rate.value)} ({origin})")
    return notes


def portfolio_html(portfolio: Portfolio) -> str:
    """An HTML table with a row per label (failed ones with their error), the exact totals in
    the caption, and the warnings below; every text escaped."""
    head = "".join(_cell(name, "th") for name in _COLUMNS)
    body = "".join(
        "<tr>"
        + _cell(row.label)
        + _cell(row.exchange or "")
        + _cell(row.currency or "")
        + _figure(row.total)
        + _figure(row.available)
        + _figure(row.total_usd)
        + _cell("" if row.share is None else exact_percent(row.share))
        + _status_html(row)
        + "</tr>"
        for row in rows(portfolio)
    )
    ratio = free_ratio(portfolio)
    caption = (
        f"{money(portfolio.total_usd)} USD total, {money(portfolio.available_margin_usd)} USD available"
        + ("" if ratio is None else f" ({exact_percent(ratio)} free)")
        + ("" if portfolio.complete else f"; {len(portfolio.errors)} with errors")
    )
    table = (
        f"<table{_STYLE}>{_cell(caption, 'caption')}<thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )
    notes = rate_notes(portfolio)
    if notes:
        table += _cell("rates: " + "; ".join(notes), "p")
    if portfolio.warnings:
        table += "<ul>" + "".join(_cell(warning, "li") for warning in portfolio.warnings) + "</ul>"
    return table


#: The columns of ``Portfolio.to_dataframe()`` (docs/decisions.md §22), index ``label``.
DATAFRAME_COLUMNS: Final = (
    "exchange",
    "currency",
    "total",
    "available",
    "total_usd",
    "available_usd",
    "share",
    "status",
)
_DECIMAL_COLUMNS: Final = frozenset({"total", "available", "total_usd", "available_usd", "share"})
PANDAS_MISSING: Final = "Portfolio.to_dataframe() needs pandas: pip install 'bastion-balance[pandas]'"


def dataframe(portfolio: Portfolio) -> Any:  # noqa: ANN401  # pandas is optional
    """One row per label (failed ones included); Decimal columns of dtype object."""
    try:
        pandas = importlib.import_module("pandas")
    except ImportError as exc:
        raise ImportError(PANDAS_MISSING) from exc
    table = rows(portfolio)
    index = pandas.Index([row.label for row in table], name="label", dtype=object)
    columns = {
        name: pandas.Series(
            [getattr(row, name) for row in table],
            index=index,
            dtype=object if name in _DECIMAL_COLUMNS else None,
        )
        for name in DATAFRAME_COLUMNS
    }
    return pandas.DataFrame(columns, index=index, columns=list(DATAFRAME_COLUMNS))
