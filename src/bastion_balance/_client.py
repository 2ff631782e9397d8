"""BalanceClient and AsyncBalanceClient: the only code that sends anything.

Both drive a provider's sans-I/O flow (see ``_protocol``); they differ only in how they wait
and send. Retries wrap the whole flow, so each attempt is signed afresh.

What both drivers guarantee, whatever the flow does:

* **Turns are the driver's.** Every :class:`~bastion_balance._state.Turn` a flow takes is
  recorded *before* it is asked for, under an owner that is this fetch, and released by the
  driver when the flow ends (a return, an error, ``KeyboardInterrupt``, a cancelled task).
* **An abandoned request keeps its turns.** When a fetch gives up while its request may be at
  the venue (its task was cancelled, ``asyncio.wait_for`` or the deadline fired, Ctrl-C), the
  turns it holds are kept until that request is answered (async) or ``ABANDON_GRACE`` seconds
  have passed, so a later request on the same key (a larger Kraken nonce) cannot reach the
  venue first.
* **Signing happens with a connection slot in hand.** A client runs at most
  ``max_concurrency`` flows at once (default: its connection pool's size); a flow gives its
  slot back while it waits for a rate limiter or a turn and takes one again before it goes on,
  so no signed request waits in the pool and goes stale.
* **Nothing is followed and nothing is inflated blindly.** Redirects are never followed (a
  signed request must not be re-sent elsewhere); bodies are read raw and decoded with a bound,
  so a compressed bomb is refused at the cap.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import queue
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar

import attrs
import httpx

from . import _logging
from ._aggregate import build_portfolio, check_provider, check_providers, normalize_rates
from ._models import Balance, Portfolio
from ._protocol import Acquire, BalanceProvider, Effect, Flow, Release, Throttle
from ._rates import Rate, RateFlow, Rates, RateSource, Valuation, quotes_of
from ._retry import DEFAULT_RETRY, RetryPolicy, async_retrying, retrying
from ._state import Turn
from ._transport import (
    aread_body,
    deadline_scope,
    finished_response,
    read_body,
    sharded_async_transport,
    sharded_sync_transport,
)
from .exceptions import (
    BastionBalanceError,
    ConfigurationError,
    DeadlineExceededError,
    ExchangeAPIError,
    RateLimitedError,
    TransportError,
)

__all__ = [
    "ABANDON_GRACE",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "MAX_RESPONSE_BYTES",
    "MAX_TIMEOUT",
    "AsyncBalanceClient",
    "BalanceClient",
    "aaggregate",
    "afetch_balance",
    "aggregate",
    "fetch_balance",
]

logger = logging.getLogger("bastion_balance")

DEFAULT_TIMEOUT: Final = 10.0
MAX_TIMEOUT: Final = 86_400.0  # one day: longer waits are a mistake, and overflow socket timeouts
MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024
DEFAULT_CONCURRENCY: Final = 100  # httpx's default pool size
ABANDON_GRACE: Final = 5.0  # seconds an abandoned request keeps its key's turn at most
_WORKER_IDLE: Final = 30.0  # seconds an idle sync worker thread waits for work before it ends
_CANCEL_POLL: Final = 0.05  # how often a waiting sync worker looks whether it was told to stop

_logging.install_redaction()

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


# --------------------------------------------------------------------------- checks


def positive_seconds(value: object) -> float | None:
    """``value`` as seconds if it is a positive, finite number of at most ``MAX_TIMEOUT`` (not a
    bool); else ``None``, for the caller's own message."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 < value <= MAX_TIMEOUT else None  # float-ok: seconds


def _check_timeout(timeout: object) -> float:
    seconds = positive_seconds(timeout)
    if seconds is None:
        msg = (
            f"timeout must be a positive, finite number of seconds (at most {MAX_TIMEOUT:g}), "
            f"got {timeout!r}; e.g. timeout=10.0"
        )
        raise ConfigurationError(msg)
    return seconds


