"""Time and client CPU per fetch against the number of accounts, as a PNG (docs/performance.png).

    python benchmarks/plot.py [--sizes 10 100 500 1000 2000] [--rounds 2] [--json figures.json]
    python benchmarks/plot.py --from figures.json       # plot saved figures again, no measuring

For each number of accounts, ``aaggregate``, sync ``aggregate`` and their bare httpx floors
(``in_flight`` requests at a time, from one event loop or from that many threads) each run in a
client process of their own (``benchmarks/accounts.py``) against Kraken simulators in a child
process that delay every answer (200 ms by default); the kinds alternate in order, round by
round, and the medians are plotted. Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import accounts
import load
import suite

SERIES: Final = (
    # kind, label, style
    ("aaggregate", "aaggregate", {"color": "tab:blue", "marker": "o"}),
    ("aggregate", "sync aggregate", {"color": "tab:orange", "marker": "s"}),
    ("httpx-async", "bare httpx, one loop", {"color": "tab:blue", "linestyle": "--", "marker": "."}),
    ("httpx-threads", "bare httpx, threads", {"color": "tab:orange", "linestyle": "--", "marker": "."}),
)
OUT: Final = Path(__file__).resolve().parents[1] / "docs" / "performance.png"


def measure(sizes: Sequence[int], rounds: int, delay: float, in_flight: int) -> dict[str, Any]:
    """Every kind at every size, ``rounds`` times; medians per fetch (seconds)."""
    kinds = [kind for kind, _, _ in SERIES]
    expected = rounds * len(kinds) * sum(size + min(size, in_flight) for size in sizes)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {kind: {size: [] for size in sizes} for kind in kinds}
    with load.VenueProcess(
        [], latency=delay, delayed_requests=expected + 100, workers=max(sizes) + 1
    ) as venues:
        url = venues.urls["kraken"]
        for index in range(rounds):
            for size in sizes:
                keys = suite.account_keys(size)
                for kind in kinds if index % 2 else reversed(kinds):
                    figures = accounts.run(kind, url, keys, warm=min(size, in_flight), in_flight=in_flight)
                    runs[kind][size].append(figures)
    failures = sum(r["failures"] for by_size in runs.values() for rs in by_size.values() for r in rs)
    refused = sum(1 for a in venues.arrivals if a.refusal)
    return {
        "machine": suite.machine(),
        "delay": delay,
        "in_flight": in_flight,
        "rounds": rounds,
        "sizes": list(sizes),
        "failures": failures,
        "refused": refused,
        "series": {
            kind: {
                "wall": [suite.per_fetch(runs[kind][size], "seconds") for size in sizes],
                "cpu": [suite.per_fetch(runs[kind][size], "cpu") for size in sizes],
                "peak_mib": [
                    statistics.median(r["peak_kib"] for r in runs[kind][size]) / suite.MIB for size in sizes
                ],
            }
            for kind in kinds
        },
    }


def plot(figures: dict[str, Any], out: Path) -> None:
    import matplotlib as mpl  # noqa: PLC0415  # the bench extra, only when plotting

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

    sizes = figures["sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=100, layout="constrained")
    for kind, label, style in SERIES:
        series = figures["series"][kind]
        left.plot(sizes, [s * 1e3 for s in series["wall"]], label=label, **style)
        right.plot(sizes, [s * 1e3 for s in series["cpu"]], **style)
    delay_ms = figures["delay"] * 1e3
    bound = [delay_ms * -(-size // figures["in_flight"]) / size for size in sizes]
    left.plot(sizes, bound, color="grey", linestyle=":", label="pool-bound floor (delay / in flight)")
    left.set_title(f"wall time per fetch (every answer {delay_ms:g} ms late)", fontsize=10)
    right.set_title("client CPU per fetch (user + system)", fontsize=10)
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xticks(sizes, [f"{s:,}" for s in sizes])
        axis.minorticks_off()
        axis.set_xlabel("accounts in one aggregate")
        axis.set_ylabel("ms")
        axis.grid(visible=True, alpha=0.3)
    left.set_yscale("log")
    low, high = left.get_ylim()
    steps = [m * 10.0**e for e in range(-3, 5) for m in (1, 2, 5)]
    left.set_yticks([t for t in steps if low <= t <= high])
    left.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    left.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    right.set_ylim(bottom=0)
    fig.legend(loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    about = figures["machine"]
    fig.suptitle(
        f"{figures['in_flight']} in flight; {about['cores']} cores ({about['cpu']}), "
        f"Python {about['python']}, {about['date']}, medians of {figures['rounds']} runs",
        fontsize=8,
    )
    fig.savefig(out)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500, 1000, 2000])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.2, help="server delay per answer, s")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--from", dest="source", type=Path, help="plot these saved figures instead")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: only checks that it runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.rounds, args.delay, args.in_flight = [5, 10], 1, 0.02, 5
    if args.source:
        figures = json.loads(args.source.read_text())
    else:
        started = time.monotonic()
        figures = measure(args.sizes, args.rounds, args.delay, args.in_flight)
        print(f"measured in {time.monotonic() - started:.0f} s")
    print(
        f"{'accounts':>8}  "
        + "  ".join(f"{label:>22}" for _, label, _ in SERIES)
        + "   (ms per fetch: wall / CPU)"
    )
    for index, size in enumerate(figures["sizes"]):
        series = [figures["series"][kind] for kind, _, _ in SERIES]
        cells = [f"{s['wall'][index] * 1e3:9.3f} / {s['cpu'][index] * 1e3:6.3f}" for s in series]
        print(f"{size:8}  " + "  ".join(f"{cell:>22}" for cell in cells))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    plot(figures, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} kB)")
    return 1 if figures["failures"] or figures["refused"] else 0


if __name__ == "__main__":
    sys.exit(main())
