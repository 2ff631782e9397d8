"""The drivers' rarer situations, each made to happen on purpose: a stop at a step boundary, a
worker racing its idle timeout, a client closed from its own worker, no free connection, Ctrl-C
in a send on the client's own pool, foreign timeouts and protocol errors in the async driver,
an abandoned request that fails, and a caller's BalanceClient given to the module functions.

Over loopback sockets (``LoopbackServer``) or in-process transports; no timing assertions.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator

import attrs
import h11
import httpx
import pytest

import bastion_balance as bb
from bastion_balance import _client, _state
from bastion_balance._protocol import Flow, Throttle
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    FakeProvider,
    SimulatedKraken,
    Simulator,
    rate_limits_disabled,
)
from bastion_balance.testing._loopback import Fault, LoopbackServer


@attrs.frozen
class Scripted:
    """A provider whose flow is whatever the test says."""

    label: str
    script: Callable[[], Flow]
    venue: str = "scripted"

    def balance_flow(self) -> Flow:
        return self.script()


def balance(label: str) -> Flow:
    """The flow of a fixed balance (sends nothing)."""
    return FakeProvider(label=label).balance_flow()


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(ok) as running:
        yield running


def wait_until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, "the condition never came true"
        time.sleep(0.01)


def interrupt_main_after(seconds: float) -> threading.Timer:
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread() is threading.main_thread()
    timer = threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    return timer


# -- sync: stopping, workers, slots ------------------------------------------------------------


def test_ctrl_c_while_a_worker_waits_for_a_rate_limit_stops_it_and_starts_no_other() -> None:
    """Ctrl-C in a sync aggregate whose only worker waits 60 s for a rate limiter: the worker
    stops at that wait (its flow is closed, nothing more is sent), and the account queued
    behind it is never started."""
    limiter = _state.RateLimiter(1, 1 / 60, "slow")
    events: list[str] = []

    def waiting() -> Flow:
        try:
            yield Throttle(limiter, 1)  # free
            events.append("first unit")
            yield Throttle(limiter, 1)  # 60 s away, well inside the deadline
            events.append("went on")
            return (yield from balance("first"))
        finally:
            events.append("closed")

    def queued() -> Flow:
        events.append("second started")
        return (yield from balance("second"))

    client = bb.BalanceClient(max_concurrency=1)  # one worker: the second account waits for it
    try:
        timer = interrupt_main_after(0.3)
        with pytest.raises(KeyboardInterrupt):
            client.aggregate([Scripted("first", waiting), Scripted("second", queued)], timeout=120)
        timer.join()
    finally:
        client.close()  # joins the worker, which has run both jobs by now
    assert events == ["first unit", "closed"]


def test_a_worker_whose_idle_wait_ends_as_a_job_is_queued_stays_for_it() -> None:
    """The idle wait times out at the moment a job is queued for this worker: it looks for
    work again instead of ending and leaving the job to nobody."""

    class LateQueue(queue.SimpleQueue[Callable[[], None] | None]):
        timed_out = False

        def get(self, block: bool = True, timeout: float | None = None) -> Callable[[], None] | None:
            if not self.timed_out:
                self.timed_out = True
                raise queue.Empty  # the idle timeout, just as submit() counted the job
            return super().get(block, timeout)

    workers = _client._Workers(1)
    jobs = LateQueue()
    workers._jobs = jobs
    ran = threading.Event()
    workers.submit(ran.set)
    try:
        assert ran.wait(10)
        assert jobs.timed_out
    finally:
        workers.close()


def test_closing_the_client_from_its_own_worker_thread() -> None:
    """A flow (or a callback on a worker) that closes the client: the worker does not wait for
    itself, the fetch still answers, and the client works again afterwards."""
    client = bb.BalanceClient()

    def closing() -> Flow:
        client.close()
        return (yield from balance("a"))

    try:
        portfolio = client.aggregate([Scripted("a", closing)])
        assert portfolio.errors == {}
        assert portfolio.balances["a"].label == "a"
        assert client._workers is None
        again = client.aggregate([FakeProvider(label="b")])
        assert again.errors == {}
    finally:
        client.close()


def test_a_fetch_that_never_gets_a_connection_slot_ends_at_its_deadline(server: LoopbackServer) -> None:
    with bb.BalanceClient(max_concurrency=1) as client:
        assert client._slots.acquire(timeout=0)  # the only slot, held by another fetch
        try:
            with pytest.raises(bb.DeadlineExceededError) as info:
                client.fetch(FakeProvider(label="a", url=server.url + "/"), timeout=0.3)
        finally:
            client._slots.release()
        assert str(info.value) == "a: deadline passed while waiting for a free connection"
        assert info.value.venue == "fake"
        assert server.requests == []  # nothing was signed or sent without a connection
        assert client.fetch(FakeProvider(label="a", url=server.url + "/")).label == "a"


def test_ctrl_c_during_a_send_closes_the_clients_own_pool(server: LoopbackServer) -> None:
    """Ctrl-C while the venue has not answered: the interrupted connection is not kept (the
    pool the client made is closed), and the next fetch makes a new pool."""
    with bb.BalanceClient(retry=bb.NO_RETRY) as client:
        assert client.fetch(FakeProvider(label="a", url=server.url + "/")).label == "a"
        pool = client._made_http
        assert pool is not None
        server.script(Fault.delay(30))
        timer = interrupt_main_after(0.3)
        with pytest.raises(KeyboardInterrupt):
            client.fetch(FakeProvider(label="a", url=server.url + "/"), timeout=60)
        timer.join()
        assert pool.is_closed
        assert client._made_http is None
        server.script()
        assert client.fetch(FakeProvider(label="a", url=server.url + "/")).label == "a"
        assert client._made_http is not None and client._made_http is not pool


def test_an_abandoned_fetchs_release_is_done_once() -> None:
    """The call that releases an abandoned fetch's turns may run twice (its grace timer and its
    answer racing): the turns are released once."""

    class CountingTurn(_state.Turn):
        def __init__(self) -> None:
            super().__init__("counting")
            self.releases = 0

        def release(self, owner: object = _state.ANONYMOUS) -> bool:
            self.releases += 1
            return super().release(owner)

    turn = CountingTurn()
    fetch = _client._Fetch(FakeProvider(label="a"), time.monotonic() + 10)
    fetch.turns.append(turn)
    assert turn.acquire(fetch, timeout=0)
    release = fetch.hand_over()
    assert fetch.turns == [turn] and turn.owned_by(fetch)  # kept until the caller has arranged it
    fetch.turns = []
    callers = [threading.Thread(target=release) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    assert turn.releases == 1
    assert not turn.locked()


def test_fetch_balance_and_aggregate_use_a_given_client_and_leave_it_open(server: LoopbackServer) -> None:
    with bb.BalanceClient() as client:
        first = bb.fetch_balance(FakeProvider(label="a", url=server.url + "/"), client=client)
        portfolio = bb.aggregate([FakeProvider(label="b", url=server.url + "/")], client=client)
        assert first.label == "a" and portfolio.errors == {}
        assert client._made_http is not None and not client._made_http.is_closed
        assert client.fetch(FakeProvider(label="c", url=server.url + "/")).label == "c"
    assert len({r.connection for r in server.requests}) == 1  # one pool, kept between the calls


# -- async -----------------------------------------------------------------------------------------


def test_a_timeout_error_that_is_not_the_deadline_is_not_called_one() -> None:
    """A ``TimeoutError`` raised inside the fetch by something else (a library's own timeout)
    passes through as it is: only the fetch's own deadline becomes DeadlineExceededError."""

    def foreign() -> Flow:
        raise TimeoutError("the signing service timed out")
        yield  # makes this a generator

    async def main() -> None:
        async with bb.AsyncBalanceClient(retry=bb.NO_RETRY) as client:
            with pytest.raises(TimeoutError, match="the signing service timed out") as info:
                await client.fetch(Scripted("a", foreign), timeout=30)
        assert not isinstance(info.value, bb.BastionBalanceError)

    asyncio.run(main())


class TestAsyncProtocolErrors:
    def test_raw_h11_error_is_a_transport_error(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise h11.RemoteProtocolError("illegal header")

        async def main() -> bb.TransportError:
            http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
            async with bb.AsyncBalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
                with pytest.raises(bb.TransportError, match="RemoteProtocolError") as info:
                    await client.fetch(
                        bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, label="main")
                    )
            await http.aclose()
            return info.value

        error = asyncio.run(main())
        assert type(error) is bb.TransportError
        assert error.__cause__ is None and error.__context__ is None
        assert str(error).startswith("main: RemoteProtocolError (api.kraken.com/0/private/")

    def test_programming_errors_are_not_hidden(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise ZeroDivisionError

        async def main() -> None:
            http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
            async with bb.AsyncBalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
                with pytest.raises(ZeroDivisionError):
                    await client.fetch(bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET))
            await http.aclose()

        asyncio.run(main())


def test_an_abandoned_request_that_fails_keeps_the_turn_for_the_grace() -> None:
    """A cancelled fetch's request fails in the background with a transport error (here the
    venue's connection is cut): nobody knows whether it reached Kraken, so its key's turn is
    kept until the grace has passed, not released at once as after an answer."""
    with rate_limits_disabled(), LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1"))) as server:
        kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=server.url)
        turn = _state.shared_state("kraken", server.url, KRAKEN_TEST_KEY).inflight
        server.script(Fault.delay(30))

        async def main() -> None:
            async with bb.AsyncBalanceClient(retry=bb.NO_RETRY) as client:
                client._settings.grace = 2.0
                task = asyncio.ensure_future(client.fetch(kraken, timeout=60))
                while not server.requests:
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                (abandoned,) = client._abandoned
                await asyncio.to_thread(server.stop)  # cuts the connection under the request
                await asyncio.wait([abandoned], timeout=10)
                assert isinstance(abandoned.exception(), bb.TransportError)
                assert turn.locked()  # kept: the request may have reached the venue
                while turn.locked():  # released by the grace timer
                    await asyncio.sleep(0.05)

        asyncio.run(asyncio.wait_for(main(), 20))
    assert len(server.requests) == 1


def test_afetch_balance_and_aaggregate_use_a_given_client_and_leave_it_open(server: LoopbackServer) -> None:
    async def main() -> None:
        async with bb.AsyncBalanceClient() as client:
            first = await bb.afetch_balance(FakeProvider(label="a", url=server.url + "/"), client=client)
            portfolio = await bb.aaggregate([FakeProvider(label="b", url=server.url + "/")], client=client)
            assert first.label == "a" and portfolio.errors == {}
            assert client._made_http is not None and not client._made_http.is_closed
            assert (await client.fetch(FakeProvider(label="c", url=server.url + "/"))).label == "c"

    asyncio.run(main())
    assert len({r.connection for r in server.requests}) == 1  # one pool, kept between the calls
