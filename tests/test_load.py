"""Load with the client-side rate limits on, and each venue's published limit at the venue.

``test_load_over_every_venue`` is benchmarks/load.py scaled down: asyncio tasks sharing one
``AsyncBalanceClient`` and threads sharing one ``BalanceClient``, each worker with its own
credentials at all seven venues, served over real loopback sockets by a child process that
records every arrival. It asserts no error, no refusal by a venue (bad nonce, stale timestamp,
bad token), every limit of docs/venues/*.md held window by window at the venues, and file
descriptors, threads and RSS back to (or near) their baseline.

The ``test_a_burst_on_one_credential_*`` tests send a burst of fetches on one credential, more
than the venue allows, and count the arrivals at the simulator the same way: what the client
lets through must fit the published limit, and what it holds back must be refused client-side
with ``RateLimitedError`` rather than sent. They answer in process (``httpx.MockTransport``),
except Kraken's, which goes over loopback through a client's own connection pool, as a caller's
first fetch does.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import httpx
import pytest

import bastion_balance as bb
from bastion_balance.testing import (
    BINANCE_TEST_KEY,
    BINANCE_TEST_SECRET,
    BYBIT_TEST_KEY,
    BYBIT_TEST_SECRET,
    COINSWITCH_TEST_KEY,
    COINSWITCH_TEST_SECRET,
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    POLYMARKET_RETAIL_TEST_KEY_ID,
    POLYMARKET_RETAIL_TEST_SECRET,
    POLYMARKET_US_TEST_ACCOUNT,
    POLYMARKET_US_TEST_CLIENT_ID,
    POLYMARKET_US_TEST_PARTICIPANT_ID,
    RAILS_TEST_API_KEY,
    RAILS_TEST_API_SECRET,
    LoopbackServer,
    SimulatedBinance,
    SimulatedBybit,
    SimulatedCoinSwitch,
    SimulatedKraken,
    SimulatedPolymarketRetail,
    SimulatedPolymarketUS,
    SimulatedRails,
    Simulator,
    polymarket_us_test_private_key_pem,
)


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


# --------------------------------------------------------------------------- the load


def test_load_over_every_venue() -> None:
    """6 tasks + 2 threads x 16 aggregates of 7 venues: 16 calls on each Kraken key, one more
    than its counter holds, so every worker's Kraken limiter has to wait once."""
    tasks, threads, rounds = 4, 2, 16
    report = load.run_load(tasks=tasks, threads=threads, rounds=rounds, timeout=60, rss_group=50)
    print(report.text())
    aggregates = (tasks + threads) * rounds
    assert report.aggregates == aggregates
    assert report.errors == 0, report.error_samples
    assert report.incomplete == 0
    assert len(report.totals) == 1  # every aggregate added up to the same exact total
    assert report.refusals == {}  # no venue refused a nonce, a timestamp, a signature or a token
    assert report.nonce_refusals == 0
    assert report.kraken_out_of_order == 0
    assert report.handler_errors == 0
    for venue_endpoint in (
        "kraken TradeBalance",
        "coinswitch wallet_balance",
        "polymarket_us balance",
        "polymarket_us_retail balances",
        "rails balances",
        "binance account",
        "bybit wallet-balance",
    ):
        assert report.requests[venue_endpoint] == aggregates, venue_endpoint  # no retry was needed
    assert report.tokens == {"polymarket_us": tasks + threads, "rails": tasks + threads}  # one each
    assert report.fds[1] <= report.fds[0]
    assert report.threads_alive[1] <= report.threads_alive[0]
    assert report.rss_growth_mib < 30
    assert report.seconds < 120
    kraken = report.check("kraken", "TradeBalance")
    assert kraken.busiest >= 13  # the counter was driven to its top: the check below means something
    # Kraken counts from the calls' arrivals. A worker's first call reaches it 0.1-0.4 s after
    # the client booked it (the connection pool is built in between), so the 16th call, booked
    # 3.03 s after the first, arrives less than 3.03 s after it: test_a_burst_on_one_kraken_key_*
    # pins that down on its own.
    exceeded = [check.line() for check in report.limits if not check.ok]
    assert exceeded == [], "\n".join(exceeded)


