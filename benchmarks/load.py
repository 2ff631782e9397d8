"""Load and several event loops, over real loopback sockets, with the client-side rate limits on.

Load: ``tasks`` asyncio tasks share one ``AsyncBalanceClient`` and ``threads`` threads share one
``BalanceClient``; each worker aggregates every venue ``rounds`` times with credentials of its
own at every venue (its own Kraken key and nonce, its own tokens, its own limiters; Binance
counts weight per IP, so that one bucket is shared by all). The simulated venues run in a child
process, one ``LoopbackServer`` each, and record every request they answer: venue, endpoint,
credential, arrival time and whether they refused it. Afterwards each venue's limit as
docs/venues/*.md states it is checked window by window on those arrivals, and the client
process's file descriptors, threads and RSS are compared with their baseline.

Several loops: ``loops`` threads each run event loops (``asyncio.run(bb.aaggregate(...))`` per
round, or one loop and one ``AsyncBalanceClient`` for all rounds) on one Kraken key while the
main thread fetches it with ``bb.fetch_balance``; every answer is delayed at the server, a ticker
task measures each loop's lag, and the simulator's arrivals must carry strictly increasing nonces.
Held turn: the main thread holds that key's turn for a second while other loops wait for it,
ticking.

    python benchmarks/load.py                       # 50 tasks + 8 threads x 18 rounds: a few minutes
    python benchmarks/load.py --tasks 10 --threads 2 --rounds 16 --json figures.json

tests/test_load.py and tests/test_many_loops.py run both scenarios scaled down and assert the
same invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import gc
import hashlib
import itertools
import json
import os
import resource
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import bastion_balance as bb
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    Fault,
    LoopbackServer,
    SimulatedBinance,
    SimulatedBybit,
    SimulatedCoinSwitch,
    SimulatedKraken,
    SimulatedPolymarketRetail,
    SimulatedPolymarketUS,
    SimulatedRails,
    rate_limits_disabled,
)

LOOPBACK: Final = "127.0.0.1"
VENUES: Final = (
    "kraken",
    "coinswitch",
    "polymarket_us",
    "polymarket_us_retail",
    "rails",
    "binance",
    "bybit",
)
#: Arrival times at the server move by the loopback's jitter against the client's clock: a
#: window is counted this much shorter, a Kraken counter allowed this much decay less.
JITTER: Final = 0.05
_START_TIMEOUT: Final = 120.0  # the child builds seven simulators and their keys
_STOP_TIMEOUT: Final = 60.0


# --------------------------------------------------------------------------- credentials


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in ("bastion-load", *parts)).encode()).digest()


def _pair(key_and_secret: tuple[str, str]) -> dict[str, str]:
    return {"api_key": key_and_secret[0], "api_secret": key_and_secret[1]}


@dataclasses.dataclass(frozen=True)
class Credentials:
    """One worker's keys at every venue (deterministic, except the RSA key, made by the parent)."""

    index: int
    polymarket_us_pem: str

    @classmethod
    def make(cls, index: int) -> Credentials:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        return cls(index, pem)

    # Kraken: base64 secret
    @property
    def kraken(self) -> tuple[str, str]:
        secret = base64.b64encode(_digest("kraken", self.index) + _digest("kraken2", self.index)).decode()
        return f"load-kraken-{self.index:03d}", secret

    # CoinSwitch: the API key is the hex Ed25519 public key of the hex seed
    @property
    def coinswitch(self) -> tuple[str, str]:
        seed = _digest("coinswitch", self.index)
        public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        return public.hex(), seed.hex()

    # Polymarket US retail: key id, base64 seed, base64 public key
    @property
    def polymarket_retail(self) -> tuple[str, str, str]:
        seed = _digest("polymarket-retail", self.index)
        public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        key_id = f"00000000-0000-4000-8000-{self.index:012d}"
        return key_id, base64.b64encode(seed).decode(), base64.b64encode(public).decode()

    # Polymarket US institutional: client id, firm, participant, account
    @property
    def polymarket_us(self) -> tuple[str, str, str, str]:
        firm = f"LOAD-{self.index:03d}"
        return f"load-client-{self.index:03d}", firm, f"firms/{firm}/users/u", f"firms/{firm}/accounts/main"

    @property
    def polymarket_us_public_pem(self) -> str:
        private = serialization.load_pem_private_key(self.polymarket_us_pem.encode(), password=None)
        return (
            private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )

    @property
    def rails(self) -> tuple[str, str]:
        return f"load-rails-{self.index:03d}", _digest("rails", self.index).hex()

    @property
    def binance(self) -> tuple[str, str]:
        return f"load-binance-{self.index:03d}", _digest("binance", self.index).hex()

    @property
    def bybit(self) -> tuple[str, str]:
        return f"load-bybit-{self.index:03d}", _digest("bybit", self.index).hex()

    def providers(self, urls: Mapping[str, str]) -> list[Any]:
        """One provider per venue, labelled by worker, pointed at the loopback servers."""
        n = f"{self.index:03d}"
        client_id, _firm, participant, account = self.polymarket_us
        key_id, seed, _public = self.polymarket_retail
        return [
            bb.Kraken(**_pair(self.kraken), base_url=urls["kraken"], label=f"kraken-{n}"),
            bb.CoinSwitch(**_pair(self.coinswitch), base_url=urls["coinswitch"], label=f"coinswitch-{n}"),
            bb.PolymarketUS(
                client_id=client_id,
                private_key=self.polymarket_us_pem,
                participant_id=participant,
                account=account,
                base_url=urls["polymarket_us"],
                auth_url=urls["polymarket_us"],
                label=f"pmus-{n}",
            ),
            bb.PolymarketUSRetail(
                key_id=key_id, secret_key=seed, base_url=urls["polymarket_us_retail"], label=f"pmretail-{n}"
            ),
            bb.Rails(**_pair(self.rails), base_url=urls["rails"], auth_url=urls["rails"], label=f"rails-{n}"),
            bb.BinanceFutures(**_pair(self.binance), base_url=urls["binance"], label=f"binance-{n}"),
            bb.Bybit(**_pair(self.bybit), base_url=urls["bybit"], label=f"bybit-{n}"),
        ]


