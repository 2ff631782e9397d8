"""The command's table: every figure whole at any width, aligned on the decimal point, the share
and free columns, the rates line, the status line, the failure lines and the spinners."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance import cli
from bastion_balance.testing import FakeProvider

pytest.importorskip("rich")
from rich.console import Console  # noqa: E402

NOW = datetime(2026, 1, 2, 12, 0, 1, tzinfo=UTC)
USD = bb.Rate(currency="USD", value=Decimal(1), source="unit")
PAR = bb.Rate(currency="USDT", value=Decimal(1), source="par")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def balance(label: str, total: str, available: str, currency: str = "USD", venue: str = "fake") -> bb.Balance:
    return bb.Balance(
        label=label,
        exchange=venue,
        currency=currency,
        total=Decimal(total),
        available=Decimal(available),
        fetched_at=NOW,
    )


def portfolio(
    *balances: bb.Balance,
    errors: dict[str, Exception] | None = None,
    rates: dict[str, bb.Rate] | None = None,
    stale: dict[str, float] | None = None,
    warnings: tuple[str, ...] = (),
) -> bb.Portfolio:
    sources = rates if rates is not None else {"USD": USD, "USDT": PAR}
    return bb.Portfolio(
        balances={b.label: b for b in balances},
        errors=errors or {},
        rates={currency: rate.value for currency, rate in sources.items()},
        rate_sources=sources,
        stale=stale or {},
        warnings=warnings,
        fetched_at=NOW,
    )


def demo_portfolio() -> bb.Portfolio:
    """The demo's portfolio, fetched from the simulated venues (as `bastion-balance demo` does)."""
    from bastion_balance.testing import demo_setup

    simulator, providers = demo_setup()
    with simulator.client() as http:
        return bb.aggregate(providers, client=http)


def hostile_portfolio() -> bb.Portfolio:
    """Long labels and figures, zeros, tiny and negative figures, a failure, a missing rate, a stale one."""
    return portfolio(
        balance(
            "the-main-trading-desk-account-with-a-long-name", "1234567890123456789012345.123456789", "0E-8"
        ),
        balance("tiny", "0.000000000000000001", "0"),
        balance("negative", "-12.5", "-0.25", venue="rails"),
        balance("euro", "1000.00", "900.00", currency="EUR", venue="kraken"),
        balance("kept", "55.5", "50", currency="USDT", venue="bybit"),
        errors={
            "down": bb.TransportError("down: connection refused", venue="binance"),
            "euro": bb.MissingRateError("euro: no USD rate for EUR", currency="EUR", venue="kraken"),
            "kept": bb.TransportError("kept: timed out", venue="bybit"),
        },
        stale={"kept": 75.0},
    )


def figures(pf: bb.Portfolio) -> list[str]:
    """Every money figure of a portfolio, written as the table writes it (thousands separators)."""
    found = [f"{pf.total_usd:,f}", f"{pf.available_margin_usd:,f}"]
    for b in pf.balances.values():
        found += [f"{b.total:,f}", f"{b.available:,f}"]
    return found


def whole(figure: str, text: str) -> bool:
    """``figure`` appears in ``text`` with no digit, comma or point glued to either end."""
    return re.search(rf"(?<![\d,.]){re.escape(figure)}(?![\d,.])", text) is not None


def rendered(pf: bb.Portfolio, width: int, **kwargs: object) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    cli.render_rich(pf, console, **kwargs)  # type: ignore[arg-type]
    return console.file.getvalue()  # type: ignore[attr-defined, no-any-return]