def _check_positive_int(value: object, name: str, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a positive whole number, got {value!r}; e.g. {name}={example}"
        raise ConfigurationError(msg)
    return value


def _pool_size(http_client: httpx.Client | httpx.AsyncClient | None) -> int:
    """How many connections a caller's client may open (httpx keeps it on its pool)."""
    pool = getattr(getattr(http_client, "_transport", None), "_pool", None)
    size = getattr(pool, "_max_connections", None)
    return size if isinstance(size, int) and size > 0 else DEFAULT_CONCURRENCY


# --------------------------------------------------------------------------- one fetch


class _Stopped(BaseException):  # not an error: the caller said stop (Ctrl-C)
    """Raised inside a sync worker told to stop; never leaves the client."""


class _Job(Generic[T_co]):
    """One flow in progress: who it is for, its deadline, and the turns it may hold.

    A subclass says which flow it drives (:meth:`start`) and checks what the flow returned
    (:meth:`finish`): a balance fetch, or a rate source's quotes.
    """

    __slots__ = ("cancel", "deadline", "label", "provider", "slot", "started", "turns", "venue")

    def __init__(
        self,
        provider: Any,  # noqa: ANN401  # a BalanceProvider, or a rate source's owner
        deadline: float,
        cancel: threading.Event | None = None,
    ) -> None:
        self.provider = provider
        self.label = str(provider.label)
        self.venue = str(provider.venue)
        self.deadline = deadline
        self.started = time.monotonic()
        self.cancel = cancel
        self.turns: list[Turn] = []  # every turn asked for; the owner is this object
        self.slot = False  # holds one of the client's connection slots

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check_stop(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise _Stopped

    def holds_turns(self) -> bool:
        return any(turn.owned_by(self) for turn in self.turns)

    def release_turns(self) -> None:
        """Release every turn taken; safe to run again if interrupted (a turn leaves the list
        only once it has been released, and releasing twice is a no-op)."""
        while self.turns:
            self.turns[-1].release(self)
            self.turns.pop()

    def hand_over(self) -> Callable[[], None]:
        """A call (safe to call twice, from any thread) that releases this fetch's turns later.

        The turns stay on this fetch until the caller has arranged that call (a timer, a done
        callback) and empties ``turns``: interrupted before that, the fetch's own clean-up
        releases them at once rather than never.
        """
        turns = [t for t in self.turns if t.owned_by(self)]
        done = threading.Lock()

        def release() -> None:
            if done.acquire(blocking=False):
                for turn in turns:
                    turn.release(self)

        return release

    def deadline_error(self, what: str) -> DeadlineExceededError:
        return DeadlineExceededError(f"{self.label}: deadline passed while {what}", venue=self.venue)

    def log_extra(self, **more: float) -> dict[str, Any]:
        return {"label": self.label, "venue": self.venue, **more}

    def retried(self, attempt: int, wait: float, error: BaseException | None) -> None:
        """Told of each retry once it is logged (a watch's ``on_retry`` hook; nothing here)."""

    def start(self) -> Generator[Effect, httpx.Response | None, object]:
        """The flow to drive."""
        raise NotImplementedError

    def finish(self, value: object) -> T_co:
        """What the flow returned, checked."""
        raise NotImplementedError


class _Fetch(_Job[Balance]):
    """One balance fetch in progress."""

    __slots__ = ()

    def __init__(
        self, provider: BalanceProvider, deadline: float, cancel: threading.Event | None = None
    ) -> None:
        super().__init__(provider, deadline, cancel)

    def start(self) -> Flow:
        return self.provider.balance_flow()  # type: ignore[no-any-return]

    def finish(self, value: object) -> Balance:
        return _checked_balance(value, self.provider)


class _RatesFetch(_Job[Mapping[str, Rate]]):
    """One ask of a rate source, for ``currencies``; its label in messages is ``rates``."""

    __slots__ = ("currencies",)

    def __init__(self, source: RateSource, currencies: frozenset[str], deadline: float) -> None:
        super().__init__(_RatesOwner(source), deadline)
        self.currencies = currencies

    def start(self) -> RateFlow:
        return self.provider.source.rates_flow(self.currencies)  # type: ignore[no-any-return]

    def finish(self, value: object) -> Mapping[str, Rate]:
        return quotes_of(value, self.provider.source, self.currencies)


@attrs.frozen
class _RatesOwner:
    """A rate source as the driver sees a job's owner: a label and a venue for messages and logs."""

    source: RateSource
    label: str = "rates"

    @property
    def venue(self) -> str:
        return str(self.source.name)


def _named(exc: BastionBalanceError, fetch: _Job[Any]) -> None:
    """``exc`` with the account's label in its message (services watch many accounts)."""
    exc.label = fetch.label
    if exc.args and isinstance(exc.args[0], str) and not exc.args[0].startswith(f"{fetch.label}:"):
        exc.args = (f"{fetch.label}: {exc.args[0]}", *exc.args[1:])


def _throttle_wait(effect: Throttle, fetch: _Job[Any]) -> float:
    booked, wait = effect.limiter.reserve(effect.cost, fetch.remaining())
    if not booked:
        msg = (
            f"{fetch.label}: client-side rate limit '{effect.limiter.name}' needs "
            f"{wait:.2f}s, past the fetch's deadline"
        )
        raise RateLimitedError(msg, venue=fetch.venue, retry_after=wait, transient=False)
    if wait > 0:
        elapsed = time.monotonic() - fetch.started
        logger.info(
            "%s (%s): waiting %.2fs for rate limit %s (%.2fs elapsed)",
            fetch.label,
            fetch.venue,
            wait,
            effect.limiter.name,
            elapsed,
            extra=fetch.log_extra(wait_s=round(wait, 3), elapsed_s=round(elapsed, 3)),
        )
    return wait


def _where(request: httpx.Request) -> str:
    """Host and path of a request: never its query, which may carry a signature."""
    return f"{request.url.host}{request.url.path}"


def _translate(exc: BaseException, fetch: _Job[Any], request: httpx.Request) -> TransportError:
    """Our error for an httpx (or lower-level protocol) failure; names host and path only."""
    where = _where(request)
    text = _logging.redact(str(exc)) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException) and fetch.remaining() <= 0.05:
        return DeadlineExceededError(
            f"{fetch.label}: deadline passed waiting for the venue ({where})", venue=fetch.venue
        )
    return TransportError(f"{fetch.label}: {type(exc).__name__} ({where}): {text}", venue=fetch.venue)


def _is_protocol_error(exc: Exception) -> bool:
    """A failure below httpx that it did not translate (h11, h2, httpcore, ssl)."""
    return type(exc).__module__.partition(".")[0] in {"h11", "h2", "httpcore", "ssl", "anyio"}


def _may_be_at_venue(exc: BaseException) -> bool:
    """True when the request may have reached the venue and be answered later."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout | httpx.ConnectError):
        return False
    return isinstance(exc, httpx.TimeoutException) or not isinstance(exc, Exception)


def _prepare(request: httpx.Request, fetch: _Job[Any]) -> None:
    remaining = fetch.remaining()
    if remaining <= 0:
        raise fetch.deadline_error("sending a request")
    request.extensions = {**request.extensions, "timeout": httpx.Timeout(remaining).as_dict()}


def _redirect_error(response: httpx.Response, fetch: _Job[Any]) -> ExchangeAPIError:
    location = response.headers.get("location", "")
    try:
        target = response.request.url.join(location).host or "an unknown host"
    except httpx.InvalidURL:  # pragma: no cover  # httpx itself refuses such a Location first
        target = "an unparseable location"
    msg = (
        f"{fetch.label}: the venue answered HTTP {response.status_code}, a redirect to {target}; "
        "signed requests are never followed elsewhere: check base_url"
    )
    return ExchangeAPIError(msg, venue=fetch.venue, status_code=response.status_code)


def _checked_balance(value: object, provider: BalanceProvider) -> Balance:
    if not isinstance(value, Balance):
        msg = f"{provider!r}.balance_flow() returned {type(value).__name__}, not a Balance"
        raise TypeError(msg)
    return value


def _rates_job(
    results: Mapping[str, Balance | Exception], rates: Valuation, deadline: float
) -> _RatesFetch | None:
    """The ask of the rate source for the currencies of the fetched balances that ``rates`` has no
    fixed rate for; ``None`` without a source or when nothing is left to ask for."""
    needed = frozenset(r.currency for r in results.values() if isinstance(r, Balance)) - rates.fixed.keys()
    if rates.source is None or not needed:
        return None
    return _RatesFetch(rates.source, needed, deadline)


def _valued(
    results: Mapping[str, Balance | Exception],
    rates: Valuation,
    quotes: Mapping[str, Rate] | Exception | None,
    *,
    strict: bool,
) -> Portfolio:
    """The Portfolio of ``results`` through the fixed rates and what the rate source quoted
    (or the exception it failed with)."""
    table = dict(rates.fixed)
    failure = quotes if isinstance(quotes, Exception) else None
    if quotes is not None and failure is None:
        table.update(quotes)  # type: ignore[arg-type]  # a mapping when it is not a failure
    source = None if rates.source is None else (str(rates.source.name), failure)
    return build_portfolio(results, table, strict=strict, fetched_at=datetime.now(UTC), source=source)


def _not_an_effect(effect: object, provider: BalanceProvider) -> TypeError:
    return TypeError(f"{provider!r} yielded {effect!r}, which is not an effect")


def _finish(*steps: Callable[[], object]) -> None:
    """Run a fetch's clean-up steps to the end even when Ctrl-C lands in one of them.

    A second ``KeyboardInterrupt`` arriving while the first is being handled would otherwise
    skip the steps after it and leave a credential's turn held for the life of the process.
    Each step is safe to run again, so an interrupted one is run again; the interrupt is raised
    once every step has run.
    """
    interrupted: KeyboardInterrupt | None = None
    for step in steps:
        while True:
            try:
                step()
                break
            except KeyboardInterrupt as exc:
                interrupted = exc
    if interrupted is not None:
        raise interrupted


def _abandon(fetch: _Job[Any], exc: BaseException, grace: float) -> None:
    """A request of ``fetch`` failed with ``exc``: if it may still be at the venue, its turns
    are kept for ``grace`` seconds."""
    if _may_be_at_venue(exc) and fetch.holds_turns():
        _hold(fetch.hand_over(), grace)
        fetch.turns = []  # the timer releases them now


def _hold(release: Callable[[], None], grace: float) -> threading.Timer:
    """Release an abandoned fetch's turns after ``grace`` seconds at the latest."""
    timer = threading.Timer(grace, release)
    timer.daemon = True
    timer.start()
    return timer


class _Settings:
    """What both clients hold besides their HTTP client."""

    def __init__(
        self,
        retry: RetryPolicy,
        timeout: float,
        max_response_bytes: int,
        max_concurrency: int | None,
        http_client: httpx.Client | httpx.AsyncClient | None,
    ) -> None:
        if not isinstance(retry, RetryPolicy):
            msg = f"retry must be a RetryPolicy, got {retry!r}; e.g. retry=bb.RetryPolicy(attempts=2)"
            raise ConfigurationError(msg)
        self.retry = retry
        self.timeout = _check_timeout(timeout)
        self.max_response_bytes = _check_positive_int(max_response_bytes, "max_response_bytes", "4194304")
        if max_concurrency is None:
            max_concurrency = _pool_size(http_client)
        self.max_concurrency = _check_positive_int(max_concurrency, "max_concurrency", "100")
        self.grace = ABANDON_GRACE

    def deadline(self, timeout: float | None) -> float:
        return time.monotonic() + _check_timeout(self.timeout if timeout is None else timeout)


def _user_agent() -> str:
    from ._version import __version__  # noqa: PLC0415  # cheap, but only needed here

    return f"bastion-balance/{__version__}"


# --------------------------------------------------------------------------- sync


class _Workers:
    """Daemon worker threads for sync aggregates, started on demand and ended when idle.

    Daemon threads, so an interrupted program exits at once instead of waiting for fetches
    it no longer wants.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle = 0  # workers waiting for a job
        self._pending = 0  # jobs queued and not yet taken

    def submit(self, job: Callable[[], None]) -> None:
        thread = None
        with self._lock:
            self._pending += 1
            if self._pending > self._idle and len(self._threads) < self._limit:
                thread = threading.Thread(target=self._work, name="bastion-balance-worker", daemon=True)
                self._threads.add(thread)
        self._jobs.put(job)
        if thread is not None:
            thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=_WORKER_IDLE)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if not self._pending:
                        self._threads.discard(me)
                        return
                continue
            with self._lock:
                self._idle -= 1
                if job is None:
                    self._threads.discard(me)
                    return
                self._pending -= 1
            with contextlib.suppress(Exception):  # a job records its own outcome; the worker lives on
                job()

    def close(self, wait: float = 2.0) -> None:
        """End every worker: idle ones at once; busy ones after their job, waited for at
        most ``wait`` seconds in all (they are daemon threads: none can hold up an exit)."""
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        end = time.monotonic() + wait
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.0, end - time.monotonic()))


class BalanceClient:
    """Fetches balances synchronously over one reusable connection pool.

    Pass your own ``httpx.Client`` as ``http_client`` to control proxies, TLS or transports;
    it is used as is and never closed by us (redirects are never followed whatever it says).
    Otherwise the client makes one and closes it in :meth:`close` (or at the end of a
    ``with`` block). ``max_concurrency`` bounds the fetches in flight at once (default: the
    pool's connection limit, 100).

    >>> with BalanceClient() as client:                           # doctest: +SKIP
    ...     portfolio = client.aggregate([Kraken(api_key=..., api_secret=...)])
    """

    def __init__(
        self,
        *,
        http_client: httpx.Client | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_concurrency: int | None = None,
    ) -> None:
        if http_client is not None and not isinstance(http_client, httpx.Client):
            msg = f"http_client must be an httpx.Client, got {type(http_client).__name__}"
            raise ConfigurationError(msg)
        self._settings = _Settings(retry, timeout, max_response_bytes, max_concurrency, http_client)
        self._given_http = http_client
        self._made_http: httpx.Client | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._settings.max_concurrency)
        self._workers: _Workers | None = None
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def _http(self) -> httpx.Client:
        """The caller's client, or ours, made on first use (building TLS contexts is slow)."""
        if self._given_http is not None:
            return self._given_http
        with self._lock:
            if self._made_http is None:
                self._made_http = httpx.Client(
                    headers={"User-Agent": _user_agent()},
                    transport=sharded_sync_transport(self._settings.max_concurrency),
                )
            return self._made_http

    def close(self) -> None:
        """Close the connection pool, if this client made it, and end its worker threads."""
        self._drop_pool()
        with self._lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()

    def _pool_of_workers(self) -> _Workers:
        with self._lock:
            if self._workers is None:
                self._workers = _Workers(self._settings.max_concurrency)
            return self._workers

    def _drop_pool(self) -> None:
        with self._lock:
            made, self._made_http = self._made_http, None
        if made is not None:
            made.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def fetch(self, provider: BalanceProvider, *, timeout: float | None = None) -> Balance:
        """One provider's balance, retried within ``timeout`` seconds (the whole deadline).

        Raises a :class:`~bastion_balance.BastionBalanceError` subclass when it fails.
        """
        provider = check_provider(provider)
        return self._fetch(_Fetch(provider, self._settings.deadline(timeout)))

    def aggregate(
        self,
        providers: Iterable[BalanceProvider],
        *,
        rates: Rates | None = None,
        timeout: float | None = None,
        strict: bool = False,
    ) -> Portfolio:
        """Fetch every provider at once and value them in USD, within one deadline.

        Up to ``max_concurrency`` accounts are fetched at a time, on worker threads. A venue
        that fails is reported in ``Portfolio.errors``; ``strict=True`` raises instead. Works
        inside a running event loop (Jupyter). Ctrl-C returns at once: the workers are told to
        stop and the pool's connections are closed.
        """
        checked = check_providers(providers)
        table = normalize_rates(rates)
        deadline = self._settings.deadline(timeout)
        results: dict[str, Balance | Exception] = {}
        if checked:
            results = self._gather(checked, deadline)
        return self._portfolio(results, table, deadline=deadline, strict=strict)

    def _portfolio(
        self,
        results: Mapping[str, Balance | Exception],
        rates: Valuation,
        *,
        deadline: float,
        strict: bool = False,
    ) -> Portfolio:
        """The fetch results valued in USD through ``rates`` (what ``aggregate`` and the watchers
        return); a rate source is asked, in this thread, within ``deadline`` (a
        ``time.monotonic()`` instant) for the currencies the balances need."""
        job = _rates_job(results, rates, deadline)
        outcome = None if job is None else self._fetch_or_error(job)
        return _valued(results, rates, outcome, strict=strict)

    def _gather(
        self,
        providers: list[BalanceProvider],
        deadline: float,
        make_fetch: Callable[[BalanceProvider, float, threading.Event], _Job[Balance]] = _Fetch,
    ) -> dict[str, Balance | Exception]:
        """Every provider's balance or error, fetched on the worker threads (``make_fetch``
        builds each fetch: a watch's carries its hooks)."""
        cancel = threading.Event()
        done = threading.Event()
        outcomes: dict[str, Balance | Exception] = {}
        lock = threading.Lock()
        left = [len(providers)]

        def job(provider: BalanceProvider) -> Callable[[], None]:
            def run() -> None:
                outcome: Balance | Exception | None = None
                try:
                    if not cancel.is_set():
                        outcome = self._fetch_or_error(make_fetch(provider, deadline, cancel))
                except _Stopped:
                    pass
                finally:
                    with lock:
                        if outcome is not None:
                            outcomes[provider.label] = outcome
                        left[0] -= 1
                        if not left[0]:
                            done.set()

            return run

        workers = self._pool_of_workers()
        for provider in providers:
            workers.submit(job(provider))
        try:
            done.wait()
        except BaseException:  # Ctrl-C (or any signal handler's error) in the waiting thread
            cancel.set()
            self._drop_pool()  # in-flight reads end now; a new pool is made on next use
            raise
        unfinished = TransportError("the fetch ended without a result (its worker was stopped)")
        return {p.label: outcomes.get(p.label, unfinished) for p in providers}

    def _fetch_or_error(self, fetch: _Job[T]) -> T | Exception:
        try:
            return self._fetch(fetch)
        except Exception as exc:  # noqa: BLE001  # partial failure is a result
            return exc

    def _fetch(self, fetch: _Job[T]) -> T:
        def sleep(seconds: float) -> None:
            self._pause(fetch, seconds)

        policy = self._settings.retry
        try:
            for attempt in retrying(
                policy,
                fetch.deadline,
                label=fetch.label,
                venue=fetch.venue,
                started=fetch.started,
                on_retry=fetch.retried,
                sleep=sleep,
            ):
                with attempt:
                    return self._run(fetch)
        except BastionBalanceError as exc:
            _named(exc, fetch)
            raise
        raise AssertionError("unreachable")  # pragma: no cover  # tenacity re-raises

    def _pause(self, fetch: _Job[Any], seconds: float) -> None:
        if fetch.cancel is not None and self._sleep is time.sleep:
            fetch.cancel.wait(seconds)
        else:
            self._sleep(seconds)
        fetch.check_stop()

    def _run(self, fetch: _Job[T]) -> T:
        fetch.check_stop()
        flow = fetch.start()
        try:
            self._take_slot(fetch)
            effect: Effect = next(flow)
            while True:
                fetch.check_stop()
                result: httpx.Response | None = None
                if isinstance(effect, httpx.Request):
                    result = self._send(effect, fetch)
                elif isinstance(effect, Throttle):
                    wait = _throttle_wait(effect, fetch)
                    if wait > 0:
                        self._give_slot(fetch)  # nobody waits with a connection slot in hand
                        self._pause(fetch, wait)
                        self._take_slot(fetch)
                elif isinstance(effect, Acquire):
                    self._acquire(effect.lock, fetch)
                elif isinstance(effect, Release):
                    effect.lock.release(fetch)
                else:
                    raise _not_an_effect(effect, fetch.provider)
                effect = flow.send(result)
        except StopIteration as stop:
            return fetch.finish(stop.value)
        finally:
            _finish(lambda: self._give_slot(fetch), flow.close, fetch.release_turns)

    def _take_slot(self, fetch: _Job[Any]) -> None:
        while not self._slots.acquire(timeout=max(0.0, min(fetch.remaining(), _CANCEL_POLL))):
            fetch.check_stop()
            if fetch.remaining() <= 0:
                raise fetch.deadline_error("waiting for a free connection")
        fetch.slot = True

    def _give_slot(self, fetch: _Job[Any]) -> None:
        if fetch.slot:
            fetch.slot = False
            self._slots.release()

    def _acquire(self, turn: Turn, fetch: _Job[Any]) -> None:
        fetch.turns.append(turn)  # recorded first: released whatever happens next
        if turn.acquire(fetch, timeout=0):
            return
        self._give_slot(fetch)
        cancelled = fetch.cancel.is_set if fetch.cancel is not None else None
        if not turn.acquire(fetch, timeout=max(0.0, fetch.remaining()), cancelled=cancelled):
            fetch.check_stop()
            raise fetch.deadline_error("waiting for this credential's turn")
        self._take_slot(fetch)

    def _send(self, request: httpx.Request, fetch: _Job[Any]) -> httpx.Response:
        _prepare(request, fetch)
        cap = self._settings.max_response_bytes
        error: BaseException | None = None
        try:
            with deadline_scope(fetch.deadline):
                response = self._http.send(request, stream=True, follow_redirects=False)
                try:
                    if response.is_redirect:
                        raise _redirect_error(response, fetch)
                    body = read_body(
                        response, cap, venue=fetch.venue, label=fetch.label, deadline=fetch.deadline
                    )
                finally:
                    response.close()
        except BastionBalanceError:
            raise
        except httpx.HTTPError as exc:
            error = exc
        except Exception as exc:
            if not _is_protocol_error(exc):
                raise
            error = exc
        except BaseException as exc:  # KeyboardInterrupt or a stop inside httpx's send
            _abandon(fetch, exc, self._settings.grace)
            if self._given_http is None:
                self._drop_pool()  # the interrupted connection cannot be trusted (nor leaked)
            raise
        if error is not None:
            if fetch.cancel is not None and fetch.cancel.is_set():
                # our pool was closed under the request: it is abandoned, as on Ctrl-C
                _abandon(fetch, KeyboardInterrupt(), self._settings.grace)
                raise _Stopped
            _abandon(fetch, error, self._settings.grace)
            raise _translate(error, fetch, request)  # the httpx error (and its request) is dropped
        return finished_response(response, body)


# --------------------------------------------------------------------------- async

_CLOSERS: Final[set[asyncio.Task[None]]] = set()  # pools closing after abandoned requests


class AsyncBalanceClient:
    """Fetches balances with asyncio over one reusable connection pool.

    The async twin of :class:`BalanceClient`: same arguments, ``await`` on ``fetch`` and
    ``aggregate``, ``aclose()`` / ``async with``. A caller's ``httpx.AsyncClient`` is never
    closed by us.
    """

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_concurrency: int | None = None,
    ) -> None:
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            msg = f"http_client must be an httpx.AsyncClient, got {type(http_client).__name__}"
            raise ConfigurationError(msg)
        self._settings = _Settings(retry, timeout, max_response_bytes, max_concurrency, http_client)
        self._given_http = http_client
        self._made_http: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._sleep: Callable[[float], object] = asyncio.sleep
        self._abandoned: set[asyncio.Task[Any]] = set()

    @property
    def _http(self) -> httpx.AsyncClient:
        """The caller's client, or ours, made on first use (building TLS contexts is slow)."""
        if self._given_http is not None:
            return self._given_http
        if self._made_http is None:
            self._made_http = httpx.AsyncClient(
                headers={"User-Agent": _user_agent()},
                transport=sharded_async_transport(self._settings.max_concurrency),
            )
        return self._made_http

    @property
    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._settings.max_concurrency)
        return self._slots

    async def aclose(self) -> None:
        """Close the connection pool, if this client made it.

        Requests that a cancelled fetch left running at the venue keep the pool open until
        they are answered (or their grace has passed); the pool closes after them, in the
        background.
        """
        made, self._made_http = self._made_http, None
        if made is None:
            return
        pending = list(self._abandoned)
        if not pending:
            await made.aclose()
            return

        async def close_after() -> None:
            try:
                await asyncio.wait(pending, timeout=self._settings.grace)
            finally:
                await made.aclose()

        closer = asyncio.ensure_future(close_after())
        _CLOSERS.add(closer)
        closer.add_done_callback(_CLOSERS.discard)

    async def _close_at_shutdown(self) -> None:
        """Close the pool now, as its event loop shuts down (abandoned requests were cancelled)."""
        made, self._made_http = self._made_http, None
        if made is not None:
            await made.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def fetch(self, provider: BalanceProvider, *, timeout: float | None = None) -> Balance:
        """One provider's balance, retried within ``timeout`` seconds (the whole deadline)."""
        provider = check_provider(provider)
        return await self._fetch(_Fetch(provider, self._settings.deadline(timeout)))

    async def aggregate(
        self,
        providers: Iterable[BalanceProvider],
        *,
        rates: Rates | None = None,
        timeout: float | None = None,
        strict: bool = False,
    ) -> Portfolio:
        """Fetch every provider concurrently and value them in USD (see ``BalanceClient``)."""
        checked = check_providers(providers, function="aaggregate")
        table = normalize_rates(rates)
        deadline = self._settings.deadline(timeout)
        jobs = [self._fetch_or_error(_Fetch(p, deadline)) for p in checked]
        outcomes = await asyncio.gather(*jobs)
        results = {p.label: outcome for p, outcome in zip(checked, outcomes, strict=True)}
        return await self._portfolio(results, table, deadline=deadline, strict=strict)

    async def _portfolio(
        self,
        results: Mapping[str, Balance | Exception],
        rates: Valuation,
        *,
        deadline: float,
        strict: bool = False,
    ) -> Portfolio:
        """The async twin of ``BalanceClient._portfolio``."""
        job = _rates_job(results, rates, deadline)
        outcome = None if job is None else await self._fetch_or_error(job)
        return _valued(results, rates, outcome, strict=strict)

    async def _fetch_or_error(self, fetch: _Job[T]) -> T | Exception:
        try:
            return await self._fetch(fetch)
        except Exception as exc:  # noqa: BLE001  # partial failure is a result
            return exc

    async def _fetch(self, fetch: _Job[T]) -> T:
        scope = asyncio.timeout(fetch.remaining())
        policy = self._settings.retry
        try:
            async with scope:
                async for attempt in async_retrying(
                    policy,
                    fetch.deadline,
                    label=fetch.label,
                    venue=fetch.venue,
                    started=fetch.started,
                    on_retry=fetch.retried,
                    sleep=self._sleep,
                ):
                    with attempt:
                        return await self._run(fetch)
        except TimeoutError:
            if not scope.expired():
                raise
        except BastionBalanceError as exc:
            _named(exc, fetch)
            raise
        raise fetch.deadline_error(f"fetching ({fetch.venue})")

    async def _run(self, fetch: _Job[T]) -> T:
        flow = fetch.start()
        try:
            await self._take_slot(fetch)
            effect: Effect = next(flow)
            while True:
                result: httpx.Response | None = None
                if isinstance(effect, httpx.Request):
                    result = await self._send(effect, fetch)
                elif isinstance(effect, Throttle):
                    wait = _throttle_wait(effect, fetch)
                    if wait > 0:
                        self._give_slot(fetch)  # nobody waits with a connection slot in hand
                        await self._sleep(wait)  # type: ignore[misc]  # asyncio.sleep or a test double
                        await self._take_slot(fetch)
                elif isinstance(effect, Acquire):
                    fetch.turns.append(effect.lock)  # recorded first: released whatever happens next
                    if not effect.lock.acquire(fetch, timeout=0):
                        self._give_slot(fetch)
                        await effect.lock.aacquire(fetch)  # bounded by the fetch's asyncio.timeout
                        await self._take_slot(fetch)
                elif isinstance(effect, Release):
                    effect.lock.release(fetch)
                else:
                    raise _not_an_effect(effect, fetch.provider)
                effect = flow.send(result)
        except StopIteration as stop:
            return fetch.finish(stop.value)
        finally:
            _finish(lambda: self._give_slot(fetch), flow.close, fetch.release_turns)

    async def _take_slot(self, fetch: _Job[Any]) -> None:
        await self._semaphore.acquire()
        fetch.slot = True

    def _give_slot(self, fetch: _Job[Any]) -> None:
        if fetch.slot:
            fetch.slot = False
            self._semaphore.release()

    async def _send(self, request: httpx.Request, fetch: _Job[Any]) -> httpx.Response:
        if not fetch.holds_turns():
            return await self._exchange(request, fetch)
        # The request runs in a task of its own, so that a cancelled fetch can leave it
        # running and keep its turns until the venue has answered (or the grace ran out).
        task = asyncio.ensure_future(self._exchange(request, fetch))
        try:
            return await asyncio.shield(task)
        except BaseException:
            if not task.done():
                self._hand_over(task, fetch)
            raise

    def _hand_over(self, task: asyncio.Task[httpx.Response], fetch: _Job[Any]) -> None:
        release = fetch.hand_over()
        loop = asyncio.get_running_loop()

        def give_up() -> None:
            release()
            with contextlib.suppress(RuntimeError):  # the loop closed: its tasks are gone
                loop.call_soon_threadsafe(task.cancel)

        timer = _hold(give_up, self._settings.grace)
        self._abandoned.add(task)

        def answered(done: asyncio.Task[httpx.Response]) -> None:
            self._abandoned.discard(done)
            if done.cancelled():
                return  # the grace timer releases the turns
            failure = done.exception()  # retrieved: nobody else will look at this answer
            if failure is None or not isinstance(failure, TransportError):
                timer.cancel()  # the venue answered: the next request may go
                release()

        task.add_done_callback(answered)
        fetch.turns = []  # the answer or the grace timer releases them now

    async def _exchange(self, request: httpx.Request, fetch: _Job[Any]) -> httpx.Response:
        _prepare(request, fetch)
        cap = self._settings.max_response_bytes
        error: Exception | None = None
        try:
            response = await self._http.send(request, stream=True, follow_redirects=False)
            try:
                if response.is_redirect:
                    raise _redirect_error(response, fetch)
                body = await aread_body(response, cap, venue=fetch.venue, label=fetch.label)
            finally:
                await response.aclose()
        except BastionBalanceError:
            raise
        except httpx.HTTPError as exc:
            error = exc
        except Exception as exc:
            if not _is_protocol_error(exc):
                raise
            error = exc
        if error is not None:
            _abandon(fetch, error, self._settings.grace)
            raise _translate(error, fetch, request)  # the httpx error (and its request) is dropped
        return finished_response(response, body)


