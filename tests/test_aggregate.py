"""aggregate(): exact totals, rates, partial failure, labels, and the output shapes."""

from __future__ import annotations

import asyncio
import decimal
import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance._aggregate import build_portfolio, normalize_rates
from bastion_balance.testing import FakeProvider

amounts = st.decimals(allow_nan=False, allow_infinity=False, places=18, min_value=-(10**15), max_value=10**15)
currencies = st.sampled_from(["USD", "USDT", "USDC"])
fakes = st.lists(st.tuples(amounts, amounts, currencies), min_size=0, max_size=8)


def providers_for(rows: list[tuple[Decimal, Decimal, str]]) -> list[FakeProvider]:
    return [
        FakeProvider(label=f"acct{i}", total=t, available=a, currency=c) for i, (t, a, c) in enumerate(rows)
    ]


class TestTotals:
    @given(fakes, st.randoms())
    def test_order_independent_and_exact(self, rows: list[tuple[Decimal, Decimal, str]], rnd: object) -> None:
        """The totals equal the exact sums of the balances, whatever order they come in."""
        providers = providers_for(rows)
        shuffled = list(providers)
        rnd.shuffle(shuffled)  # type: ignore[attr-defined]
        one = bb.aggregate(providers)
        two = bb.aggregate(shuffled)
        with decimal.localcontext(decimal.Context(prec=10_000)):
            totals = sum((t for t, _, _ in rows), Decimal(0)), sum((a for _, a, _ in rows), Decimal(0))
        assert (one.total_usd, one.available_margin_usd) == totals
        assert (two.total_usd, two.available_margin_usd) == totals
        assert one.complete

    @given(fakes)
    def test_to_bastion_json_reparses_to_same_decimals(
        self, rows: list[tuple[Decimal, Decimal, str]]
    ) -> None:
        """to_bastion() written with dumps() parses back to the same Decimals, every digit."""
        portfolio = bb.aggregate(providers_for(rows))
        shape = portfolio.to_bastion()
        again = json.loads(bb.dumps(shape), parse_float=Decimal, parse_int=Decimal)
        assert set(again) == {"total_usd", "available_margin_usd", "exchanges"}
        assert again["total_usd"] == shape["total_usd"]
        assert again["available_margin_usd"] == shape["available_margin_usd"]
        assert again["exchanges"] == shape["exchanges"]

    def test_seed_000_example(self) -> None:
        """The Bastion seed example: 32000 + 20340 = 52340 and 18500 + 12700 = 31200."""
        portfolio = bb.aggregate(
            [
                FakeProvider(
                    label="binance", total=Decimal(32000), available=Decimal(18500), currency="USDT"
                ),
                FakeProvider(label="bybit", total=Decimal(20340), available=Decimal(12700)),
            ]
        )
        assert portfolio.to_bastion() == {
            "total_usd": 52340,
            "available_margin_usd": 31200,
            "exchanges": {
                "binance": {"total": 32000, "available": 18500},
                "bybit": {"total": 20340, "available": 12700},
            },
        }
        assert bb.dumps(portfolio.to_bastion()) == (
            '{"total_usd": 52340, "available_margin_usd": 31200, "exchanges": {"binance": '
            '{"total": 32000, "available": 18500}, "bybit": {"total": 20340, "available": 12700}}}'
        )

    def test_digits_preserved_in_json(self) -> None:
        """Trailing zeros and 18 decimals survive to the JSON text."""
        portfolio = bb.aggregate([FakeProvider(label="a", total=Decimal("1.000000000000000010"))])
        assert '"total_usd": 1.000000000000000010' in portfolio.to_json()

    def test_empty(self) -> None:
        """No providers: zero totals, complete, nothing in exchanges, and a warning saying so."""
        portfolio = bb.aggregate([])
        assert (portfolio.total_usd, portfolio.complete, portfolio.to_bastion()["exchanges"]) == (0, True, {})
        assert portfolio.warnings == ("no accounts were given",)


