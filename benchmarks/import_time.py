"""``import bastion_balance`` against ``import httpx, attrs, cattrs, tenacity`` (its dependencies).

    python benchmarks/import_time.py [rounds]

Each round starts two fresh interpreters, one per import, in alternating order; the medians of
the wall times and their ratio are printed (target: <= 1.10, docs/decisions.md §28). The
interpreter's own start-up is in both, as it is for a script or a serverless job.
``benchmarks/suite.py`` reuses :func:`alternate` for its import and cold-start rows.
"""

from __future__ import annotations

import compileall
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

FLOOR = "import httpx, attrs, cattrs, tenacity"
OURS = "import bastion_balance"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without a coverage hook (it would slow one side), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE")}
    env.update(extra or {})
    return env


def once(code: str, env: Mapping[str, str] | None = None) -> float:
    """Wall seconds of a fresh interpreter running ``code``, start to exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=clean_env(env))
    return time.perf_counter() - started


def compile_package(name: str = "bastion_balance") -> None:
    """Write the bytecode of package ``name``, as installing a wheel does (``pip`` compiles every
    module). An editable install, or a shell with ``PYTHONDONTWRITEBYTECODE=1``, would otherwise
    make every fresh interpreter compile the package's sources again (about 55 ms here), which a
    user's installed copy never does; the dependencies in site-packages were compiled by pip."""
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            compileall.compile_dir(folder, quiet=1)


def alternate(
    codes: Sequence[str], rounds: int, env: Mapping[str, str] | None = None, *, warm: bool = True
) -> list[list[float]]:
    """Each round runs every code once in a fresh interpreter, the order reversed every other
    round; one list of wall times per code. The package's bytecode is written first
    (:func:`compile_package`); with ``warm``, each runs once first, unmeasured (file cache)."""
    compile_package()
    for code in codes if warm else ():
        once(code, env)
    times: list[list[float]] = [[] for _ in codes]
    order = list(range(len(codes)))
    for index in range(rounds):
        for which in order if index % 2 else reversed(order):
            times[which].append(once(codes[which], env))
    return times


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    floor, ours = alternate([FLOOR, OURS], rounds)
    low, high = statistics.median(floor), statistics.median(ours)
    print(f"{FLOOR:40}: {low * 1e3:7.1f} ms (median of {rounds})")
    print(f"{OURS:40}: {high * 1e3:7.1f} ms")
    print(f"{'ratio':40}: {high / low:7.2f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
