"""The performance suite: every target of docs/decisions.md §28 as a ratio measured side by side.

    python benchmarks/suite.py [--quick] [--json figures.json]

One run prints one table: row, ours, baseline, ratio, target, pass or MISS, and the client CPU
per fetch of each side. The two sides of each ratio run interleaved (alternating, or their order
reversed every other round) and the medians are compared, so a loaded machine slows both alike.
The venues answer from child processes over loopback (``benchmarks/load.py``'s
``VenueProcess``: one without delay, one delaying every answer), so their work is never counted
as the client's; the 1,000-account runs each get a client process of their own
(``benchmarks/accounts.py``), which reports its CPU time and peak RSS.

Rows (docs/performance.md says what each measures, its floor and what is known to miss):

* import: fresh interpreters, ``import bastion_balance`` against ``import httpx, attrs, cattrs,
  tenacity``, and against ``import ccxt``;
* cold start: a fresh interpreter to the first Kraken balance against the same imports plus one
  bare ``httpx.post``, and against ccxt's ``privatePostTradeBalance`` (pointed at the same
  simulator through ``urls['api']``, signing with a key it knows);
* parse: bytes -> ``Balance`` against ``json.loads(body, parse_float=Decimal)``, every venue;
* warm fetch (sync and async): one fetch on a warm client against a bare warm httpx POST, signed
  the same way, plus ``json.loads``; wall time and CPU;
* ``afetch_balance(p)`` without ``client=`` against the same call with a kept client;
* 1,000 accounts: ``aaggregate`` against bare httpx with 100 requests in flight, and ``aggregate``
  against bare httpx from 100 threads, every answer delayed 200 ms; plus peak RSS;
* fan-out: one account at each of the seven venues, every answer delayed 200 ms, against 200 ms.

Rows that need ccxt (the ``bench`` extra) are skipped with a note when it is not installed.
``--quick`` runs tiny sizes (the CI smoke run, tests/test_benchmarks.py): it checks that the
suite runs, and its figures mean nothing. The client-side rate limiters are switched off for the
rows that call one key hundreds of times in a row (they would pace the calls, which is their
job, not overhead), and left on for the 1,000-account runs (one or two calls per key).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import accounts
import httpx
import import_time
import load
import loop_client
import parse

import bastion_balance as bb
from bastion_balance.testing import rate_limits_disabled

HAS_CCXT: Final = importlib.util.find_spec("ccxt") is not None
NO_CCXT: Final = "skipped: ccxt is not installed (pip install -e '.[bench]')"
MIB: Final = 1024.0

# Fresh interpreters for the cold-start rows; the venue URL and keys come in the environment.
COLD_OURS: Final = (
    "import os, bastion_balance as bb; e = os.environ; "
    "b = bb.fetch_balance(bb.Kraken(api_key=e['BENCH_KEY'], api_secret=e['BENCH_SECRET'], "
    "base_url=e['BENCH_URL'])); assert b.total > 0"
)
COLD_FLOOR: Final = (
    "import os, httpx, attrs, cattrs, tenacity; "
    "r = httpx.post(os.environ['BENCH_URL'] + '/0/private/TradeBalance', content=b'nonce=1&asset=ZUSD', "
    "headers={'Content-Type': 'application/x-www-form-urlencoded'}); assert r.status_code == 200"
)
COLD_CCXT: Final = (
    "import os, ccxt; e = os.environ; "
    "x = ccxt.kraken({'apiKey': e['BENCH_CCXT_KEY'], 'secret': e['BENCH_CCXT_SECRET']}); "
    "x.urls['api'] = {'public': e['BENCH_URL'], 'private': e['BENCH_URL']}; "
    "assert x.privatePostTradeBalance()['result']['eb']"
)
IMPORT_CCXT: Final = "import ccxt"

# Which worker's Kraken key (benchmarks/load.py's Credentials) each row of the quiet venues uses:
# distinct keys, so nonces from different counters never meet at the simulator.
KEY_WARM_OURS, KEY_WARM_BARE, KEY_CCXT, KEY_COLD, KEY_LOOP = range(5)


@dataclasses.dataclass(frozen=True)
class Sizes:
    import_rounds: int = 15
    cold_rounds: int = 11
    parse_rounds: int = 7
    parse_number: int = 2000
    warm_rounds: int = 300
    loop_rounds: int = 200
    accounts: int = 1000
    account_rounds: int = 3
    in_flight: int = 100
    delay: float = 0.2
    fanout_rounds: int = 10
    warm_interpreters: bool = True


QUICK: Final = Sizes(
    import_rounds=1,
    cold_rounds=1,
    parse_rounds=1,
    parse_number=20,
    warm_rounds=5,
    loop_rounds=3,
    accounts=20,
    account_rounds=1,
    in_flight=10,
    delay=0.02,
    fanout_rounds=2,
    warm_interpreters=False,
)


@dataclasses.dataclass
class Row:
    """One line of the table. ``ours`` and ``baseline`` are in ``unit`` ("s" or "MiB");
    CPU figures are client CPU seconds per fetch."""

    name: str
    ours: float | None
    baseline: float | None
    target: float | None
    unit: str = "s"
    cpu_ours: float | None = None
    cpu_baseline: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline

    @property
    def mark(self) -> str:
        if self.ratio is None:
            return "skip"
        if self.target is None:
            return ""
        return "pass" if self.ratio <= self.target else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio, "mark": self.mark}


def amount(value: float | None, unit: str = "s") -> str:
    """A time in s, ms or us with three significant digits, or an amount of ``unit``."""
    if value is None:
        return "-"
    if unit != "s":
        return f"{value:.1f} {unit}"
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} us"


def table(rows: Sequence[Row]) -> str:
    head = ("row", "ours", "baseline", "ratio", "target", "", "CPU/fetch ours", "CPU/fetch base")
    body = [
        (
            row.name,
            amount(row.ours, row.unit),
            amount(row.baseline, row.unit),
            "-" if row.ratio is None else f"{row.ratio:.2f}",
            "-" if row.target is None else f"<= {row.target:g}",
            row.mark,
            amount(row.cpu_ours),
            amount(row.cpu_baseline),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = []
    for line in [head, *body]:
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    notes = [f"  {row.name}: {row.note}" for row in rows if row.note]
    return "\n".join([*lines, *(["notes:", *notes] if notes else [])])


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    ram = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as meminfo:
        ram = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:")), 0)
    versions = {}
    for package in ("httpx", "httpcore", "attrs", "cattrs", "tenacity", "ccxt"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cores": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "ram_gib": round(ram / MIB / MIB, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "bastion_balance": bb.__version__,
        "versions": versions,
        "load_average": os.getloadavg(),
    }


# --------------------------------------------------------------------------- fresh interpreters


def import_rows(sizes: Sizes) -> list[Row]:
    codes = [import_time.OURS, import_time.FLOOR] + ([IMPORT_CCXT] if HAS_CCXT else [])
    times = [
        statistics.median(t)
        for t in import_time.alternate(codes, sizes.import_rounds, warm=sizes.warm_interpreters)
    ]
    rows = [Row("import bastion_balance / import httpx, attrs, cattrs, tenacity", times[0], times[1], 1.10)]
    if HAS_CCXT:
        rows.append(Row("import bastion_balance / import ccxt", times[0], times[2], 0.40))
    else:
        rows.append(Row("import bastion_balance / import ccxt", None, None, 0.40, note=NO_CCXT))
    return rows


def cold_rows(sizes: Sizes, url: str) -> list[Row]:
    key, secret = load.Credentials(KEY_COLD, "").kraken
    ccxt_key, ccxt_secret = load.Credentials(KEY_CCXT, "").kraken
    env = {"BENCH_URL": url, "BENCH_KEY": key, "BENCH_SECRET": secret}
    env |= {"BENCH_CCXT_KEY": ccxt_key, "BENCH_CCXT_SECRET": ccxt_secret}
    codes = [COLD_OURS, COLD_FLOOR] + ([COLD_CCXT] if HAS_CCXT else [])
    times = [
        statistics.median(t)
        for t in import_time.alternate(codes, sizes.cold_rounds, env, warm=sizes.warm_interpreters)
    ]
    name = "cold start to the first Kraken balance"
    rows = [Row(f"{name} / the floor + one bare httpx POST", times[0], times[1], 1.10)]
    if HAS_CCXT:
        rows.append(Row(f"{name} / ccxt privatePostTradeBalance", times[0], times[2], 0.40))
    else:
        rows.append(Row(f"{name} / ccxt privatePostTradeBalance", None, None, 0.40, note=NO_CCXT))
    return rows


# --------------------------------------------------------------------------- in this process


def parse_rows(sizes: Sizes) -> list[Row]:
    rows = []
    for provider, answer in parse.captured_answers():
        mine, base = parse.timings(provider, answer, sizes.parse_rounds, sizes.parse_number)
        name = f"parse bytes -> Balance, {provider.venue} / json.loads(parse_float=Decimal)"  # type: ignore[attr-defined]
        rows.append(Row(name, statistics.median(mine), statistics.median(base), 2.0))
    return rows


@dataclasses.dataclass
class Sides:
    """Wall seconds per call of two interleaved callables, and their total CPU seconds."""

    walls: tuple[list[float], list[float]] = dataclasses.field(default_factory=lambda: ([], []))
    cpu: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0])

    def rows(self, name: str, rounds: int, target: float, cpu_target: float | None) -> list[Row]:
        cpu_ours, cpu_base = self.cpu[0] / rounds, self.cpu[1] / rounds
        rows = [
            Row(
                name,
                statistics.median(self.walls[0]),
                statistics.median(self.walls[1]),
                target,
                cpu_ours=cpu_ours,
                cpu_baseline=cpu_base,
            )
        ]
        if cpu_target is not None:
            rows.append(Row(f"{name}: client CPU", cpu_ours, cpu_base, cpu_target))
        return rows


def interleave(calls: Sequence[Callable[[], object]], rounds: int) -> Sides:
    sides = Sides()
    for index in range(rounds):
        for which in (0, 1) if index % 2 else (1, 0):
            started, cpu = time.perf_counter(), time.process_time()
            calls[which]()
            sides.walls[which].append(time.perf_counter() - started)
            sides.cpu[which] += time.process_time() - cpu
    return sides


async def ainterleave(calls: Sequence[Callable[[], Awaitable[object]]], rounds: int) -> Sides:
    sides = Sides()
    for index in range(rounds):
        for which in (0, 1) if index % 2 else (1, 0):
            started, cpu = time.perf_counter(), time.process_time()
            await calls[which]()
            sides.walls[which].append(time.perf_counter() - started)
            sides.cpu[which] += time.process_time() - cpu
    return sides


def _check(ok: bool, what: str) -> None:
    if not ok:
        msg = f"{what} failed"
        raise RuntimeError(msg)


def warm_rows(sizes: Sizes, url: str) -> list[Row]:
    """One warm fetch (sync, then async) against a bare warm httpx POST, signed alike, + json.loads."""
    ours_key, ours_secret = load.Credentials(KEY_WARM_OURS, "").kraken
    bare_key, bare_secret = load.Credentials(KEY_WARM_BARE, "").kraken
    kraken = bb.Kraken(api_key=ours_key, api_secret=ours_secret, base_url=url)
    target = url + accounts.PATH
    with bb.BalanceClient() as client, httpx.Client() as http:

        def bare() -> None:
            body, headers = accounts.kraken_request(bare_key, bare_secret)
            _check(accounts.kraken_ok(http.post(target, content=body, headers=headers).content), "bare fetch")

        calls = [lambda: client.fetch(kraken), bare]
        for call in calls:
            call()
        sync = interleave(calls, sizes.warm_rounds)

    async def async_side() -> Sides:
        async with bb.AsyncBalanceClient() as aclient, httpx.AsyncClient() as ahttp:

            async def abare() -> None:
                body, headers = accounts.kraken_request(bare_key, bare_secret)
                response = await ahttp.post(target, content=body, headers=headers)
                _check(accounts.kraken_ok(response.content), "bare fetch")

            acalls = [lambda: aclient.fetch(kraken), abare]
            for acall in acalls:
                await acall()
            return await ainterleave(acalls, sizes.warm_rounds)

    floor = "bare warm httpx + json.loads"
    return [
        *sync.rows(f"warm sync fetch / {floor}", sizes.warm_rounds, 1.20, 1.10),
        *asyncio.run(async_side()).rows(f"warm async fetch / {floor}", sizes.warm_rounds, 1.20, 1.10),
    ]


def loop_row(sizes: Sizes, url: str) -> Row:
    key, secret = load.Credentials(KEY_LOOP, "").kraken
    kraken = bb.Kraken(api_key=key, api_secret=secret, base_url=url)
    figures = asyncio.run(loop_client.measure(kraken, sizes.loop_rounds))
    return Row(
        "afetch_balance(p) without client= / with a reused client",
        figures.bare,
        figures.kept,
        1.5,
        cpu_ours=figures.bare_cpu,
        cpu_baseline=figures.kept_cpu,
    )


def fanout_rows(sizes: Sizes, providers: Sequence[Any], url: str, bare_key: tuple[str, str]) -> list[Row]:
    """One account at each venue, every answer ``delay`` late: the aggregate against the delay,
    and (for reference) against one bare signed httpx POST to the same delayed Kraken, timed in
    the same rounds: what is left above that is the client's own."""
    count = len(providers)
    target = url + accounts.PATH
    portfolios: list[bb.Portfolio] = []

    def rows(side: str, sides: Sides) -> list[Row]:
        failed = sorted(
            {f"{label} ({type(exc).__name__})" for p in portfolios for label, exc in p.errors.items()}
        )
        note = f"failed: {', '.join(failed)}" if failed else ""
        wall, bare = statistics.median(sides.walls[0]), statistics.median(sides.walls[1])
        cpu = sides.cpu[0] / sizes.fanout_rounds / count
        name = f"fan-out over {count} venues at {sizes.delay * 1000:g} ms, {side}"
        return [
            Row(f"{name} / {sizes.delay * 1000:g} ms", wall, sizes.delay, 1.05, cpu_ours=cpu, note=note),
            Row(f"{name} / one bare httpx POST at {sizes.delay * 1000:g} ms", wall, bare, None),
        ]

    async def async_side() -> Sides:
        async with bb.AsyncBalanceClient() as client, httpx.AsyncClient() as http:

            async def ours() -> None:
                portfolios.append(await client.aggregate(providers, timeout=60))

            async def bare() -> None:
                body, headers = accounts.kraken_request(*bare_key)
                response = await http.post(target, content=body, headers=headers)
                _check(accounts.kraken_ok(response.content), "bare fetch")

            await ours()  # tokens, clock offsets, connections
            await bare()
            return await ainterleave([ours, bare], sizes.fanout_rounds)

    def sync_side() -> Sides:
        with bb.BalanceClient() as client, httpx.Client() as http:

            def ours() -> None:
                portfolios.append(client.aggregate(providers, timeout=60))

            def bare() -> None:
                body, headers = accounts.kraken_request(*bare_key)
                _check(
                    accounts.kraken_ok(http.post(target, content=body, headers=headers).content), "bare fetch"
                )

            ours()
            bare()
            return interleave([ours, bare], sizes.fanout_rounds)

    result = rows("aaggregate", asyncio.run(async_side()))
    portfolios.clear()
    return result + rows("sync aggregate", sync_side())


