"""Cancellation keeps Kraken's order; interrupts leak no turn; sync and async share a key fairly.

All over real loopback sockets (``LoopbackServer``) unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import parse_qsl

import httpx
import pytest

import bastion_balance as bb
from bastion_balance import _state
from bastion_balance.providers.kraken import Kraken
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    SimulatedKraken,
    Simulator,
    rate_limits_disabled,
)
from bastion_balance.testing._loopback import Fault, LoopbackServer, RecordedRequest

DELAY = 0.25
TOTAL = Decimal("382.2032")


@pytest.fixture(autouse=True)
def _no_limits() -> Iterator[None]:
    with rate_limits_disabled():
        yield


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1"))) as running:
        yield running


def kraken(base_url: str) -> Kraken:
    return bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=base_url)


def nonce(request: RecordedRequest) -> int:
    return int(dict(parse_qsl(request.body.decode()))["nonce"])


def assert_one_at_a_time(requests: list[RecordedRequest], delay: float) -> None:
    """Each request reached the venue after the one before it was answered (``delay`` later),
    and nonces strictly increase in arrival order."""
    nonces = [nonce(r) for r in requests]
    assert nonces == sorted(nonces) and len(set(nonces)) == len(nonces)
    for before, after in itertools.pairwise(requests):
        assert after.arrived >= before.arrived + delay - 0.02, (before, after)


def test_cancelled_tasks_keep_the_order(server: LoopbackServer) -> None:
    """Twelve tasks on one key, the venue answering after 0.25 s, all cancelled at a random
    moment, ten rounds: no request reaches Kraken while an abandoned one is still there."""
    server.script(*[Fault.delay(DELAY)] * 400)
    rng = random.Random(7)

    async def main() -> None:
        async with bb.AsyncBalanceClient() as client:
            for _ in range(10):
                tasks = [asyncio.ensure_future(client.fetch(kraken(server.url))) for _ in range(12)]
                await asyncio.sleep(rng.uniform(0.01, 0.6))
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            # the key still works, and waits for whatever is still at the venue
            assert (await client.fetch(kraken(server.url), timeout=10)).total == TOTAL

    asyncio.run(main())
    assert len(server.requests) >= 5  # a round cancelled early may send nothing
    assert_one_at_a_time(server.requests, DELAY)
    assert not any(b"Invalid nonce" in r.body for r in server.requests)


def test_wait_for_and_deadline_keep_the_order(server: LoopbackServer) -> None:
    """``asyncio.wait_for`` and the fetch's own deadline abandon a request the same way."""
    server.script(*[Fault.delay(DELAY)] * 10)

    async def main() -> None:
        async with bb.AsyncBalanceClient() as client:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.fetch(kraken(server.url)), 0.05)
            with pytest.raises(bb.DeadlineExceededError, match="kraken"):
                await client.fetch(kraken(server.url), timeout=0.05)
            assert (await client.fetch(kraken(server.url), timeout=10)).total == TOTAL

    asyncio.run(main())
    assert len(server.requests) == 2 or len(server.requests) == 3
    assert_one_at_a_time(server.requests, DELAY)


def test_sync_deadline_holds_the_turn_for_the_grace(server: LoopbackServer) -> None:
    """A sync fetch past its deadline cannot read on; its key's turn is kept for the grace."""
    with bb.BalanceClient() as client:
        client._settings.grace = 0.6
        assert client.fetch(kraken(server.url)).total == TOTAL  # the pool (and TLS context) made
        server.script(Fault.delay(1.0))
        started = time.monotonic()
        with pytest.raises(bb.DeadlineExceededError):
            client.fetch(kraken(server.url), timeout=0.3)
        assert time.monotonic() - started < 0.6
        assert client.fetch(kraken(server.url), timeout=10).total == TOTAL
    _, first, second = server.requests
    assert second.arrived - first.arrived >= 0.6 - 0.05


def test_turn_released_when_the_abandoned_request_is_answered(server: LoopbackServer) -> None:
    """Async: the turn comes back as soon as the venue answers, not only after the grace."""
    server.script(Fault.delay(DELAY))

    async def main() -> float:
        async with bb.AsyncBalanceClient() as client:
            client._settings.grace = 30
            task = asyncio.ensure_future(client.fetch(kraken(server.url)))
            await asyncio.sleep(0.05)
            task.cancel()
            started = time.monotonic()
            assert (await client.fetch(kraken(server.url), timeout=10)).total == TOTAL
            return time.monotonic() - started

    waited = asyncio.run(main())
    assert DELAY - 0.1 < waited < 5


