"""Retry policy: transient failures only, full-jitter backoff, ``Retry-After``, one deadline.

One :class:`RetryPolicy` gives one kwargs dict that both ``tenacity.Retrying`` (sync) and
``tenacity.AsyncRetrying`` take (the stamina trick), so the two drivers retry alike. Each
attempt runs the provider's whole flow again, so it is signed afresh with a new nonce or
timestamp.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, Final, TypedDict

import attrs
import tenacity

from .exceptions import BastionBalanceError, RateLimitedError

__all__ = ["DEFAULT_RETRY", "NO_RETRY", "RetryPolicy"]

logger = logging.getLogger("bastion_balance")


def is_transient(exc: BaseException) -> bool:
    """True for failures that trying again may cure (transport, 5xx, 429, busy codes)."""
    return isinstance(exc, BastionBalanceError) and exc.transient


class RetryKWs(TypedDict):
    """Keyword arguments shared by ``tenacity.Retrying`` and ``tenacity.AsyncRetrying``."""

    retry: tenacity.retry_base
    stop: tenacity.stop.stop_base
    wait: Callable[[tenacity.RetryCallState], float]
    reraise: bool
    before_sleep: Callable[[tenacity.RetryCallState], None]


class _StopPastDeadline(tenacity.stop.stop_base):
    """Stop when the coming wait would end past the fetch's deadline."""

    def __init__(self, deadline: float, monotonic: Callable[[], float]) -> None:
        self.deadline = deadline
        self.monotonic = monotonic

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.monotonic() + retry_state.upcoming_sleep >= self.deadline


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How transient failures are retried.

    ``attempts`` counts the first try; the wait before retry *n* is uniform in
    ``[0, min(max_backoff, backoff * 2**(n-1))]`` (full jitter), and at least the venue's
    ``retry_after`` when it sent one. No wait passes the fetch's deadline: the last error is
    raised instead.
    """

    attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    backoff: float = 0.25
    max_backoff: float = 8.0
    jitter: Callable[[float, float], float] = attrs.field(default=random.uniform, eq=False)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exponential = min(self.max_backoff, self.backoff * 2 ** (state.attempt_number - 1))
        delay = self.jitter(0, exponential)
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    def kwargs(self, deadline: float, monotonic: Callable[[], float] = time.monotonic) -> RetryKWs:
        """tenacity arguments for one fetch whose deadline is ``deadline`` (monotonic s)."""

        def log_retry(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            logger.info(
                "retrying after %s (attempt %d, waiting %.2fs)",
                type(exc).__name__,
                state.attempt_number,
                state.upcoming_sleep,
            )

        return {
            "retry": tenacity.retry_if_exception(is_transient),
            "stop": tenacity.stop_after_attempt(self.attempts) | _StopPastDeadline(deadline, monotonic),
            "wait": self._wait,
            "reraise": True,
            "before_sleep": log_retry,
        }


DEFAULT_RETRY: Final = RetryPolicy()
NO_RETRY: Final = RetryPolicy(attempts=1)


def retrying(policy: RetryPolicy, deadline: float, **extra: Any) -> tenacity.Retrying:  # noqa: ANN401
    """A sync retrying loop for one fetch."""
    return tenacity.Retrying(**policy.kwargs(deadline), **extra)


def async_retrying(policy: RetryPolicy, deadline: float, **extra: Any) -> tenacity.AsyncRetrying:  # noqa: ANN401
    """An async retrying loop for one fetch."""
    return tenacity.AsyncRetrying(**policy.kwargs(deadline), **extra)