class TestEveryFigureWhole:
    @pytest.mark.parametrize("width", [60, 80, 120])
    @pytest.mark.parametrize("make", [demo_portfolio, hostile_portfolio])
    def test_rich_at_60_80_120_columns(self, width: int, make: object) -> None:
        """At 60, 80 and 120 columns every figure of the portfolio is on screen whole, never '…'."""
        pf = make()  # type: ignore[operator]
        text = rendered(pf, width)
        assert "…" not in text
        missing = [figure for figure in figures(pf) if not whole(figure, text)]
        assert not missing, text

    def test_the_table_when_it_fits_the_blocks_when_not(self) -> None:
        """The demo's 20-digit total needs more than 80 columns for the table: at 80 and 60 each
        account is a block; at 120 it is the table, and no line is wider than the console."""
        pf = demo_portfolio()
        assert "┃ account" in rendered(pf, 120)
        for width in (60, 80):
            text = rendered(pf, width)
            assert "┃" not in text
            assert "rails  USD" in text and "  total" in text
        for width in (100, 120, 160):
            text = rendered(pf, width)
            assert "┃ account" in text
            assert max(len(line) for line in text.splitlines()) <= width

    def test_every_width_from_20_to_200(self) -> None:
        """Whatever the width, no figure is cut (the table below it, the blocks above)."""
        pf = hostile_portfolio()
        for width in range(20, 201, 7):
            text = rendered(pf, width)
            assert all(whole(figure, text) for figure in figures(pf)), (width, text)

    @given(
        amounts=st.lists(
            st.tuples(st.integers(-(10**30), 10**30), st.integers(0, 12), st.integers(0, 10**20)),
            min_size=1,
            max_size=6,
        ),
        labels=st.lists(st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=40), min_size=6),
        width=st.integers(30, 200),
    )
    def test_any_portfolio_at_any_width(
        self, amounts: list[tuple[int, int, int]], labels: list[str], width: int
    ) -> None:
        """Random figures (up to 31 digits, up to 12 places) and labels: every figure whole,
        in the rich view at any width and in the plain table."""
        unique = list(dict.fromkeys(labels))
        balances = [
            balance(label, str(Decimal(total).scaleb(-places)), str(Decimal(free).scaleb(-places)))
            for label, (total, places, free) in zip(unique, amounts, strict=False)
        ]
        pf = portfolio(*balances)
        out = io.StringIO()
        cli.render_plain(pf, out)
        for text in (rendered(pf, width), out.getvalue()):
            assert all(whole(figure, text) for figure in figures(pf)), text


class TestPlain:
    def test_every_digit_aligned_on_the_point(self) -> None:
        """Plain text: every figure whole, each number column's decimal points in one column."""
        pf = hostile_portfolio()
        out = io.StringIO()
        cli.render_plain(pf, out)
        text = out.getvalue()
        assert all(whole(figure, text) for figure in figures(pf))
        lines = text.splitlines()
        spans = [match.span() for match in re.finditer(r"-+", lines[1])]  # the rule under the header
        rows = [line for line in lines[2:] if not line.startswith("-")][:7]  # the accounts and TOTAL
        for start, end in spans[3:]:  # total, available, share, free
            column = [line.ljust(end)[start:end] for line in rows]
            points = {cell.index(".") for cell in column if "." in cell}
            assert len(points) == 1, column
            assert len({len(cell.split(".")[0].rstrip()) for cell in column if cell.strip()}) == 1, column

    def test_columns_share_free_and_marks(self) -> None:
        """share and free columns; failed rows say why in the share column; the summary and the
        status line follow the rates line."""
        pf = hostile_portfolio()
        out = io.StringIO()
        cli.render_plain(pf, out, status="partial")
        lines = out.getvalue().splitlines()
        assert lines[0].split() == ["account", "venue", "currency", "total", "available", "share", "free"]
        row = {line.split()[0]: line.split() for line in lines[2:9]}
        assert row["down"][1:] == ["binance", "-", "-", "-", "failed", "-"]
        assert row["euro"][5:] == ["no", "rate", "90.0%"]
        assert row["tiny"][-1] == "0.0%"  # available 0 of a positive total
        assert row["kept"][5:] == ["<0.1%", "90.1%"]  # a stale balance counts: it has a share
        assert lines[-3:] == ["rates: USDT 1 (par, assumed)", pf.summary(), "partial"]

    def test_ages_column(self) -> None:
        """With ages (a watch), each balance's age; a stale one says so."""
        young = bb.Balance(
            label="young",
            exchange="fake",
            currency="USD",
            total=Decimal(1),
            available=Decimal(1),
            fetched_at=NOW - timedelta(seconds=3725),
        )
        pf = portfolio(
            young, balance("kept", "2", "2"), errors={"kept": bb.TransportError("x")}, stale={"kept": 125.9}
        )
        out = io.StringIO()
        cli.render_plain(pf, out, ages=True)
        lines = out.getvalue().splitlines()
        assert lines[0].split()[-1] == "age"
        assert lines[2].endswith("1h02m") and lines[3].endswith("stale 2m05s")
        nothing = portfolio(balance("a", "1", "1"), errors={"b": bb.TransportError("b: x")})
        out = io.StringIO()
        cli.render_plain(nothing, out, ages=True)
        assert out.getvalue().splitlines()[3].endswith("-")  # never fetched: no age
        assert cli._age(42.9) == "42s"


