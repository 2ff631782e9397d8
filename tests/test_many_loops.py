"""One Kraken key from several event loops (one per thread) and the main thread at once.

Over real loopback sockets, every answer delayed at the server: every fetch succeeds, the
simulator receives strictly increasing nonces in arrival order and never two requests of the
key at once, and no event loop is blocked while it waits for the key's turn (a ticker task in
each loop measures its lag). The scenarios live in benchmarks/load.py, which prints the same
figures; the test prints them too (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType


def _benchmark() -> ModuleType:
    name = "bastion_load_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parents[1] / "benchmarks" / "load.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


load = _benchmark()

LOOPS = 4
ROUNDS = 5
DELAY = 0.1


def test_loops_and_the_main_thread_share_one_key() -> None:
    """4 threads (2 running asyncio.run(bb.aaggregate(...)) every round, 2 keeping one loop and
    one AsyncBalanceClient) and bb.fetch_balance in the main thread, all on one key."""
    report = load.run_many_loops(loops=LOOPS, rounds=ROUNDS, sync_rounds=ROUNDS, delay=DELAY)
    print(report.text())
    assert report.failures == []
    assert report.fetched == report.expected == LOOPS * ROUNDS + ROUNDS
    assert report.arrivals == report.expected  # nothing was re-signed or retried
    assert report.accepted_nonces == report.expected  # the simulator refused no nonce
    assert report.nonces_increasing
    # One request of the key in flight at a time: the next one arrives only after the answer,
    # which the server sends DELAY after the arrival.
    assert report.min_gap >= DELAY - 0.005
    assert len(report.lags) == (LOOPS // 2) * ROUNDS + LOOPS // 2  # every loop had its ticker
    assert report.ticks > 0
    # Generous: building a new client (and its TLS context) on the loop each round stalls it
    # ~0.1 s; a loop blocked while the others take their turns would stall for seconds.
    assert report.max_lag < 1.0
    assert report.seconds < 60


def test_waiting_for_the_key_does_not_block_a_loop() -> None:
    """The main thread holds the key's turn for 1 s; four loops wait for it, ticking."""
    report = load.run_turn_hold(loops=LOOPS, hold=1.0, delay=0.05)
    print(report.text())
    assert report.failures == []
    assert report.arrivals == LOOPS + 1
    assert len(report.waited) == LOOPS
    assert min(report.waited) >= 0.5  # they did wait for the held turn
    assert report.after_hold  # and sent nothing while it was held
    assert report.nonces_increasing
    # A loop that waited by blocking its thread would lag by the whole hold (about 1 s).
    assert report.max_lag < 0.25


def test_the_ticker_sees_a_blocked_loop() -> None:
    """The lag meter used above does report a loop that is blocked."""

    async def main() -> float:
        meter = load.LagMeter()
        ticker = asyncio.ensure_future(meter.run(limit=10))
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # blocks the loop, as a synchronous wait would
        await asyncio.sleep(0.05)
        meter.stop()
        await ticker
        return meter.worst

    assert asyncio.run(main()) >= 0.25