class TestRates:
    def test_rate_applied_and_recorded(self) -> None:
        """A caller's rate converts a balance, and the Portfolio records the rate used."""
        portfolio = bb.aggregate(
            [FakeProvider(label="eur", total=Decimal("100"), available=Decimal("50"), currency="EUR")],
            rates={"EUR": Decimal("1.08")},
        )
        assert portfolio.total_usd == Decimal("108.00")
        assert portfolio.available_margin_usd == Decimal("54.00")
        assert portfolio.rates == {"EUR": Decimal("1.08")}

    def test_missing_rate_reported_not_dropped(self) -> None:
        """A currency without a rate stays in balances, leaves the totals, and is in errors."""
        portfolio = bb.aggregate(
            [
                FakeProvider(label="btc", total=Decimal("2"), currency="BTC"),
                FakeProvider(label="usd", total=Decimal("10")),
            ]
        )
        assert "btc" in portfolio.balances
        assert isinstance(portfolio.errors["btc"], bb.MissingRateError)
        assert portfolio.errors["btc"].currency == "BTC"  # type: ignore[attr-defined]
        assert portfolio.total_usd == 10
        assert not portfolio.complete
        assert "btc" not in portfolio.to_bastion()["exchanges"]

    def test_override_stablecoin(self) -> None:
        """Callers may override a default rate."""
        portfolio = bb.aggregate(
            [FakeProvider(label="t", total=Decimal("1000"), currency="USDT")], rates={"USDT": "0.999"}
        )
        assert portfolio.total_usd == Decimal("999.000")

    @pytest.mark.parametrize(
        "rates",
        [{"EUR": 1.08}, {"EUR": "abc"}, {"EUR": Decimal(0)}, {"EUR": Decimal(-1)}, {"": 1}, [("EUR", 1)]],
    )
    def test_bad_rates(self, rates: object) -> None:
        """Float, non-numeric, non-positive rates and non-mappings are ConfigurationError."""
        with pytest.raises(bb.ConfigurationError):
            normalize_rates(rates)  # type: ignore[arg-type]


class TestPartialFailure:
    def test_one_provider_raising(self) -> None:
        """One venue failing: complete False, its error under its label, the others summed."""
        boom = bb.ServiceUnavailableError("down", venue="fake")
        portfolio = bb.aggregate(
            [
                FakeProvider(label="ok1", total=Decimal("1.5"), available=Decimal("1")),
                FakeProvider(label="bad", error=boom),
                FakeProvider(label="ok2", total=Decimal("2.5"), available=Decimal("2")),
            ],
            client=bb.BalanceClient(retry=bb.NO_RETRY),
        )
        assert not portfolio.complete
        assert portfolio.errors == {"bad": boom}
        assert str(boom) == "bad: down" and boom.label == "bad"  # named after its account
        assert (portfolio.total_usd, portfolio.available_margin_usd) == (Decimal(4), Decimal(3))
        assert set(portfolio.to_bastion()["exchanges"]) == {"ok1", "ok2"}
        assert portfolio.to_dict()["errors"] == {
            "bad": {"type": "ServiceUnavailableError", "message": "bad: down"}
        }

    def test_strict_raises_group(self) -> None:
        """strict=True raises an AggregateError (an ExceptionGroup) holding every failure."""
        boom = bb.AuthenticationError("no", venue="fake")
        with pytest.raises(bb.AggregateError) as info:
            bb.aggregate([FakeProvider(label="bad", error=boom), FakeProvider(label="ok")], strict=True)
        assert isinstance(info.value, ExceptionGroup)
        assert info.value.exceptions == (boom,)
        assert info.value.errors == {"bad": boom}
        assert str(info.value) == "1 of 2 accounts failed: bad (1 sub-exception)"

    def test_async_twin(self) -> None:
        """aaggregate gives the same portfolio as aggregate."""
        providers = [
            FakeProvider(label="a", total=Decimal(1)),
            FakeProvider(label="b", error=ValueError("x")),
        ]
        portfolio = asyncio.run(bb.aaggregate(providers))
        assert portfolio.total_usd == 1
        assert isinstance(portfolio.errors["b"], ValueError)

    def test_duplicate_labels(self) -> None:
        """Two accounts with one label are a ConfigurationError before anything is fetched."""
        with pytest.raises(bb.ConfigurationError, match="label"):
            bb.aggregate([FakeProvider(label="x"), FakeProvider(label="x")])

    @pytest.mark.parametrize("label", ["", None, 3])
    def test_unusable_label(self, label: object) -> None:
        """Empty or non-string labels are refused."""
        with pytest.raises(bb.ConfigurationError):
            bb.aggregate([FakeProvider(label=label)])  # type: ignore[arg-type]

    def test_not_a_provider(self) -> None:
        """Objects that do not fit BalanceProvider are refused with a clear message."""
        with pytest.raises(bb.ConfigurationError, match="BalanceProvider"):
            bb.aggregate([object()])  # type: ignore[list-item]

    def test_uncounted_becomes_warning(self) -> None:
        """A balance whose venue totals leave out currencies warns in the Portfolio."""
        portfolio = bb.aggregate([FakeProvider(label="b", uncounted=("BTC", "USDC"))])
        assert portfolio.warnings == ("b: the venue's totals leave out BTC, USDC (see its breakdown)",)


