"""The async module functions reuse one client per event loop, closed when the loop shuts down."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest

import bastion_balance as bb
from bastion_balance import _client
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    LoopbackServer,
    SimulatedKraken,
    Simulator,
    rate_limits_disabled,
)

TOTAL = Decimal("382.2032")


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with rate_limits_disabled(), LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1"))) as running:
        yield running


def kraken(url: str) -> bb.Kraken:
    return bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=url)


def test_polling_reuses_one_connection(server: LoopbackServer) -> None:
    """Ten afetch_balance calls and an aaggregate on one loop: one client, one TCP connection."""

    async def main() -> tuple[set[int], bb.AsyncBalanceClient]:
        for _ in range(10):
            assert (await bb.afetch_balance(kraken(server.url))).total == TOTAL
        portfolio = await bb.aaggregate([kraken(server.url)])
        assert portfolio.total_usd == TOTAL
        loop_client = await _client._loop_client()
        assert loop_client._made_http is not None  # open while the loop runs
        return {request.connection for request in server.requests}, loop_client

    connections, loop_client = asyncio.run(main())
    assert len(connections) == 1
    assert len(server.requests) == 11
    assert loop_client._made_http is None  # closed when asyncio.run shut the loop down


def test_each_loop_has_its_own_client(server: LoopbackServer) -> None:
    """Two event loops (one after the other, and one in another thread) never share a client."""
    seen: list[bb.AsyncBalanceClient] = []

    async def main() -> None:
        await bb.afetch_balance(kraken(server.url))
        seen.append(await _client._loop_client())

    asyncio.run(main())
    asyncio.run(main())
    thread = threading.Thread(target=lambda: asyncio.run(main()))
    thread.start()
    thread.join()
    assert len({id(client) for client in seen}) == 3
    assert all(client._made_http is None for client in seen)


def test_a_closed_loop_leaves_no_client_behind(server: LoopbackServer) -> None:
    """The table of loop clients does not keep a finished loop (or its client) alive."""
    asyncio.run(bb.afetch_balance(kraken(server.url)))
    import gc

    gc.collect()
    assert all(not loop.is_closed() for loop in list(_client._LOOP_CLIENTS))


def test_a_loop_closed_without_shutdown_is_forgotten(server: LoopbackServer) -> None:
    """A loop closed by hand (no shutdown of its async generators) is dropped on the next use."""
    loop = asyncio.new_event_loop()
    loop.run_until_complete(bb.afetch_balance(kraken(server.url)))
    client = _client._LOOP_CLIENTS[loop][0]
    loop.run_until_complete(loop.shutdown_asyncgens())  # what asyncio.run does; closes the pool
    assert client._made_http is None
    loop.close()
    assert loop not in _client._LOOP_CLIENTS

    careless = asyncio.new_event_loop()
    careless.run_until_complete(bb.afetch_balance(kraken(server.url)))
    stale = _client._LOOP_CLIENTS[careless][0]
    careless.run_until_complete(stale._close_at_shutdown())  # (so no socket is left open)
    careless.close()  # without shutdown_asyncgens: its entry stays until the next loop's first call
    asyncio.run(bb.afetch_balance(kraken(server.url)))
    assert careless not in _client._LOOP_CLIENTS
