"""bb.watch / bb.Watcher without sockets: arguments, paces, the schedule, hooks, stale totals.

The schedule is checked as a property (hypothesis): whatever ``every``, the venues' intervals and
the time a bot spends between rounds, no account is fetched faster than its pace allows, and none
waits much longer. Each built-in venue's ``watch_pace`` is checked against the limiter its own
flow throttles through. The Portfolio's stale arithmetic is checked against sums made here.
The simulated Kraken's call counter is checked as Kraken documents it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion_balance as bb
from bastion_balance import provider_kit as kit
from bastion_balance._state import RateLimiter, WindowLimiter
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    FakeProvider,
    SimulatedKraken,
    demo_setup,
    rate_limits_disabled,
)
from tests._harness import FakeClock

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@attrs.define(eq=False)
class Paced:
    """A provider with a published pace that sends nothing, notes when it was asked, and fails
    while ``failing`` says so."""

    label: str
    interval: float
    clock: FakeClock
    budget: str | None = None
    currency: str = "USD"
    total: Decimal = Decimal(100)
    failing: bool = False
    times: list[float] = attrs.field(factory=list)
    venue: str = "paced"

    @property
    def watch_pace(self) -> kit.WatchPace:
        return kit.WatchPace(self.budget or self.label, self.interval)

    def balance_flow(self) -> kit.Flow:
        self.times.append(self.clock())
        yield from ()
        if self.failing:
            raise bb.ExchangeAPIError(f"{self.label}: refused", venue=self.venue)  # not retried
        return bb.Balance(
            label=self.label,
            exchange=self.venue,
            currency=self.currency,
            total=self.total,
            available=self.total / 2,
            fetched_at=NOW,
        )


@pytest.fixture
def no_limits() -> Iterator[None]:
    with rate_limits_disabled():
        yield


def sync_rounds(providers: list[Any], rounds: int, **settings: Any) -> list[bb.Portfolio]:
    with bb.BalanceClient() as client, bb.Watcher(providers, client=client, **settings) as watcher:
        return [portfolio for _, portfolio in zip(range(rounds), watcher, strict=False)]


# --------------------------------------------------------------------------- arguments


def provider() -> FakeProvider:
    return FakeProvider(label="a", total=Decimal(1), available=Decimal(1))


BAD: list[tuple[dict[str, Any], str]] = [
    ({"every": 0}, "every is the seconds between rounds"),
    ({"every": -1}, "every is the seconds between rounds"),
    ({"every": math.inf}, "every is the seconds between rounds"),
    ({"every": math.nan}, "every is the seconds between rounds"),
    ({"every": True}, "every is the seconds between rounds"),
    ({"every": "1"}, "every is the seconds between rounds"),
    ({"every": 1e9}, "at most 86400"),
    ({"every": 1, "timeout": 0}, "timeout must be a positive"),
    ({"every": 1, "rates": {"usd ": 1}}, "rate keys are currency codes"),
    ({"every": 1, "history": object()}, "history needs a record"),
    ({"every": 1, "on_result": 3}, "on_result must be a callable or None"),
    ({"every": 1, "on_error": "print"}, "on_error must be a callable or None"),
    ({"every": 1, "on_retry": 1.5}, "on_retry must be a callable or None"),
    ({"every": 1, "on_event": []}, "on_event must be a callable or None"),
    ({"every": 1, "breaker_after": 0}, "breaker_after is a whole number >= 1"),
    ({"every": 1, "breaker_every": 2.5}, "breaker_every is a whole number >= 1"),
    ({"every": 1, "breaker_every": False}, "breaker_every is a whole number >= 1"),
    ({"every": 1, "breaker_jitter": None}, "breaker_jitter must be a callable,"),
    ({"every": 1, "clock": 0.0}, "clock must be a callable,"),
    ({"every": 1, "sleep": None}, "sleep must be a callable,"),
    ({"every": 1, "client": object()}, "client=...): a"),
]


@pytest.mark.parametrize(("settings", "message"), BAD)
@pytest.mark.parametrize(
    "make", [bb.watch, bb.AsyncWatcher, bb.Watcher], ids=["watch", "AsyncWatcher", "Watcher"]
)
def test_bad_arguments_are_configuration_errors(
    make: Callable[..., Any], settings: dict[str, Any], message: str
) -> None:
    """Every argument is checked when the watch is made, with a message saying what to pass."""
    with pytest.raises(bb.ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make([provider()], **settings)


@pytest.mark.parametrize("make", [bb.watch, bb.Watcher])
def test_the_providers_are_checked(make: Callable[..., Any]) -> None:
    """No provider, one provider instead of a list, two labels alike: refused at once."""
    name = "watch" if make is bb.watch else "Watcher"
    with pytest.raises(bb.ConfigurationError, match=rf"{name}\(\) needs at least one provider"):
        make([], every=1)
    with pytest.raises(bb.ConfigurationError, match="not one provider"):
        make(provider(), every=1)
    with pytest.raises(bb.ConfigurationError, match="share the label"):
        make([provider(), provider()], every=1)


def test_the_client_kinds_are_kept_apart() -> None:
    """The async watch takes async clients, the sync watcher sync ones."""
    with pytest.raises(
        bb.ConfigurationError, match=r"AsyncBalanceClient or httpx\.AsyncClient, not BalanceClient"
    ):
        bb.watch([provider()], every=1, client=bb.BalanceClient())
    with pytest.raises(bb.ConfigurationError, match=r"BalanceClient or httpx\.Client, not AsyncClient"):
        bb.Watcher([provider()], every=1, client=httpx.AsyncClient())


@pytest.mark.parametrize(
    "pace",
    [5, ("budget",), ("budget", -1), ("budget", math.inf), ("budget", True), (1, 2.0), ("budget", "2")],
    ids=repr,
)
def test_a_malformed_watch_pace_is_refused(pace: object) -> None:
    """A third-party provider's watch_pace must be a WatchPace (budget, seconds >= 0)."""

    @attrs.frozen
    class Odd:
        label: str
        watch_pace: object
        venue: str = "odd"

        def balance_flow(self) -> kit.Flow:  # never fetched
            raise NotImplementedError

    with pytest.raises(bb.ConfigurationError, match=r"a: watch_pace must be a provider_kit.WatchPace"):
        bb.Watcher([Odd(label="a", watch_pace=pace)], every=1)