def test_the_limit_checks_can_fail() -> None:
    """The window and counter checks used above flag an excess (and pass what fits)."""
    arrival = load.Arrival

    def calls(venue: str, endpoint: str, times: list[float], weight: int = 1) -> list[Any]:
        return [arrival(venue, endpoint, "k", t, 1_000_020 + t, weight, "") for t in times]

    def verdicts(arrivals: list[Any]) -> dict[str, bool]:
        return {
            f"{c.limit.venue} {c.limit.endpoint}": c.ok for c in load.check_limits(arrivals) if c.requests
        }

    assert verdicts(calls("coinswitch", "wallet_balance", [i * 2.9 for i in range(21)])) == {
        "coinswitch wallet_balance": False  # 21 calls within 58 s
    }
    assert verdicts(calls("coinswitch", "wallet_balance", [i * 3.2 for i in range(21)])) == {
        "coinswitch wallet_balance": True  # the 21st is 64 s after the first
    }
    assert verdicts(calls("kraken", "TradeBalance", [i * 0.01 for i in range(16)])) == {
        "kraken TradeBalance": False
    }
    assert verdicts(calls("kraken", "TradeBalance", [*(i * 0.01 for i in range(15)), 3.2])) == {
        "kraken TradeBalance": True
    }
    assert verdicts(calls("binance", "account", [i * 0.1 for i in range(481)], weight=5)) == {
        "binance *": False  # 2405 weight in one minute
    }
    assert verdicts(calls("bybit", "wallet-balance", [i * 0.018 for i in range(51)])) == {
        "bybit wallet-balance": False  # 51 calls within 0.9 s
    }


# --------------------------------------------------------------------------- bursts on one credential


class Burst(NamedTuple):
    """``fetches`` fetches at once on one credential, each with ``timeout`` seconds."""

    venue: str
    endpoint: str
    fetches: int
    timeout: float
    simulator: Callable[[], Any]
    provider: Callable[[int], Any]


def _aligned_clock() -> Callable[[], int]:
    """Unix ns shifted so that a Unix minute began one second ago: a burst of a few seconds
    then falls inside one of Binance's minutes, wherever the test starts."""
    offset = int((61 - time.time() % 60) * 1e9)
    return lambda: time.time_ns() + offset


BINANCE_CLOCK = _aligned_clock()

BURSTS = {
    "coinswitch": Burst(
        "coinswitch",
        "wallet_balance",
        25,
        3.5,  # the bucket's 21st call is due 3 s in: a fetch may wait for it
        SimulatedCoinSwitch,
        lambda n: bb.CoinSwitch(
            api_key=COINSWITCH_TEST_KEY, api_secret=COINSWITCH_TEST_SECRET, label=f"c{n}"
        ),
    ),
    "polymarket_us_retail": Burst(
        "polymarket_us_retail",
        "balances",
        60,
        1.5,
        SimulatedPolymarketRetail,
        lambda n: bb.PolymarketUSRetail(
            key_id=POLYMARKET_RETAIL_TEST_KEY_ID, secret_key=POLYMARKET_RETAIL_TEST_SECRET, label=f"r{n}"
        ),
    ),
    "polymarket_us": Burst(
        "polymarket_us",
        "balance",
        60,
        1.5,
        SimulatedPolymarketUS,
        lambda n: bb.PolymarketUS(
            client_id=POLYMARKET_US_TEST_CLIENT_ID,
            private_key=polymarket_us_test_private_key_pem(),
            participant_id=POLYMARKET_US_TEST_PARTICIPANT_ID,
            account=POLYMARKET_US_TEST_ACCOUNT,
            label=f"p{n}",
        ),
    ),
    "bybit": Burst(
        "bybit",
        "wallet-balance",
        150,
        1.5,
        SimulatedBybit,
        lambda n: bb.Bybit(api_key=BYBIT_TEST_KEY, api_secret=BYBIT_TEST_SECRET, label=f"y{n}"),
    ),
    "binance": Burst(
        "binance",
        "*",
        500,  # 2500 weight: 20 account reads more than one minute allows
        2.0,
        lambda: SimulatedBinance(clock=BINANCE_CLOCK),
        lambda n: bb.BinanceFutures(
            api_key=BINANCE_TEST_KEY, api_secret=BINANCE_TEST_SECRET, clock=BINANCE_CLOCK, label=f"b{n}"
        ),
    ),
    "rails": Burst(
        "rails",
        "token",
        25,
        1.5,
        lambda: SimulatedRails(token_lifetime=1),  # shorter than the refresh margin: every fetch asks
        lambda n: bb.Rails(api_key=RAILS_TEST_API_KEY, api_secret=RAILS_TEST_API_SECRET, label=f"s{n}"),
    ),
}


