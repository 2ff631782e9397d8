"""Portfolio views: shares, free_ratio, summary(), str, the HTML tables and to_dataframe()."""

from __future__ import annotations

import decimal
import html.parser
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance._decimal import exact_sum

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ULP = Decimal("1e-27")  # the 28-digit context's relative rounding, with a margin

# Figures as venues send them: up to 30 digits, exponents -30..30, either sign (no float anywhere).
figures = st.builds(
    lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-30, max_value=30),
)
rates = st.builds(
    lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
    st.integers(min_value=1, max_value=10**12),
    st.integers(min_value=-8, max_value=2),
)
labels = st.text(min_size=1, max_size=12)
hostile = st.sampled_from(["<script>alert(1)</script>", 'a"b', "x'y", "a&b", "</td></tr>", "\n<b>"])


def balance(
    label: str, total: Decimal, available: Decimal, currency: str = "USD", exchange: str = "kraken"
) -> bb.Balance:
    return bb.Balance(
        label=label, exchange=exchange, currency=currency, total=total, available=available, fetched_at=NOW
    )


def portfolio(
    *balances: bb.Balance,
    errors: Mapping[str, Exception] | None = None,
    rates: Mapping[str, Decimal] | None = None,
    warnings: tuple[str, ...] = (),
) -> bb.Portfolio:
    return bb.Portfolio(
        balances={b.label: b for b in balances},
        errors=errors or {},
        rates={"USD": Decimal(1)} if rates is None else rates,
        warnings=warnings,
        fetched_at=NOW,
    )


@st.composite
def portfolios(draw: st.DrawFn) -> bb.Portfolio:
    """Counted balances in USD and EUR, a balance without a rate, failed labels."""
    eur = draw(rates)
    names = draw(st.lists(labels, min_size=1, max_size=8, unique=True))
    balances = []
    errors: dict[str, Exception] = {}
    for name in names:
        kind = draw(st.sampled_from(["USD", "EUR", "norate", "failed"]))
        if kind == "failed":
            errors[name] = bb.DeadlineExceededError(f"{name}: too slow", venue="bybit")
            continue
        currency = "JPY" if kind == "norate" else kind
        balances.append(balance(name, draw(figures), draw(figures), currency=currency))
        if kind == "norate":
            errors[name] = bb.MissingRateError("no rate", currency="JPY")
    return portfolio(*balances, errors=errors, rates={"USD": Decimal(1), "EUR": eur})


def counted(pf: bb.Portfolio) -> list[bb.Balance]:
    """The balances the totals count, found independently of the views."""
    return [b for label, b in pf.balances.items() if label not in pf.errors and b.currency in pf.rates]


# --- free_ratio and shares -------------------------------------------------------------------


@given(portfolios())
def test_shares_of_counted_balances_sum_to_one(pf: bb.Portfolio) -> None:
    shares = pf.shares
    assert list(shares) == [b.label for b in counted(pf)]
    if pf.total_usd == 0:
        assert all(share is None for share in shares.values())
        return
    values = [share for share in shares.values() if share is not None]
    assert len(values) == len(shares)
    spread = exact_sum(abs(v) for v in values)
    assert abs(exact_sum(values) - 1) <= spread * ULP
    for b in counted(pf):
        share = shares[b.label]
        assert share is not None
        usd_total = pf.usd(b)[0]
        assert abs(share * pf.total_usd - usd_total) <= abs(usd_total) * ULP + abs(pf.total_usd) * Decimal(
            "1e-60"
        )
        assert len(share.as_tuple().digits) <= 28


@given(portfolios())
def test_free_ratio_is_available_over_total(pf: bb.Portfolio) -> None:
    ratio = pf.free_ratio
    if pf.total_usd == 0:
        assert ratio is None
        return
    assert ratio is not None
    assert len(ratio.as_tuple().digits) <= 28
    with decimal.localcontext(decimal.Context(prec=200)):
        assert abs(ratio * pf.total_usd - pf.available_margin_usd) <= abs(pf.available_margin_usd) * ULP


def test_free_ratio_and_shares_at_a_total_of_zero() -> None:
    pf = portfolio(balance("a", Decimal(5), Decimal(1)), balance("b", Decimal(-5), Decimal(0)))
    assert pf.total_usd == 0
    assert pf.free_ratio is None
    assert pf.shares == {"a": None, "b": None}
    empty = portfolio()
    assert empty.free_ratio is None
    assert empty.shares == {}