# --------------------------------------------------------------------------- paces


def test_paces_follow_the_budgets() -> None:
    """pace = max(every, interval x accounts sharing the budget); no watch_pace: every round."""
    clock = FakeClock()
    providers = [
        Paced("fast", 0.1, clock),
        Paced("slow", 3.0, clock),
        Paced("shared-1", 2.0, clock, budget="key"),
        Paced("shared-2", 2.0, clock, budget="key"),
        Paced("shared-3", 0.5, clock, budget="key"),
        FakeProvider(label="third-party"),
    ]
    watcher = bb.Watcher(providers, every=1.5)
    assert watcher.paces == {
        "fast": 1.5,
        "slow": 3.0,
        "shared-1": 6.0,
        "shared-2": 6.0,
        "shared-3": 6.0,
        "third-party": 1.5,
    }
    assert bb.watch(providers, every=1.5).paces == watcher.paces


def test_the_demo_venues_paces() -> None:
    """The built-in venues' paces at 1 s rounds: Kraken's starter counter and CoinSwitch's 20 a
    minute are slower than a second, the others keep up."""
    _, providers = demo_setup()
    paces = bb.Watcher(providers, every=1).paces
    slower = {label for label, pace in paces.items() if pace > 1}
    assert slower == {"kraken", "coinswitch"}
    assert paces["kraken"] == pytest.approx(1 / 0.33)
    assert paces["coinswitch"] == pytest.approx((60 + 3) / 20)


def balance_throttles(
    provider: Any, handler: Callable[[httpx.Request], httpx.Response]
) -> list[kit.Throttle]:
    """Drive a provider's flow by hand against a simulator; the Throttle effects it yielded."""
    flow = provider.balance_flow()
    seen: list[kit.Throttle] = []
    answer: httpx.Response | None = None
    effect = next(flow)
    while True:
        answer = None
        if isinstance(effect, httpx.Request):
            answer = handler(effect)
            answer.read()
        elif isinstance(effect, kit.Throttle):
            seen.append(effect)
        try:
            effect = flow.send(answer)
        except StopIteration as stop:
            balance = stop.value
            break
    assert isinstance(balance, bb.Balance)
    return seen


def on_fake_clock(limiter: RateLimiter, clock: FakeClock) -> RateLimiter:
    """A fresh limiter like ``limiter``, on ``clock``."""
    if isinstance(limiter, WindowLimiter):
        return WindowLimiter(
            limiter.capacity, limiter.rate, limiter.name, monotonic=clock, window=limiter.window
        )
    return RateLimiter(limiter.capacity, limiter.rate, limiter.name, monotonic=clock)