# --------------------------------------------------------------------------- module functions


_DEFAULT_LOCK: Final = threading.Lock()
_DEFAULT: list[BalanceClient] = []


def _default_client() -> BalanceClient:
    """One process-wide client for the module-level functions, so repeated calls reuse a pool."""
    with _DEFAULT_LOCK:
        if not _DEFAULT:
            _DEFAULT.append(BalanceClient())
            atexit.register(_DEFAULT[0].close)
        return _DEFAULT[0]


@contextlib.contextmanager
def _sync_client(client: BalanceClient | httpx.Client | None) -> Iterator[BalanceClient]:
    if client is None:
        yield _default_client()
        return
    if isinstance(client, BalanceClient):
        yield client
        return
    if not isinstance(client, httpx.Client):
        msg = f"client must be a BalanceClient or httpx.Client, got {type(client).__name__}"
        raise ConfigurationError(msg)
    with BalanceClient(http_client=client) as made:
        yield made


#: One default client per event loop for the async module functions, with the suspended async
#: generator that closes it: asyncio closes a loop's async generators when it shuts the loop down
#: (``asyncio.run`` does), and the generator's ``finally`` closes the pool then.
_LOOP_CLIENTS: Final[
    weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[AsyncBalanceClient, object]]
] = weakref.WeakKeyDictionary()


