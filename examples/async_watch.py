"""A trading-bot style loop: poll every account concurrently, a few rounds, on one event loop.

It reuses one AsyncBalanceClient (one connection pool) across rounds, and a venue that fails
in one round is reported without stopping the others.
"""

from __future__ import annotations

import asyncio

import bastion_balance as bb
from bastion_balance.testing import demo_setup


async def watch(rounds: int = 3, every: float = 0.2) -> None:
    simulator, providers = demo_setup()
    async with bb.AsyncBalanceClient(http_client=simulator.async_client()) as client:
        for round_number in range(1, rounds + 1):
            portfolio = await client.aggregate(providers, timeout=5.0)
            status = "complete" if portfolio.complete else f"partial ({', '.join(portfolio.errors)})"
            total, free = portfolio.total_usd, portfolio.available_margin_usd
            print(f"round {round_number}: {total} USD, {free} free, {status}")
            await asyncio.sleep(every)


if __name__ == "__main__":
    asyncio.run(watch())
