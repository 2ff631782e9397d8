"""Watching balances: ``bb.watch`` (async) and ``bb.Watcher`` (sync) yield a Portfolio each round.

Why it behaves as it does: docs/decisions.md §31. In short:

* **One client for the watch's life.** Connections, tokens, nonces and rate limiters are shared
  by every round; a client the watch made is closed when it ends, one the caller passed never.
* **Paced per account.** Each account is fetched at most once per its *pace*:
  ``max(every, interval x n)``, where ``interval`` is what the venue's published limit sustains
  for the account's budget (its credential, IP or firm: ``provider.watch_pace``) and ``n`` the
  number of watched accounts sharing that budget. An account not due in a round keeps its last
  balance (fresh, not stale: it is within its pace).
* **Last good figures.** An account that fails keeps its last good balance in ``balances``,
  marked stale (``Portfolio.stale``: label -> age in seconds), with its error in ``errors``.
* **A circuit breaker per account.** After ``breaker_after`` failures in a row the account is
  tried once every ``breaker_every`` rounds (+-25 %, jittered) until it answers again.
* **Hooks.** ``on_result``, ``on_error``, ``on_retry`` (and ``on_event`` for every event) get
  typed events with label, venue, attempt and latency, called in the iterating thread or task
  once the round's fetches are done. A hook that raises is logged and the watch goes on.

The scheduling is shared by both drivers (:class:`_Core`); they differ only in how they wait and
fetch, as the clients do.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import attrs
import httpx

from ._aggregate import check_providers, normalize_rates
from ._client import MAX_TIMEOUT, AsyncBalanceClient, BalanceClient, _check_timeout, _Fetch, positive_seconds
from ._models import Balance, Portfolio
from ._protocol import BalanceProvider, Flow
from .exceptions import ConfigurationError, TransportError

if TYPE_CHECKING:
    import threading

    from ._rates import Rates

__all__ = [
    "DEFAULT_BREAKER_AFTER",
    "DEFAULT_BREAKER_EVERY",
    "AsyncWatcher",
    "BreakerClosed",
    "BreakerOpened",
    "FetchFailed",
    "FetchRetried",
    "FetchSucceeded",
    "RecordFailed",
    "WatchEvent",
    "Watcher",
    "watch",
]

logger = logging.getLogger("bastion_balance")

#: Failures in a row after which an account's circuit breaker opens.
DEFAULT_BREAKER_AFTER: Final = 3
#: While a breaker is open, its account is tried once every this many rounds (jittered).
DEFAULT_BREAKER_EVERY: Final = 10
_JITTER: Final = 0.25  # an open breaker's wait is breaker_every rounds, +-25 %
_EPSILON: Final = 1e-9  # seconds: float sums of one schedule compare equal


# --------------------------------------------------------------------------- events


@attrs.frozen(kw_only=True)
class WatchEvent:
    """What every event of a watch carries: the round it happened in (1 for the first)."""

    round: int


@attrs.frozen(kw_only=True)
class FetchSucceeded(WatchEvent):
    """An account answered: ``attempt`` is how many attempts it took (1: no retry), ``latency``
    the seconds from the fetch's start to the end of its last attempt."""

    label: str
    venue: str
    attempt: int
    latency: float
    balance: Balance = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class FetchFailed(WatchEvent):
    """An account failed (after its retries): ``failures`` counts its failures in a row."""

    label: str
    venue: str
    attempt: int
    latency: float
    error: Exception
    failures: int


@attrs.frozen(kw_only=True)
class FetchRetried(WatchEvent):
    """Attempt ``attempt`` of a fetch failed with ``error`` and is retried after ``wait`` seconds;
    ``latency`` is the seconds since the fetch began."""

    label: str
    venue: str
    attempt: int
    latency: float
    wait: float
    error: BaseException | None


@attrs.frozen(kw_only=True)
class BreakerOpened(WatchEvent):
    """An account failed ``failures`` times in a row: it is tried again in ``retry_in`` rounds."""

    label: str
    venue: str
    failures: int
    retry_in: int