def test_ratios_ignore_the_callers_decimal_context() -> None:
    pf = portfolio(
        balance("a", Decimal("52340.123456"), Decimal("31200.987654")), balance("b", Decimal(3), Decimal(1))
    )
    expected = (pf.free_ratio, dict(pf.shares), pf.summary(), str(pf), pf._repr_html_())
    with decimal.localcontext(decimal.Context(prec=3, rounding=decimal.ROUND_DOWN, traps=[decimal.Inexact])):
        assert (pf.free_ratio, dict(pf.shares), pf.summary(), str(pf), pf._repr_html_()) == expected
    assert pf.free_ratio is not None
    assert len(pf.free_ratio.as_tuple().digits) == 28


def test_shares_follow_the_portfolios_counting() -> None:
    pf = portfolio(
        balance("usd", Decimal(30), Decimal(3)),
        balance("eur", Decimal(10), Decimal(1), currency="EUR"),
        balance("jpy", Decimal(1000), Decimal(1), currency="JPY"),
        errors={
            "jpy": bb.MissingRateError("no rate", currency="JPY"),
            "down": bb.DeadlineExceededError("late"),
        },
        rates={"USD": Decimal(1), "EUR": Decimal(2)},
    )
    assert pf.shares == {"usd": Decimal("0.6"), "eur": Decimal("0.4")}
    assert pf.free_ratio == Decimal("0.1")


# --- summary() -------------------------------------------------------------------------------


def test_summary_example_wording() -> None:
    pf = portfolio(
        balance("kraken", Decimal("40000"), Decimal("25000")),
        balance("bybit", Decimal("12340"), Decimal("6200")),
    )
    assert pf.summary() == "$52,340.00 across 2 exchanges, $31,200.00 available (59.6% free)"


def test_summary_one_failed() -> None:
    pf = portfolio(
        balance("kraken", Decimal("40000"), Decimal("25000")),
        balance("rails", Decimal("12340"), Decimal("6200")),
        errors={"bybit": bb.DeadlineExceededError("bybit: too slow", venue="bybit")},
    )
    assert pf.summary() == "$52,340.00 across 2 exchanges, $31,200.00 available (59.6% free); 1 failed: bybit"


def test_summary_one_exchange_is_singular() -> None:
    assert (
        portfolio(balance("k", Decimal(1), Decimal(1))).summary()
        == "$1.00 across 1 exchange, $1.00 available (100.0% free)"
    )


def test_summary_of_nothing_has_no_percentage() -> None:
    assert portfolio().summary() == "$0.00 across 0 exchanges, $0.00 available"
    zero = portfolio(balance("a", Decimal("0E-8"), Decimal(0)))
    assert zero.summary() == "$0.00 across 1 exchange, $0.00 available"


@pytest.mark.parametrize(
    ("total", "shown"),
    [
        ("0.004", "<$0.01"),
        ("0.005", "<$0.01"),  # half-even would make it 0.00: not zero, so "<$0.01"
        ("0.00000001", "<$0.01"),
        ("-0.004", "-<$0.01"),
        ("0.015", "$0.02"),
        ("0.025", "$0.02"),  # half-even
        ("-1234.5", "-$1,234.50"),
        ("1234567.995", "$1,234,568.00"),
        ("1E+30", "$1,000,000,000,000,000,000,000,000,000,000.00"),
    ],
)
def test_summary_rounds_dollars_half_even_and_never_shows_zero_for_nonzero(total: str, shown: str) -> None:
    pf = portfolio(balance("a", Decimal(total), Decimal(0)))
    assert pf.summary().startswith(f"{shown} across 1 exchange, $0.00 available (")


@pytest.mark.parametrize(
    ("available", "shown"),
    [
        ("0.0004", "<0.1%"),
        ("0.59649", "59.6%"),
        ("0.59651", "59.7%"),
        ("0.00125", "0.1%"),
        ("-0.3", "-30.0%"),
        ("2", "200.0%"),
    ],
)
def test_summary_percent(available: str, shown: str) -> None:
    pf = portfolio(balance("a", Decimal(1), Decimal(available)))
    assert pf.summary().endswith(f" available ({shown} free)")


def test_summary_with_a_negative_total() -> None:
    pf = portfolio(balance("a", Decimal("-200"), Decimal("50")))
    assert pf.summary() == "-$200.00 across 1 exchange, $50.00 available (-25.0% free)"


