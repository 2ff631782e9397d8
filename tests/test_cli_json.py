"""Zeros and tiny JSON figures in plain notation with every place (``0.00000000``, not ``0E-8``),
as ``bb.dumps`` writes them for ``--json``, ``--bastion`` and the MCP server, down to the bound of
figures; a positive exponent keeps Decimal's own form (``1E+2``) and a hostile ``1E-100000``
stays short (docs/decisions.md §32)."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance import cli

EXPONENT = re.compile(r"[0-9][eE][+-]?[0-9]")


def test_zero_and_tiny_figures_are_plain() -> None:
    assert bb.dumps(Decimal("0E-8")) == "0.00000000"
    assert bb.dumps(Decimal("1E-18")) == "0.000000000000000001"
    assert bb.dumps(Decimal("-0.000")) == "-0.000"
    assert bb.dumps(Decimal("1E+5")) == "1E+5"  # positive exponents: Decimal's own form, exact
    assert bb.dumps({"a": [Decimal("2.50E-3")]}) == '{"a": [0.00250]}'


def test_a_portfolio_of_zeros_from_the_command() -> None:
    """--json of a balance the venue sent as 0E-8: written 0.00000000, read back exact."""
    zero = bb.Balance(
        label="z",
        exchange="fake",
        currency="USD",
        total=Decimal("0E-8"),
        available=Decimal("0E-8"),
        fetched_at=datetime.now(UTC),
    )
    portfolio = bb.Portfolio(balances={"z": zero}, rates={"USD": Decimal(1)}, fetched_at=datetime.now(UTC))
    out = io.StringIO()
    args = cli._fetch_parser(out, out).parse_args(["--json"])
    cli._report(cli.Fetched(portfolio, 1), args, "fetch", environ={}, out=out, err=io.StringIO())
    text = out.getvalue()
    assert '"total": 0.00000000' in text and not EXPONENT.search(text)
    assert (
        json.loads(text, parse_float=Decimal)["balances"]["z"]["total"].as_tuple()
        == Decimal("0E-8").as_tuple()
    )


def test_the_demo_has_no_exponent() -> None:
    out = io.StringIO()
    assert cli.run(["demo", "--json"], environ={}, out=out, err=io.StringIO()) == 0
    assert not EXPONENT.search(out.getvalue())


def test_past_the_bound_exponent_notation_stays_short() -> None:
    assert bb.dumps(Decimal("1E+100000")) == "1E+100000"
    assert bb.dumps(Decimal("1E-100000")) == "1E-100000"
    assert bb.dumps(Decimal("-5E-101")) == "-5E-101"
    assert bb.dumps(Decimal("1E-100")) == "0." + "0" * 99 + "1"


@given(
    st.decimals(allow_nan=False, allow_infinity=False)
    | st.builds(
        lambda digits, exponent: Decimal(digits).scaleb(exponent),
        st.integers(-(10**40), 10**40),
        st.integers(-250, 250),
    )
)
def test_every_digit_and_a_bounded_length(value: Decimal) -> None:
    """Any finite Decimal reads back equal; one with places, down to the bound, is plain and keeps
    every place (trailing zeros included); the text is never much longer than its digits."""
    text = bb.dumps(value)
    back = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    assert back == value
    assert len(text) <= len(value.as_tuple().digits) + 110
    places = value.as_tuple().exponent
    assert isinstance(places, int)
    if places <= 0 and value.adjusted() >= -100:
        assert not EXPONENT.search(text)
        assert back.as_tuple() == value.as_tuple()
    else:
        assert text == str(value)
