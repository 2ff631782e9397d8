"""The decimal normalizer: what becomes a Decimal, what is refused, and exact sums."""

from __future__ import annotations

import decimal
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance._decimal import AmountError, exact_mul, exact_sum, loads, parse_amount, to_decimal

# Decimal strings in the accepted plain form: sign, digits, optional fraction, optional exponent.
digits = st.text("0123456789", min_size=1, max_size=30)
plain_numbers = st.builds(
    lambda sign, whole, frac, exp: f"{sign}{whole}{frac}{exp}",
    st.sampled_from(["", "-", "+"]),
    digits,
    st.one_of(st.just(""), digits.map(lambda d: "." + d)),
    st.one_of(st.just(""), st.integers(-60, 60).map(lambda e: f"e{e}")),
)
exact_decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: len(d.as_tuple().digits) <= 60 and -60 <= d.adjusted() <= 60
)


class TestParseAmount:
    @given(plain_numbers)
    def test_valid_strings_round_trip_exactly(self, text: str) -> None:
        """Any plain decimal string becomes the Decimal of exactly that text."""
        assert parse_amount(text, venue="v", field="f") == Decimal(text)

    @given(exact_decimals)
    def test_decimal_text_round_trips(self, value: Decimal) -> None:
        """str(Decimal) parses back to the same value (compared by value)."""
        assert parse_amount(str(value), venue="v", field="f") == value

    @given(st.integers(-(10**50), 10**50))
    def test_integers_are_exact(self, value: int) -> None:
        """JSON integers become exact Decimals."""
        assert to_decimal(value) == value

    @pytest.mark.parametrize(
        "value",
        [
            "NaN",
            "nan",
            "Infinity",
            "-Infinity",
            "inf",
            "",
            " 1",
            "1 ",
            "1_0",
            "0x10",
            "1e",
            "e5",
            ".",
            "+",
            "1.2.3",
            "١٢",
            "1e99999",
            "--1",
            "1,5",
            True,
            False,
            0.1,
            1.0,
            None,
            [],
            {},
            b"1",
        ],
    )
    def test_invalid_forms_refused_with_context(self, value: object) -> None:
        """NaN, Infinity, empty, whitespace, underscores, floats, bools... are refused, named."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            parse_amount(value, venue="kraken", field="result.e")
        assert info.value.venue == "kraken"
        assert info.value.field == "result.e"
        assert "kraken" in str(info.value)
        assert "result.e" in str(info.value)

    @given(st.floats(allow_nan=True, allow_infinity=True))
    def test_floats_always_refused(self, value: float) -> None:
        """A binary float is never money, whatever its value."""
        with pytest.raises(bb.UnexpectedResponseError, match="float"):
            parse_amount(value, venue="v", field="f")

    @pytest.mark.parametrize("value", ["1" * 101, "1e101", "1e-101", 10**102, Decimal("1e999999"), "0e-500"])
    def test_out_of_range_refused(self, value: object) -> None:
        """More than 100 significant digits, or an exponent past ±100, is refused."""
        with pytest.raises(bb.UnexpectedResponseError):
            parse_amount(value, venue="v", field="f")

    @pytest.mark.parametrize(
        "value", ["1" * 100, "1" + "0" * 100, "1e100", "1e-100", "0.000", "-0", "1" + "0" * 150 + "e-100"]
    )
    def test_edges_accepted(self, value: str) -> None:
        """The limits themselves are accepted; trailing zeros are not significant."""
        assert parse_amount(value, venue="v", field="f") == Decimal(value)

    def test_long_value_shortened_in_message(self) -> None:
        """A huge offending value is shortened in the error, not copied whole."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            parse_amount("x" * 10_000, venue="v", field="f")
        assert len(str(info.value)) < 400


class TestLoads:
    def test_numbers_become_decimal(self) -> None:
        """Floats and integers in JSON decode to exact Decimals."""
        assert loads(b'{"a": 0.1, "b": 7, "c": "0.1"}', venue="v") == {
            "a": Decimal("0.1"),
            "b": Decimal(7),
            "c": "0.1",
        }

    @pytest.mark.parametrize("body", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}'])
    def test_constants_refused(self, body: bytes) -> None:
        """NaN and Infinity literals are refused."""
        with pytest.raises(bb.UnexpectedResponseError, match="NaN or Infinity"):
            loads(body, venue="v")

    @pytest.mark.parametrize(
        "body", [b"<html>", b"", b"{", "\ud800".encode("utf-8", "surrogatepass"), "[" * 100_000]
    )
    def test_not_json(self, body: bytes | str) -> None:
        """Bodies that are not JSON are UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError, match="not JSON"):
            loads(body, venue="v")


class TestExactSums:
    @given(st.lists(exact_decimals, max_size=30))
    def test_sum_is_exact_and_order_independent(self, values: list[Decimal]) -> None:
        """exact_sum equals the mathematically exact sum in any order."""
        forward = exact_sum(values)
        assert forward == exact_sum(reversed(values))
        with decimal.localcontext(decimal.Context(prec=10_000)):
            assert forward == sum(values, Decimal(0))

    def test_eighteen_decimals_and_huge_integers(self) -> None:
        """An 18-decimal amount plus a very large integer balance keeps every digit."""
        total = exact_sum([Decimal("0.000000000000000001"), Decimal(10**60)])
        assert str(total) == "1" + "0" * 59 + "0.000000000000000001"

    def test_rounding_is_loud(self) -> None:
        """A result needing more than 1,000 digits raises instead of rounding."""
        with pytest.raises(decimal.Inexact):
            exact_sum([Decimal("1e900"), Decimal("1e-900")])
        with pytest.raises(decimal.Inexact):
            exact_mul(Decimal("1." + "1" * 600), Decimal("1." + "1" * 600))


def _reference(value: object) -> Decimal | None:
    """The money rules written out plainly (no fast path, no cache): the Decimal, or None if refused."""
    if isinstance(value, str):
        if not re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?", value):
            return None
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        return None
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    significant = "".join(map(str, digits)).strip("0")
    scale = value.adjusted() if significant else exponent
    if len(significant) > 100 or not -100 <= scale <= 100:
        return None
    return value


_PLAINISH = st.from_regex(r"\A[+-]?([0-9]{0,120}(\.[0-9]{0,120})?|\.[0-9]{1,120})([eE][+-]?[0-9]{1,4})?\Z")


class TestFastPaths:
    """The cached plain-string path and the short-Decimal path give exactly what the rules give."""

    @given(st.one_of(_PLAINISH, st.decimals(allow_nan=True, allow_infinity=True), st.text(max_size=12)))
    def test_same_as_the_rules(self, value: str | Decimal) -> None:
        expected = _reference(value)
        for _ in range(2):  # the second call may come from the cache
            if expected is None:
                with pytest.raises(AmountError):
                    to_decimal(value)
            else:
                got = to_decimal(value)
                assert got.as_tuple() == expected.as_tuple()  # same digits and exponent: 1.0 is not 1.00

    def test_equal_values_keep_their_own_digits(self) -> None:
        """The cache is keyed by the text: "1.0" and "1.00" stay distinct Decimals."""
        assert str(to_decimal("1.0")) == "1.0"
        assert str(to_decimal("1.00")) == "1.00"
        assert str(to_decimal("1.0")) == "1.0"

    def test_a_str_subclass_takes_the_full_checks(self) -> None:
        class Text(str):
            __slots__ = ()

        assert to_decimal(Text("12.5")) == Decimal("12.5")
        with pytest.raises(AmountError):
            to_decimal(Text("1_0"))
