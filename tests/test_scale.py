"""1,000 accounts in one aggregate, over real loopback sockets, with the venue answering slowly.

Each fetch signs only once it holds one of the client's connection slots, so nothing signed
waits in the pool and goes stale (Bybit refuses a timestamp older than its receive window),
and the whole aggregate has one deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

import bastion_balance as bb
from bastion_balance.testing import SimulatedBybit, Simulator
from bastion_balance.testing._loopback import Fault, LoopbackServer

ACCOUNTS = 1000
LATENCY = 0.2
# Bybit refuses a request that reaches it more than recv_window ms after it was signed. Before
# the fix every one of 1,000 requests was signed at once and most waited far longer than this in
# the pool; now each is signed when a connection is free for it. The window leaves room for the
# loopback server itself being slow on a loaded 2-core machine under coverage (it serves 100 at once).
RECV_WINDOW = 15_000


@pytest.fixture
def keys() -> dict[str, str]:
    return {f"key{n:04d}": f"secret-{n:04d}" for n in range(ACCOUNTS)}


@pytest.fixture
def server(keys: dict[str, str]) -> Iterator[LoopbackServer]:
    with LoopbackServer(Simulator(SimulatedBybit(keys=keys, host="127.0.0.1"))) as running:
        running.script(*[Fault.delay(LATENCY)] * ACCOUNTS)
        yield running


def accounts(keys: dict[str, str], url: str) -> list[bb.Bybit]:
    return [
        bb.Bybit(api_key=key, api_secret=secret, base_url=url, label=f"bybit-{key}", recv_window=RECV_WINDOW)
        for key, secret in keys.items()
    ]


def check(portfolio: bb.Portfolio, server: LoopbackServer, elapsed: float) -> None:
    assert portfolio.errors == {}, {k: repr(v) for k, v in list(portfolio.errors.items())[:3]}
    assert portfolio.complete
    assert len(portfolio.balances) == ACCOUNTS
    one = next(iter(portfolio.balances.values())).total
    assert portfolio.total_usd == one * ACCOUNTS
    assert isinstance(portfolio.total_usd, Decimal)
    paths = {r.path.split("?")[0] for r in server.requests}
    assert paths == {"/v5/account/wallet-balance"}  # no 10002, so no server-time read: nothing stale
    assert len(server.requests) <= ACCOUNTS * 1.05  # at most a few connection-level retries
    assert elapsed < 60  # the deadline; typically 6-9 s here, 15 s under coverage


def test_async_thousand_accounts(keys: dict[str, str], server: LoopbackServer) -> None:
    async def main() -> bb.Portfolio:
        async with bb.AsyncBalanceClient() as client:
            return await client.aggregate(accounts(keys, server.url), timeout=60)

    started = time.monotonic()
    portfolio = asyncio.run(main())
    check(portfolio, server, time.monotonic() - started)


def test_sync_thousand_accounts(keys: dict[str, str], server: LoopbackServer) -> None:
    started = time.monotonic()
    with bb.BalanceClient() as client:
        portfolio = client.aggregate(accounts(keys, server.url), timeout=60)
    check(portfolio, server, time.monotonic() - started)


def test_in_flight_bounded_by_max_concurrency(keys: dict[str, str], server: LoopbackServer) -> None:
    """With ``max_concurrency=10`` at most 10 requests are at the venue at once."""
    some = dict(list(keys.items())[:40])

    async def main() -> bb.Portfolio:
        async with bb.AsyncBalanceClient(max_concurrency=10) as client:
            return await client.aggregate(accounts(some, server.url), timeout=60)

    portfolio = asyncio.run(main())
    assert portfolio.complete
    arrivals = sorted(r.arrived for r in server.requests)
    for index in range(10, len(arrivals)):
        assert arrivals[index] >= arrivals[index - 10] + LATENCY - 0.05