class TestRich:
    def test_failed_and_stale_rows_are_coloured(self) -> None:
        """Failed rows red, a stale one yellow; labels are text, never markup."""
        pf = portfolio(
            balance("[bold]x[/bold]", "1", "1"),
            balance("kept", "2", "2"),
            errors={"down": bb.TransportError("down: x"), "kept": bb.TransportError("kept: x")},
            stale={"kept": 1.0},
        )
        console = Console(file=io.StringIO(), width=140, color_system="standard", force_terminal=True)
        cli.render_rich(pf, console)
        text = console.file.getvalue()  # type: ignore[attr-defined]
        assert "[bold]x[/bold]" in ANSI.sub("", text)
        assert "\x1b[31m" in text and "\x1b[33m" in text

    def test_blocks_name_the_venue_when_it_is_not_the_label(self) -> None:
        pf = portfolio(balance("main", "1", "1", venue="kraken"), balance("bybit", "2", "2", venue="bybit"))
        text = rendered(portfolio(*pf.balances.values()), 20)
        assert "main  kraken · USD" in text and "bybit  USD" in text


class TestAlignment:
    @given(st.lists(st.decimals(allow_nan=False, allow_infinity=False, places=6), min_size=1, max_size=8))
    def test_points_line_up_and_digits_are_kept(self, values: list[Decimal]) -> None:
        cells = [f"{value:,f}" for value in values] + ["-", ""]
        aligned = cli.align_decimals(cells)
        assert len({len(cell) for cell in aligned}) == 1
        assert [cell.strip() for cell in aligned] == cells
        points = {cell.index(".") for cell in aligned if "." in cell}
        assert len(points) <= 1
        wholes = {len(cell.split(".")[0].rstrip()) for cell in aligned if cell.strip()}
        assert len(wholes) == 1  # every integer part ends in one column

    def test_no_cells(self) -> None:
        assert cli.align_decimals([]) == []


class TestLines:
    def test_rates_line(self) -> None:
        """Every rate but USD's, par labelled as an assumption, a source's with its time."""
        kraken = bb.Rate(
            currency="EUR",
            value=Decimal("1.08420"),
            source="kraken",
            detail="ZEURZUSD last trade",
            at=datetime(2026, 1, 2, 12, 0, 1, tzinfo=UTC),
        )
        given_rate = bb.Rate(currency="GBP", value=Decimal("1.2675"), source="caller")
        pf = portfolio(
            balance("a", "1", "1", "EUR"),
            balance("b", "1", "1", "USDT"),
            balance("c", "1", "1", "GBP"),
            rates={"USD": USD, "EUR": kraken, "USDT": PAR, "GBP": given_rate},
        )
        assert cli.rates_line(pf) == (
            "rates: EUR 1.08420 (kraken ZEURZUSD last trade, 12:00:01Z); USDT 1 (par, assumed); GBP 1.2675 (given)"
        )
        assert cli.rates_line(portfolio(balance("a", "1", "1"), rates={"USD": USD})) is None
        untimed = bb.Rate(currency="EUR", value=Decimal("1.1"), source="oracle")
        pf = portfolio(balance("a", "1", "1", "EUR"), rates={"USD": USD, "EUR": untimed})
        assert cli.rates_line(pf) == "rates: EUR 1.1 (oracle)"  # a source of our own, no time

    @pytest.mark.parametrize(
        ("errors", "balances", "asked", "expected"),
        [
            ({}, ["a", "b"], 2, (0, "2 accounts, complete")),
            ({}, ["a"], 1, (0, "1 account, complete")),
            ({"b": "x"}, ["a"], 2, (1, "partial: 1 of 2 accounts counted, 1 with errors")),
            ({"a": "x", "b": "x"}, [], 2, (3, "no account answered: 2 failed")),
        ],
    )
    def test_status_agrees_with_the_exit_code(
        self, errors: dict[str, str], balances: list[str], asked: int, expected: tuple[int, str]
    ) -> None:
        pf = portfolio(
            *(balance(label, "1", "1") for label in balances),
            errors={label: bb.TransportError(f"{label}: {why}") for label, why in errors.items()},
        )
        assert cli.outcome(pf, asked) == expected

    def test_a_stale_account_still_counts(self) -> None:
        pf = portfolio(balance("a", "1", "1"), errors={"a": bb.TransportError("a: x")}, stale={"a": 3.0})
        assert cli.outcome(pf, 1) == (1, "partial: 1 of 1 accounts counted, 1 with errors")


