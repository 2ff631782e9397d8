"""Many Kraken accounts in one call, each run in a client process of its own.

One process per run, so the CPU time (``getrusage``, every thread) and the peak RSS (``VmHWM``,
which a fresh ``exec`` starts afresh) it reports are that run's own; the venue answers from
another process (``benchmarks/load.py``'s ``VenueProcess``), so its work is not counted. The
parent sends one JSON line on stdin and reads one JSON line back:

* ``aaggregate``: ``await bb.aaggregate(providers)`` (the event loop's default client);
* ``aggregate``: ``bb.aggregate(providers)`` (the process-wide client and its worker threads);
* ``httpx-async``: the floor: one ``httpx.AsyncClient``, ``in_flight`` requests at a time;
* ``httpx-threads``: the floor: one ``httpx.Client`` shared by ``in_flight`` threads.

A bare request is what a caller without the library writes: sign (HMAC-SHA512, a microsecond
nonce), POST, ``json.loads(body, parse_float=Decimal)``, check Kraken's ``error`` array. The
bare pools keep every connection alive (``max_keepalive_connections=in_flight``), as the
library's do. Each run fetches ``warm`` accounts first, unmeasured (connections, threads, first
use), then every account once, timed. Only the standard library is imported at the top, so a
floor run never loads ``bastion_balance``.

    python benchmarks/accounts.py < config.json     # benchmarks/suite.py and plot.py start it
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

KINDS: Final = ("aaggregate", "aggregate", "httpx-async", "httpx-threads")
PATH: Final = "/0/private/TradeBalance"
_TIMEOUT: Final = 300.0  # one run; the aggregates' own deadline is the same

_nonce_lock = threading.Lock()
_last_nonce = [0]


def nonce() -> int:
    """Unix time in microseconds, strictly increasing in this process (as the library's)."""
    with _nonce_lock:
        _last_nonce[0] = max(_last_nonce[0] + 1, time.time_ns() // 1000)
        return _last_nonce[0]


def kraken_request(key: str, secret: str) -> tuple[bytes, dict[str, str]]:
    """A signed TradeBalance body and its headers, written from Kraken's documentation."""
    number = nonce()
    body = urlencode([("nonce", str(number)), ("asset", "ZUSD")])
    digest = hashlib.sha256(f"{number}{body}".encode()).digest()
    mac = hmac.new(base64.b64decode(secret), PATH.encode() + digest, hashlib.sha512)
    headers = {
        "API-Key": key,
        "API-Sign": base64.b64encode(mac.digest()).decode(),
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    }
    return body.encode(), headers


def kraken_ok(content: bytes) -> bool:
    """Whether a TradeBalance answer carries a result and no error."""
    payload = json.loads(content, parse_float=Decimal)
    return not payload["error"] and "eb" in payload["result"]


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measured(warm: Callable[[], int], timed: Callable[[], int], size: int) -> dict[str, Any]:
    """Run ``warm``, then time ``timed``; both return how many accounts failed."""
    warm_failures = warm()
    gc.collect()
    rss = _status_kib("VmRSS")
    cpu, started = _cpu(), time.perf_counter()
    failures = timed()
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    return {
        "size": size,
        "seconds": seconds,
        "cpu": cpu,
        "failures": failures + warm_failures,
        "rss_kib": rss,
        "peak_kib": _status_kib("VmHWM"),
    }


def _ours(kind: str, url: str, keys: Sequence[Sequence[str]], warm: int) -> dict[str, Any]:
    import asyncio  # noqa: PLC0415  # each kind imports only what it uses

    import bastion_balance as bb  # noqa: PLC0415

    providers = [
        bb.Kraken(api_key=key, api_secret=secret, base_url=url, label=f"kraken-{n:04d}")
        for n, (key, secret) in enumerate(keys)
    ]
    if kind == "aaggregate":
        loop = asyncio.new_event_loop()  # one loop for both: the timed call finds its client warm

        def on_loop(chosen: list[bb.Kraken]) -> int:
            async def go() -> int:
                return len((await bb.aaggregate(chosen, timeout=_TIMEOUT)).errors)

            return loop.run_until_complete(go())

        try:
            return _measured(lambda: on_loop(providers[:warm]), lambda: on_loop(providers), len(providers))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def sync_run(chosen: list[bb.Kraken]) -> int:
        return len(bb.aggregate(chosen, timeout=_TIMEOUT).errors)

    return _measured(lambda: sync_run(providers[:warm]), lambda: sync_run(providers), len(providers))


def _bare(kind: str, url: str, keys: Sequence[Sequence[str]], warm: int, in_flight: int) -> dict[str, Any]:
    import httpx  # noqa: PLC0415  # each kind imports only what it uses

    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    target = url + PATH
    if kind == "httpx-async":
        import asyncio  # noqa: PLC0415

        async def fetch_all(
            http: httpx.AsyncClient, slots: asyncio.Semaphore, chosen: Sequence[Sequence[str]]
        ) -> int:
            async def one(key: str, secret: str) -> bool:
                async with slots:
                    body, headers = kraken_request(key, secret)
                    response = await http.post(target, content=body, headers=headers)
                return kraken_ok(response.content)

            oks = await asyncio.gather(*(one(key, secret) for key, secret in chosen))
            return oks.count(False)

        loop = asyncio.new_event_loop()
        http = httpx.AsyncClient(limits=limits, timeout=_TIMEOUT)
        slots = asyncio.Semaphore(in_flight)
        try:
            return _measured(
                lambda: loop.run_until_complete(fetch_all(http, slots, keys[:warm])),
                lambda: loop.run_until_complete(fetch_all(http, slots, keys)),
                len(keys),
            )
        finally:
            loop.run_until_complete(http.aclose())
            loop.close()

    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with httpx.Client(limits=limits, timeout=_TIMEOUT) as client, ThreadPoolExecutor(in_flight) as pool:

        def one(pair: Sequence[str]) -> bool:
            body, headers = kraken_request(pair[0], pair[1])
            return kraken_ok(client.post(target, content=body, headers=headers).content)

        def fetch_all(chosen: Sequence[Sequence[str]]) -> int:
            return list(pool.map(one, chosen)).count(False)

        return _measured(lambda: fetch_all(keys[:warm]), lambda: fetch_all(keys), len(keys))


def serve_one() -> None:
    """The client process: read the configuration, run, print the figures."""
    config = json.loads(sys.stdin.readline())
    kind, url, keys, warm = config["kind"], config["url"], config["keys"], config["warm"]
    if kind in {"aaggregate", "aggregate"}:
        figures = _ours(kind, url, keys, warm)
    else:
        figures = _bare(kind, url, keys, warm, config["in_flight"])
    print(json.dumps({"kind": kind, **figures}), flush=True)


def run(kind: str, url: str, keys: Sequence[Sequence[str]], *, warm: int, in_flight: int) -> dict[str, Any]:
    """Start one client process for ``kind`` over ``keys`` at ``url``; its figures.

    ``seconds`` and ``cpu`` are the timed call's; ``rss_kib`` the RSS before it, ``peak_kib``
    the process's high-water mark; ``failures`` the accounts that did not come back.
    """
    if kind not in KINDS:
        msg = f"kind must be one of {', '.join(KINDS)}, got {kind!r}"
        raise ValueError(msg)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE")}
    config = {
        "kind": kind,
        "url": url,
        "keys": [list(pair) for pair in keys],
        "warm": warm,
        "in_flight": in_flight,
    }
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())],
        input=json.dumps(config) + "\n",
        capture_output=True,
        text=True,
        timeout=_TIMEOUT + 60,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        msg = f"the {kind} client process failed (exit {result.returncode}): {result.stderr[-2000:]}"
        raise RuntimeError(msg)
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


if __name__ == "__main__":
    serve_one()
