"""Errors for many accounts: AggregateError, and bad input refused with what to pass instead."""

from __future__ import annotations

import asyncio
import copy
import pickle
from datetime import UTC, datetime
from decimal import Decimal

import pytest

import bastion_balance as bb
from bastion_balance import exceptions
from bastion_balance._aggregate import NO_ACCOUNTS, build_portfolio, check_providers, normalize_rates
from bastion_balance.testing import FakeProvider

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def failing_aggregate() -> bb.AggregateError:
    """strict=True over two good accounts, two transport failures and one refusal."""
    providers = [
        FakeProvider(label="ok1", total=Decimal("1.50")),
        FakeProvider(label="net1", error=bb.TransportError("net1: reset", venue="fake")),
        FakeProvider(label="auth", error=bb.AuthenticationError("auth: bad key", venue="fake", code=7)),
        FakeProvider(label="net2", error=bb.DeadlineExceededError("net2: late", venue="fake")),
        FakeProvider(label="ok2", total=Decimal("2.25")),
    ]
    with pytest.raises(bb.AggregateError) as info:
        bb.aggregate(providers, strict=True, client=bb.BalanceClient(retry=bb.NO_RETRY))
    return info.value


class TestAggregateError:
    def test_is_both_a_group_and_a_library_error(self) -> None:
        """One class under both roots, exported at the top and in the exceptions module."""
        assert issubclass(bb.AggregateError, ExceptionGroup)
        assert issubclass(bb.AggregateError, bb.BastionBalanceError)
        assert bb.AggregateError is exceptions.AggregateError
        assert "AggregateError" in exceptions.__all__
        assert "AggregateError" in bb.__all__
        assert "AggregateError" in (exceptions.__doc__ or "")

    def test_message_errors_and_partial_portfolio(self) -> None:
        """The message names the failed labels; errors and the partial Portfolio lose nothing."""
        exc = failing_aggregate()
        assert exc.message == "3 of 5 accounts failed: auth, net1, net2"
        assert set(exc.errors) == {"net1", "auth", "net2"}
        assert list(exc.exceptions) == list(exc.errors.values())
        assert exc.venue is None
        assert not exc.transient
        assert exc.portfolio is not None
        assert set(exc.portfolio.balances) == {"ok1", "ok2"}
        assert exc.portfolio.total_usd == Decimal("3.75")
        assert exc.portfolio.errors == exc.errors
        assert not exc.portfolio.complete

    def test_caught_as_library_error(self) -> None:
        """``except bb.BastionBalanceError`` catches the whole group."""
        try:
            raise failing_aggregate()
        except bb.BastionBalanceError as exc:
            caught: BaseException = exc
        assert isinstance(caught, bb.AggregateError)
        assert len(caught.exceptions) == 3

    def test_except_star_keeps_the_type(self) -> None:
        """``except* TransportError`` gets an AggregateError of the transport failures only."""
        seen: list[BaseException] = []

        def handle_transport_failures() -> None:
            try:
                raise failing_aggregate()
            except* bb.TransportError as group:
                seen.append(group)

        with pytest.raises(bb.AggregateError) as rest:
            handle_transport_failures()
        (transport,) = seen
        assert isinstance(transport, bb.AggregateError)
        assert set(transport.errors) == {"net1", "net2"}
        assert transport.portfolio is not None and transport.portfolio.total_usd == Decimal("3.75")
        assert set(rest.value.errors) == {"auth"}
        assert [type(e) for e in rest.value.exceptions] == [bb.AuthenticationError]

    def test_split_and_subgroup(self) -> None:
        """split() and subgroup() derive AggregateErrors whose errors follow their exceptions."""
        exc = failing_aggregate()
        match, rest = exc.split(bb.TransportError)
        assert isinstance(match, bb.AggregateError) and isinstance(rest, bb.AggregateError)
        assert set(match.errors) == {"net1", "net2"} and set(rest.errors) == {"auth"}
        assert match.message == rest.message == exc.message
        sub = exc.subgroup(lambda e: isinstance(e, bb.DeadlineExceededError))
        assert isinstance(sub, bb.AggregateError)
        assert set(sub.errors) == {"net2"}
        assert exc.subgroup(bb.RateLimitedError) is None

    def test_pickle_and_copy_round_trip(self) -> None:
        """The group pickles (to cross process pools) with its errors and partial Portfolio."""
        exc = failing_aggregate()
        for again in (pickle.loads(pickle.dumps(exc)), copy.copy(exc)):  # noqa: S301  # our own data
            assert type(again) is bb.AggregateError
            assert again.message == exc.message
            assert [type(e) for e in again.exceptions] == [type(e) for e in exc.exceptions]
            assert {k: str(v) for k, v in again.errors.items()} == {k: str(v) for k, v in exc.errors.items()}
            assert again.errors["auth"].code == 7  # type: ignore[attr-defined]
            assert again.portfolio is not None and again.portfolio.total_usd == Decimal("3.75")
            assert set(again.portfolio.balances) == {"ok1", "ok2"}

    def test_direct_construction(self) -> None:
        """Built by hand it needs only a message and exceptions, like ExceptionGroup."""
        exc = bb.AggregateError("1 of 1 accounts failed: a", [ValueError("x")])
        assert exc.errors == {} and exc.portfolio is None
        assert str(exc) == "1 of 1 accounts failed: a (1 sub-exception)"
        again = pickle.loads(pickle.dumps(exc))  # noqa: S301  # our own data
        assert (type(again), again.message, again.errors) == (bb.AggregateError, exc.message, {})

    def test_async_strict(self) -> None:
        """aaggregate(strict=True) raises the same AggregateError."""
        providers = [
            FakeProvider(label="a", total=Decimal(1)),
            FakeProvider(label="b", error=ValueError("x")),
        ]

        async def go() -> None:
            await bb.aaggregate(providers, strict=True)

        with pytest.raises(bb.AggregateError) as info:
            asyncio.run(go())
        assert info.value.message == "1 of 2 accounts failed: b"
        assert isinstance(info.value.errors["b"], ValueError)
        assert info.value.portfolio is not None and info.value.portfolio.total_usd == 1

    def test_strict_without_failures_returns(self) -> None:
        """strict=True with nothing failed returns the Portfolio."""
        portfolio = build_portfolio({}, normalize_rates(None).fixed, strict=True, fetched_at=NOW)
        assert portfolio.complete