async def _closed_with_loop(
    loop: asyncio.AbstractEventLoop, client: AsyncBalanceClient
) -> AsyncIterator[None]:
    try:
        yield
    finally:
        with _DEFAULT_LOCK:
            _LOOP_CLIENTS.pop(loop, None)  # the client refers to its loop: drop both now
        await client._close_at_shutdown()


async def _loop_client() -> AsyncBalanceClient:
    """The running loop's default client, made on first use and closed when the loop shuts down.

    A bot that calls ``afetch_balance`` every second reuses its connections, TLS context, and
    the client's slots instead of building a pool per call.
    """
    loop = asyncio.get_running_loop()
    with _DEFAULT_LOCK:
        found = _LOOP_CLIENTS.get(loop)
        if found is not None:
            return found[0]
        for closed in [other for other in _LOOP_CLIENTS if other.is_closed()]:
            del _LOOP_CLIENTS[closed]  # closed without shutting down its async generators
        client = AsyncBalanceClient()
        closer = _closed_with_loop(loop, client)
        _LOOP_CLIENTS[loop] = (client, closer)  # the loop's asyncgen hooks see it below
    await closer.__anext__()  # started: the loop now finalizes it at shutdown
    return client


@contextlib.asynccontextmanager
async def _async_client(
    client: AsyncBalanceClient | httpx.AsyncClient | None,
) -> AsyncIterator[AsyncBalanceClient]:
    if client is None:
        yield await _loop_client()
        return
    if isinstance(client, AsyncBalanceClient):
        yield client
        return
    if not isinstance(client, httpx.AsyncClient):
        msg = f"client must be an AsyncBalanceClient or httpx.AsyncClient, got {type(client).__name__}"
        raise ConfigurationError(msg)
    async with AsyncBalanceClient(http_client=client) as made:
        yield made