def test_summary_names_at_most_five_failed_labels_sorted() -> None:
    errors: dict[str, Exception] = {name: bb.DeadlineExceededError("late") for name in "gfedcba"}
    pf = portfolio(balance("k", Decimal(1), Decimal(1)), errors=errors)
    assert pf.summary().endswith("; 7 failed: a, b, c, d, e and 2 more")
    five = portfolio(errors={name: bb.DeadlineExceededError("late") for name in "edcba"})
    assert five.summary().endswith("; 5 failed: a, b, c, d, e")


def test_summary_counts_a_balance_without_rate_as_failed() -> None:
    pf = portfolio(
        balance("k", Decimal(1), Decimal(1)),
        balance("j", Decimal(1), Decimal(1), currency="JPY"),
        errors={"j": bb.MissingRateError("no rate", currency="JPY")},
    )
    assert pf.summary() == "$1.00 across 1 exchange, $1.00 available (100.0% free); 1 failed: j"


def test_summary_stays_one_line_with_hostile_labels() -> None:
    pf = portfolio(
        balance("a\nb", Decimal(1), Decimal(1)), errors={"x\r\ny": bb.DeadlineExceededError("late")}
    )
    text = pf.summary()
    assert "\n" not in text
    assert "\r" not in text
    assert text.endswith("; 1 failed: 'x\\r\\ny'")


DOLLARS = re.compile(
    r"^(-?)(<?)\$([0-9,]+\.[0-9]{2}) across (\d+) exchanges?, (-?)(<?)\$([0-9,]+\.[0-9]{2}) available"
)


def _shown(sign: str, below: str, digits: str) -> tuple[Decimal, bool]:
    value = Decimal(digits.replace(",", ""))
    return (value.copy_negate() if sign else value), bool(below)


@given(portfolios())
def test_summary_dollars_are_the_totals_to_the_cent(pf: bb.Portfolio) -> None:
    match = DOLLARS.match(pf.summary())
    assert match is not None
    for value, (sign, below, digits) in (
        (pf.total_usd, match.group(1, 2, 3)),
        (pf.available_margin_usd, match.group(5, 6, 7)),
    ):
        shown, under_a_cent = _shown(sign, below, digits)
        if under_a_cent:
            assert shown in (Decimal("0.01"), Decimal("-0.01"))
            assert value != 0
            assert abs(value) <= Decimal("0.005")
            assert (value < 0) == (shown < 0)
        else:
            with decimal.localcontext(decimal.Context(prec=200)):
                assert abs(shown - value) <= Decimal("0.005")
            assert shown != 0 or value == 0
    assert int(match.group(4)) == len(counted(pf))


# --- str -------------------------------------------------------------------------------------


def test_str_examples() -> None:
    b = balance("kraken", Decimal("382.2032"), Decimal("375.1678"))
    assert str(b) == "kraken (kraken): 382.2032 USD, 375.1678 available"
    pf = portfolio(b, errors={"bybit": bb.DeadlineExceededError("late")})
    assert str(pf) == "Portfolio: 382.2032 USD, 375.1678 available, 1 account; 1 failed: bybit"
    assert str(portfolio(b, balance("r", Decimal(1), Decimal(1)))).endswith(", 2 accounts")
    assert repr(b).startswith("Balance(label='kraken'")  # repr is unchanged


BALANCE_STR = re.compile(
    r"^(.*) \((.*)\): (-?[0-9]+(?:\.[0-9]+)?) (\S+), (-?[0-9]+(?:\.[0-9]+)?) available$", re.DOTALL
)
PORTFOLIO_STR = re.compile(
    r"^Portfolio: (-?[0-9]+(?:\.[0-9]+)?) USD, (-?[0-9]+(?:\.[0-9]+)?) available, (\d+) accounts?"
)


@given(figures, figures, st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=10))
def test_balance_str_keeps_every_digit(total: Decimal, available: Decimal, label: str) -> None:
    text = str(balance(label, total, available))
    match = BALANCE_STR.match(text)
    assert match is not None
    assert match.group(1) == label
    assert Decimal(match.group(3)) == total
    assert Decimal(match.group(5)) == available
    assert "E" not in match.group(3) + match.group(5)
    assert len(text) < 200


@given(portfolios())
def test_portfolio_str_keeps_every_digit(pf: bb.Portfolio) -> None:
    text = str(pf)
    match = PORTFOLIO_STR.match(text)
    assert match is not None
    assert Decimal(match.group(1)) == pf.total_usd
    assert Decimal(match.group(2)) == pf.available_margin_usd
    assert int(match.group(3)) == len(counted(pf))
    assert "\n" not in text
    if pf.errors:
        assert f"; {len(pf.errors)} failed: " in text