# --------------------------------------------------------------------------- client processes


def account_keys(size: int) -> list[tuple[str, str]]:
    """The Kraken keys of ``size`` accounts, workers 1.. of the delayed venues (0 is the fan-out's)."""
    return [load.Credentials(n, "").kraken for n in range(1, size + 1)]


def account_runs(
    pairs: Sequence[tuple[str, str]], url: str, size: int, rounds: int, in_flight: int
) -> dict[str, list[dict[str, Any]]]:
    """``rounds`` client processes of each kind in ``pairs`` (ours, floor), the order reversed
    every other round; each kind's figures, one dict per round."""
    keys = account_keys(size)
    warm = min(size, in_flight)
    figures: dict[str, list[dict[str, Any]]] = {kind: [] for pair in pairs for kind in pair}
    for index in range(rounds):
        for pair in pairs:
            for kind in pair if index % 2 else reversed(pair):
                figures[kind].append(accounts.run(kind, url, keys, warm=warm, in_flight=in_flight))
    return figures


def per_fetch(runs: Sequence[dict[str, Any]], field: str) -> float:
    return statistics.median(run[field] / run["size"] for run in runs)


def account_rows(sizes: Sizes, url: str) -> tuple[list[Row], dict[str, Any]]:
    pairs = [("aaggregate", "httpx-async"), ("aggregate", "httpx-threads")]
    runs = account_runs(pairs, url, sizes.accounts, sizes.account_rounds, sizes.in_flight)
    n, k = f"{sizes.accounts:,}", sizes.in_flight
    names = {
        "aaggregate": (f"{n} accounts in one aaggregate / bare httpx with {k} in flight", "aaggregate"),
        "aggregate": (f"{n} accounts, sync aggregate / bare httpx with {k} threads", "sync aggregate"),
    }
    rows = []
    for ours, floor in pairs:
        name, short = names[ours]
        failures = sum(r["failures"] for r in runs[ours] + runs[floor])
        note = f"failed: {failures} accounts did not come back" if failures else ""
        seconds = [statistics.median(r["seconds"] for r in runs[kind]) for kind in (ours, floor)]
        cpus = [per_fetch(runs[kind], "cpu") for kind in (ours, floor)]
        rows.append(Row(name, *seconds, 1.25, cpu_ours=cpus[0], cpu_baseline=cpus[1], note=note))
        # the floor of docs/decisions.md §28: accounts / connections x the venue's delay
        bound = -(-sizes.accounts // k) * sizes.delay
        rows.append(
            Row(f"{n} accounts, {short} / the pool-bound floor ({n} / {k} x delay)", seconds[0], bound, None)
        )
        peaks = [statistics.median(r["peak_kib"] for r in runs[kind]) / MIB for kind in (ours, floor)]
        rows.append(Row(f"{n} accounts, {short}: peak RSS of the client process", *peaks, None, unit="MiB"))
    return rows, runs


# --------------------------------------------------------------------------- main


def delayed_requests(sizes: Sizes, extra: int = 0) -> int:
    """More than the delayed venues will receive: every answer to the runs is delayed."""
    warm = min(sizes.accounts, sizes.in_flight)
    accounts_requests = sizes.account_rounds * 4 * (sizes.accounts + warm)
    return 2 * (accounts_requests + 4 * (sizes.fanout_rounds + 2) + extra) + 100


def run_suite(sizes: Sizes) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    extra: dict[str, Any] = {}
    rows += import_rows(sizes)
    rows += parse_rows(sizes)
    fan_out = load.Credentials.make(0)
    quiet = load.VenueProcess([], latency=0.0, delayed_requests=0, workers=KEY_LOOP + 1)
    slow = load.VenueProcess(
        [fan_out],
        latency=sizes.delay,
        delayed_requests=delayed_requests(sizes),
        workers=sizes.accounts + 2,  # 0: the fan-out's, 1..accounts, accounts + 1: the bare fan-out POST
    )
    with quiet, slow:
        url = quiet.urls["kraken"]
        rows += cold_rows(sizes, url)
        with rate_limits_disabled():
            rows += warm_rows(sizes, url)
            rows.append(loop_row(sizes, url))
            bare_key = load.Credentials(sizes.accounts + 1, "").kraken
            rows += fanout_rows(sizes, fan_out.providers(slow.urls), slow.urls["kraken"], bare_key)
        account, extra["accounts"] = account_rows(sizes, slow.urls["kraken"])
        rows += account
    arrivals = quiet.arrivals + slow.arrivals
    # the cold-start floor's POST is unsigned on purpose (one bare request): refused, as it should be
    refused = [a for a in arrivals if a.refusal and a.credential]
    extra["venues"] = {
        "requests": len(arrivals),
        "refused": len(refused),
        "refusals": sorted({f"{a.venue}: {a.refusal}" for a in refused}),
        "handler_errors": quiet.handler_errors + slow.handler_errors,
    }
    return rows, extra


def _loads(averages: Sequence[float]) -> str:
    return " ".join(f"{x:.2f}" for x in averages)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: only checks that it runs")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    about = machine()
    print(
        f"{about['date']}: {about['cores']} cores ({about['cpu']}), {about['ram_gib']} GiB, "
        f"Python {about['python']}, load average {_loads(about['load_average'])}"
        + (" (--quick: tiny sizes, the figures mean nothing)" if args.quick else "")
    )
    started = time.monotonic()
    rows, extra = run_suite(sizes)
    about["seconds"] = round(time.monotonic() - started, 1)
    about["load_average_after"] = os.getloadavg()
    print(table(rows))
    venues = extra["venues"]
    print(
        f"venues: {venues['requests']} requests answered, {venues['refused']} refused "
        f"{venues['refusals']}, handler errors {venues['handler_errors']}; "
        f"{about['seconds']:g} s, load average after {_loads(about['load_average_after'])}"
    )
    if args.json:
        figures = {
            "machine": about,
            "sizes": dataclasses.asdict(sizes),
            "rows": [row.as_dict() for row in rows],
            **extra,
        }
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    failed = (
        venues["refused"] or venues["handler_errors"] or any(row.note.startswith("failed") for row in rows)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