class TestModels:
    def test_fetched_at_must_be_aware_utc(self) -> None:
        """A naive or non-UTC fetched_at is refused."""
        for when in (datetime(2026, 1, 1), datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1)))):  # noqa: DTZ001
            with pytest.raises(ValueError, match="UTC"):
                build_portfolio({}, {}, strict=False, fetched_at=when)

    def test_balance_refuses_float(self) -> None:
        """Balance fields take Decimal only."""
        with pytest.raises(TypeError):
            bb.Balance(
                label="a",
                exchange="x",
                currency="USD",
                total=1.0,
                available=Decimal(1),  # type: ignore[arg-type]
                fetched_at=datetime.now(UTC),
            )

    def test_raw_out_of_eq_and_repr(self) -> None:
        """raw is kept but neither compared nor shown."""
        now = datetime.now(UTC)
        one = bb.Balance(
            label="a",
            exchange="x",
            currency="USD",
            total=Decimal(1),
            available=Decimal(1),
            fetched_at=now,
            raw={"secret": "payload"},
        )
        two = bb.Balance(
            label="a",
            exchange="x",
            currency="USD",
            total=Decimal(1),
            available=Decimal(1),
            fetched_at=now,
            raw=None,
        )
        assert one == two
        assert "payload" not in repr(one)

    def test_mappings_are_read_only(self) -> None:
        """breakdown and extra cannot be changed after the fact."""
        balance = bb.Balance(
            label="a",
            exchange="x",
            currency="USD",
            total=Decimal(1),
            available=Decimal(1),
            fetched_at=datetime.now(UTC),
            extra={"eb": Decimal(2)},
        )
        with pytest.raises(TypeError):
            balance.extra["eb"] = Decimal(3)  # type: ignore[index]

    def test_portfolio_pickles_and_copies(self) -> None:
        """A Portfolio (balances, errors, read-only mappings) survives pickle and deepcopy."""
        import copy

        portfolio = bb.aggregate(
            [
                FakeProvider(label="a", total=Decimal("1.50"), breakdown={"x": bb.Holding(currency="BTC")}),
                FakeProvider(label="b", error=bb.AuthenticationError("no", venue="v", code=7)),
            ]
        )
        for again in (pickle.loads(pickle.dumps(portfolio)), copy.deepcopy(portfolio)):  # noqa: S301
            assert again.balances == portfolio.balances
            assert again.total_usd == Decimal("1.50")
            assert again.errors["b"].code == 7  # type: ignore[attr-defined]
            with pytest.raises(TypeError, match="read-only"):
                again.balances["a"].breakdown.pop("x")  # type: ignore[attr-defined]

    def test_dumps_refuses_floats_and_unknowns(self) -> None:
        """dumps writes Decimals as numbers and refuses floats and unknown objects."""
        assert bb.dumps({"a": [Decimal("1.10"), None, True, "é"]}, indent=1) == (
            '{\n "a": [\n  1.10,\n  null,\n  true,\n  "é"\n ]\n}'
        )
        with pytest.raises(bb.ConfigurationError, match="float"):
            bb.dumps({"a": 1.5})
        with pytest.raises(bb.ConfigurationError, match="type object"):
            bb.dumps({"a": object()})
        with pytest.raises(bb.ConfigurationError, match="no number for"):
            bb.dumps(Decimal("NaN"))

    def test_dumps_portfolio_and_balance(self) -> None:
        """dumps accepts a Portfolio or a Balance directly."""
        portfolio = bb.aggregate([FakeProvider(label="a", total=Decimal("3.30"))])
        assert json.loads(bb.dumps(portfolio))["total_usd"] == 3.3
        assert json.loads(bb.dumps(portfolio.balances["a"]))["total"] == 3.3
        assert json.loads(portfolio.to_json(indent=2))["complete"] is True


class TestExceptions:
    @pytest.mark.parametrize(
        "exc",
        [
            bb.ExchangeAPIError("x", venue="kraken", code="EAPI:Invalid key", status_code=200),
            bb.RateLimitedError("slow", venue="bybit", code=10006, retry_after=1.5, transient=False),
            bb.UnexpectedResponseError("bad", venue="v", field="$.a", value="NaN"),
            bb.MissingRateError("no rate", currency="BTC"),
            bb.DeadlineExceededError("late", venue="v"),
        ],
    )
    def test_pickle_round_trip(self, exc: bb.BastionBalanceError) -> None:
        """Exceptions pickle with their attributes (to cross process pools)."""
        again = pickle.loads(pickle.dumps(exc))  # noqa: S301  # our own data
        assert type(again) is type(exc)
        assert again.args == exc.args
        assert vars(again) == vars(exc)
        assert again.message == exc.message

    def test_tree(self) -> None:
        """The tree of docs/decisions.md §12."""
        assert issubclass(bb.DeadlineExceededError, bb.TransportError)
        assert issubclass(bb.ResponseTooLargeError, bb.UnexpectedResponseError)
        for cls in (bb.AuthenticationError, bb.RateLimitedError, bb.ServiceUnavailableError):
            assert issubclass(cls, bb.ExchangeAPIError)
        assert not bb.DeadlineExceededError("x").transient
        assert bb.TransportError("x").transient
