"""``afetch_balance(p)`` without ``client=`` against the same call with a client kept by the caller.

    python benchmarks/loop_client.py [rounds]

Both run on one event loop against a loopback Kraken, interleaved, medians printed side by side
(target: <= 1.5x). Before the per-loop default client each call without ``client=`` built a
connection pool and a TLS context (11-19x).
"""

from __future__ import annotations

import asyncio
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


async def measure(url: str, rounds: int) -> tuple[float, float]:
    kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=url)
    bare: list[float] = []
    kept: list[float] = []
    async with bb.AsyncBalanceClient() as client:
        await client.fetch(kraken)
        await bb.afetch_balance(kraken)
        for _ in range(rounds):
            started = time.perf_counter()
            await bb.afetch_balance(kraken)
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            await bb.afetch_balance(kraken, client=client)
            kept.append(time.perf_counter() - started)
    return statistics.median(bare), statistics.median(kept)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with rate_limits_disabled(), LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1"))) as server:
        bare, kept = asyncio.run(measure(server.url, rounds))
    print(f"afetch_balance without client= : {bare * 1e3:8.3f} ms (median of {rounds})")
    print(f"afetch_balance with a client    : {kept * 1e3:8.3f} ms")
    print(f"ratio                           : {bare / kept:8.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
