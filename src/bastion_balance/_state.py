"""Process-wide state shared by every provider object that uses one credential.

docs/decisions.md §9: nonce counters, token caches and rate limiters live here, keyed by
(venue, base URL, a hash of the key id), so two provider objects with the same credential share
them. Everything is guarded by ``threading`` locks; the drivers wait for those locks without
blocking an event loop, so this works from many threads and event loops at once.
Clock offsets (docs/decisions.md §8) are kept per (venue, base URL).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "ANONYMOUS",
    "NonceCounter",
    "RateLimiter",
    "SharedState",
    "TokenCache",
    "Turn",
    "WindowLimiter",
    "clock_offset",
    "reset",
    "set_clock_offset",
    "set_rate_limits",
    "shared_state",
    "window_margin",
]

_REGISTRY_LOCK: Final = threading.Lock()
_REGISTRY: dict[tuple[str, str, str], SharedState] = {}
_OFFSETS: dict[tuple[str, str], int] = {}
_RATE_LIMITS = {"enabled": True}


def key_fingerprint(key_id: str) -> str:
    """A short, non-reversible id of a credential, safe to keep in memory and logs."""
    return hashlib.sha256(key_id.encode("utf-8")).hexdigest()[:16]


@attrs.define(eq=False)
class RateLimiter:
    """A token bucket: ``capacity`` units, refilled at ``rate`` units per second.

    ``reserve`` books the units at once and says how long to wait before using them, so
    concurrent callers queue fairly; a wait longer than ``max_wait`` books nothing.
    """

    capacity: float
    rate: float
    name: str = "limiter"
    monotonic: Callable[[], float] = time.monotonic
    _level: float | None = None
    _stamp: float = 0.0
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def reserve(self, cost: float, max_wait: float) -> tuple[bool, float]:
        """Book ``cost`` units: ``(True, seconds to wait first)``, or ``(False, wait needed)``
        without booking when that wait is longer than ``max_wait``."""
        if not _RATE_LIMITS["enabled"]:
            return True, 0.0
        with self._lock:
            now = self.monotonic()
            level = self._refilled(now)
            after = level - cost
            wait = 0.0 if after >= 0 else -after / self.rate
            if wait > max_wait:
                self._level, self._stamp = level, now
                return False, wait
            self._level, self._stamp = after, now
            return True, wait

    def _refilled(self, now: float) -> float:
        level = self.capacity if self._level is None else self._level
        return min(self.capacity, level + (now - self._stamp) * self.rate)

    def drain(self, units: float) -> None:
        """Mark ``units`` as already spent (a venue reported more use than we counted)."""
        with self._lock:
            now = self.monotonic()
            self._level, self._stamp = min(self._refilled(now), self.capacity - units), now


ANONYMOUS: Final = object()  # the owner of a Turn taken without naming one (tests, simple callers)


class _SyncWaiter:
    __slots__ = ("event", "owner")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.event = threading.Event()

    def grant(self) -> bool:
        self.event.set()
        return True


class _AsyncWaiter:
    __slots__ = ("future", "loop", "owner", "turn")

    def __init__(self, turn: Turn, owner: object, loop: asyncio.AbstractEventLoop) -> None:
        self.turn, self.owner, self.loop = turn, owner, loop
        self.future: asyncio.Future[None] = loop.create_future()

    def grant(self) -> bool:
        try:
            self.loop.call_soon_threadsafe(self._settle)
        except RuntimeError:  # that event loop is closed: nobody is waiting there any more
            return False
        return True

    def _settle(self) -> None:  # runs on the waiter's own loop
        if self.future.done():  # the waiter was cancelled before the grant arrived: pass it on
            self.turn.release(self.owner)
        else:
            self.future.set_result(None)


class Turn:
    """A first-come, first-served lock shared by threads and event loops.

    Whoever takes it names an *owner* (any object; the drivers use one per fetch), and only
    that owner's :meth:`release` gives it up, so a driver can release everything a fetch may
    hold without knowing how far it got. On release the turn goes straight to the longest
    waiter, sync or async, so neither kind can starve the other. Async waiters wait on a
    future of their own loop: no event loop is blocked or polled.
    """

    __slots__ = ("_mutex", "_owner", "_waiters", "name")

    def __init__(self, name: str = "turn") -> None:
        self.name = name
        self._mutex = threading.Lock()
        self._owner: object | None = None
        self._waiters: deque[_SyncWaiter | _AsyncWaiter] = deque()

    def __repr__(self) -> str:
        return f"<Turn {self.name!r} {'held' if self._owner is not None else 'free'}>"

    def locked(self) -> bool:
        """True while someone holds the turn."""
        return self._owner is not None

    def owned_by(self, owner: object) -> bool:
        """True while ``owner`` holds the turn."""
        return self._owner is owner

    def _take_now(self, owner: object) -> bool:
        if self._owner is None and not self._waiters:
            self._owner = owner
            return True
        return False

    def acquire(
        self,
        owner: object = ANONYMOUS,
        *,
        timeout: float | None = None,
        cancelled: Callable[[], bool] | None = None,
        poll: float = 0.05,
    ) -> bool:
        """Wait for the turn in this thread: True once ``owner`` holds it, False after
        ``timeout`` seconds or as soon as ``cancelled()`` says so."""
        with self._mutex:
            if self._take_now(owner):
                return True
            waiter = _SyncWaiter(owner)
            self._waiters.append(waiter)
        end = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                left = None if end is None else end - time.monotonic()
                slice_ = poll if cancelled is not None else left
                if left is not None and slice_ is not None:
                    slice_ = min(slice_, left)
                if waiter.event.wait(None if slice_ is None else max(0.0, slice_)):
                    return True
                if (left is not None and left <= 0) or (cancelled is not None and cancelled()):
                    with self._mutex:
                        if waiter in self._waiters:
                            self._waiters.remove(waiter)
                            return False
                    return True  # granted while we gave up: ours now, the caller releases it
        except BaseException:  # an interrupt in the wait: leave no waiter and no turn behind
            with self._mutex:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    raise
            self.release(owner)
            raise

    async def aacquire(self, owner: object = ANONYMOUS) -> None:
        """Wait for the turn without blocking the event loop (bound it with a timeout scope)."""
        import asyncio  # noqa: PLC0415  # only async callers pay for the import

        with self._mutex:
            if self._take_now(owner):
                return
            waiter = _AsyncWaiter(self, owner, asyncio.get_running_loop())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:
            with self._mutex:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    raise
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(owner)  # granted, then cancelled before we could use it
            raise  # otherwise the pending grant finds the future cancelled and passes it on

    def release(self, owner: object = ANONYMOUS) -> bool:
        """Give up the turn if ``owner`` holds it (True), handing it to the longest waiter."""
        with self._mutex:
            if self._owner is not owner:
                return False
            self._owner = None
            while self._waiters:
                waiter = self._waiters.popleft()
                self._owner = waiter.owner
                if waiter.grant():
                    break
                self._owner = None
            return True


@attrs.define(eq=False)
class WindowLimiter(RateLimiter):
    """At most ``capacity`` units in any ``window`` seconds: a sliding log of bookings.

    For venues that publish "N per window" (CoinSwitch 20 per minute, Bybit 50 per second,
    Binance 2,400 weight per minute): a token bucket of N refilling N per window lets up to 2N
    through in one window (a full bucket plus a window's refill); this never lets more than N.
    Bookings are first come, first served: a later caller never books before an earlier one.
    """

    window: float = 1.0
    _log: deque[tuple[float, float]] = attrs.field(factory=deque)  # (when, units), in time order

    def reserve(self, cost: float, max_wait: float) -> tuple[bool, float]:
        """Book ``cost`` units at the earliest instant the window has room (see RateLimiter)."""
        if not _RATE_LIMITS["enabled"]:
            return True, 0.0
        if cost > self.capacity:
            return False, float("inf")  # float-ok: a wait in seconds (never)
        with self._lock:
            now = self.monotonic()
            log = self._log
            while log and log[0][0] <= now - self.window:
                log.popleft()
            when = max(now, log[-1][0]) if log else now
            used = sum(units for at, units in log if at > when - self.window)
            if used + cost > self.capacity:
                for at, units in log:
                    if at <= when - self.window:
                        continue
                    used -= units
                    if used + cost <= self.capacity:
                        when = max(when, at + self.window)
                        break
                else:  # float rounding left a sliver "used" after every booking (fractional costs):
                    when = max(when, log[-1][0] + self.window)  # room once the last one has left
            wait = when - now
            if wait > max_wait:
                return False, wait
            log.append((when, cost))
            return True, wait

    def drain(self, units: float) -> None:
        """Count at least ``units`` as used in the window ending now (the venue said so)."""
        with self._lock:
            now = self.monotonic()
            used = sum(u for at, u in self._log if now - self.window < at <= now)
            if units > used:
                self._log.append((max([now, *(at for at, _ in self._log)]), units - used))


@attrs.define(eq=False)
class NonceCounter:
    """A strictly increasing counter: ``max(last + 1, now)``."""

    _last: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def next(self, now: int) -> int:
        """The next nonce, strictly larger than every one handed out before."""
        with self._lock:
            self._last = max(self._last + 1, now)
            return self._last


@attrs.define(eq=False)
class TokenCache:
    """One bearer token, refreshed once however many fetches ask at the same moment.

    A flow takes ``refresh_lock`` (through an ``Acquire`` effect) before fetching a token and
    looks in the cache again once it holds it, so only the first of many waiters asks the venue.
    """

    monotonic: Callable[[], float] = time.monotonic
    _token: str | None = attrs.field(default=None, repr=False)  # a live credential: never in a repr
    _expires: float = 0.0
    refresh_lock: Turn = attrs.field(factory=lambda: Turn("token refresh"))

    def get(self, margin: float) -> str | None:
        """The cached token if it stays valid for ``margin`` more seconds."""
        if self._token is not None and self.monotonic() + margin < self._expires:
            return self._token
        return None

    def store(self, token: str, lifetime: float) -> None:
        """Keep ``token`` for ``lifetime`` seconds from now."""
        self._token, self._expires = token, self.monotonic() + lifetime

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (a 401 said it is no longer good), unless already replaced."""
        if self._token == token:
            self._token, self._expires = None, 0.0


@attrs.define(eq=False)
class SharedState:
    """Everything one credential shares across provider objects, threads and event loops."""

    inflight: Turn = attrs.field(factory=lambda: Turn("in flight"))
    nonce: NonceCounter = attrs.field(factory=NonceCounter)
    token: TokenCache = attrs.field(factory=TokenCache)
    limiters: dict[str, RateLimiter] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def limiter(self, name: str, capacity: float, rate: float) -> RateLimiter:
        """The token bucket called ``name``, made on first use with ``capacity`` and ``rate``."""
        with self._lock:
            found = self.limiters.get(name)
            if found is None:
                found = self.limiters[name] = RateLimiter(capacity, rate, name)
            return found

    def window_limiter(self, name: str, limit: float, window: float) -> RateLimiter:
        """The sliding-window limiter called ``name``: at most ``limit`` units per ``window`` s.

        The window kept is a little longer than the venue's (:func:`window_margin`): the venue
        counts a request when it arrives, and requests booked close together may arrive closer
        still (a busy event loop, a connection being made).
        """
        with self._lock:
            found = self.limiters.get(name)
            if found is None:
                kept = window + window_margin(window)
                found = self.limiters[name] = WindowLimiter(limit, limit / kept, name, window=kept)
            return found


def window_margin(window: float) -> float:
    """Seconds added to a venue's window: 5 % of it, at least a quarter of a second."""
    return max(0.25, window * 0.05)


def shared_state(venue: str, base_url: str, key_id: str) -> SharedState:
    """The state for (venue, base URL, credential), made on first use."""
    key = (venue, base_url.rstrip("/"), key_fingerprint(key_id))
    with _REGISTRY_LOCK:
        state = _REGISTRY.get(key)
        if state is None:
            state = _REGISTRY[key] = SharedState()
        return state


def clock_offset(venue: str, base_url: str) -> int | None:
    """Milliseconds to add to the local clock for this venue's server, once measured."""
    with _REGISTRY_LOCK:
        return _OFFSETS.get((venue, base_url.rstrip("/")))


def set_clock_offset(venue: str, base_url: str, offset_ms: int) -> None:
    """Remember the server's clock offset in milliseconds (server minus local)."""
    with _REGISTRY_LOCK:
        _OFFSETS[(venue, base_url.rstrip("/"))] = offset_ms


def set_rate_limits(*, enabled: bool) -> None:
    """Switch every client-side rate limiter on or off (tests and simulators only)."""
    _RATE_LIMITS["enabled"] = enabled


def reset() -> None:
    """Forget every nonce, token, limiter and clock offset (tests only)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
        _OFFSETS.clear()
