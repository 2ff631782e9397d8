"""The credential turn: first come, first served across threads and event loops; owned."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bastion_balance._state import Turn


def test_owner_only_release() -> None:
    """Only the owner gives the turn up; a stranger's release is a no-op."""
    turn = Turn("t")
    me, other = object(), object()
    assert turn.acquire(me, timeout=0)
    assert turn.owned_by(me) and turn.locked()
    assert not turn.release(other)
    assert turn.owned_by(me)
    assert turn.release(me)
    assert not turn.locked()
    assert not turn.release(me)  # twice is harmless
    assert "free" in repr(turn)


def test_timeout_and_cancel() -> None:
    """A sync waiter gives up after its timeout, or as soon as it is told to stop."""
    turn = Turn()
    assert turn.acquire()
    started = time.monotonic()
    assert not turn.acquire(object(), timeout=0.1)
    assert 0.08 < time.monotonic() - started < 2
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert not turn.acquire(object(), timeout=30, cancelled=stop.is_set)
    assert time.monotonic() - started < 2
    turn.release()
    assert turn.acquire(object(), timeout=0)  # nobody left queued


def test_sync_waiters_in_arrival_order() -> None:
    """Released, the turn goes to the longest waiter, not to whoever asks next."""
    turn = Turn()
    assert turn.acquire()
    order: list[int] = []

    def wait(n: int) -> None:
        me = object()
        assert turn.acquire(me, timeout=10)
        order.append(n)
        turn.release(me)

    threads = []
    for n in range(5):
        thread = threading.Thread(target=wait, args=(n,))
        thread.start()
        threads.append(thread)
        while len(turn._waiters) < n + 1:
            time.sleep(0.001)
    turn.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_async_and_sync_share_fairly() -> None:
    """An async waiter queued before a sync one gets the turn first (no starvation)."""
    turn = Turn()
    assert turn.acquire()
    order: list[str] = []

    async def main() -> None:
        async def async_waiter() -> None:
            me = object()
            await turn.aacquire(me)
            order.append("async")
            await asyncio.sleep(0.05)
            turn.release(me)

        task = asyncio.ensure_future(async_waiter())
        while not turn._waiters:
            await asyncio.sleep(0.001)

        def sync_waiter() -> None:
            me = object()
            assert turn.acquire(me, timeout=10)
            order.append("sync")
            turn.release(me)

        thread = threading.Thread(target=sync_waiter)
        thread.start()
        while len(turn._waiters) < 2:
            await asyncio.sleep(0.001)
        turn.release()
        await task
        await asyncio.to_thread(thread.join, 10)

    asyncio.run(main())
    assert order == ["async", "sync"]


def test_cancelled_async_waiter_passes_the_turn_on() -> None:
    """A waiter cancelled while queued, or just after being granted, never keeps the turn."""

    async def main() -> None:
        turn = Turn()
        assert turn.acquire()
        queued = asyncio.ensure_future(turn.aacquire(object()))
        await asyncio.sleep(0.01)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert not turn._waiters
        # granted, then cancelled before it ran: the grant is passed on
        granted_owner = object()
        granted = asyncio.ensure_future(turn.aacquire(granted_owner))
        await asyncio.sleep(0.01)
        turn.release()  # schedules the grant on this loop
        granted.cancel()
        with pytest.raises(asyncio.CancelledError):
            await granted
        await asyncio.sleep(0.01)
        assert not turn.locked()
        assert turn.acquire(object(), timeout=0)

    asyncio.run(main())


def test_grant_to_a_closed_loop_is_skipped() -> None:
    """A waiter whose event loop has closed is skipped, and the next one served."""
    turn = Turn()
    assert turn.acquire()
    loop = asyncio.new_event_loop()
    from bastion_balance._state import _AsyncWaiter

    dead = _AsyncWaiter(turn, object(), loop)
    turn._waiters.append(dead)
    loop.close()
    nxt = object()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(turn.acquire(nxt, timeout=10)))
    thread.start()
    while len(turn._waiters) < 2:
        time.sleep(0.001)
    turn.release()
    thread.join(10)
    assert result == [True]
    assert turn.owned_by(nxt)