# --------------------------------------------------------------------------- the venue side


@dataclasses.dataclass(frozen=True)
class Arrival:
    """One request a simulator answered: when (monotonic and Unix seconds), for whom, refused?"""

    venue: str
    endpoint: str
    credential: str
    at: float
    wall: float
    weight: int
    refusal: str  # "" when the venue accepted the request
    nonce: int = 0


def _kraken_refusal(response: httpx.Response) -> str:
    errors = json.loads(response.content).get("error") or []
    return ",".join(errors)


def _bybit_refusal(response: httpx.Response) -> str:
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    code = str(json.loads(response.content).get("retCode"))
    return "" if code == "0" else f"retCode {code}"


def _status_refusal(response: httpx.Response) -> str:
    return "" if response.status_code == 200 else f"HTTP {response.status_code}"


def _classify(venue: str, request: httpx.Request) -> tuple[str, str, int, int]:
    """(endpoint, credential the venue's limit is counted on, weight, nonce) of one request."""
    path, headers = request.url.path, request.headers
    if venue == "kraken":
        nonce = dict(parse_qsl(request.content.decode())).get("nonce", "0")
        return "TradeBalance", headers.get("API-Key", ""), 1, int(nonce) if nonce.isdigit() else 0
    if venue == "coinswitch":
        return "wallet_balance", headers.get("X-AUTH-APIKEY", ""), 1, 0
    if venue == "polymarket_us":
        if path == "/oauth/token":
            return "token", str(json.loads(request.content).get("client_id")), 1, 0
        firm = headers.get("x-participant-id", "").split("/")[1:2]
        return "balance", "firm:" + "".join(firm), 1, 0
    if venue == "polymarket_us_retail":
        return "balances", headers.get("X-PM-Access-Key", ""), 1, 0
    if venue == "rails":
        if path == "/api/v1/token":
            return "token", headers.get("X-Api-Key", ""), 1, 0
        return "balances", "all users", 1, 0
    if venue == "binance":
        return ("time", "ip", 1, 0) if path == "/fapi/v1/time" else ("account", "ip", 5, 0)
    if venue == "bybit":
        if path == "/v5/market/time":
            return "time", "ip", 1, 0
        return "wallet-balance", headers.get("X-BAPI-API-KEY", ""), 1, 0
    raise ValueError(venue)


_REFUSALS: Final[Mapping[str, Callable[[httpx.Response], str]]] = {
    "kraken": _kraken_refusal,
    "bybit": _bybit_refusal,
}


