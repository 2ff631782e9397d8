"""Process-wide state shared by every provider object that uses one credential.

Decisions 9: nonce counters, token caches and rate limiters live here, keyed by
(venue, base URL, a hash of the key id), so two provider objects with the same credential share
them. Everything is guarded by ``threading`` locks; the drivers wait for those locks without
blocking an event loop, so this works from many threads and event loops at once.
Clock offsets (Decisions 8) are kept per (venue, base URL).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Final

import attrs

__all__ = [
    "NonceCounter",
    "RateLimiter",
    "SharedState",
    "TokenCache",
    "clock_offset",
    "reset",
    "set_clock_offset",
    "set_rate_limits",
    "shared_state",
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
    _token: str | None = None
    _expires: float = 0.0
    refresh_lock: threading.Lock = attrs.field(factory=threading.Lock)

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

    inflight: threading.Lock = attrs.field(factory=threading.Lock)
    nonce: NonceCounter = attrs.field(factory=NonceCounter)
    token: TokenCache = attrs.field(factory=TokenCache)
    limiters: dict[str, RateLimiter] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def limiter(self, name: str, capacity: float, rate: float) -> RateLimiter:
        """The limiter called ``name``, made on first use with ``capacity`` and ``rate``."""
        with self._lock:
            found = self.limiters.get(name)
            if found is None:
                found = self.limiters[name] = RateLimiter(capacity, rate, name)
            return found


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
