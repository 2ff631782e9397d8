"""bb.watch / bb.Watcher over real loopback sockets, on a fake clock (docs/watch.md).

A fake clock and a fake sleep stand in for time, so minutes of one-second rounds run in a few
seconds of wall time; the venues are the simulators served by ``LoopbackServer``. Nothing here
asserts how long anything took: each test asserts what reached the venue, what each round's
Portfolio said and which events the hooks saw.

* Pacing: two minutes of a 1 s watch of a starter-tier Kraken key against the simulator's
  emulated call counter never draws ``EAPI:Rate limit exceeded`` (the same loop without the
  watch does, after about 22 s).
* A venue going down and coming back: its last good balance is kept and marked stale with its
  age, the totals with and without it, the breaker opening and closing, the retries.
* Cancellation: a cancelled task, a ``break`` and ``aclose()`` leave no task running and close
  the client the watch made (never one passed in); Ctrl-C in the sync watcher returns at once.
* Recording: ``history=`` records each complete round, and a recorder that fails does not stop
  the watch.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import bastion_balance as bb
from bastion_balance import _state
from bastion_balance.providers.kraken import COUNTER_MARGIN, TIERS
from bastion_balance.testing import (
    BYBIT_TEST_KEY,
    BYBIT_TEST_SECRET,
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    Fault,
    LoopbackServer,
    SimulatedBybit,
    SimulatedKraken,
    Simulator,
    rate_limits_disabled,
)
from tests._harness import FakeClock

LOOPBACK = "127.0.0.1"
KRAKEN_TOTAL = Decimal("382.2032")
BYBIT_TOTAL = Decimal("92255.96988644")
BYBIT_FREE = Decimal("89987.9688149")
KRAKEN_FREE = Decimal("375.1678")
#: One instant retry, so an outage costs two calls and no real backoff.
QUICK_RETRY = bb.RetryPolicy(attempts=2, backoff=0, max_backoff=0)


class Outage:
    """A handler that answers HTTP 503 while ``down``, and the simulator's answer otherwise."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.down = False
        self.refused = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.refused += 1
            return httpx.Response(503, text="<html>down for maintenance</html>")
        return self.handler(request)


class Events:
    """Every event the hooks were given, by hook."""

    def __init__(self) -> None:
        self.by_hook: dict[str, list[bb.WatchEvent]] = {"on_result": [], "on_error": [], "on_retry": []}
        self.all: list[bb.WatchEvent] = []

    def hooks(self) -> dict[str, Callable[[Any], None]]:
        return {
            **{name: events.append for name, events in self.by_hook.items()},
            "on_event": self.all.append,
        }

    def of(self, kind: type[bb.WatchEvent], label: str | None = None) -> list[Any]:
        return [
            e
            for e in self.all
            if isinstance(e, kind) and (label is None or getattr(e, "label", None) == label)
        ]


def kraken(url: str, **settings: Any) -> bb.Kraken:
    return bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=url, **settings)


def bybit(url: str) -> bb.Bybit:
    return bb.Bybit(api_key=BYBIT_TEST_KEY, api_secret=BYBIT_TEST_SECRET, base_url=url)


@pytest.fixture
def no_limits() -> Iterator[None]:
    with rate_limits_disabled():
        yield


# --------------------------------------------------------------------------- pacing