class TestFailureLines:
    def test_one_line_no_secret_no_traceback(self) -> None:
        """The label's prefix is not repeated; secrets and signatures masked; one line, capped."""
        secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="
        pf = portfolio(
            errors={
                "main": bb.AuthenticationError(
                    f"main: refused key {secret}\nsignature=abcdef", venue="kraken"
                ),
                "long": bb.TransportError("long: " + "x" * 1000),
                "bare": bb.TransportError(""),
                "escape": bb.ExchangeAPIError("escape: \x1b[2Jgone\x07", venue="bybit"),
            }
        )
        lines = cli.failure_lines(pf, (secret,))
        assert lines[3] == "bastion-balance: escape failed: ExchangeAPIError: ?[2Jgone?"
        assert lines[0] == "bastion-balance: main failed: AuthenticationError: refused key *** signature=***"
        assert len(lines[1]) < 500 and lines[1].endswith("...")
        assert lines[2] == "bastion-balance: bare failed: TransportError"

    def test_missing_rate_says_what_to_pass(self) -> None:
        error = bb.MissingRateError("euro: no USD rate for EUR: pass rates={'EUR': ...}", currency="EUR")
        pf = portfolio(balance("euro", "1", "1", "EUR"), errors={"euro": error})
        (line,) = cli.failure_lines(pf)
        assert line.startswith("bastion-balance: euro not counted: MissingRateError: no USD rate for EUR:")
        assert "--rate EUR=X" in line and "[rates]" in line and "--live-rates" in line
        (live,) = cli.failure_lines(pf, live=True)
        assert "the rate source does not quote it; value it with --rate EUR=X instead of --live-rates" in live
        failed = bb.MissingRateError(
            "euro: no USD rate for EUR: the rate source 'kraken' failed: boom", currency="EUR"
        )
        failed.__cause__ = bb.TransportError("boom")
        (cause,) = cli.failure_lines(
            portfolio(balance("euro", "1", "1", "EUR"), errors={"euro": failed}), live=True
        )
        assert cause.endswith("the rate source 'kraken' failed: boom")


def drive(flow: object) -> object:
    """Run a flow that sends nothing to its end; its return value."""
    try:
        next(flow)  # type: ignore[call-overload]
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the flow yielded an effect")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestSpinners:
    def test_board_follows_each_attempt(self) -> None:
        """waiting -> fetching -> (failed attempt) -> attempt 2 -> done, per account."""
        ticks: Iterator[float] = iter([0.0, 0.5, 1.0, 2.5])
        providers = [FakeProvider(label="a"), FakeProvider(label="b")]
        board = cli.Board(providers, clock=lambda: next(ticks))
        assert [line[2] for line in board.lines()] == ["waiting", "waiting"]
        board.started("a")
        board.ended("a", bb.TransportError("x"))
        assert board.lines()[0] == ("a", "fake", "TransportError in 0.5s", False)
        board.started("a")
        assert board.lines()[0] == ("a", "fake", "attempt 2", None)
        board.started("b")
        assert board.lines()[1] == ("b", "fake", "fetching", None)
        board.ended("a", None)
        assert board.lines()[0] == ("a", "fake", "done in 2.5s", True)

    def test_tracked_reports_and_passes_through(self) -> None:
        """A tracked provider's flow gives the provider's balance, or raises its error, and reports both."""
        ok, bad = (
            FakeProvider(label="ok", total=Decimal(7)),
            FakeProvider(label="bad", error=bb.TransportError("no")),
        )
        board = cli.Board([ok, bad])
        good = cli.Tracked(ok, board)
        assert (good.label, good.venue) == ("ok", "fake")
        assert drive(good.balance_flow()).total == Decimal(7)  # type: ignore[attr-defined]
        with pytest.raises(bb.TransportError):
            drive(cli.Tracked(bad, board).balance_flow())
        states = {line[0]: line[3] for line in board.lines()}
        assert states == {"ok": True, "bad": False}
        assert isinstance(good, bb.BalanceProvider)

    def test_live_spinners_on_a_terminal(self) -> None:
        """On a terminal the fetch shows a line per account (rich Live on stderr), then clears it."""
        providers = [
            FakeProvider(label="alpha"),
            FakeProvider(label="beta", error=bb.AuthenticationError("beta: no")),
        ]
        err = FakeTTY()
        with cli._progress(providers, True, err) as tracked:
            pf = bb.aggregate(tracked, timeout=5)
        screen = ANSI.sub("", err.getvalue())
        assert "alpha" in screen and "beta" in screen and "✓" in screen and "✗" in screen
        assert "AuthenticationError" in screen
        assert set(pf.balances) == {"alpha"} and set(pf.errors) == {"beta"}

    def test_one_line_when_not_a_terminal(self) -> None:
        err = io.StringIO()
        providers = [FakeProvider(label="a")]
        with cli._progress(providers, False, err) as same:
            assert same is providers
        assert err.getvalue() == "fetching 1 account...\n"