def test_portfolio_str_is_short_for_many_accounts() -> None:
    many = [balance(f"acct{i}", Decimal(i), Decimal(i)) for i in range(500)]
    errors: dict[str, Exception] = {f"down{i}": bb.DeadlineExceededError("late") for i in range(50)}
    text = str(portfolio(*many, errors=errors))
    assert len(text) < 200
    assert text.endswith("; 50 failed: down0, down1, down10, down11, down12 and 45 more")


# --- HTML ------------------------------------------------------------------------------------


class Cells(html.parser.HTMLParser):
    """The text of every <th>/<td>/<caption>/<li>, row by row, and every start tag seen."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.tags: list[str] = []
        self.caption = ""
        self.items: list[str] = []
        self._in: str | None = None
        self._text = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        if tag in ("th", "td", "caption", "li"):
            self._in, self._text = tag, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            if tag in ("th", "td"):
                self.rows[-1].append(self._text)
            elif tag == "caption":
                self.caption = self._text
            else:
                self.items.append(self._text)
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text += data


def test_balance_html_is_a_table_of_exact_figures() -> None:
    b = balance(
        "<script>alert(1)</script>",
        Decimal("1E+5"),
        Decimal("-0.000000000000000000000000000001"),
        exchange='"x"',
    )
    text = b._repr_html_()
    assert "<script>" not in text
    cells = Cells(text)
    assert cells.rows == [
        ["label", "venue", "currency", "total", "available"],
        ["<script>alert(1)</script>", '"x"', "USD", "100000", "-0.000000000000000000000000000001"],
    ]
    assert set(cells.tags) == {"table", "thead", "tbody", "tr", "th", "td"}


@given(portfolios(), hostile, hostile, hostile)
def test_portfolio_html_escapes_and_keeps_every_figure(
    pf: bb.Portfolio, label: str, message: str, warning: str
) -> None:
    assume(label not in pf.balances and label not in pf.errors)
    errors = {**pf.errors, label: bb.ExchangeAPIError(message, venue=message)}
    pf = attrs.evolve(pf, errors=errors, warnings=(warning,))
    text = pf._repr_html_()
    assert "<script>" not in text
    cells = Cells(text)
    assert set(cells.tags) <= {"table", "caption", "thead", "tbody", "tr", "th", "td", "ul", "li"}
    header, *body = cells.rows
    assert header == ["label", "venue", "currency", "total", "available", "total USD", "share", "status"]
    assert [row[0] for row in body] == [*pf.balances, *(k for k in pf.errors if k not in pf.balances)]
    shares = pf.shares
    for row in body:
        name, venue, currency, total, available, total_usd, share, status = row
        if name in pf.balances:
            b = pf.balances[name]
            assert (venue, currency, Decimal(total), Decimal(available)) == (
                b.exchange,
                b.currency,
                b.total,
                b.available,
            )
        else:
            assert (currency, total, available) == ("", "", "")
        if name in shares:
            assert Decimal(total_usd) == pf.usd(pf.balances[name])[0]
            value = shares[name]
            if value is None:
                assert share == ""
            else:
                assert share.endswith("%")
                assert "E" not in share
                assert Decimal(share.removesuffix("%")) == value.scaleb(2, context=decimal.Context(prec=100))
            assert status == "ok"
        else:
            assert (total_usd, share) == ("", "")
            error = pf.errors[name]
            assert status == f"{type(error).__name__}: {error}"
    assert body[-1][1] == message  # the venue of the added error, escaped and back
    assert body[-1][7] == f"ExchangeAPIError: {message}"
    caption = re.match(r"^(-?[0-9.]+) USD total, (-?[0-9.]+) USD available", cells.caption)
    assert caption is not None
    assert Decimal(caption.group(1)) == pf.total_usd
    assert Decimal(caption.group(2)) == pf.available_margin_usd
    assert cells.caption.endswith(f"; {len(pf.errors)} with errors")
    assert cells.items == [warning]


def test_portfolio_html_caption_shows_the_exact_free_ratio() -> None:
    pf = portfolio(balance("a", Decimal(3), Decimal(1)))
    cells = Cells(pf._repr_html_())
    assert cells.caption == "3 USD total, 1 USD available (33.33333333333333333333333333% free)"
    assert cells.rows[1][6] == "100%"
    assert "<ul>" not in pf._repr_html_()
    assert Cells(portfolio()._repr_html_()).caption == "0 USD total, 0 USD available"


# --- stale balances (a watch loop) ------------------------------------------------------------


def watched() -> bb.Portfolio:
    """A Portfolio as a watch loop makes it: a stale label keeps its balance and has an error."""
    return bb.Portfolio(
        balances={"k": balance("k", Decimal(3), Decimal(1)), "r": balance("r", Decimal(1), Decimal(1))},
        errors={"k": bb.DeadlineExceededError("k: late"), "b": bb.AuthenticationError("b: refused")},
        rates={"USD": Decimal(1)},
        stale={"k": 12.5},
        fetched_at=NOW,
    )


def test_stale_labels_are_shown_as_stale() -> None:
    pf = watched()
    assert pf.summary() == "$4.00 across 2 exchanges, $2.00 available (50.0% free); 1 stale: k; 1 failed: b"
    assert str(pf) == "Portfolio: 4 USD, 2 available, 2 accounts; 1 stale: k; 1 failed: b"
    assert pf.shares == {"k": Decimal("0.75"), "r": Decimal("0.25")}
    rows = Cells(pf._repr_html_()).rows
    assert rows[1][0] == "k"
    assert rows[1][7] == "stale (12.5 s): DeadlineExceededError: k: late"
    assert rows[3][7] == "AuthenticationError: b: refused"
    pytest.importorskip("pandas")
    frame = pf.to_dataframe()
    assert list(frame["status"]) == ["stale: DeadlineExceededError", "ok", "error: AuthenticationError"]
    assert frame.loc["k", "total_usd"] == Decimal(3)


# --- to_dataframe() --------------------------------------------------------------------------


def test_dataframe_rows_and_decimal_columns() -> None:
    pd = pytest.importorskip("pandas")
    pf = portfolio(
        balance("kraken", Decimal("382.2032"), Decimal("375.1678")),
        balance(
            "eur",
            Decimal("10.000000000000000000000000000001"),
            Decimal("1"),
            currency="EUR",
            exchange="coinswitch",
        ),
        balance("jpy", Decimal(1000), Decimal(1), currency="JPY"),
        errors={
            "jpy": bb.MissingRateError("no rate", currency="JPY"),
            "bybit": bb.DeadlineExceededError("late", venue="bybit"),
            "other": ValueError("x"),
        },
        rates={"USD": Decimal(1), "EUR": Decimal("1.08")},
    )
    frame = pf.to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == ["kraken", "eur", "jpy", "bybit", "other"]
    assert frame.index.name == "label"
    assert list(frame.columns) == [
        "exchange",
        "currency",
        "total",
        "available",
        "total_usd",
        "available_usd",
        "share",
        "status",
    ]
    for column in ("total", "available", "total_usd", "available_usd", "share"):
        assert frame[column].dtype == object
        assert all(v is None or type(v) is Decimal for v in frame[column])
    assert frame.loc["eur", "total"] == Decimal("10.000000000000000000000000000001")  # 32 digits kept
    assert frame.loc["eur", "total_usd"] == Decimal("10.80000000000000000000000000000108")
    assert frame.loc["kraken", "share"] == pf.shares["kraken"]
    assert frame.loc["jpy", "total"] == Decimal(1000)
    assert frame.loc["jpy", "total_usd"] is None
    assert frame.loc["jpy", "share"] is None
    assert frame.loc["bybit", "exchange"] == "bybit"
    assert frame.loc["bybit", "total"] is None
    assert pd.isna(frame.loc["other", "exchange"])
    assert list(frame["status"]) == [
        "ok",
        "ok",
        "error: MissingRateError",
        "error: DeadlineExceededError",
        "error: ValueError",
    ]


def test_dataframe_of_an_empty_portfolio() -> None:
    pytest.importorskip("pandas")
    frame = portfolio().to_dataframe()
    assert len(frame) == 0
    assert list(frame.columns) == [
        "exchange",
        "currency",
        "total",
        "available",
        "total_usd",
        "available_usd",
        "share",
        "status",
    ]


@given(portfolios())
def test_dataframe_money_is_the_portfolios_exactly(pf: bb.Portfolio) -> None:
    pytest.importorskip("pandas")
    frame = pf.to_dataframe()
    assert len(frame) == len(set(pf.balances) | set(pf.errors))
    for b in counted(pf):
        assert (frame.loc[b.label, "total_usd"], frame.loc[b.label, "available_usd"]) == pf.usd(b)
        assert frame.loc[b.label, "share"] == pf.shares[b.label]
    assert exact_sum(v for v in frame["total_usd"] if v is not None) == pf.total_usd


def test_dataframe_without_pandas_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'bastion-balance[pandas]'")) as caught:
        portfolio().to_dataframe()
    assert isinstance(caught.value.__cause__, ImportError)