def waits(limiter: RateLimiter, clock: FakeClock, cost: float, interval: float) -> float:
    """The longest wait of bookings of ``cost``, ``interval`` seconds apart, a dozen times as many
    as the limiter holds (a bucket drains, a window fills, several times over)."""
    count = 12 * math.ceil(limiter.capacity / cost) + 50
    start = clock.now
    longest = 0.0
    for k in range(count):
        clock.now = start + k * interval
        booked, wait = limiter.reserve(cost, math.inf)
        assert booked
        longest = max(longest, wait)
    return longest


@pytest.mark.parametrize("label", [p.label for p in demo_setup()[1]])
def test_each_venues_pace_is_what_its_limiter_sustains(label: str) -> None:
    """Booked at its watch_pace, the limiter its own flow throttles through never makes a fetch
    wait; booked 10 % faster, it does. (Rails' balance call has no limiter, and no pace.)"""
    simulator, providers = demo_setup()
    venue = next(p for p in providers if p.label == label)
    throttles = balance_throttles(venue, simulator)
    pace = venue.watch_pace
    assert isinstance(pace, kit.WatchPace)
    if label == "rails":
        assert pace.interval == 0
        assert all(t.limiter.name == "token" for t in throttles)
        return
    last = throttles[-1]  # the balance call's
    clock = FakeClock()
    assert waits(on_fake_clock(last.limiter, clock), clock, last.cost, pace.interval) <= 1e-9
    assert waits(on_fake_clock(last.limiter, clock), clock, last.cost, pace.interval * 0.9) > 0


def test_budgets_keep_keys_out_and_tell_credentials_apart() -> None:
    """A budget names venue, base URL and a fingerprint of the key: never the key itself."""
    one = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET)
    other = bb.Kraken(api_key="another-key", api_secret=KRAKEN_TEST_SECRET)
    same = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, label="second", asset="ZEUR")
    assert KRAKEN_TEST_KEY not in one.watch_pace.budget
    assert one.watch_pace.budget == same.watch_pace.budget != other.watch_pace.budget
    assert one.watch_pace.budget.startswith("kraken https://api.kraken.com ")
    pro = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, tier="pro")
    assert pro.watch_pace.interval == 1.0
    assert kit.pace_budget("x", "https://h/", "k") == kit.pace_budget("x", "https://h", "k")
    assert kit.counter_pace("b", 0.5, cost=2) == kit.WatchPace("b", 4.0)
    assert kit.window_pace("b", 20, 60.0) == kit.WatchPace("b", 63 / 20)


# --------------------------------------------------------------------------- the schedule


@given(
    every=st.floats(0.05, 5),
    intervals=st.lists(st.floats(0, 20), min_size=1, max_size=3),
    stalls=st.lists(st.floats(0, 8), max_size=40),
)
def test_no_account_is_fetched_faster_than_its_pace(
    every: float, intervals: list[float], stalls: list[float]
) -> None:
    """Any n+1 fetches of an account span at least n paces less one round; consecutive ones are at
    most a pace, a round and the bot's longest stall apart (so each keeps to its venue's rate)."""
    clock = FakeClock()
    providers = [Paced(f"a{i}", interval, clock) for i, interval in enumerate(intervals)]
    padded = [*stalls, *[0.0] * 30]
    with (
        bb.BalanceClient() as client,
        bb.Watcher(providers, every=every, client=client, clock=clock, sleep=clock.sleep) as watcher,
    ):
        for stall, _ in zip(padded, watcher, strict=False):
            clock.now += stall
        paces = dict(watcher.paces)
    worst_stall = max(padded)
    for account in providers:
        pace = paces[account.label]
        assert pace == max(every, account.interval)
        times = account.times
        assert times, "never fetched"
        for i, earlier in enumerate(times):
            for j in range(i + 1, len(times)):
                assert times[j] - earlier >= (j - i) * pace - every - 1e-6
        for earlier, later in itertools.pairwise(times):
            assert later - earlier <= pace + every + worst_stall + 1e-6