class Recorder:
    """Wraps a simulator's handler: records each request's arrival, then answers it."""

    def __init__(
        self,
        venue: str,
        handler: Callable[[httpx.Request], httpx.Response],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.venue = venue
        self.handler = handler
        self.clock = clock  # the venue's clock, for limits counted per Unix minute
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        at, wall = time.monotonic(), self.clock()
        endpoint, credential, weight, nonce = _classify(self.venue, request)
        response = self.handler(request)
        refusal = _REFUSALS.get(self.venue, _status_refusal)(response)
        with self._lock:
            self.arrivals.append(Arrival(self.venue, endpoint, credential, at, wall, weight, refusal, nonce))
        return response


def simulators(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every venue's simulator on the loopback host, with every worker's keys registered (Polymarket
    US: the first workers, one per public key given)."""
    creds = [Credentials(i, "") for i in range(config["workers"])]
    pems: Sequence[str] = config["polymarket_us_public_pems"]
    retail = [c.polymarket_retail for c in creds]
    pmus = [c.polymarket_us for c in creds]
    return {
        "kraken": SimulatedKraken(keys=dict(c.kraken for c in creds), host=LOOPBACK),
        "coinswitch": SimulatedCoinSwitch(keys=[c.coinswitch[0] for c in creds], host=LOOPBACK),
        "polymarket_us": SimulatedPolymarketUS(
            clients={p[0]: pem for p, pem in zip(pmus[: len(pems)], pems, strict=True)},
            participants={p[2]: (p[3],) for p in pmus},
            host=LOOPBACK,
        ),
        "polymarket_us_retail": SimulatedPolymarketRetail(keys={r[0]: r[2] for r in retail}, host=LOOPBACK),
        "rails": SimulatedRails(credentials=dict(c.rails for c in creds), hosts=(LOOPBACK, LOOPBACK)),
        "binance": SimulatedBinance(keys=dict(c.binance for c in creds), host=LOOPBACK),
        "bybit": SimulatedBybit(keys=dict(c.bybit for c in creds), host=LOOPBACK),
    }


def serve() -> None:
    """The child process: serve every venue until told to stop (or the lifetime ends)."""
    config = json.loads(sys.stdin.readline())
    watchdog = threading.Timer(config["lifetime"], os._exit, args=(3,))
    watchdog.daemon = True
    watchdog.start()
    recorders = {name: Recorder(name, sim.handle) for name, sim in simulators(config).items()}
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(LoopbackServer(rec)) for name, rec in recorders.items()}
        if config["latency"] > 0:
            for server in servers.values():
                server.script(*[Fault.delay(config["latency"])] * config["delayed_requests"])
        print(json.dumps({name: server.url for name, server in servers.items()}), flush=True)
        sys.stdin.readline()  # "stop", or end of file when the parent went away
        handler_errors = sum(len(server.errors) for server in servers.values())
    arrivals = [dataclasses.asdict(a) for rec in recorders.values() for a in rec.arrivals]
    Path(config["out"]).write_text(json.dumps({"arrivals": arrivals, "handler_errors": handler_errors}))
    print("done", flush=True)


class VenueProcess:
    """The venues in a child process, so the client's fds, threads and RSS are its own.

    ``workers`` (default: one per credential set) registers the keys of more workers than
    ``creds`` holds: ``Credentials(i, "")`` for the others, without a Polymarket US key, so many
    accounts at the other venues cost no RSA key generation (benchmarks/suite.py).
    """

    def __init__(
        self,
        creds: Sequence[Credentials],
        *,
        latency: float,
        delayed_requests: int,
        workers: int | None = None,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bastion-load-")
        self._out = Path(self._dir.name) / "arrivals.json"
        self._config = {
            "workers": len(creds) if workers is None else max(workers, len(creds)),
            "polymarket_us_public_pems": [c.polymarket_us_public_pem for c in creds],
            "latency": latency,
            "delayed_requests": delayed_requests,
            "out": str(self._out),
            "lifetime": 1800,
        }
        self._proc: subprocess.Popen[str] | None = None
        self.urls: dict[str, str] = {}
        self.arrivals: list[Arrival] = []
        self.handler_errors = 0

    def __enter__(self) -> VenueProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE")}
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(self._config) + "\n")
        self._proc.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            if not selector.select(_START_TIMEOUT):
                self._kill()
                msg = "the venue process did not start"
                raise RuntimeError(msg)
        line = self._proc.stdout.readline()
        if not line:
            self._kill()
            msg = "the venue process ended before serving"
            raise RuntimeError(msg)
        self.urls = json.loads(line)
        return self

    def stop(self) -> None:
        """Stop serving and collect every arrival the venues recorded."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        try:
            out, _ = proc.communicate("stop\n", timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        if "done" not in out:
            msg = f"the venue process failed (exit {proc.returncode})"
            raise RuntimeError(msg)
        data = json.loads(self._out.read_text())
        self.arrivals = [Arrival(**a) for a in data["arrivals"]]
        self.handler_errors = data["handler_errors"]

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.stop()
        finally:
            self._kill()
            self._dir.cleanup()


# --------------------------------------------------------------------------- limits


@dataclasses.dataclass(frozen=True)
class Limit:
    """A published limit: at most ``count`` requests per ``window`` s for each credential.

    ``kind`` is "window" (any rolling window), "minute" (each Unix minute, weights summed, as
    Binance counts ``X-MBX-USED-WEIGHT-1M``) or "counter" (Kraken: +1 a call, decaying by
    ``decay`` per second, never above ``count``).
    """

    venue: str
    endpoint: str
    per: str
    count: int
    window: float
    kind: str = "window"
    decay: float = 0.0
    source: str = ""


LIMITS: Final = (
    Limit("kraken", "TradeBalance", "key", 15, 0.0, "counter", 0.33, "kraken.md: starter, 15, -0.33/s"),
    Limit("coinswitch", "wallet_balance", "key", 20, 60.0, source="coinswitch.md: 20 per 60 s per key"),
    Limit("polymarket_us", "balance", "firm", 20, 1.0, source="polymarket-us.md: the client's 20/s per firm"),
    Limit("polymarket_us_retail", "balances", "key", 20, 1.0, source="polymarket-us-retail.md: 20/s per key"),
    Limit("rails", "token", "key", 20, 60.0, source="rails.md: 20 token requests per minute per key"),
    Limit("rails", "balances", "all users", 2000, 1.0, source="rails.md: 2,000 req/s for all users"),
    Limit("binance", "*", "ip", 2400, 60.0, "minute", source="binance.md: weight 2400 per minute per IP"),
    Limit("bybit", "wallet-balance", "key", 50, 1.0, source="bybit.md: 50/s per UID (one per key)"),
)


@dataclasses.dataclass(frozen=True)
class LimitCheck:
    """The busiest window seen for one limit, over every credential."""

    limit: Limit
    credentials: int
    requests: int
    busiest: float  # most requests (weight) in one window, or the highest Kraken counter
    busiest_credential: str
    rolling_60s_weight: int = 0  # Binance only: the busiest rolling minute, for comparison

    @property
    def ok(self) -> bool:
        if self.limit.kind == "counter":
            return self.busiest <= self.limit.count + self.limit.decay * JITTER + 1e-9
        return self.busiest <= self.limit.count

    def line(self) -> str:
        what = f"{self.limit.venue} {self.limit.endpoint} per {self.limit.per}"
        seen = f"{self.busiest:.2f}" if self.limit.kind == "counter" else f"{self.busiest:g}"
        unit = {"counter": "counter max", "minute": "weight per Unix minute"}.get(
            self.limit.kind, f"per {self.limit.window:g} s"
        )
        extra = f"; busiest rolling 60 s: {self.rolling_60s_weight}" if self.limit.kind == "minute" else ""
        return (
            f"{what:<45} {seen:>8} / {self.limit.count:<5} {unit} ({self.requests} requests, "
            f"{self.credentials} credentials{extra}) {'ok' if self.ok else 'EXCEEDED'}"
        )


def busiest_window(times: Sequence[float], window: float, weights: Sequence[int] | None = None) -> float:
    """The most requests (or weight) whose arrivals lie within ``window - JITTER`` seconds."""
    span = window - JITTER
    weights = weights if weights is not None else [1] * len(times)
    best = total = 0
    start = 0
    for end, t in enumerate(times):
        total += weights[end]
        while t - times[start] >= span:
            total -= weights[start]
            start += 1
        best = max(best, total)
    return best


def kraken_counter(times: Sequence[float], decay: float) -> float:
    """Kraken's REST call counter after each call (+1, decaying by ``decay`` per second): its top."""
    counter, last, top = 0.0, None, 0.0
    for t in times:
        counter = max(0.0, counter - (t - last) * decay) if last is not None else 0.0
        counter += 1
        last = t
        top = max(top, counter)
    return top


def check_limits(arrivals: Sequence[Arrival]) -> list[LimitCheck]:
    """Every limit of :data:`LIMITS` checked on the arrivals, per credential."""
    checks = []
    for limit in LIMITS:
        mine = [a for a in arrivals if a.venue == limit.venue and limit.endpoint in {"*", a.endpoint}]
        by_cred: dict[str, list[Arrival]] = defaultdict(list)
        for a in sorted(mine, key=lambda a: a.at):
            by_cred[a.credential].append(a)
        busiest, who, rolling = 0.0, "", 0
        for cred, seen in by_cred.items():
            times = [a.at for a in seen]
            if limit.kind == "counter":
                value = kraken_counter(times, limit.decay)
            elif limit.kind == "minute":
                per_minute: Counter[int] = Counter()
                for a in seen:
                    per_minute[int(a.wall // 60)] += a.weight
                value = max(per_minute.values())
                rolling = max(rolling, int(busiest_window(times, 60.0 + JITTER, [a.weight for a in seen])))
            else:
                value = busiest_window(times, limit.window)
            if value > busiest:
                busiest, who = value, cred
        checks.append(LimitCheck(limit, len(by_cred), len(mine), busiest, who, rolling))
    return checks


# --------------------------------------------------------------------------- the client side


def fd_count() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    """Resident set size of this process, KiB (VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0  # pragma: no cover  # Linux always has it


class LagMeter:
    """A ticker task: sleeps ``tick`` seconds in a loop and keeps the worst overshoot."""

    def __init__(self, tick: float = 0.01) -> None:
        self.tick = tick
        self.worst = 0.0
        self.ticks = 0
        self._stop = False

    async def run(self, limit: float = 3600.0) -> None:
        end = time.monotonic() + limit
        while not self._stop and time.monotonic() < end:
            before = time.monotonic()
            await asyncio.sleep(self.tick)
            self.worst = max(self.worst, time.monotonic() - before - self.tick)
            self.ticks += 1

    def stop(self) -> None:
        self._stop = True


@dataclasses.dataclass
class Done:
    """One finished aggregate."""

    worker: str
    at: float
    seconds: float
    rss_kib: int
    errors: dict[str, str]
    total: Decimal
    complete: bool


class Progress:
    def __init__(self) -> None:
        self.done: list[Done] = []
        self._lock = threading.Lock()

    def add(self, worker: str, started: float, portfolio: bb.Portfolio) -> None:
        now = time.monotonic()
        errors = {label: repr(exc) for label, exc in portfolio.errors.items()}
        entry = Done(worker, now, now - started, rss_kib(), errors, portfolio.total_usd, portfolio.complete)
        with self._lock:
            self.done.append(entry)


@dataclasses.dataclass
class LoadReport:
    tasks: int
    threads: int
    rounds: int
    latency: float
    aggregates: int
    seconds: float
    errors: int
    error_samples: list[str]
    incomplete: int
    totals: list[str]
    requests: dict[str, int]
    refusals: dict[str, int]
    nonce_refusals: int
    kraken_out_of_order: int
    handler_errors: int
    limits: list[LimitCheck]
    fds: tuple[int, int]
    threads_alive: tuple[int, int]
    rss_group: int
    rss_first_kib: int  # mean VmRSS over the first ``rss_group`` aggregates to finish
    rss_last_kib: int  # and over the last ones
    max_loop_lag: float
    p50: float
    p99: float
    tokens: dict[str, int]
    max_concurrency: int | None
    cpu_seconds: float  # this process, user + system, while the workers ran

    @property
    def limits_ok(self) -> bool:
        return all(check.ok for check in self.limits)

    @property
    def rss_growth_mib(self) -> float:
        return (self.rss_last_kib - self.rss_first_kib) / 1024

    def check(self, venue: str, endpoint: str) -> LimitCheck:
        return next(c for c in self.limits if (c.limit.venue, c.limit.endpoint) == (venue, endpoint))

    def text(self) -> str:
        lines = [
            f"{self.aggregates} aggregates x {len(VENUES)} venues from {self.tasks} tasks (one "
            f"AsyncBalanceClient) + {self.threads} threads (one BalanceClient), {self.rounds} rounds "
            f"each, server latency {self.latency * 1000:g} ms, max_concurrency "
            f"{self.max_concurrency or 'default'}: {self.seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU",
            f"aggregate time p50 {self.p50:.2f} s, p99 {self.p99:.2f} s; max event-loop lag "
            f"{self.max_loop_lag * 1000:.0f} ms",
            f"errors {self.errors}, incomplete {self.incomplete}, distinct totals {self.totals}",
            f"venue refusals {sum(self.refusals.values())} {dict(self.refusals)}, Kraken nonce refusals "
            f"{self.nonce_refusals}, Kraken nonces out of order {self.kraken_out_of_order}, "
            f"handler errors {self.handler_errors}",
            f"requests {self.requests}; tokens issued {self.tokens}",
            f"fds {self.fds[0]} -> {self.fds[1]}, threads {self.threads_alive[0]} -> {self.threads_alive[1]}",
            f"RSS first {self.rss_group} aggregates {self.rss_first_kib / 1024:.1f} MiB, last "
            f"{self.rss_group} {self.rss_last_kib / 1024:.1f} MiB ({self.rss_growth_mib:+.1f} MiB)",
            "limits (busiest window at the simulators / limit):",
            *(f"  {check.line()}" for check in self.limits),
        ]
        lines += [f"  error: {sample}" for sample in self.error_samples]
        return "\n".join(lines)


def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        gc.collect()
        time.sleep(0.05)


def _mean(values: Sequence[int]) -> int:
    return sum(values) // max(1, len(values))


def run_load(
    *,
    tasks: int = 50,
    threads: int = 8,
    rounds: int = 18,
    latency: float = 0.005,
    timeout: float = 120.0,
    settle: float = 10.0,
    max_concurrency: int | None = None,
    rss_group: int = 100,
) -> LoadReport:
    """The load scenario (see the module's docstring); returns every figure."""
    creds = [Credentials.make(i) for i in range(tasks + threads)]
    expected_requests = (tasks + threads) * rounds * (len(VENUES) + 2)
    progress = Progress()
    lag = LagMeter()
    with VenueProcess(creds, latency=latency, delayed_requests=expected_requests) as venues:
        sets = [c.providers(venues.urls) for c in creds]
        gc.collect()
        fds_before, threads_before = fd_count(), threading.active_count()
        cpu_before = _cpu()
        started = time.monotonic()
        end = started + timeout * rounds

        def sync_worker(client: bb.BalanceClient, providers: list[Any], name: str) -> None:
            for _ in range(rounds):
                if time.monotonic() > end:
                    return
                begun = time.monotonic()
                progress.add(name, begun, client.aggregate(providers, timeout=timeout))

        async def async_worker(client: bb.AsyncBalanceClient, providers: list[Any], name: str) -> None:
            for _ in range(rounds):
                if time.monotonic() > end:
                    return
                begun = time.monotonic()
                progress.add(name, begun, await client.aggregate(providers, timeout=timeout))

        async def async_side() -> None:
            ticker = asyncio.ensure_future(lag.run())
            async with bb.AsyncBalanceClient(max_concurrency=max_concurrency) as client:
                await asyncio.gather(
                    *(async_worker(client, sets[i], f"task-{i}") for i in range(tasks)),
                )
            lag.stop()
            await ticker

        with bb.BalanceClient(max_concurrency=max_concurrency) as sync_client:
            workers = [
                threading.Thread(
                    target=sync_worker,
                    args=(sync_client, sets[tasks + i], f"thread-{i}"),
                    name=f"load-thread-{i}",
                )
                for i in range(threads)
            ]
            for worker in workers:
                worker.start()
            asyncio.run(async_side())
            for worker in workers:
                worker.join(max(1.0, end - time.monotonic()))
        seconds = time.monotonic() - started
        cpu = _cpu() - cpu_before
        _wait_for(lambda: fd_count() <= fds_before and threading.active_count() <= threads_before, settle)
        fds_after, threads_after = fd_count(), threading.active_count()
    return _report(
        dict(
            tasks=tasks, threads=threads, rounds=rounds, latency=latency, seconds=seconds,
            fds=(fds_before, fds_after), threads_alive=(threads_before, threads_after),
            max_concurrency=max_concurrency, cpu_seconds=cpu, rss_group=rss_group,
        ),
        progress, lag, venues,
    )  # fmt: skip


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _report(run: dict[str, Any], progress: Progress, lag: LagMeter, venues: VenueProcess) -> LoadReport:
    done = sorted(progress.done, key=lambda d: d.at)
    arrivals = venues.arrivals
    errors = [e for d in done for e in d.errors.values()]
    kraken: dict[str, list[int]] = defaultdict(list)
    for a in sorted(arrivals, key=lambda a: a.at):
        if a.venue == "kraken":
            kraken[a.credential].append(a.nonce)
    out_of_order = sum(1 for ns in kraken.values() for x, y in itertools.pairwise(ns) if y <= x)
    durations = sorted(d.seconds for d in done) or [0.0]
    group = run["rss_group"]
    return LoadReport(
        **run,
        aggregates=len(done),
        errors=len(errors),
        error_samples=sorted(set(errors))[:5],
        incomplete=sum(1 for d in done if not d.complete),
        totals=sorted({str(d.total) for d in done}),
        requests=dict(sorted(Counter(f"{a.venue} {a.endpoint}" for a in arrivals).items())),
        refusals=dict(Counter(f"{a.venue}: {a.refusal}" for a in arrivals if a.refusal)),
        nonce_refusals=sum(1 for a in arrivals if a.venue == "kraken" and "nonce" in a.refusal.lower()),
        kraken_out_of_order=out_of_order,
        handler_errors=venues.handler_errors,
        limits=check_limits(arrivals),
        rss_first_kib=_mean([d.rss_kib for d in done[:group]]),
        rss_last_kib=_mean([d.rss_kib for d in done[-group:]]),
        max_loop_lag=lag.worst,
        p50=durations[len(durations) // 2],
        p99=durations[min(len(durations) - 1, int(len(durations) * 0.99))],
        tokens={
            "polymarket_us": sum(1 for a in arrivals if a.venue == "polymarket_us" and a.endpoint == "token"),
            "rails": sum(1 for a in arrivals if a.venue == "rails" and a.endpoint == "token"),
        },
    )


# --------------------------------------------------------------------------- several event loops


@dataclasses.dataclass
class LoopsReport:
    loops: int
    rounds: int
    sync_rounds: int
    delay: float
    seconds: float
    fetched: int  # balances that came back
    failures: list[str]
    arrivals: int  # requests the simulator received
    nonces_increasing: bool  # in arrival order
    accepted_nonces: int
    min_gap: float  # shortest time between two arrivals: one request in flight means >= delay
    lags: list[float]  # the worst lag of each event loop that ran
    ticks: int

    @property
    def max_lag(self) -> float:
        return max(self.lags, default=0.0)

    @property
    def expected(self) -> int:
        return self.loops * self.rounds + self.sync_rounds

    def text(self) -> str:
        return (
            f"{self.loops} threads x {self.rounds} rounds of event loops + {self.sync_rounds} sync fetches "
            f"on one Kraken key, {self.delay * 1000:g} ms per answer: {self.fetched}/{self.expected} "
            f"fetched in {self.seconds:.1f} s, failures {len(self.failures)}, {self.arrivals} arrivals, "
            f"nonces strictly increasing: {self.nonces_increasing}, shortest gap between arrivals "
            f"{self.min_gap * 1000:.0f} ms; max loop lag {self.max_lag * 1000:.0f} ms "
            f"(median of the loops' worst {_median(self.lags) * 1000:.0f} ms) over {len(self.lags)} loops, "
            f"{self.ticks} ticks"
        )


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def run_many_loops(  # noqa: PLR0915  # one scenario, read top to bottom
    *, loops: int = 4, rounds: int = 6, sync_rounds: int = 6, delay: float = 0.1
) -> LoopsReport:
    """Several event loops and the main thread on one Kraken key (see the module's docstring).

    Even threads run ``asyncio.run(bb.aaggregate([kraken]))`` once per round (a new loop and a
    new client each time); odd threads run one loop with one ``AsyncBalanceClient`` for all
    their rounds; the main thread calls ``bb.fetch_balance``. Each provider object is distinct;
    they share the key, hence its nonce counter and its turn. The key's rate limiter is
    switched off: the point is the turn and the nonces, and the starter counter (15, -0.33/s)
    would only add waits.
    """
    sim = SimulatedKraken(host=LOOPBACK)
    total = loops * rounds + sync_rounds
    failures: list[str] = []
    lags: list[float] = []
    counts = {"fetched": 0, "ticks": 0}
    lock = threading.Lock()

    def kraken(url: str, name: str) -> bb.Kraken:
        return bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=url, label=name)

    def note(portfolio: bb.Portfolio) -> None:
        with lock:
            counts["fetched"] += len(portfolio.balances)
            failures.extend(repr(e) for e in portfolio.errors.values())

    async def with_ticker(work: Callable[[], Any]) -> None:
        meter = LagMeter()
        ticker = asyncio.ensure_future(meter.run(limit=120))
        try:
            await work()
        finally:
            meter.stop()
            await ticker
            with lock:
                lags.append(meter.worst)
                counts["ticks"] += meter.ticks

    def loop_per_round(url: str, n: int) -> None:
        provider = kraken(url, f"loop-{n}")

        async def one() -> None:
            note(await bb.aaggregate([provider], timeout=60))

        for _ in range(rounds):
            asyncio.run(with_ticker(one))

    def one_loop(url: str, n: int) -> None:
        provider = kraken(url, f"loop-{n}")

        async def every_round() -> None:
            async with bb.AsyncBalanceClient() as client:
                for _ in range(rounds):
                    note(await client.aggregate([provider], timeout=60))

        asyncio.run(with_ticker(every_round))

    def guarded(target: Callable[[str, int], None], url: str, n: int) -> Callable[[], None]:
        def run() -> None:
            try:
                target(url, n)
            except Exception as exc:  # noqa: BLE001  # reported: the caller fails on any failure
                with lock:
                    failures.append(repr(exc))

        return run

    with rate_limits_disabled(), LoopbackServer(sim.handle) as server:
        server.script(*[Fault.delay(delay)] * total)
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=guarded(one_loop if n % 2 else loop_per_round, server.url, n), name=f"loop-{n}"
            )
            for n in range(loops)
        ]
        for thread in threads:
            thread.start()
        provider = kraken(server.url, "main")
        with bb.BalanceClient() as client:
            for _ in range(sync_rounds):
                try:
                    bb.fetch_balance(provider, client=client, timeout=60)
                except bb.BastionBalanceError as exc:
                    with lock:
                        failures.append(repr(exc))
                else:
                    with lock:
                        counts["fetched"] += 1
        end = time.monotonic() + 120
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        failures.extend(f"{t.name} still running" for t in threads if t.is_alive())
        seconds = time.monotonic() - started
        requests = server.requests
    nonces = [int(dict(parse_qsl(r.body.decode())).get("nonce", "0")) for r in requests]
    gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(requests)]
    return LoopsReport(
        loops=loops,
        rounds=rounds,
        sync_rounds=sync_rounds,
        delay=delay,
        seconds=seconds,
        fetched=counts["fetched"],
        failures=failures,
        arrivals=len(requests),
        nonces_increasing=all(b > a for a, b in itertools.pairwise(nonces)),
        accepted_nonces=len(sim.nonces),
        min_gap=min(gaps, default=0.0),
        lags=lags,
        ticks=counts["ticks"],
    )


@dataclasses.dataclass
class HoldReport:
    loops: int
    hold: float
    failures: list[str]
    waited: list[float]  # how long each loop's aggregate took: the hold had to pass first
    lags: list[float]  # each loop's worst lag, the whole time it waited and fetched
    arrivals: int
    after_hold: bool  # every loop's request reached the venue after the held one was answered
    nonces_increasing: bool

    @property
    def max_lag(self) -> float:
        return max(self.lags, default=0.0)

    def text(self) -> str:
        return (
            f"{self.loops} event loops waiting {self.hold:g} s for the Kraken key's turn held by the "
            f"main thread: failures {len(self.failures)}, each waited {min(self.waited, default=0):.2f}-"
            f"{max(self.waited, default=0):.2f} s, arrived after the hold: {self.after_hold}, nonces "
            f"strictly increasing: {self.nonces_increasing}; max loop lag {self.max_lag * 1000:.0f} ms"
        )


def run_turn_hold(*, loops: int = 4, hold: float = 1.0, delay: float = 0.05) -> HoldReport:
    """The main thread holds one Kraken key's turn for ``hold`` seconds (its answer is delayed)
    while ``loops`` event loops, one per thread, ask for the same key; each loop's ticker must
    keep ticking all along. Each loop's ``httpx.AsyncClient`` is built before its ticker starts,
    so that only waiting and fetching are measured."""
    sim = SimulatedKraken(host=LOOPBACK)
    failures: list[str] = []
    waited: list[float] = []
    lags: list[float] = []
    lock = threading.Lock()
    with rate_limits_disabled(), LoopbackServer(sim.handle) as server:
        server.script(Fault.delay(hold), *[Fault.delay(delay)] * loops)

        def kraken(name: str) -> bb.Kraken:
            return bb.Kraken(
                api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=server.url, label=name
            )

        async def wait_then_fetch(n: int) -> None:
            async with httpx.AsyncClient() as http, bb.AsyncBalanceClient(http_client=http) as client:
                meter = LagMeter()
                ticker = asyncio.ensure_future(meter.run(limit=60))
                give_up = time.monotonic() + 30
                while not server.requests and time.monotonic() < give_up:  # the held request is out
                    await asyncio.sleep(0.005)
                begun = time.monotonic()
                portfolio = await client.aggregate([kraken(f"loop-{n}")], timeout=30)
                took = time.monotonic() - begun
                meter.stop()
                await ticker
            with lock:
                waited.append(took)
                lags.append(meter.worst)
                failures.extend(repr(e) for e in portfolio.errors.values())

        def thread_main(n: int) -> None:
            try:
                asyncio.run(wait_then_fetch(n))
            except Exception as exc:  # noqa: BLE001  # reported: the caller fails on any failure
                with lock:
                    failures.append(repr(exc))

        threads = [threading.Thread(target=thread_main, args=(n,), name=f"hold-{n}") for n in range(loops)]
        for thread in threads:
            thread.start()
        with bb.BalanceClient() as client:
            try:
                bb.fetch_balance(kraken("main"), client=client, timeout=30)
            except bb.BastionBalanceError as exc:
                failures.append(repr(exc))
        answered = time.monotonic()
        end = answered + 60
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        failures.extend(f"{t.name} still running" for t in threads if t.is_alive())
        requests = server.requests
    nonces = [int(dict(parse_qsl(r.body.decode())).get("nonce", "0")) for r in requests]
    return HoldReport(
        loops=loops,
        hold=hold,
        failures=failures,
        waited=waited,
        lags=lags,
        arrivals=len(requests),
        after_hold=all(r.arrived >= requests[0].arrived + hold for r in requests[1:]),
        nonces_increasing=all(b > a for a, b in itertools.pairwise(nonces)),
    )


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=18)
    parser.add_argument("--latency", type=float, default=0.005, help="server delay per request, s")
    parser.add_argument(
        "--max-concurrency", type=int, default=None, help="both clients' bound (default: the library's)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    print(time.strftime("%Y-%m-%d %H:%M:%S"), f"{os.cpu_count()} cores", f"Python {sys.version.split()[0]}")
    load = run_load(
        tasks=args.tasks,
        threads=args.threads,
        rounds=args.rounds,
        latency=args.latency,
        max_concurrency=args.max_concurrency,
    )
    print(load.text())
    loops = run_many_loops()
    print(loops.text())
    held = run_turn_hold()
    print(held.text())
    if args.json:
        figures = {
            "load": dataclasses.asdict(load),
            "loops": dataclasses.asdict(loops),
            "hold": dataclasses.asdict(held),
        }
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    good = (
        load.errors == 0
        and load.nonce_refusals == 0
        and not load.refusals
        and load.limits_ok
        and not loops.failures
        and loops.nonces_increasing
        and not held.failures
        and held.after_hold
        and held.max_lag < 0.25
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
