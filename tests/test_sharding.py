"""The clients' own pools: several small httpcore pools, each request to the least busy one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

import bastion_balance as bb
from bastion_balance._transport import (
    AsyncShardedTransport,
    ShardedTransport,
    shard_limits,
    sharded_async_transport,
    sharded_sync_transport,
)
from bastion_balance.testing import KRAKEN_TEST_KEY, KRAKEN_TEST_SECRET, SimulatedKraken, Simulator
from bastion_balance.testing._loopback import Fault, LoopbackServer


@pytest.mark.parametrize(
    ("size", "shards"), [(1, [1]), (10, [10]), (11, [6, 5]), (100, [10] * 10), (25, [9, 8, 8])]
)
def test_limits_add_up(size: int, shards: list[int]) -> None:
    limits = shard_limits(size)
    assert [lim.max_connections for lim in limits] == shards
    assert sum(lim.max_connections or 0 for lim in limits) == size
    assert all(lim.max_keepalive_connections == lim.max_connections for lim in limits)


class _Recorder(httpx.BaseTransport):
    def __init__(self, name: int, seen: list[int], fail: bool = False) -> None:
        self.name, self.seen, self.fail = name, seen, fail

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(self.name)
        if self.fail:
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(200, stream=httpx.ByteStream(b"{}"))


def test_least_busy_shard_and_release_on_close() -> None:
    seen: list[int] = []
    transport = ShardedTransport([_Recorder(n, seen) for n in range(3)])
    request = httpx.Request("GET", "http://127.0.0.1/")
    first = transport.handle_request(request)
    second = transport.handle_request(request)
    assert seen == [0, 1]
    assert transport.load.busy() == [1, 1, 0]
    first.close()
    first.close()  # twice is harmless
    assert transport.load.busy() == [0, 1, 0]
    transport.handle_request(request)
    assert seen == [0, 1, 0]  # the freed shard is the least busy again
    second.close()
    transport.close()


def test_failed_request_releases_its_shard() -> None:
    seen: list[int] = []
    transport = ShardedTransport([_Recorder(0, seen, fail=True)])
    with pytest.raises(httpx.ConnectError):
        transport.handle_request(httpx.Request("GET", "http://127.0.0.1/"))
    assert transport.load.busy() == [0]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1"))) as running:
        yield running


def kraken(url: str) -> bb.Kraken:
    return bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=url)


def test_sequential_fetches_reuse_one_connection(server: LoopbackServer) -> None:
    """A bot polling one account keeps one connection, in both clients."""
    with bb.BalanceClient() as client:
        assert isinstance(client._http._transport, ShardedTransport)
        for _ in range(5):
            client.fetch(kraken(server.url))

    async def main() -> None:
        async with bb.AsyncBalanceClient() as client:
            assert isinstance(client._http._transport, AsyncShardedTransport)
            for _ in range(5):
                await client.fetch(kraken(server.url))

    asyncio.run(main())
    assert len({r.connection for r in server.requests}) == 2  # one per client


def test_concurrent_requests_spread_over_shards(server: LoopbackServer) -> None:
    """Twenty requests held at the venue at once: two shards of ten connections, all busy."""
    server.script(*[Fault.delay(0.3)] * 20)
    transport = sharded_async_transport(20)
    assert len(transport.shards) == 2
    peak: list[list[int]] = []

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport) as http:

            async def one() -> None:
                response = await http.get(f"{server.url}/0/public/Time")
                peak.append(transport.load.busy())
                await response.aclose()

            await asyncio.gather(*(one() for _ in range(20)))

    asyncio.run(main())
    assert max(sum(p) for p in peak) <= 20
    assert transport.load.busy() == [0, 0]
    assert len({r.connection for r in server.requests}) == 20
    sync = sharded_sync_transport(5)
    assert len(sync.shards) == 1
    sync.close()


def test_a_stream_closed_twice_frees_its_shard_once() -> None:
    """Closing a response's stream again (a wrapper and httpx both closing it) must not count
    the shard as less than idle, or it would look least busy and take every request."""
    seen: list[int] = []
    transport = ShardedTransport([_Recorder(n, seen) for n in range(2)])
    request = httpx.Request("GET", "http://127.0.0.1/")
    response = transport.handle_request(request)
    assert transport.load.busy() == [1, 0]
    stream = response.stream
    assert isinstance(stream, httpx.SyncByteStream)
    stream.close()
    stream.close()
    assert transport.load.busy() == [0, 0]
    transport.close()


def test_an_async_stream_closed_twice_frees_its_shard_once() -> None:
    class AsyncRecorder(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, stream=httpx.ByteStream(b"{}"))

    async def main() -> list[int]:
        transport = AsyncShardedTransport([AsyncRecorder(), AsyncRecorder()])
        response = await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1/"))
        assert transport.load.busy() == [1, 0]
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        assert [chunk async for chunk in stream] == [b"{}"]
        await stream.aclose()
        await stream.aclose()
        busy = transport.load.busy()
        await transport.aclose()
        return busy

    assert asyncio.run(main()) == [0, 0]