def test_rounds_keep_their_grid_and_late_ones_do_not_burst() -> None:
    """Rounds start every ``every`` seconds; after a bot stalls past several, one starts at once
    and the next a full ``every`` later (the missed ones are not made up)."""
    clock = FakeClock()
    starts: list[float] = []
    account = Paced("a", 0, clock)
    with bb.Watcher([account], every=2, clock=clock, sleep=clock.sleep) as watcher:
        for number, _ in enumerate(watcher, start=1):
            starts.append(clock.now)
            if number == 3:
                clock.now += 7  # the bot took 7 s over this round
            if number == 6:
                break
    assert [s - 1000 for s in starts] == [0, 2, 4, 11, 13, 15]
    assert account.times == starts


def test_an_account_not_due_keeps_its_last_figures() -> None:
    """Between its fetches a paced account keeps its balance, fresh; failed, it stays stale (its age
    growing) until its next fetch."""
    clock = FakeClock()
    slow = Paced("slow", 3.0, clock)
    fast = Paced("fast", 0.0, clock)
    portfolios = []
    with bb.Watcher([slow, fast], every=1, clock=clock, sleep=clock.sleep) as watcher:
        for number, portfolio in enumerate(watcher, start=1):
            portfolios.append(portfolio)
            slow.failing = number >= 3
            if number == 8:
                break
    assert [t - 1000 for t in slow.times] == [0, 3, 6]
    assert [t - 1000 for t in fast.times] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert all(p.complete and "slow" in p.balances for p in portfolios[:3])
    assert [p.stale.get("slow") for p in portfolios] == [None, None, None, 3, 4, 5, 6, 7]
    assert all(type(p.errors["slow"]) is bb.ExchangeAPIError for p in portfolios[3:])


def test_async_rounds_with_nothing_due() -> None:
    """The async watch yields a Portfolio every round, also when no account is due in it."""
    clock = FakeClock()
    slow = Paced("slow", 2.5, clock)

    async def run() -> list[bb.Portfolio]:
        got = []
        async with bb.watch([slow], every=1, clock=clock, sleep=clock.asleep) as watcher:
            async for portfolio in watcher:
                got.append(portfolio)
                if len(got) == 6:
                    break
            assert watcher.rounds == 6 and watcher.open_breakers == frozenset()
        return got

    portfolios = asyncio.run(run())
    assert [t - 1000 for t in slow.times] == [0, 3, 5]
    assert all(p.complete and p.total_usd == 100 for p in portfolios)


# --------------------------------------------------------------------------- breakers and hooks


def test_breaker_rounds_are_jittered_within_a_quarter() -> None:
    """The rounds an open breaker waits are drawn in [breaker_every x 0.75, x 1.25]; a jitter
    function's answer outside it is clamped, one that is not a whole number refused."""
    asked: list[tuple[int, int]] = []
    clock = FakeClock()

    def jitter(low: int, high: int) -> int:
        asked.append((low, high))
        return 1000

    down = Paced("down", 0, clock, failing=True)
    opened: list[bb.BreakerOpened] = []
    watcher = bb.Watcher(
        [down],
        every=1,
        breaker_after=1,
        breaker_every=8,
        breaker_jitter=jitter,
        clock=clock,
        sleep=clock.sleep,
        on_event=lambda e: opened.append(e) if isinstance(e, bb.BreakerOpened) else None,
    )
    with watcher:
        for _ in zip(range(25), watcher, strict=False):
            pass
        assert watcher.open_breakers == frozenset({"down"})
    assert set(asked) == {(6, 10)}
    assert opened[0].retry_in == 10
    assert [t - 1000 for t in down.times] == [0, 10, 20]

    def fractional(low: int, high: int) -> int:
        return 2.5  # type: ignore[return-value]

    with bb.Watcher(
        [Paced("x", 0, clock, failing=True)],
        every=1,
        breaker_after=1,
        breaker_jitter=fractional,
        clock=clock,
        sleep=clock.sleep,
    ) as broken:
        with pytest.raises(
            bb.ConfigurationError,
            match=r"breaker_jitter=\.\.\.\) must return a whole number of rounds, got 2\.5",
        ):
            next(broken)


def test_breaker_every_one_keeps_trying_each_round() -> None:
    """breaker_every=1: opened, the account is still tried every round (and the default jitter
    draws within its range)."""
    clock = FakeClock()
    down = Paced("down", 0, clock, failing=True)
    with bb.Watcher(
        [down], every=1, breaker_after=2, breaker_every=1, clock=clock, sleep=clock.sleep
    ) as watcher:
        for _ in zip(range(5), watcher, strict=False):
            pass
    assert len(down.times) == 5