def fake_clocked_kraken_counter(url: str, clock: FakeClock) -> None:
    """The client-side Kraken limiter of the test key, made now on the fake clock (the watch and
    the fetches then share it, as they would share the real one)."""
    most, decay = TIERS["starter"]
    limiter = _state.shared_state("kraken", url, KRAKEN_TEST_KEY).limiter(
        "calls", most - COUNTER_MARGIN, decay
    )
    limiter.monotonic = clock


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_two_minutes_of_a_one_second_watch_stay_under_krakens_counter(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 1 s watch of a starter-tier key settles at Kraken's pace: 2 minutes, no refusal, no wait.

    Everything runs on the fake clock: the venue's counter, the client-side limiter and the
    client's own waits, so a wait the pacing caused would show (and pass quickly)."""
    clock = FakeClock()
    venue = SimulatedKraken(host=LOOPBACK, tier="starter", clock=clock)
    results: list[bb.FetchSucceeded] = []
    portfolios: list[bb.Portfolio] = []
    with LoopbackServer(Simulator(venue)) as server, caplog.at_level(logging.INFO, "bastion_balance"):
        fake_clocked_kraken_counter(server.url, clock)
        settings: dict[str, Any] = {"every": 1, "clock": clock, "on_result": results.append, "timeout": 10}
        end = clock.now + 120
        if mode == "async":

            async def run() -> dict[str, float]:
                async with bb.AsyncBalanceClient() as client:
                    client._sleep = clock.asleep
                    watcher = bb.watch([kraken(server.url)], client=client, sleep=clock.asleep, **settings)
                    async for portfolio in watcher:
                        portfolios.append(portfolio)
                        if clock.now >= end:
                            break
                    await watcher.aclose()
                    return dict(watcher.paces)

            paces = asyncio.run(run())
        else:
            with (
                bb.BalanceClient() as client,
                bb.Watcher([kraken(server.url)], client=client, sleep=clock.sleep, **settings) as watcher,
            ):
                client._sleep = clock.sleep
                for portfolio in watcher:
                    portfolios.append(portfolio)
                    if clock.now >= end:
                        break
                paces = dict(watcher.paces)
    pace = 1 / TIERS["starter"][1]
    assert paces == {"kraken": pytest.approx(pace)}
    assert venue.rate_limited == 0
    assert venue.counter_peak <= TIERS["starter"][0]
    assert not [r for r in caplog.records if "waiting" in r.getMessage()], (
        "the client-side limiter had to wait"
    )
    assert len(portfolios) == 121  # one a second, the first at once
    assert all(p.complete and p.total_usd == KRAKEN_TOTAL and not p.stale for p in portfolios)
    assert len(results) == venue.calls == len(venue.nonces)
    assert 120 / pace - 1 <= venue.calls <= 120 / pace + 1


def test_the_same_loop_without_the_watch_trips_the_counter(no_limits: None) -> None:
    """The control: an aggregate every (fake) second of the same key is refused within 2 minutes.

    So the counter the watch stayed under is one that a 1 s loop does fill (without the
    client-side limiter, which would otherwise make each round wait or fail).
    """
    clock = FakeClock()
    venue = SimulatedKraken(host=LOOPBACK, tier="starter", clock=clock)
    refused_at = None
    with LoopbackServer(Simulator(venue)) as server, bb.BalanceClient(retry=bb.NO_RETRY) as client:
        for second in range(120):
            portfolio = client.aggregate([kraken(server.url)], timeout=10)
            if not portfolio.complete and refused_at is None:
                refused_at = second
                assert "EAPI:Rate limit exceeded" in str(portfolio.errors["kraken"])
            clock.sleep(1)
    assert refused_at is not None
    assert venue.rate_limited > 0
    most, decay = TIERS["starter"]
    assert abs(refused_at - most / (1 - decay)) <= 3  # it fills at +1 - 0.33 a second


def test_accounts_sharing_a_key_share_its_pace(no_limits: None) -> None:
    """Two labels on one Kraken key (two assets) are each fetched half as often: the counter is the key's."""
    clock = FakeClock()
    venue = SimulatedKraken(host=LOOPBACK, tier="starter", clock=clock)
    with LoopbackServer(Simulator(venue)) as server:
        accounts = [kraken(server.url), kraken(server.url, label="kraken-eur", asset="ZEUR")]
        with bb.Watcher(accounts, every=1, clock=clock, sleep=clock.sleep, rates={"EUR": "1.08"}) as watcher:
            for portfolio in watcher:
                assert portfolio.complete
                if clock.now >= 1000 + 120:
                    break
            paces = dict(watcher.paces)
    assert paces["kraken"] == paces["kraken-eur"] == pytest.approx(2 / TIERS["starter"][1])
    assert venue.rate_limited == 0
    assert venue.calls <= 2 * (120 / paces["kraken"] + 1)


# --------------------------------------------------------------------------- down and back


def test_a_venue_going_down_and_coming_back(no_limits: None) -> None:
    """Stale figures with their age, both totals, the breaker opening, probing and closing."""
    clock = FakeClock()
    outage = Outage(Simulator(SimulatedBybit(host=LOOPBACK)))
    events = Events()
    recorded: list[bb.Portfolio] = []

    class Recorder:
        def record(self, portfolio: bb.Portfolio) -> None:
            recorded.append(portfolio)

    with (
        LoopbackServer(Simulator(SimulatedKraken(host=LOOPBACK))) as kraken_server,
        LoopbackServer(outage) as bybit_server,
    ):

        async def run() -> list[tuple[bb.Portfolio, int, frozenset[str]]]:
            seen = []
            async with bb.AsyncBalanceClient(retry=QUICK_RETRY) as client:
                watcher = bb.watch(
                    [kraken(kraken_server.url), bybit(bybit_server.url)],
                    every=1,
                    client=client,
                    history=Recorder(),
                    breaker_after=3,
                    breaker_every=4,
                    breaker_jitter=lambda low, high: high,
                    clock=clock,
                    sleep=clock.asleep,
                    **events.hooks(),
                )
                async for portfolio in watcher:
                    seen.append((portfolio, outage.refused, watcher.open_breakers))
                    if len(seen) == 1:
                        outage.down = True
                    if len(seen) == 12:
                        outage.down = False
                    if len(seen) == 20:
                        break
                await watcher.aclose()
            return seen

        seen = asyncio.run(run())

    first = seen[0][0]
    assert first.complete and not first.stale
    assert first.total_usd == KRAKEN_TOTAL + BYBIT_TOTAL

    # Rounds 2-4: Bybit fails (each fetch retried once), its last good figures stay, marked stale.
    for number in (2, 3, 4):
        portfolio, refused, _ = seen[number - 1]
        assert not portfolio.complete
        assert set(portfolio.errors) == {"bybit"}
        assert isinstance(portfolio.errors["bybit"], bb.ServiceUnavailableError)
        assert portfolio.balances["bybit"] == first.balances["bybit"]
        assert portfolio.stale == {"bybit": pytest.approx(number - 1)}
        assert portfolio.total_usd == KRAKEN_TOTAL + BYBIT_TOTAL
        assert portfolio.fresh_total_usd == KRAKEN_TOTAL
        assert portfolio.available_margin_usd == KRAKEN_FREE + BYBIT_FREE
        assert portfolio.fresh_available_margin_usd == KRAKEN_FREE
        assert refused == 2 * (number - 1)
        assert "kraken" not in portfolio.stale  # not due, or fetched: fresh either way
    failures = events.of(bb.FetchFailed, "bybit")
    assert [(e.round, e.failures, e.attempt) for e in failures[:3]] == [(2, 1, 2), (3, 2, 2), (4, 3, 2)]
    retries = events.of(bb.FetchRetried, "bybit")
    assert [(e.round, e.attempt) for e in retries[:3]] == [(2, 1), (3, 1), (4, 1)]
    assert all(isinstance(e.error, bb.ServiceUnavailableError) and e.wait == 0 for e in retries)
    assert events.by_hook["on_error"] == failures
    assert events.by_hook["on_retry"] == retries

    # The third failure in a row opens the breaker: Bybit is left alone for 4 rounds.
    opened = events.of(bb.BreakerOpened, "bybit")
    assert (opened[0].round, opened[0].failures, opened[0].retry_in) == (4, 3, 5)
    assert seen[3][2] == frozenset({"bybit"})
    refused_when_opened = seen[3][1]
    for number in range(5, 9):
        portfolio, refused, breakers = seen[number - 1]
        assert refused == refused_when_opened, "an open breaker's venue was called"
        assert portfolio.stale == {"bybit": pytest.approx(number - 1)}
        assert breakers == frozenset({"bybit"})
    # Round 9 tries it (still down): it fails and waits again, without a second "opened".
    assert seen[8][1] == refused_when_opened + 2
    assert [e.round for e in events.of(bb.FetchFailed, "bybit")] == [2, 3, 4, 9]
    assert len(opened) == 1
    assert seen[12][1] == seen[8][1], "tried again before its rounds were up"

    # Back up after round 12; the next try (round 14) answers and closes the breaker.
    closed = events.of(bb.BreakerClosed, "bybit")
    assert [(e.round, e.failures) for e in closed] == [(14, 4)]
    back = seen[13][0]
    assert back.complete and not back.stale and seen[13][2] == frozenset()
    assert back.total_usd == back.fresh_total_usd == KRAKEN_TOTAL + BYBIT_TOTAL
    assert all(seen[n][0].complete for n in range(13, 20))

    # Only complete rounds were recorded: round 1 and rounds 14-20.
    assert recorded == [seen[0][0]] + [s[0] for s in seen[13:]]
    successes = events.of(bb.FetchSucceeded)
    assert events.by_hook["on_result"] == successes
    assert all(e.attempt == 1 and e.latency >= 0 for e in successes)
    assert {e.label for e in successes} == {"kraken", "bybit"}


def test_a_label_that_never_answered_is_only_an_error(no_limits: None) -> None:
    """The first round has no stale figures: a venue down from the start is in errors, not balances."""
    clock = FakeClock()
    outage = Outage(Simulator(SimulatedBybit(host=LOOPBACK)))
    outage.down = True
    with LoopbackServer(outage) as server, bb.BalanceClient(retry=bb.NO_RETRY) as client:
        with bb.Watcher(
            [bybit(server.url)], every=1, client=client, clock=clock, sleep=clock.sleep
        ) as watcher:
            portfolio = next(watcher)
            assert "bybit" in portfolio.errors and "bybit" not in portfolio.balances
            assert not portfolio.stale and portfolio.total_usd == 0
            outage.down = False
            portfolio = next(watcher)
        assert portfolio.complete and portfolio.total_usd == BYBIT_TOTAL
        assert client.fetch(bybit(server.url)).total == BYBIT_TOTAL, "the caller's client was closed"


# --------------------------------------------------------------------------- cancellation


class ClosedClients:
    """Counts the AsyncBalanceClients closed (``aclose``), however the watch ended."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.closed: list[bb.AsyncBalanceClient] = []
        original = bb.AsyncBalanceClient.aclose

        async def aclose(client: bb.AsyncBalanceClient) -> None:
            self.closed.append(client)
            await original(client)

        monkeypatch.setattr(bb.AsyncBalanceClient, "aclose", aclose)


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition()`` holds (a generous bound: a hang fails, not a delay)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def others() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


def test_cancelling_the_task_leaves_nothing_running(no_limits: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled while its fetch waits on the venue: no task is left and its own client is closed."""
    closed = ClosedClients(monkeypatch)
    with LoopbackServer(Simulator(SimulatedBybit(host=LOOPBACK))) as server:
        server.script(Fault.delay(30))

        async def run() -> None:
            async def bot() -> None:
                async for _ in bb.watch([bybit(server.url)], every=1):
                    pass  # never reached: the first round waits on the venue

            task = asyncio.ensure_future(bot())
            await until(lambda: bool(server.requests))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert others() == set()
            assert len(closed.closed) == 1

        asyncio.run(run())


def test_a_cancelled_kraken_fetch_keeps_only_its_abandoned_request(
    no_limits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Kraken request cancelled at the venue is the one thing left (docs/decisions.md §26), and it
    ends when the venue answers; the watch's client is closed after it."""
    closed = ClosedClients(monkeypatch)
    venue = SimulatedKraken(host=LOOPBACK)
    with LoopbackServer(Simulator(venue)) as server:
        server.script(Fault.delay(0.5))

        async def run() -> None:
            watcher = bb.watch([kraken(server.url)], every=1)
            task = asyncio.ensure_future(watcher.__anext__())
            await until(lambda: bool(server.requests))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            left = others()
            await asyncio.wait(left, timeout=30)
            assert all(t.done() for t in left)
            assert len(closed.closed) == 1
            with pytest.raises(StopAsyncIteration):
                await watcher.__anext__()

        asyncio.run(run())
    assert venue.nonces, "the abandoned request was answered"


def test_breaking_out_closes_its_client_and_never_a_given_one(
    no_limits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``break`` from ``async for bb.watch(...)``: the watch's own client is closed by the loop as
    soon as the watch is dropped (no garbage collection needed: nothing refers back to it); a
    client passed in is not closed, and keeps working."""
    closed = ClosedClients(monkeypatch)
    with LoopbackServer(Simulator(SimulatedBybit(host=LOOPBACK))) as server:

        async def run() -> None:
            async for portfolio in bb.watch([bybit(server.url)], every=1):
                assert portfolio.complete
                break
            await until(lambda: len(closed.closed) == 1)
            await until(lambda: others() == set())
            async with bb.AsyncBalanceClient() as mine:
                async for portfolio in bb.watch([bybit(server.url)], every=1, client=mine):
                    assert portfolio.complete
                    break
                await until(lambda: others() == set())  # the dropped watch's clean-up ran
                assert mine not in closed.closed
                assert (await mine.fetch(bybit(server.url))).total == BYBIT_TOTAL

        gc.disable()
        try:
            asyncio.run(run())
        finally:
            gc.enable()
    assert len(closed.closed) == 2  # the watch's own, then ``mine`` at the end of its block


def test_aclose_ends_the_iteration(no_limits: None) -> None:
    """After ``aclose()`` (or an ``async with`` block) the watch yields nothing more."""
    with LoopbackServer(Simulator(SimulatedBybit(host=LOOPBACK))) as server:

        async def run() -> None:
            watcher = bb.watch([bybit(server.url)], every=1, sleep=FakeClock().asleep)
            await watcher.aclose()  # never started: nothing to close
            with pytest.raises(StopAsyncIteration):
                await watcher.__anext__()
            async with bb.watch([bybit(server.url)], every=1) as other:
                assert (await other.__anext__()).complete
                assert other.rounds == 1
            with pytest.raises(StopAsyncIteration):
                await other.__anext__()

        asyncio.run(run())


def test_ctrl_c_in_the_sync_watcher_returns_at_once(no_limits: None) -> None:
    """SIGINT while a round waits on a venue that answers in 30 s: KeyboardInterrupt before it
    answers; then close() ends the watcher."""
    answered = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        answered.set()
        return Simulator(SimulatedBybit(host=LOOPBACK))(request)

    with LoopbackServer(handler) as server:
        server.script(Fault.delay(30))
        main = threading.main_thread().ident
        assert main is not None and threading.current_thread() is threading.main_thread()
        watcher = bb.Watcher([bybit(server.url)], every=1, timeout=60)
        timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            next(watcher)
        assert not answered.is_set(), "it waited for the venue's answer"
        watcher.close()
        with pytest.raises(StopIteration):
            next(watcher)


def test_ctrl_c_between_rounds(no_limits: None) -> None:
    """Ctrl-C in the sleep between two rounds is raised as is; the watcher can still be closed."""
    with LoopbackServer(Simulator(SimulatedBybit(host=LOOPBACK))) as server:

        def interrupted(_seconds: float) -> None:
            raise KeyboardInterrupt

        with bb.Watcher([bybit(server.url)], every=1, sleep=interrupted) as watcher:
            assert next(watcher).complete
            with pytest.raises(KeyboardInterrupt):
                next(watcher)
            assert watcher.rounds == 1


# --------------------------------------------------------------------------- recording


def test_history_records_each_complete_round(no_limits: None, tmp_path: Path) -> None:
    """``history=bb.History(...)``: one snapshot per complete round, none for a partial one."""
    clock = FakeClock()
    outage = Outage(Simulator(SimulatedBybit(host=LOOPBACK)))
    with (
        LoopbackServer(outage) as server,
        bb.History(tmp_path / "history.sqlite3") as history,
        bb.BalanceClient(retry=bb.NO_RETRY) as client,
        bb.Watcher(
            [bybit(server.url)], every=1, history=history, client=client, clock=clock, sleep=clock.sleep
        ) as watcher,
    ):
        rounds = []
        for number, portfolio in enumerate(watcher, start=1):
            rounds.append(portfolio)
            outage.down = number in (2, 3)
            if number == 5:
                break
        snapshots = history.snapshots()
    assert [p.complete for p in rounds] == [True, True, False, False, True]
    assert len(snapshots) == 3
    assert all(s.complete and s.total_usd == BYBIT_TOTAL for s in snapshots)
    assert [s.taken_at for s in snapshots] == [p.fetched_at for p in rounds if p.complete]


def test_a_failing_recorder_does_not_stop_the_watch(
    no_limits: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A recorder that raises: the round says so in its warnings, a RecordFailed event and a log
    line tell services, and the next rounds come as usual."""
    clock = FakeClock()
    failed: list[bb.WatchEvent] = []

    class Broken:
        def record(self, portfolio: bb.Portfolio) -> None:
            raise OSError("disk full")

    with (
        LoopbackServer(Simulator(SimulatedBybit(host=LOOPBACK))) as server,
        caplog.at_level(logging.WARNING, "bastion_balance"),
        bb.Watcher(
            [bybit(server.url)],
            every=1,
            history=Broken(),
            on_event=failed.append,
            clock=clock,
            sleep=clock.sleep,
        ) as watcher,
    ):
        first, second = next(watcher), next(watcher)
    for portfolio in (first, second):
        assert portfolio.complete and portfolio.total_usd == BYBIT_TOTAL
        assert portfolio.warnings[-1] == "history: this round was not recorded: OSError: disk full"
    records = [e for e in failed if isinstance(e, bb.RecordFailed)]
    assert [(e.round, str(e.error)) for e in records] == [(1, "disk full"), (2, "disk full")]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "watch: round 1 was not recorded: OSError: disk full",
        "watch: round 2 was not recorded: OSError: disk full",
    ]