def test_closing_the_client_waits_for_abandoned_requests(server: LoopbackServer) -> None:
    """``afetch_balance`` without a client closes its pool on the way out, but not under a
    request it abandoned: the venue's answer still arrives and frees the key."""
    server.script(Fault.delay(DELAY))

    async def main() -> None:
        task = asyncio.ensure_future(bb.afetch_balance(kraken(server.url)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await bb.afetch_balance(kraken(server.url), timeout=10)).total == TOTAL

    asyncio.run(main())
    assert_one_at_a_time(server.requests, DELAY)


class TestInterrupts:
    """A ``KeyboardInterrupt`` at the worst moment leaves no turn held."""

    @pytest.fixture
    def interrupt_after_grant(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_acquire = _state.Turn.acquire
        real_aacquire = _state.Turn.aacquire

        def acquire(self: _state.Turn, owner: object = _state.ANONYMOUS, **kwargs: object) -> bool:
            if real_acquire(self, owner, **kwargs):  # type: ignore[arg-type]
                raise KeyboardInterrupt  # lands after the grant, before the driver goes on
            return False

        async def aacquire(self: _state.Turn, owner: object = _state.ANONYMOUS) -> None:
            await real_aacquire(self, owner)
            raise KeyboardInterrupt

        monkeypatch.setattr(_state.Turn, "acquire", acquire)
        monkeypatch.setattr(_state.Turn, "aacquire", aacquire)

    @pytest.mark.usefixtures("interrupt_after_grant")
    def test_interrupt_right_after_the_turn_is_taken(self) -> None:
        sim = Simulator(SimulatedKraken())
        state = _state.shared_state("kraken", "https://api.kraken.com", KRAKEN_TEST_KEY)
        with bb.BalanceClient(http_client=sim.client()) as client:
            with pytest.raises(KeyboardInterrupt):
                client.fetch(bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET))
        assert not state.inflight.locked()

        async def main() -> None:
            async with bb.AsyncBalanceClient(http_client=sim.async_client()) as client:
                with pytest.raises(KeyboardInterrupt):
                    await client.fetch(bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET))

        asyncio.run(main())
        assert not state.inflight.locked()

    def test_interrupt_inside_send(self) -> None:
        """An interrupt inside httpx's send: the key's turn is held for the grace, then free."""
        calls = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            raise KeyboardInterrupt

        state = _state.shared_state("kraken", "https://api.kraken.com", KRAKEN_TEST_KEY)
        with bb.BalanceClient(http_client=httpx.Client(transport=httpx.MockTransport(handler))) as client:
            client._settings.grace = 0.2
            with pytest.raises(KeyboardInterrupt):
                client.fetch(bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET))
        assert state.inflight.locked()  # the request may be at Kraken: its turn is kept
        time.sleep(0.4)
        assert not state.inflight.locked()
        assert len(calls) == 1


def test_async_fetches_not_starved_by_sync_threads() -> None:
    """Three threads looping on sync fetches of one key, ten async fetches of the same key:
    each async fetch gets its turn (first come, first served) within its deadline."""
    venue = SimulatedKraken()

    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.005)
        return venue.handle(request)

    stop = threading.Event()
    sync_done: list[int] = []

    def loop() -> None:
        with bb.BalanceClient(http_client=httpx.Client(transport=httpx.MockTransport(slow))) as client:
            while not stop.is_set():
                client.fetch(bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET))
                sync_done.append(1)

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for thread in threads:
        thread.start()

    async def main() -> list[bb.Balance | BaseException]:
        async def handler(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(0.005)
            return venue.handle(request)

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with bb.AsyncBalanceClient(http_client=http) as client:
            kraken_ = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET)
            return await asyncio.gather(
                *(client.fetch(kraken_, timeout=5) for _ in range(10)), return_exceptions=True
            )

    try:
        outcomes = asyncio.run(main())
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert all(isinstance(o, bb.Balance) for o in outcomes), outcomes
    assert sync_done
    assert venue.nonces == sorted(venue.nonces)


def test_ctrl_c_in_sync_aggregate_returns_at_once(server: LoopbackServer) -> None:
    """SIGINT while a sync aggregate waits on a venue that never answers: KeyboardInterrupt at
    once (not at the 20 s deadline), the workers stop, and the client works again after."""
    server.script(*[Fault.delay(30)] * 4)
    others = [kraken(server.url)] + [
        bb.Kraken(api_key=f"key-{n}", api_secret=KRAKEN_TEST_SECRET, base_url=server.url, label=f"k{n}")
        for n in range(3)
    ]
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread() is threading.main_thread()
    timer = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))
    with bb.BalanceClient() as client:
        client._settings.grace = 0.2
        started = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            client.aggregate(others, timeout=20)
        assert time.monotonic() - started < 3
        time.sleep(0.5)  # the abandoned requests' grace
        server.script()
        assert client.fetch(kraken(server.url), timeout=10).total == TOTAL


class TestSecondInterrupt:
    """A second Ctrl-C landing in a fetch's clean-up does not leave the key's turn held."""

    def test_interrupt_in_the_clean_up_still_releases(self) -> None:
        from bastion_balance._client import _Fetch, _finish
        from bastion_balance.testing import FakeProvider

        turn = _state.Turn()
        fetch = _Fetch(FakeProvider(label="a"), time.monotonic() + 10)
        fetch.turns.append(turn)
        assert turn.acquire(fetch, timeout=0)
        calls: list[str] = []

        def interrupted_once() -> None:
            calls.append("slot")
            if len(calls) == 1:
                raise KeyboardInterrupt  # lands in the first step of the clean-up

        with pytest.raises(KeyboardInterrupt):
            _finish(interrupted_once, lambda: calls.append("flow"), fetch.release_turns)
        assert calls == ["slot", "slot", "flow"]
        assert not turn.locked()
        assert fetch.turns == []

    def test_release_turns_survives_being_interrupted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from bastion_balance._client import _Fetch, _finish
        from bastion_balance.testing import FakeProvider

        first, second = _state.Turn("first"), _state.Turn("second")
        fetch = _Fetch(FakeProvider(label="a"), time.monotonic() + 10)
        for turn in (first, second):
            fetch.turns.append(turn)
            assert turn.acquire(fetch, timeout=0)
        real = _state.Turn.release
        hits: list[str] = []

        def release(self: _state.Turn, owner: object = _state.ANONYMOUS) -> bool:
            done = real(self, owner)
            hits.append(self.name)
            if len(hits) == 1:
                raise KeyboardInterrupt  # after the release, before the list is updated
            return done

        monkeypatch.setattr(_state.Turn, "release", release)
        with pytest.raises(KeyboardInterrupt):
            _finish(fetch.release_turns)
        assert not first.locked() and not second.locked()
        assert fetch.turns == []