def fetch_balance(
    provider: BalanceProvider,
    *,
    client: BalanceClient | httpx.Client | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Balance:
    """Fetch one account's balance.

    ``client`` may be a :class:`BalanceClient` or an ``httpx.Client`` to reuse (never closed
    here). ``timeout`` is the whole deadline, retries and rate-limit waits included.

    >>> bal = fetch_balance(Kraken(api_key="...", api_secret="..."))   # doctest: +SKIP
    >>> bal.total, bal.available                                        # doctest: +SKIP
    (Decimal('382.2032'), Decimal('375.1678'))
    """
    with _sync_client(client) as balance_client:
        return balance_client.fetch(provider, timeout=timeout)


async def afetch_balance(
    provider: BalanceProvider,
    *,
    client: AsyncBalanceClient | httpx.AsyncClient | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Balance:
    """The async twin of :func:`fetch_balance`.

    Without ``client``, every call on one event loop shares that loop's default client (its
    connections, TLS context and slots), closed when the loop shuts down (as ``asyncio.run``
    does on its way out): a bot polling every second opens no new connection per call.
    """
    async with _async_client(client) as balance_client:
        return await balance_client.fetch(provider, timeout=timeout)


def aggregate(
    providers: Iterable[BalanceProvider],
    *,
    rates: Rates | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    strict: bool = False,
    client: BalanceClient | httpx.Client | None = None,
) -> Portfolio:
    """Fetch every account at once and add them up in USD.

    Failed venues land in ``Portfolio.errors`` (``strict=True`` raises ``AggregateError``).
    ``rates`` maps currency -> USD rate on top of the defaults (USD at 1, USDT and USDC assumed
    at par), or is a rate source such as ``bb.KrakenRates()``, asked once for the currencies the
    balances need, within the same deadline; ``Portfolio.rate_sources`` says where each came from.
    ``timeout`` is one deadline for the whole aggregate. Safe to call inside a running event
    loop, e.g. a Jupyter cell; Ctrl-C returns at once.
    """
    with _sync_client(client) as balance_client:
        return balance_client.aggregate(providers, rates=rates, timeout=timeout, strict=strict)


async def aaggregate(
    providers: Iterable[BalanceProvider],
    *,
    rates: Rates | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    strict: bool = False,
    client: AsyncBalanceClient | httpx.AsyncClient | None = None,
) -> Portfolio:
    """The async twin of :func:`aggregate`: every venue concurrently on this event loop.

    Without ``client`` it uses the loop's default client, as :func:`afetch_balance` does.
    """
    async with _async_client(client) as balance_client:
        return await balance_client.aggregate(providers, rates=rates, timeout=timeout, strict=strict)