def test_hooks_that_raise_are_logged_and_the_watch_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """A hook's exception is logged with the event and label; the other hooks and the next rounds
    still run."""
    clock = FakeClock()
    seen: list[bb.WatchEvent] = []

    def broken(event: bb.WatchEvent) -> None:
        raise ValueError("bug in the bot")

    class Broken:
        def record(self, portfolio: bb.Portfolio) -> None:
            raise OSError("disk full")

    with caplog.at_level(logging.WARNING, "bastion_balance"):
        portfolios = sync_rounds(
            [Paced("a", 0, clock)],
            2,
            every=1,
            on_result=broken,
            on_event=lambda event: (seen.append(event), broken(event)),
            history=Broken(),
            clock=clock,
            sleep=clock.sleep,
        )
    assert len(portfolios) == 2
    assert [type(e).__name__ for e in seen] == ["FetchSucceeded", "RecordFailed"] * 2
    messages = [r.getMessage() for r in caplog.records if "hook" in r.getMessage()]
    assert messages[:3] == [
        "watch: the on_result hook raised ValueError on FetchSucceeded (a); the watch goes on",
        "watch: the on_event hook raised ValueError on FetchSucceeded (a); the watch goes on",
        "watch: the on_event hook raised ValueError on RecordFailed; the watch goes on",
    ]
    hook_record = next(r for r in caplog.records if "on_result hook" in r.getMessage())
    assert (hook_record.label, hook_record.venue, hook_record.round) == ("a", "paced", 1)  # type: ignore[attr-defined]
    assert hook_record.exc_info is not None and isinstance(hook_record.exc_info[1], ValueError)


def test_sync_retries_reach_on_retry_in_the_calling_thread() -> None:
    """The sync watcher's fetches run on worker threads; their retries are told to on_retry in the
    iterating thread, before the fetch's own result, with the attempt and the wait."""
    import threading

    answers = iter([503, 503, 200, 200])
    thread: list[threading.Thread] = []
    events: list[bb.WatchEvent] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers))

    def note(event: bb.WatchEvent) -> None:
        thread.append(threading.current_thread())
        events.append(event)

    venue = FakeProvider(label="a", total=Decimal(5), available=Decimal(5), url="http://fake.test/balance")
    with (
        bb.BalanceClient(
            http_client=httpx.Client(transport=httpx.MockTransport(handler)),
            retry=bb.RetryPolicy(attempts=3, backoff=0, max_backoff=0),
        ) as client,
        bb.Watcher([venue], every=1, client=client, on_retry=note, on_result=note) as watcher,
    ):
        portfolio = next(watcher)
    assert portfolio.complete
    assert [(type(e).__name__, e.attempt) for e in events] == [  # type: ignore[attr-defined]
        ("FetchRetried", 1),
        ("FetchRetried", 2),
        ("FetchSucceeded", 3),
    ]
    retried = events[0]
    assert isinstance(retried, bb.FetchRetried)
    assert (retried.label, retried.venue, retried.wait, retried.round) == ("a", "fake", 0, 1)
    assert isinstance(retried.error, bb.ServiceUnavailableError) and retried.latency >= 0
    assert set(thread) == {threading.current_thread()}


def test_a_failure_inside_the_flow_is_timed_and_counted() -> None:
    """A flow that raises (a venue refusal parsed from its answer) still ends its attempt: the
    FetchFailed event has the attempt count and a latency."""
    failed: list[bb.FetchFailed] = []
    venue = FakeProvider(label="a", error=bb.AuthenticationError("a: refused", venue="fake"))
    with bb.Watcher([venue], every=1, on_error=failed.append) as watcher:
        portfolio = next(watcher)
    assert set(portfolio.errors) == {"a"} and not portfolio.stale
    assert [(e.label, e.attempt, e.failures) for e in failed] == [("a", 1, 1)]
    assert failed[0].latency >= 0 and isinstance(failed[0].error, bb.AuthenticationError)