@attrs.frozen(kw_only=True)
class BreakerClosed(WatchEvent):
    """An account whose breaker was open answered again, after ``failures`` failures in a row."""

    label: str
    venue: str
    failures: int


@attrs.frozen(kw_only=True)
class RecordFailed(WatchEvent):
    """``history.record()`` failed for a complete round: the round was not recorded."""

    error: Exception


Hook = Callable[[Any], object]


# --------------------------------------------------------------------------- checks


def _check_every(every: object, function: str) -> float:
    seconds = positive_seconds(every)
    if seconds is None:
        msg = (
            f"{function}(every={every!r}): every is the seconds between rounds, a positive, finite "
            f"number (at most {MAX_TIMEOUT:g}); e.g. every=1"
        )
        raise ConfigurationError(msg)
    return seconds


def _check_count(value: object, name: str, function: str, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{function}({name}={value!r}): {name} is a whole number >= 1, e.g. {name}={example}"
        raise ConfigurationError(msg)
    return value


def _check_callable(value: object, name: str, function: str, *, optional: bool) -> None:
    if (value is None and optional) or callable(value):
        return
    what = "a callable or None" if optional else "a callable"
    msg = f"{function}({name}=...): {name} must be {what}, got {type(value).__name__}"
    raise ConfigurationError(msg)


def _check_history(history: object, function: str) -> Any:  # noqa: ANN401  # any object with record()
    if history is not None and not callable(getattr(history, "record", None)):
        msg = (
            f"{function}(history=...): history needs a record(portfolio) method, such as bb.History(); "
            f"got {type(history).__name__}"
        )
        raise ConfigurationError(msg)
    return history


def _pace_of(provider: BalanceProvider) -> tuple[tuple[str, str], float]:
    """``(budget, interval)`` of a provider: its ``watch_pace``, or its own budget and no limit."""
    pace = getattr(provider, "watch_pace", None)
    if pace is None:
        return ("label", provider.label), 0.0
    try:
        budget, interval = pace
    except (TypeError, ValueError):
        budget, interval = None, None
    if (
        not isinstance(budget, str)
        or isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or not 0 <= interval < math.inf
    ):
        msg = (
            f"{provider.label}: watch_pace must be a provider_kit.WatchPace(budget, interval): a str "
            f"and a finite number of seconds >= 0, got {pace!r}"
        )
        raise ConfigurationError(msg)
    return ("budget", budget), float(interval)  # float-ok: seconds


# --------------------------------------------------------------------------- one account


class _Account:
    """What a watch knows of one account between rounds."""

    __slots__ = ("due", "failures", "good_at", "last_good", "open", "outcome", "pace", "provider", "skip")

    def __init__(self, provider: BalanceProvider, pace: float) -> None:
        self.provider = provider
        self.pace = pace
        self.due: float | None = None  # when it may be fetched next (None: at once)
        self.last_good: Balance | None = None
        self.good_at = 0.0  # the watch's clock when last_good arrived
        self.outcome: Balance | Exception = TransportError(f"{provider.label}: not fetched yet")
        self.failures = 0  # in a row
        self.open = False  # its breaker
        self.skip = 0  # rounds left before an open breaker tries it again

    @property
    def label(self) -> str:
        return self.provider.label

    @property
    def venue(self) -> str:
        return str(self.provider.venue)

    def result(self) -> Balance | Exception:
        """What the round's valuation sees: the last good balance if any, else the failure."""
        return self.last_good if self.last_good is not None else self.outcome


class _WatchFetch(_Fetch):
    """A balance fetch that counts its attempts, times them and collects its retries."""

    __slots__ = ("attempts", "ended", "retries", "round")

    def __init__(self, provider: BalanceProvider, deadline: float, round_: int) -> None:
        super().__init__(provider, deadline)
        self.round = round_
        self.attempts = 0
        self.ended = self.started
        self.retries: list[FetchRetried] = []

    def start(self) -> Flow:
        self.attempts += 1
        return self._timed(super().start())

    def _timed(self, flow: Flow) -> Flow:
        try:
            return (yield from flow)
        finally:
            self.ended = time.monotonic()

    def retried(self, attempt: int, wait: float, error: BaseException | None) -> None:
        self.retries.append(
            FetchRetried(
                round=self.round,
                label=self.label,
                venue=self.venue,
                attempt=attempt,
                latency=max(0.0, time.monotonic() - self.started),
                wait=wait,
                error=error,
            )
        )

    @property
    def latency(self) -> float:
        return max(0.0, self.ended - self.started)


# --------------------------------------------------------------------------- the schedule


class _Core:
    """The rounds, the paces, the breakers and the hooks: what both drivers share."""

    def __init__(
        self,
        providers: Iterable[BalanceProvider],
        *,
        function: str,
        every: float,
        rates: Rates | None,
        timeout: float | None,
        history: object,
        on_result: Callable[[FetchSucceeded], object] | None,
        on_error: Callable[[FetchFailed], object] | None,
        on_retry: Callable[[FetchRetried], object] | None,
        on_event: Callable[[WatchEvent], object] | None,
        breaker_after: int,
        breaker_every: int,
        breaker_jitter: Callable[[int, int], int],
        clock: Callable[[], float],
    ) -> None:
        checked = check_providers(providers, function=function)
        if not checked:
            msg = f"{function}() needs at least one provider: e.g. {function}([kraken], every=1)"
            raise ConfigurationError(msg)
        self.every = _check_every(every, function)
        self.rates = normalize_rates(rates)  # checked once; passed to the valuation as it is
        self.timeout = None if timeout is None else _check_timeout(timeout)
        self.history = _check_history(history, function)
        hooks = {"on_result": on_result, "on_error": on_error, "on_retry": on_retry, "on_event": on_event}
        for name, hook in hooks.items():
            _check_callable(hook, name, function, optional=True)
        self.hooks: dict[type[WatchEvent], tuple[str, Hook | None]] = {
            FetchSucceeded: ("on_result", on_result),
            FetchFailed: ("on_error", on_error),
            FetchRetried: ("on_retry", on_retry),
        }
        self.on_event: Hook | None = on_event
        self.breaker_after = _check_count(breaker_after, "breaker_after", function, DEFAULT_BREAKER_AFTER)
        self.breaker_every = _check_count(breaker_every, "breaker_every", function, DEFAULT_BREAKER_EVERY)
        _check_callable(breaker_jitter, "breaker_jitter", function, optional=False)
        _check_callable(clock, "clock", function, optional=False)
        self.jitter = breaker_jitter
        self.clock = clock
        self.function = function
        self.accounts = self._paced(checked)
        self.round = 0
        self.started_at = 0.0  # the watch's clock when the current round began
        self.next_at: float | None = None
        self.events: list[WatchEvent] = []

    def _paced(self, providers: list[BalanceProvider]) -> list[_Account]:
        """One account per provider, each paced: ``max(every, interval x sharing accounts)``."""
        paces = [_pace_of(provider) for provider in providers]
        sharing: dict[tuple[str, str], list[float]] = {}
        for budget, interval in paces:
            sharing.setdefault(budget, []).append(interval)
        return [
            _Account(provider, max(self.every, max(sharing[budget]) * len(sharing[budget])))
            for provider, (budget, _) in zip(providers, paces, strict=True)
        ]

    # -- reading ---------------------------------------------------------------------------

    @property
    def paces(self) -> Mapping[str, float]:
        return {account.label: account.pace for account in self.accounts}

    @property
    def open_breakers(self) -> frozenset[str]:
        return frozenset(account.label for account in self.accounts if account.open)

    # -- a round ---------------------------------------------------------------------------

    def wait(self) -> float:
        """Seconds until the next round may begin (none before the first)."""
        return 0.0 if self.next_at is None else max(0.0, self.next_at - self.clock())

    def begin(self) -> list[_Account]:
        """Start a round: the accounts due in it, in the providers' order."""
        start = self.clock()
        self.round += 1
        self.started_at = start
        following = (start if self.next_at is None else self.next_at) + self.every
        self.next_at = following if following > start else start + self.every  # late: no burst
        due = []
        for account in self.accounts:
            if account.open and account.skip > 0:
                account.skip -= 1
                continue
            if account.due is None or account.due <= start + _EPSILON:
                due.append(account)
        return due

    def fetch(self, account: _Account, deadline: float) -> _WatchFetch:
        return _WatchFetch(account.provider, deadline, self.round)

    def settle(
        self, fetched: Iterable[tuple[_Account, _WatchFetch, Balance | Exception]]
    ) -> dict[str, Balance | Exception]:
        """Take in the round's outcomes; what the round's valuation sees, label by label."""
        now = self.clock()
        for account, fetch, outcome in fetched:
            start = self.started_at
            account.due = (
                start + account.pace
                if account.due is None
                else max(account.due + account.pace, start + account.pace - self.every)
            )
            self.events.extend(fetch.retries)
            round_, label, venue = self.round, account.label, account.venue
            attempt = max(1, fetch.attempts)
            account.outcome = outcome
            if isinstance(outcome, Balance):
                account.last_good, account.good_at = outcome, now
                self.events.append(
                    FetchSucceeded(
                        round=round_,
                        label=label,
                        venue=venue,
                        attempt=attempt,
                        latency=fetch.latency,
                        balance=outcome,
                    )
                )
                if account.open:
                    self.events.append(
                        BreakerClosed(round=round_, label=label, venue=venue, failures=account.failures)
                    )
                account.open, account.failures, account.skip = False, 0, 0
                continue
            account.failures += 1
            failed = FetchFailed(
                round=round_,
                label=label,
                venue=venue,
                attempt=attempt,
                latency=fetch.latency,
                error=outcome,
                failures=account.failures,
            )
            self.events.append(failed)
            if account.open:  # tried while open, and failed again: wait again
                account.skip = self._rounds_open() - 1
            elif account.failures >= self.breaker_after:
                rounds = self._rounds_open()
                account.open, account.skip = True, rounds - 1
                opened = BreakerOpened(
                    round=round_, label=label, venue=venue, failures=account.failures, retry_in=rounds
                )
                self.events.append(opened)
        return {account.label: account.result() for account in self.accounts}

    def _rounds_open(self) -> int:
        """Rounds until an open breaker's account is tried again: breaker_every, +-25 %, jittered."""
        low = max(1, math.ceil(self.breaker_every * (1 - _JITTER)))
        high = max(low, math.floor(self.breaker_every * (1 + _JITTER)))
        rounds = self.jitter(low, high)
        if isinstance(rounds, bool) or not isinstance(rounds, int):
            msg = f"{self.function}(breaker_jitter=...) must return a whole number of rounds, got {rounds!r}"
            raise ConfigurationError(msg)
        return min(high, max(low, rounds))

    def overlay(self, portfolio: Portfolio) -> Portfolio:
        """The round's Portfolio with each failed account's last good balance marked stale."""
        now = self.clock()
        stale: dict[str, float] = {}
        errors: dict[str, Exception] = {}
        for account in self.accounts:
            failure = account.outcome
            if isinstance(failure, Exception) and account.last_good is not None:
                stale[account.label] = max(0.0, now - account.good_at)
                errors[account.label] = failure
            elif account.label in portfolio.errors:
                errors[account.label] = portfolio.errors[account.label]
        if not stale:
            return portfolio
        return attrs.evolve(portfolio, errors=errors, stale=stale)

    def finish(self, portfolio: Portfolio) -> Portfolio:
        """Tell the hooks what happened, record a complete round; the Portfolio to yield."""
        events, self.events = self.events, []
        for event in events:
            self._deliver(event)
        if self.history is None or not portfolio.complete:
            return portfolio
        try:
            self.history.record(portfolio)
        except Exception as exc:  # noqa: BLE001  # a watch outlives its recorder's failures
            logger.warning(
                "watch: round %d was not recorded: %s: %s",
                self.round,
                type(exc).__name__,
                exc,
                extra={"round": self.round, "error": type(exc).__name__},
            )
            note = f"history: this round was not recorded: {type(exc).__name__}: {exc}"
            portfolio = attrs.evolve(portfolio, warnings=(*portfolio.warnings, note))
            self._deliver(RecordFailed(round=self.round, error=exc))
        return portfolio

    def _deliver(self, event: WatchEvent) -> None:
        name, hook = self.hooks.get(type(event), ("on_event", None))
        for hook_name, function in ((name, hook), ("on_event", self.on_event)):
            if function is None:
                continue
            try:
                function(event)
            except Exception as exc:  # a hook's bug must not end the watch
                label = getattr(event, "label", None)
                logger.warning(
                    "watch: the %s hook raised %s on %s%s; the watch goes on",
                    hook_name,
                    type(exc).__name__,
                    type(event).__name__,
                    "" if label is None else f" ({label})",
                    exc_info=True,
                    extra={"label": label, "venue": getattr(event, "venue", None), "round": event.round},
                )


# --------------------------------------------------------------------------- async


class AsyncWatcher:
    """The async iterator :func:`watch` returns: a :class:`~bastion_balance.Portfolio` each round.

    Iterate it (``async for``), and close it with ``aclose()`` or ``async with`` to close the
    client it made at once; one dropped after ``break`` is closed by the event loop (it is an
    async generator inside). ``paces`` and ``open_breakers`` say how each account is handled.
    """

    def __init__(
        self,
        providers: Iterable[BalanceProvider],
        *,
        every: float,
        rates: Rates | None = None,
        timeout: float | None = None,
        history: object = None,
        client: AsyncBalanceClient | httpx.AsyncClient | None = None,
        on_result: Callable[[FetchSucceeded], object] | None = None,
        on_error: Callable[[FetchFailed], object] | None = None,
        on_retry: Callable[[FetchRetried], object] | None = None,
        on_event: Callable[[WatchEvent], object] | None = None,
        breaker_after: int = DEFAULT_BREAKER_AFTER,
        breaker_every: int = DEFAULT_BREAKER_EVERY,
        breaker_jitter: Callable[[int, int], int] = random.randint,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._core = _Core(
            providers,
            function="watch",
            every=every,
            rates=rates,
            timeout=timeout,
            history=history,
            on_result=on_result,
            on_error=on_error,
            on_retry=on_retry,
            on_event=on_event,
            breaker_after=breaker_after,
            breaker_every=breaker_every,
            breaker_jitter=breaker_jitter,
            clock=clock,
        )
        if client is not None and not isinstance(client, AsyncBalanceClient | httpx.AsyncClient):
            msg = (
                f"watch(client=...): an AsyncBalanceClient or httpx.AsyncClient, not {type(client).__name__}"
            )
            raise ConfigurationError(msg)
        _check_callable(sleep, "sleep", "watch", optional=False)
        self._client = client
        self._sleep = sleep
        self._rounds: AsyncGenerator[Portfolio, None] | None = None
        self._state = _Ended()

    @property
    def paces(self) -> Mapping[str, float]:
        """Label -> seconds between two fetches of that account (at least ``every``)."""
        return self._core.paces

    @property
    def open_breakers(self) -> frozenset[str]:
        """The labels whose circuit breaker is open (tried only every ``breaker_every`` rounds)."""
        return self._core.open_breakers

    @property
    def rounds(self) -> int:
        """How many rounds have begun."""
        return self._core.round

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Portfolio:
        if self._state.ended:
            raise StopAsyncIteration
        if self._rounds is None:
            self._rounds = _rounds(self._core, self._client, self._sleep, self._state)
        return await self._rounds.__anext__()

    async def aclose(self) -> None:
        """End the watch: the client it made is closed (one passed as ``client=`` is not)."""
        self._state.ended = True
        if self._rounds is not None:
            await self._rounds.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Ended:
    """Whether a watch's rounds have ended: shared by the watcher and its rounds, so the rounds
    (an async generator) hold no reference back to the watcher, and a watcher dropped after a
    ``break`` is finalized at once, closing its client, instead of at the next garbage collection."""

    __slots__ = ("ended",)

    def __init__(self) -> None:
        self.ended = False


async def _rounds(
    core: _Core,
    given: AsyncBalanceClient | httpx.AsyncClient | None,
    sleep: Callable[[float], Awaitable[object]],
    state: _Ended,
) -> AsyncGenerator[Portfolio, None]:
    """The rounds of an async watch, with the client it uses for its life."""
    client = given if isinstance(given, AsyncBalanceClient) else AsyncBalanceClient(http_client=given)
    try:
        while True:
            wait = core.wait()
            if wait > 0:
                await sleep(wait)
            due = core.begin()
            deadline = client._settings.deadline(core.timeout)
            fetches = [core.fetch(account, deadline) for account in due]
            outcomes = await _fetch_all(client, fetches)
            results = core.settle(zip(due, fetches, outcomes, strict=True))
            portfolio = await client._portfolio(results, core.rates, deadline=deadline)
            yield core.finish(core.overlay(portfolio))
    finally:
        state.ended = True
        if client is not given:
            await client.aclose()


async def _fetch_all(client: AsyncBalanceClient, fetches: Sequence[_WatchFetch]) -> list[Balance | Exception]:
    """Every fetch at once; cancelled, each is cancelled and waited for (a task group)."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(client._fetch_or_error(fetch)) for fetch in fetches]
    return [task.result() for task in tasks]


def watch(
    providers: Iterable[BalanceProvider],
    *,
    every: float,
    rates: Rates | None = None,
    timeout: float | None = None,
    history: object = None,
    client: AsyncBalanceClient | httpx.AsyncClient | None = None,
    on_result: Callable[[FetchSucceeded], object] | None = None,
    on_error: Callable[[FetchFailed], object] | None = None,
    on_retry: Callable[[FetchRetried], object] | None = None,
    on_event: Callable[[WatchEvent], object] | None = None,
    breaker_after: int = DEFAULT_BREAKER_AFTER,
    breaker_every: int = DEFAULT_BREAKER_EVERY,
    breaker_jitter: Callable[[int, int], int] = random.randint,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncWatcher:
    """Watch accounts: an async iterator of Portfolios, one every ``every`` seconds.

    >>> async for pf in bb.watch([kraken, bybit], every=1):        # doctest: +SKIP
    ...     size = pf.fresh_available_margin_usd * Decimal("0.02")
    ...     if pf.stale: print("stale:", pf.stale)

    Each account is fetched no faster than its venue's published limit allows for its
    credential (``AsyncWatcher.paces``); accounts due in a round are fetched concurrently within
    one deadline (``timeout``, default the client's 10 s). An account that fails keeps its last
    good balance, marked in ``Portfolio.stale`` with its age; ``total_usd`` counts it,
    ``fresh_total_usd`` and ``fresh_available_margin_usd`` do not. After ``breaker_after``
    failures in a row an account is tried once every ``breaker_every`` rounds (jittered) until
    it answers again (``BreakerOpened`` / ``BreakerClosed`` events). Hooks get typed events:
    ``on_result(FetchSucceeded)``, ``on_error(FetchFailed)``, ``on_retry(FetchRetried)``,
    ``on_event(any of them)``. ``history`` (``bb.History()``, or anything with
    ``record(portfolio)``) records each complete round; a failed recording is logged, named in
    that Portfolio's ``warnings`` and a ``RecordFailed`` event, and the watch goes on.

    ``client`` is shared for the watch's life and never closed (otherwise the watch makes one
    and closes it when it ends). ``rates`` is checked once, here. ``clock`` and ``sleep`` are for
    tests (a fake clock runs hours of rounds in seconds). See docs/watch.md.
    """
    return AsyncWatcher(
        providers,
        every=every,
        rates=rates,
        timeout=timeout,
        history=history,
        client=client,
        on_result=on_result,
        on_error=on_error,
        on_retry=on_retry,
        on_event=on_event,
        breaker_after=breaker_after,
        breaker_every=breaker_every,
        breaker_jitter=breaker_jitter,
        clock=clock,
        sleep=sleep,
    )


# --------------------------------------------------------------------------- sync


class Watcher:
    """The sync twin of :func:`watch`: iterate it in the calling thread, a Portfolio each round.

    >>> with bb.Watcher([kraken, bybit], every=1) as watcher:     # doctest: +SKIP
    ...     for pf in watcher:
    ...         print(pf.summary())

    Same arguments as :func:`watch` (``client`` is a :class:`~bastion_balance.BalanceClient` or
    an ``httpx.Client``; ``sleep`` a plain function). The accounts of a round are fetched on the
    client's worker threads; the hooks run in the iterating thread. Ctrl-C returns at once (the
    round's fetches are told to stop); ``close()`` or the end of a ``with`` block closes the
    client the watcher made.
    """

    def __init__(
        self,
        providers: Iterable[BalanceProvider],
        *,
        every: float,
        rates: Rates | None = None,
        timeout: float | None = None,
        history: object = None,
        client: BalanceClient | httpx.Client | None = None,
        on_result: Callable[[FetchSucceeded], object] | None = None,
        on_error: Callable[[FetchFailed], object] | None = None,
        on_retry: Callable[[FetchRetried], object] | None = None,
        on_event: Callable[[WatchEvent], object] | None = None,
        breaker_after: int = DEFAULT_BREAKER_AFTER,
        breaker_every: int = DEFAULT_BREAKER_EVERY,
        breaker_jitter: Callable[[int, int], int] = random.randint,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._core = _Core(
            providers,
            function="Watcher",
            every=every,
            rates=rates,
            timeout=timeout,
            history=history,
            on_result=on_result,
            on_error=on_error,
            on_retry=on_retry,
            on_event=on_event,
            breaker_after=breaker_after,
            breaker_every=breaker_every,
            breaker_jitter=breaker_jitter,
            clock=clock,
        )
        if client is not None and not isinstance(client, BalanceClient | httpx.Client):
            msg = f"Watcher(client=...): a BalanceClient or httpx.Client, not {type(client).__name__}"
            raise ConfigurationError(msg)
        _check_callable(sleep, "sleep", "Watcher", optional=False)
        self._given = client
        self._client: BalanceClient | None = None
        self._sleep = sleep
        self._closed = False

    @property
    def paces(self) -> Mapping[str, float]:
        """Label -> seconds between two fetches of that account (at least ``every``)."""
        return self._core.paces

    @property
    def open_breakers(self) -> frozenset[str]:
        """The labels whose circuit breaker is open (tried only every ``breaker_every`` rounds)."""
        return self._core.open_breakers

    @property
    def rounds(self) -> int:
        """How many rounds have begun."""
        return self._core.round

    def _open(self) -> BalanceClient:
        if self._client is None:
            given = self._given
            self._client = given if isinstance(given, BalanceClient) else BalanceClient(http_client=given)
        return self._client

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Portfolio:
        if self._closed:
            raise StopIteration
        core = self._core
        client = self._open()
        wait = core.wait()
        if wait > 0:
            self._sleep(wait)
        due = core.begin()
        deadline = client._settings.deadline(core.timeout)
        fetches = {account.label: core.fetch(account, deadline) for account in due}

        def made(provider: BalanceProvider, _deadline: float, cancel: threading.Event) -> _WatchFetch:
            fetch = fetches[provider.label]
            fetch.cancel = cancel  # the round's stop signal (Ctrl-C)
            return fetch

        outcomes = client._gather([account.provider for account in due], deadline, made) if due else {}
        results = core.settle((account, fetches[account.label], outcomes[account.label]) for account in due)
        portfolio = client._portfolio(results, core.rates, deadline=deadline)
        return core.finish(core.overlay(portfolio))

    def close(self) -> None:
        """End the watch: the client it made is closed (one passed as ``client=`` is not)."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None and client is not self._given:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