class TestServiceUnavailableRetryAfter:
    def test_default_and_pickle(self) -> None:
        """retry_after is keyword-only, None by default, and survives pickling."""
        assert bb.ServiceUnavailableError("down").retry_after is None
        exc = bb.ServiceUnavailableError("down", venue="v", code=503, status_code=503, retry_after=2.0)
        again = pickle.loads(pickle.dumps(exc))  # noqa: S301  # our own data
        assert type(again) is bb.ServiceUnavailableError
        assert vars(again) == vars(exc)
        assert again.retry_after == 2.0
        assert again.transient


class TestCheckProviders:
    def test_list_and_iterables_pass(self) -> None:
        """A list, tuple or generator of providers comes back as a list, in order."""
        a, b = FakeProvider(label="a"), FakeProvider(label="b")
        assert check_providers([a, b]) == [a, b]
        assert check_providers((a, b)) == [a, b]
        assert check_providers(p for p in (a, b)) == [a, b]
        assert check_providers([]) == []

    def test_single_provider(self) -> None:
        """One provider instead of a list says to wrap it in a list."""
        with pytest.raises(bb.ConfigurationError) as info:
            check_providers(FakeProvider(label="main", venue="kraken"))
        assert str(info.value) == (
            "aggregate() takes a list of providers, not one provider: e.g. aggregate([kraken])"
        )
        with pytest.raises(bb.ConfigurationError, match=r"aaggregate\(\[provider\]\)"):
            check_providers(FakeProvider(label="main", venue="polymarket-us"), function="aaggregate")

    @pytest.mark.parametrize("value", ["kraken", b"kraken", bytearray(b"k")])
    def test_strings_refused_without_echo(self, value: object) -> None:
        """A string is not a list of providers, and its text (maybe a key) is never echoed."""
        with pytest.raises(bb.ConfigurationError, match="build the provider first") as info:
            check_providers(value)
        assert "kraken" not in str(info.value).split("e.g.")[0]

    def test_mapping_refused(self) -> None:
        """A dict of providers says to pass its values."""
        with pytest.raises(bb.ConfigurationError, match=r"list\(accounts.values\(\)\)"):
            check_providers({"a": FakeProvider(label="a")})

    @pytest.mark.parametrize("value", [None, 3, object()])
    def test_not_iterable(self, value: object) -> None:
        """Something that is not iterable is refused with an example."""
        with pytest.raises(bb.ConfigurationError, match=r"takes a list of providers, got"):
            check_providers(value)

    def test_items_must_be_providers(self) -> None:
        """An item that is not a BalanceProvider gets the client's message, unchanged."""
        item = object()
        with pytest.raises(bb.ConfigurationError) as info:
            check_providers([FakeProvider(label="a"), item])
        assert str(info.value) == f"{item!r} is not a BalanceProvider (needs label, venue, balance_flow())"

    def test_labels_checked(self) -> None:
        """Duplicate and empty labels are refused, as check_labels does."""
        with pytest.raises(bb.ConfigurationError, match="share the label 'x'"):
            check_providers([FakeProvider(label="x"), FakeProvider(label="x")])
        with pytest.raises(bb.ConfigurationError, match="no usable label"):
            check_providers([FakeProvider(label="")])


