"""Type checks of watching: what a bot's main loop sees (checked by mypy --strict, never run)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import assert_type

import bastion_balance as bb


def on_result(event: bb.FetchSucceeded) -> None:
    assert_type(event.label, str)
    assert_type(event.venue, str)
    assert_type(event.attempt, int)
    assert_type(event.latency, float)


async def bot(kraken: bb.Kraken, bybit: bb.Bybit) -> None:
    watcher = bb.watch([kraken, bybit], every=1, rates=bb.KrakenRates(), on_result=on_result)
    assert_type(watcher, bb.AsyncWatcher)
    assert_type(watcher.paces, Mapping[str, float])
    async with watcher:
        async for pf in watcher:
            assert_type(pf, bb.Portfolio)
            assert_type(pf.stale, Mapping[str, float])
            assert_type(pf.fresh_available_margin_usd, Decimal)
            assert_type(pf.fresh_total_usd, Decimal)
            break


def sync_bot(kraken: bb.Kraken) -> None:
    with bb.Watcher([kraken], every=2.5, rates={"EUR": "1.08"}) as watcher:
        for pf in watcher:
            assert_type(pf, bb.Portfolio)
            assert_type(watcher.open_breakers, frozenset[str])
            break