def test_interrupt_while_waiting_leaves_nothing_queued() -> None:
    """An exception (e.g. KeyboardInterrupt) inside a sync wait removes the waiter, or gives
    the turn on when it was granted in the meantime."""
    turn = Turn()
    assert turn.acquire()

    def cancelled() -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        turn.acquire(object(), timeout=5, cancelled=cancelled, poll=0.01)
    assert not turn._waiters
    turn.release()
    assert not turn.locked()

    # granted during the interrupted wait: the interrupted waiter hands it on
    assert turn.acquire()
    me = object()

    def grant_then_interrupt() -> bool:
        turn.release()  # grants it to `me`, which is queued
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        turn.acquire(me, timeout=5, cancelled=grant_then_interrupt, poll=0.01)
    assert not turn.locked()


def test_many_loops_and_threads_exclusive() -> None:
    """4 event loops in 4 threads plus 4 plain threads: never two holders at once."""
    turn = Turn()
    holders: list[int] = []
    overlaps: list[int] = []
    rounds = 50

    def critical() -> None:
        holders.append(1)
        if len(holders) > 1:
            overlaps.append(len(holders))
        time.sleep(0.0002)
        holders.pop()

    def in_loop() -> None:
        async def main() -> None:
            for _ in range(rounds):
                me = object()
                await turn.aacquire(me)
                critical()
                turn.release(me)
                await asyncio.sleep(0)

        asyncio.run(main())

    def in_thread() -> None:
        for _ in range(rounds):
            me = object()
            assert turn.acquire(me, timeout=30)
            critical()
            turn.release(me)

    threads = [threading.Thread(target=in_loop) for _ in range(4)]
    threads += [threading.Thread(target=in_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert overlaps == []
    assert not turn.locked()


def test_granted_while_giving_up_is_kept() -> None:
    """A waiter that gives up at the very moment the turn is handed to it owns the turn."""
    turn = Turn()
    turn.acquire("a")

    def cancelled() -> bool:
        turn.release("a")  # the grant lands between the wait's end and the look at the queue
        return True

    assert turn.acquire("b", timeout=5, cancelled=cancelled) is True
    assert turn.owned_by("b")
    turn.release("b")
    assert not turn.locked()


def test_timeout_without_cancel_hook() -> None:
    """With only a timeout, the wait ends at it and the caller is not queued any more."""
    turn = Turn()
    turn.acquire("a")
    started = time.monotonic()
    assert turn.acquire("b", timeout=0.05) is False
    assert time.monotonic() - started >= 0.04
    turn.release("a")
    assert not turn.locked()


def test_cancel_hook_without_timeout_waits_for_the_grant() -> None:
    """With a cancel hook and no timeout, the wait polls the hook until the turn is handed over."""
    turn = Turn()
    turn.acquire("a")
    polls: list[int] = []

    def cancelled() -> bool:
        polls.append(1)
        if len(polls) == 2:
            turn.release("a")
        return False

    assert turn.acquire("b", cancelled=cancelled, poll=0.01) is True
    assert turn.owned_by("b")
    assert len(polls) >= 2


def test_waiter_granted_then_cancelled_before_it_resumed_gives_the_turn_back() -> None:
    """The grant has settled the waiter's future, then its task is cancelled before it runs
    again: the turn it was given goes on to the next waiter instead of staying with it."""

    async def main() -> None:
        turn = Turn()
        holder, granted_owner, next_owner = object(), object(), object()
        assert turn.acquire(holder, timeout=0)
        granted = asyncio.ensure_future(turn.aacquire(granted_owner))
        following = asyncio.ensure_future(turn.aacquire(next_owner))
        while len(turn._waiters) < 2:
            await asyncio.sleep(0)
        waiter = turn._waiters[0]
        turn.release(holder)  # the turn is granted_owner's; its future is settled on this loop
        assert turn.owned_by(granted_owner)
        while not waiter.future.done():
            await asyncio.sleep(0)
        assert not granted.done()  # settled, but the task has not resumed yet
        granted.cancel()
        with pytest.raises(asyncio.CancelledError):
            await granted
        assert waiter.future.done() and not waiter.future.cancelled()  # it had been granted
        await asyncio.wait_for(following, 5)  # and the grant went on
        assert turn.owned_by(next_owner)
        assert turn.release(next_owner)
        assert not turn.locked()

    asyncio.run(main())