class TestRateKeys:
    def test_lower_case_key_applies(self) -> None:
        """rates={"eur": ...} values a balance in EUR (keys are upper-cased)."""
        portfolio = bb.aggregate(
            [FakeProvider(label="e", total=Decimal(100), currency="EUR")], rates={"eur": Decimal("1.08")}
        )
        assert portfolio.complete
        assert portfolio.total_usd == Decimal("108.00")
        assert portfolio.rates == {"EUR": Decimal("1.08")}

    def test_lower_case_overrides_default(self) -> None:
        """A lower-case key overrides the default of its currency."""
        assert normalize_rates({"usdt": "0.999"}).table["USDT"] == Decimal("0.999")

    @pytest.mark.parametrize("rates", [{"usd": 1, "USD": 2}, {"Eur": 1, "eUR": 1}])
    def test_colliding_keys(self, rates: dict[str, object]) -> None:
        """Two keys naming one currency are refused, naming both."""
        first, second = rates
        with pytest.raises(bb.ConfigurationError, match="name one currency") as info:
            normalize_rates(rates)
        assert repr(first) in str(info.value) and repr(second) in str(info.value)

    @pytest.mark.parametrize("key", ["", " EUR", "EUR ", "E UR", "EUR\n", 3])
    def test_bad_keys(self, key: object) -> None:
        """Empty keys, keys with whitespace and non-strings are refused (nothing is stripped)."""
        with pytest.raises(bb.ConfigurationError, match="currency codes such as 'EUR'"):
            normalize_rates({key: 1})  # type: ignore[dict-item]


class TestEmpty:
    def test_no_results_warns(self) -> None:
        """No accounts: a complete Portfolio with total 0 that says no account was given."""
        portfolio = build_portfolio({}, normalize_rates(None).fixed, strict=False, fetched_at=NOW)
        assert (portfolio.total_usd, portfolio.available_margin_usd) == (0, 0)
        assert portfolio.complete
        assert portfolio.warnings == (NO_ACCOUNTS,) == ("no accounts were given",)

    def test_some_results_do_not_warn(self) -> None:
        """The warning is only for an empty aggregate."""
        portfolio = bb.aggregate([FakeProvider(label="a")])
        assert portfolio.warnings == ()


class TestDumps:
    @pytest.mark.parametrize(
        ("value", "where", "hint"),
        [
            ({"a": [Decimal(1), {"b": 1.5}]}, "$.a[1].b", "pass Decimal('1.5')"),
            (0.1, "$", "pass Decimal('0.1')"),
            ({"x": float("nan")}, "$.x", "finite Decimal or None"),
            ({"x": Decimal("NaN")}, "$.x", "finite Decimal or None"),
            ([Decimal("sNaN")], "$[0]", "finite Decimal or None"),
            ({"x": (Decimal("-Infinity"),)}, "$.x[0]", "finite Decimal or None"),
            ({"t": NOW}, "$.t", ".isoformat()"),
            ({"s": {1, 2}}, "$.s", "type set"),
            ({"o": object()}, "$.o", "plain data"),
        ],
    )
    def test_unwritable_is_configuration_error(self, value: object, where: str, hint: str) -> None:
        """What dumps cannot write is a ConfigurationError naming where it is and what to pass."""
        with pytest.raises(bb.ConfigurationError) as info:
            bb.dumps(value)
        text = str(info.value)
        assert text.startswith(f"dumps(): {where} ")
        assert hint in text
        assert isinstance(info.value, bb.BastionBalanceError)
        assert info.value.__suppress_context__

    @pytest.mark.parametrize("indent", [-1, 1.5, True, "2"])
    def test_bad_indent(self, indent: object) -> None:
        """indent is None or a whole number of spaces."""
        with pytest.raises(bb.ConfigurationError, match="indent"):
            bb.dumps({}, indent=indent)  # type: ignore[arg-type]

    def test_money_stays_exact(self) -> None:
        """Decimals keep every digit and exponent form; ints, tuples and None are written."""
        assert bb.dumps({"a": Decimal("0.10"), "b": (1, None), "c": Decimal("1E+2")}) == (
            '{"a": 0.10, "b": [1, null], "c": 1E+2}'
        )
