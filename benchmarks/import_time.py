"""``import bastion_balance`` against ``import httpx, attrs, cattrs, tenacity`` (its dependencies).

    python benchmarks/import_time.py [rounds]

Each round starts two fresh interpreters, one per import, in alternating order; the medians of
the wall times and their ratio are printed (target: <= 1.10, docs/decisions.md §28). The
interpreter's own start-up is in both, as it is for a script or a serverless job.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

FLOOR = "import httpx, attrs, cattrs, tenacity"
OURS = "import bastion_balance"


def once(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    floor: list[float] = []
    ours: list[float] = []
    once(OURS)  # warm the file cache and bytecode
    for index in range(rounds):
        pair = [(FLOOR, floor), (OURS, ours)]
        for code, times in pair if index % 2 else reversed(pair):
            times.append(once(code))
    low, high = statistics.median(floor), statistics.median(ours)
    print(f"{FLOOR:40}: {low * 1e3:7.1f} ms (median of {rounds})")
    print(f"{OURS:40}: {high * 1e3:7.1f} ms")
    print(f"{'ratio':40}: {high / low:7.2f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
