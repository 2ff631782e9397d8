"""Type checks of valuation: what ``rates=`` accepts, and what a Portfolio says of its rates."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import assert_type

import bastion_balance as bb
from bastion_balance.provider_kit import RateFlow


class DeskRates:
    """A rate source of one's own: a name and a flow (no base class needed)."""

    name = "desk"

    def rates_flow(self, currencies: frozenset[str]) -> RateFlow:
        return {c: Decimal(1) for c in currencies}
        yield  # a generator


def checks(kraken: bb.Kraken) -> None:
    bb.aggregate([kraken], rates={"EUR": "1.08", "GBP": Decimal("1.26"), "JPY": 1})
    bb.aggregate([kraken], rates=bb.KrakenRates(max_age=30, pairs={"AUD": "AUDUSD"}))
    portfolio = bb.aggregate([kraken], rates=DeskRates())
    rate = portfolio.rate_sources["EUR"]
    assert_type(rate, bb.Rate)
    assert_type(rate.value, Decimal)
    assert_type(rate.source, str)
    assert_type(rate.at, datetime | None)
    assert_type(rate.assumed, bool)
    source: bb.RateSource = bb.KrakenRates()
    assert_type(source.name, str)


async def async_checks(kraken: bb.Kraken) -> None:
    await bb.aaggregate([kraken], rates=bb.KrakenRates())
    async with bb.AsyncBalanceClient() as client:
        await client.aggregate([kraken], rates={"usdt": "0.9998"})