@pytest.mark.usefixtures("no_limits")
def test_a_given_http_client_is_wrapped_and_never_closed() -> None:
    """client=httpx.Client / httpx.AsyncClient: used for the watch's life and left open."""
    simulator, providers = demo_setup()
    kraken = next(p for p in providers if p.venue == "kraken")
    http = simulator.client()
    with bb.Watcher([kraken], every=1, client=http) as watcher:
        assert next(watcher).total_usd == Decimal("382.2032")
    assert not http.is_closed
    http.close()

    async def run() -> None:
        ahttp = simulator.async_client()
        async with bb.watch([kraken], every=1, client=ahttp) as watcher:
            assert (await watcher.__anext__()).total_usd == Decimal("382.2032")
        assert not ahttp.is_closed
        await ahttp.aclose()

    asyncio.run(run())
    watcher = bb.Watcher([kraken], every=1)
    watcher.close()  # never started: nothing to close
    with pytest.raises(StopIteration):
        next(watcher)
    assert iter(watcher) is watcher


# --------------------------------------------------------------------------- stale totals


def balance(label: str, currency: str, total: Decimal, available: Decimal) -> bb.Balance:
    return bb.Balance(
        label=label, exchange="x", currency=currency, total=total, available=available, fetched_at=NOW
    )


money = st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False)
kinds = st.sampled_from(["fresh", "stale", "failed", "no rate", "stale, no rate"])


@given(
    accounts=st.lists(st.tuples(kinds, st.sampled_from(["USD", "EUR"]), money, money), max_size=8),
    eur=st.decimals(min_value="0.0001", max_value=10, places=4),
    ages=st.floats(0, 1e6),
)
def test_totals_with_and_without_stale_figures(
    accounts: list[tuple[str, str, Decimal, Decimal]], eur: Decimal, ages: float
) -> None:
    """total_usd = fresh_total_usd + the stale balances that have a rate; neither counts a failed
    account or a balance without a rate; to_bastion() lists what total_usd counts."""
    balances: dict[str, bb.Balance] = {}
    errors: dict[str, Exception] = {}
    stale: dict[str, float] = {}
    rates = {"USD": Decimal(1), "EUR": eur}
    expected = {"fresh": [Decimal(0), Decimal(0)], "stale": [Decimal(0), Decimal(0)]}
    for n, (kind, chosen, total, available) in enumerate(accounts):
        label = f"a{n}"
        if kind == "failed":
            errors[label] = bb.TransportError(f"{label}: down")
            continue
        currency = chosen
        if "no rate" in kind:
            currency = "XYZ"
            errors[label] = bb.MissingRateError(f"{label}: no rate", currency="XYZ")
        balances[label] = balance(label, currency, total, available)
        if kind.startswith("stale"):
            stale[label] = ages
            errors[label] = bb.TransportError(f"{label}: down")
        if "no rate" not in kind:
            part = expected["stale" if kind == "stale" else "fresh"]
            part[0] += total * rates[currency]
            part[1] += available * rates[currency]
    used = {c: r for c, r in rates.items() if any(b.currency == c for b in balances.values())}
    portfolio = bb.Portfolio(balances=balances, errors=errors, rates=used, stale=stale, fetched_at=NOW)
    assert portfolio.fresh_total_usd == expected["fresh"][0]
    assert portfolio.fresh_available_margin_usd == expected["fresh"][1]
    assert portfolio.total_usd == expected["fresh"][0] + expected["stale"][0]
    assert portfolio.available_margin_usd == expected["fresh"][1] + expected["stale"][1]
    assert portfolio.complete is (not errors)
    shape = portfolio.to_bastion()
    assert sum((e["total"] for e in shape["exchanges"].values()), Decimal(0)) == portfolio.total_usd
    assert set(shape["exchanges"]) == {
        label
        for label, b in balances.items()
        if b.currency != "XYZ" and (label not in errors or label in stale)
    }


def test_to_dict_shows_the_stale_ages_as_exact_numbers() -> None:
    """to_dict()['stale']: label -> age in seconds to the millisecond, written by dumps as a number."""
    b = balance("k", "USD", Decimal(7), Decimal(5))
    portfolio = bb.Portfolio(
        balances={"k": b},
        errors={"k": bb.TransportError("k: down")},
        rates={"USD": Decimal(1)},
        stale={"k": 12.3456},
        fetched_at=NOW,
    )
    assert portfolio.to_dict()["stale"] == {"k": Decimal("12.346")}
    assert '"stale": {"k": 12.346}' in portfolio.to_json()
    assert bb.Portfolio(balances={"k": b}, fetched_at=NOW).to_dict()["stale"] == {}


