"""``afetch_balance(p)`` without ``client=`` against the same call with a client kept by the caller.

    python benchmarks/loop_client.py [rounds]

Both run on one event loop against a loopback Kraken, interleaved, medians printed side by side
(target: <= 1.5x). Before the per-loop default client each call without ``client=`` built a
connection pool and a TLS context (11-19x). ``benchmarks/suite.py`` reuses :func:`measure`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
import time

import bastion_balance as bb
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    LoopbackServer,
    SimulatedKraken,
    Simulator,
    rate_limits_disabled,
)


@dataclasses.dataclass(frozen=True)
class Figures:
    """Median wall seconds per call of each side, and its client CPU seconds per call (mean)."""

    bare: float
    kept: float
    bare_cpu: float
    kept_cpu: float


async def measure(kraken: bb.Kraken, rounds: int) -> Figures:
    """``rounds`` calls of each kind, interleaved, on this loop (after one of each, unmeasured)."""
    bare: list[float] = []
    kept: list[float] = []
    cpu = {"bare": 0.0, "kept": 0.0}
    async with bb.AsyncBalanceClient() as client:
        await client.fetch(kraken)
        await bb.afetch_balance(kraken)
        for _ in range(rounds):
            started, cpu_started = time.perf_counter(), time.process_time()
            await bb.afetch_balance(kraken)
            bare.append(time.perf_counter() - started)
            cpu["bare"] += time.process_time() - cpu_started
            started, cpu_started = time.perf_counter(), time.process_time()
            await bb.afetch_balance(kraken, client=client)
            kept.append(time.perf_counter() - started)
            cpu["kept"] += time.process_time() - cpu_started
    return Figures(
        statistics.median(bare), statistics.median(kept), cpu["bare"] / rounds, cpu["kept"] / rounds
    )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with rate_limits_disabled(), LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1"))) as server:
        kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=server.url)
        figures = asyncio.run(measure(kraken, rounds))
    print(f"afetch_balance without client= : {figures.bare * 1e3:8.3f} ms (median of {rounds})")
    print(f"afetch_balance with a client    : {figures.kept * 1e3:8.3f} ms")
    print(f"ratio                           : {figures.bare / figures.kept:8.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