def _burst(burst: Burst) -> tuple[list[Any], list[object]]:
    """Fire the burst through one AsyncBalanceClient; the arrivals and every outcome."""
    clock = (lambda: BINANCE_CLOCK() / 1e9) if burst.venue == "binance" else time.time
    recorder = load.Recorder(burst.venue, Simulator(burst.simulator()), clock=clock)

    async def main() -> list[object]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
        async with http, bb.AsyncBalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
            provider = burst.provider(0)  # one object: many objects with one key share its limiter anyway
            return await asyncio.gather(
                *(client.fetch(provider, timeout=burst.timeout) for _ in range(burst.fetches)),
                return_exceptions=True,
            )

    return recorder.arrivals, asyncio.run(main())


def _verdict(venue: str, endpoint: str, arrivals: list[Any], outcomes: list[object]) -> Any:
    check = next(
        c for c in load.check_limits(arrivals) if (c.limit.venue, c.limit.endpoint) == (venue, endpoint)
    )
    print(check.line())
    assert [a for a in arrivals if a.refusal] == []  # the venue refused nothing
    held_back = [o for o in outcomes if not isinstance(o, bb.Balance)]
    for outcome in held_back:  # held back by our own limiter (or out of time), not refused by the venue
        assert isinstance(outcome, bb.RateLimitedError | bb.DeadlineExceededError), repr(outcome)
        assert not isinstance(outcome, bb.RateLimitedError) or outcome.transient is False
    weight = 5 if venue == "binance" else 1
    assert len(outcomes) - len(held_back) >= check.limit.count // weight // 2  # the limiter lets work through
    return check


@pytest.mark.parametrize("venue", list(BURSTS))
def test_a_burst_on_one_credential_stays_within_the_published_limit(venue: str) -> None:
    burst = BURSTS[venue]
    arrivals, outcomes = _burst(burst)
    check = _verdict(burst.venue, burst.endpoint, arrivals, outcomes)
    assert check.ok, check.line()


def test_a_burst_on_one_kraken_key_stays_within_its_counter() -> None:
    """21 fetches on one "pro" key (counter 20, -1 per s): 20 fit at once, the 21st must wait
    until Kraken's counter, counted from the calls' arrivals, has room. The event loop is busy
    for 0.6 s just as the first fetch has booked its call (other tasks' work, a slow first
    connection): the calls reach Kraken later than they were booked, which must not let the
    21st in early."""
    recorder = load.Recorder("kraken", SimulatedKraken(host=load.LOOPBACK).handle)

    async def main(url: str) -> list[object]:
        kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=url, tier="pro")

        async def busy() -> None:
            time.sleep(0.6)  # the loop does nothing else meanwhile

        async with bb.AsyncBalanceClient(retry=bb.NO_RETRY) as client:
            first = asyncio.ensure_future(client.fetch(kraken, timeout=10))
            await asyncio.sleep(0)  # the first fetch books its call and hands its request to a task
            await busy()
            rest = [client.fetch(kraken, timeout=10) for _ in range(20)]
            return await asyncio.gather(first, *rest, return_exceptions=True)

    with LoopbackServer(recorder) as server:
        outcomes = asyncio.run(main(server.url))
    assert all(isinstance(o, bb.Balance) for o in outcomes), outcomes
    assert [a for a in recorder.arrivals if a.refusal] == []
    arrivals = sorted(a.at for a in recorder.arrivals)
    assert len(arrivals) == 21
    top = load.kraken_counter(arrivals, 1.0)
    print(f"kraken pro counter at the venue: {top:.2f} / 20")
    assert top > 19  # the counter was driven to its top
    assert top <= 20 + 1.0 * load.JITTER, f"Kraken's counter reached {top:.2f} of 20"