@pytest.mark.parametrize(
    ("stale", "errors", "message"),
    [
        ({"k": 1.0}, {}, "needs its last good balance in balances and its error in errors"),
        ({"other": 1.0}, {"other": ValueError()}, "needs its last good balance"),
        ({"k": -1.0}, {"k": ValueError()}, "finite number of seconds >= 0"),
        ({"k": math.inf}, {"k": ValueError()}, "finite number of seconds >= 0"),
        ({"k": True}, {"k": ValueError()}, "finite number of seconds >= 0"),
        ({"k": "1"}, {"k": ValueError()}, "finite number of seconds >= 0"),
    ],
)
def test_a_stale_label_must_be_whole(
    stale: dict[str, object], errors: dict[str, Exception], message: str
) -> None:
    """A stale label has its balance, its error and a finite age; anything else is refused."""
    b = balance("k", "USD", Decimal(7), Decimal(5))
    with pytest.raises(ValueError, match=message):
        bb.Portfolio(balances={"k": b}, errors=errors, rates={"USD": Decimal(1)}, stale=stale, fetched_at=NOW)  # type: ignore[arg-type]


def test_a_stale_balance_without_a_rate_is_not_counted() -> None:
    """A watched account whose currency has no rate: stale when it fails, counted in no total."""
    clock = FakeClock()
    odd = Paced("odd", 0, clock, currency="XYZ", total=Decimal(3))
    usd = Paced("usd", 0, clock)
    with bb.Watcher([odd, usd], every=1, clock=clock, sleep=clock.sleep) as watcher:
        first = next(watcher)
        odd.failing = True
        second = next(watcher)
    assert isinstance(first.errors["odd"], bb.MissingRateError) and not first.stale
    assert second.stale == {"odd": 1.0} and type(second.errors["odd"]) is bb.ExchangeAPIError
    assert second.total_usd == second.fresh_total_usd == 100


# --------------------------------------------------------------------------- the simulated counter


@pytest.mark.usefixtures("no_limits")
def test_the_simulated_kraken_counter() -> None:
    """+1 a call, decaying by the tier's rate; a call above the maximum is refused and not counted."""
    clock = FakeClock()
    venue = SimulatedKraken(tier="intermediate", clock=clock)
    client = bb.BalanceClient(http_client=venue_client(venue), retry=bb.NO_RETRY)
    kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET)
    assert venue.counter() == 0
    for _ in range(20):
        client.fetch(kraken)
    assert venue.counter() == 20 and venue.counter_peak == 20
    with pytest.raises(bb.RateLimitedError, match="EAPI:Rate limit exceeded"):
        client.fetch(kraken)
    assert venue.rate_limited == 1 and venue.counter() == 20
    clock.sleep(4)  # -0.5 a second
    assert venue.counter() == 18
    client.fetch(kraken)
    assert venue.counter() == 19
    clock.sleep(100)
    assert venue.counter() == 0
    assert venue.counter("unknown key") == 0
    client.close()
    untiered = SimulatedKraken()
    with bb.BalanceClient(http_client=venue_client(untiered)) as plain:
        for _ in range(30):
            plain.fetch(kraken)
    assert untiered.counter() == 0 and untiered.rate_limited == 0
    with pytest.raises(ValueError, match="tier must be one of starter, intermediate, pro or None"):
        SimulatedKraken(tier="gold")


def venue_client(venue: SimulatedKraken) -> httpx.Client:
    from bastion_balance.testing import Simulator

    return Simulator(venue).client()


def test_retrying_without_a_hook_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    """on_retry is optional in the retry loop: without one a retry is logged as before."""
    import time

    from bastion_balance._retry import retrying

    tries = iter([bb.TransportError("a: reset"), None])

    def flaky() -> str:
        failure = next(tries)
        if failure is not None:
            raise failure
        return "answered"

    policy = bb.RetryPolicy(attempts=2, backoff=0, max_backoff=0)
    with caplog.at_level(logging.INFO, "bastion_balance"):
        answer = retrying(policy, time.monotonic() + 10, label="a", venue="v")(flaky)
    assert answer == "answered"
    assert [r.getMessage() for r in caplog.records] == [
        "a (v): retrying after TransportError (attempt 1, waiting 0.00s)"
    ]


def test_the_testing_example_of_the_docs_runs() -> None:
    """docs/watch.md's last example (two minutes of a fake-clocked watch of a starter key) runs."""
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "watch.md"
    block = re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)[-1]
    assert "rate_limited == 0" in block
    exec(compile(block, "docs/watch.md", "exec"), {"__name__": "docs_example"})  # noqa: S102  # our own docs
