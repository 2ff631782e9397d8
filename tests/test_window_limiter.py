"""The sliding-window limiter: never more than its limit in any window, first come first served."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion_balance._state import RateLimiter, WindowLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def limiter(limit: float, window: float, clock: Clock) -> WindowLimiter:
    return WindowLimiter(limit, limit / window, "w", monotonic=clock, window=window)


@given(
    steps=st.lists(
        st.tuples(st.floats(0, 3, allow_nan=False), st.sampled_from([1, 1, 1, 2, 5])), min_size=1, max_size=80
    ),
    limit=st.sampled_from([5, 20, 50]),
    window=st.sampled_from([0.5, 1.0, 60.0]),
)
def test_no_window_ever_over_the_limit(steps: list[tuple[float, int]], limit: int, window: float) -> None:
    """Whatever the arrival times and costs, the booked sends never put more than ``limit`` units
    in any window, and each booking is no earlier than the one before (FIFO)."""
    clock = Clock()
    lim = limiter(limit, window, clock)
    booked: list[tuple[float, int]] = []
    for gap, cost in steps:
        clock.now += gap
        ok, wait = lim.reserve(cost, max_wait=10_000)
        assert ok and wait >= 0
        booked.append((clock.now + wait, cost))
    times = [t for t, _ in booked]
    # FIFO up to float rounding: now + wait of two bookings for one instant may differ by an ulp
    assert all(later >= earlier - 1e-9 for earlier, later in itertools.pairwise(times))
    for start, _ in booked:
        inside = sum(c for t, c in booked if start <= t < start + window - 1e-9)
        assert inside <= limit


def test_burst_then_wait_for_the_oldest() -> None:
    clock = Clock()
    lim = limiter(20, 60.0, clock)
    assert all(lim.reserve(1, 0) == (True, 0.0) for _ in range(20))
    assert lim.reserve(1, 0) == (False, 60.0)  # a bucket would have said 3 s
    clock.now = 59.0
    assert lim.reserve(1, 0) == (False, 1.0)
    clock.now = 60.0
    assert lim.reserve(1, 0) == (True, 0.0)


def test_drain_counts_the_window_as_used() -> None:
    clock = Clock()
    lim = limiter(10, 1.0, clock)
    assert lim.reserve(1, 0)[0]
    lim.drain(10)  # the venue says the window is full
    assert lim.reserve(1, 0) == (False, 1.0)
    lim.drain(3)  # already more than that: nothing changes
    clock.now = 1.0
    assert lim.reserve(1, 0) == (True, 0.0)


def test_more_than_the_limit_can_never_be_booked() -> None:
    clock = Clock()
    lim = limiter(5, 1.0, clock)
    booked, wait = lim.reserve(6, 10_000)
    assert not booked and wait == float("inf")


def test_a_bucket_would_let_twice_through() -> None:
    """Why the window: a bucket of 20 refilling 20 per second lets 39 through in one second."""
    clock = Clock()
    bucket = RateLimiter(20, 20.0, "b", monotonic=clock)
    window = limiter(20, 1.0, clock)
    sent_bucket = sent_window = 0
    for step in range(100):
        clock.now = step / 100  # one call every 10 ms for a second
        sent_bucket += bucket.reserve(1, 0)[0]
        sent_window += window.reserve(1, 0)[0]
    assert sent_window == 20
    assert sent_bucket > 35


def test_shared_state_keeps_a_margin_past_the_venues_window() -> None:
    """The venue counts arrivals: the window kept is 5 % (at least 0.25 s) longer than its own."""
    from bastion_balance._state import SharedState, window_margin

    assert window_margin(1.0) == 0.25 and window_margin(60.0) == 3.0
    made = SharedState().window_limiter("x", 20, 60.0)
    assert isinstance(made, WindowLimiter) and made.window == 63.0 and made.capacity == 20


def test_token_cache_keeps_a_replaced_token() -> None:
    """Invalidating a token that was already replaced keeps the new one."""
    from bastion_balance._state import TokenCache

    cache = TokenCache()
    cache.store("old", 60)
    cache.store("new", 60)
    cache.invalidate("old")
    assert cache.get(0) == "new"
    cache.invalidate("new")
    assert cache.get(0) is None


def test_fractional_costs_never_overbook_a_window() -> None:
    """Capacity 3: 0.8 and 2.1 booked at t=0.5 (2.9 in the window), then 3 asked for at t=1.0.
    0.8 + 2.1 - 0.8 - 2.1 is 4.4e-16, not 0, in floats: the 3 units must still wait for the
    first two to leave the window (until t=1.5), never go at once on top of them."""
    clock = Clock()
    lim = limiter(3, 1.0, clock)
    clock.now = 0.5
    assert lim.reserve(0.8, 10) == (True, 0.0)
    assert lim.reserve(2.1, 10) == (True, 0.0)
    clock.now = 1.0
    ok, wait = lim.reserve(3, 10)
    assert ok
    assert wait == pytest.approx(0.5)  # it was 0.0, putting 5.9 units in one window of 3
