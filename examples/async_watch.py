"""A trading bot's main loop: ``async for pf in bb.watch(accounts, every=...)``.

The bot sizes each position from the margin that is free *now* (``fresh_available_margin_usd``,
which leaves out an account whose figures are stale) and reacts when a venue goes down: the
venue's last good balance is kept and marked stale with its age, its circuit breaker opens after
three failures in a row (it is then tried only every few rounds) and closes when the venue
answers again. Each account is fetched no faster than its venue allows (``watch.paces``): Kraken's
starter tier, for one, sustains one balance call every 3 s, whatever ``every`` says.

It runs offline against the simulated venues, with Bybit switched off for a few rounds.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx

import bastion_balance as bb
from bastion_balance.testing import Simulator, demo_setup

RISK = Decimal("0.02")  # of the free margin, per position
CENT = Decimal("0.01")
EVERY = 0.2  # seconds between rounds
ROUNDS = 13


class Switch:
    """The simulated venues, with one venue's host answering HTTP 503 while it is ``off``."""

    def __init__(self, simulator: Simulator, host: str) -> None:
        self.simulator = simulator
        self.host = host
        self.off = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.off and request.url.host == self.host:
            return httpx.Response(503, text="<html>maintenance</html>")
        return self.simulator(request)


def on_event(event: bb.WatchEvent) -> None:
    """What a service would export as metrics; here, the breaker's changes are printed."""
    if isinstance(event, bb.BreakerOpened):
        print(f"    {event.label}: {event.failures} failures in a row, next try in {event.retry_in} rounds")
    elif isinstance(event, bb.BreakerClosed):
        print(f"    {event.label}: answering again")


async def bot() -> None:
    simulator, accounts = demo_setup()
    bybit = Switch(simulator, "api.bybit.com")
    quick = bb.RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.01)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(bybit)) as http,
        bb.AsyncBalanceClient(http_client=http, retry=quick) as client,
        bb.watch(accounts, every=EVERY, client=client, breaker_every=3, on_event=on_event) as watch,
    ):
        slower = {label: f"{pace:.2f}s" for label, pace in watch.paces.items() if pace > EVERY}
        print(f"every {EVERY}s; paced slower by their venues: {slower}")
        async for pf in watch:
            free = pf.fresh_available_margin_usd
            line = (
                f"round {watch.rounds:2}: {free} USD free now -> position {(free * RISK).quantize(CENT)} USD"
            )
            if pf.stale:
                stale = ", ".join(f"{label} ({age:.1f}s old)" for label, age in pf.stale.items())
                line += f"; stale: {stale}, {pf.total_usd - pf.fresh_total_usd} USD not counted"
            print(line)
            if watch.rounds == 3:
                bybit.off = True  # Bybit goes down after round 3 ...
            elif watch.rounds == 9:
                bybit.off = False  # ... and comes back after round 9
            elif watch.rounds == ROUNDS:
                break


if __name__ == "__main__":
    asyncio.run(bot())
