"""Retry policy: transient failures only, full-jitter backoff, ``Retry-After``, one deadline.

One :class:`RetryPolicy` gives one kwargs dict that both ``tenacity.Retrying`` (sync) and
``tenacity.AsyncRetrying`` take (the stamina trick), so the two drivers retry alike. Each
attempt runs the provider's whole flow again, so it is signed afresh with a new nonce or
timestamp.

Each retry is logged at INFO by the ``bastion_balance`` logger, with the account's label and
venue, the attempt that failed, the wait and the time since the fetch began both in the message
and as record attributes (``label``, ``venue``, ``attempt``, ``wait_s``, ``elapsed_s``,
``error``), so the logs of a thousand accounts can be filtered by account; an ``on_retry``
callback is told the same (a watch's hook, ``bb.watch``).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any, Final, TypeAlias, TypedDict

import attrs
import tenacity

from .exceptions import BastionBalanceError, ConfigurationError

__all__ = ["DEFAULT_RETRY", "NO_RETRY", "RetryPolicy"]

logger = logging.getLogger("bastion_balance")


def is_transient(exc: BaseException) -> bool:
    """True for failures that trying again may cure (transport, 5xx, 429, busy codes)."""
    return isinstance(exc, BastionBalanceError) and exc.transient


#: ``on_retry(attempt, wait, error)``: told of each retry (see :meth:`RetryPolicy.kwargs`).
RetryHook: TypeAlias = Callable[[int, float, BaseException | None], None]


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


def _seconds(value: object) -> float | None:
    """``value`` as a finite, non-negative number of seconds, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)  # float-ok: a wait in seconds, not money
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _check_attempts(_policy: object, _attribute: object, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = (
            f"RetryPolicy(attempts={value!r}): attempts counts the first try and must be a whole "
            "number >= 1; pass attempts=1 (or use bb.NO_RETRY) for no retries"
        )
        raise ConfigurationError(msg)


def _check_backoff(_policy: object, attribute: attrs.Attribute[float], value: object) -> None:
    if _seconds(value) is None:
        msg = (
            f"RetryPolicy({attribute.name}={value!r}): {attribute.name} is a finite number of "
            f"seconds >= 0, e.g. {attribute.name}={attribute.default!r}"
        )
        raise ConfigurationError(msg)


def _check_max_backoff(policy: RetryPolicy, attribute: attrs.Attribute[float], value: float) -> None:
    _check_backoff(policy, attribute, value)
    if value < policy.backoff:
        msg = (
            f"RetryPolicy(backoff={policy.backoff!r}, max_backoff={value!r}): max_backoff caps the "
            f"wait and must be >= backoff; pass max_backoff={policy.backoff!r} or more"
        )
        raise ConfigurationError(msg)


def _check_jitter(_policy: object, _attribute: object, value: object) -> None:
    if not callable(value):
        msg = f"RetryPolicy(jitter={value!r}): jitter is a function (low, high) -> wait, e.g. random.uniform"
        raise ConfigurationError(msg)


def _where(label: str | None, venue: str | None) -> str:
    """The log prefix naming the account: ``"kraken-main (kraken): "``."""
    if label is not None and venue is not None and label != venue:
        return f"{label} ({venue}): "
    if label is not None or venue is not None:
        return f"{label if label is not None else venue}: "
    return ""


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How transient failures are retried.

    ``attempts`` counts the first try; the wait before retry *n* is uniform in
    ``[0, min(max_backoff, backoff * 2**(n-1))]`` (full jitter), and at least the venue's
    ``retry_after`` when it sent one (a 429's or a 503's ``Retry-After``, or the venue's own
    equivalent). No wait passes the fetch's deadline: the last error is raised instead.

    Bad values (``attempts=0``, a negative or infinite backoff, ``max_backoff < backoff``) are
    a :class:`~bastion_balance.ConfigurationError` that says what to pass.
    """

    attempts: int = attrs.field(default=4, validator=_check_attempts)
    backoff: float = attrs.field(default=0.25, validator=_check_backoff)
    max_backoff: float = attrs.field(default=8.0, validator=_check_max_backoff)
    jitter: Callable[[float, float], float] = attrs.field(
        default=random.uniform, eq=False, validator=_check_jitter
    )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exponential = min(self.max_backoff, self.backoff * 2 ** (state.attempt_number - 1))
        delay = self.jitter(0, exponential)
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        asked = _seconds(getattr(exc, "retry_after", None))  # every ExchangeAPIError has one
        if asked is not None:
            delay = max(delay, asked)
        return delay

    def kwargs(
        self,
        deadline: float,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        label: str | None = None,
        venue: str | None = None,
        started: float | None = None,
        on_retry: RetryHook | None = None,
    ) -> RetryKWs:
        """tenacity arguments for one fetch whose deadline is ``deadline`` (monotonic s).

        ``label`` and ``venue`` name the account in the retry log; ``started`` is the fetch's
        start on the ``monotonic`` clock, for the log's ``elapsed_s``. ``on_retry(attempt, wait,
        error)`` is called after each retry is logged: the attempt that failed, the seconds
        about to be waited, and the failure.
        """
        where = _where(label, venue)

        def log_retry(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            wait = state.upcoming_sleep
            elapsed = None if started is None else max(0.0, monotonic() - started)
            fields: dict[str, object] = {
                "label": label,
                "venue": venue,
                "attempt": state.attempt_number,
                "wait_s": wait,
                "elapsed_s": elapsed,
                "error": type(exc).__name__,
            }
            if elapsed is None:
                logger.info(
                    "%sretrying after %s (attempt %d, waiting %.2fs)",
                    where,
                    type(exc).__name__,
                    state.attempt_number,
                    wait,
                    extra=fields,
                )
            else:
                logger.info(
                    "%sretrying after %s (attempt %d, waiting %.2fs, %.2fs elapsed)",
                    where,
                    type(exc).__name__,
                    state.attempt_number,
                    wait,
                    elapsed,
                    extra=fields,
                )
            if on_retry is not None:
                on_retry(state.attempt_number, wait, exc)

        return {
            "retry": tenacity.retry_if_exception(is_transient),
            "stop": tenacity.stop_after_attempt(self.attempts) | _StopPastDeadline(deadline, monotonic),
            "wait": self._wait,
            "reraise": True,
            "before_sleep": log_retry,
        }


DEFAULT_RETRY: Final = RetryPolicy()
NO_RETRY: Final = RetryPolicy(attempts=1)


def retrying(
    policy: RetryPolicy,
    deadline: float,
    *,
    label: str | None = None,
    venue: str | None = None,
    started: float | None = None,
    on_retry: RetryHook | None = None,
    **extra: Any,  # noqa: ANN401
) -> tenacity.Retrying:
    """A sync retrying loop for one fetch (``label``, ``venue``, ``started``, ``on_retry``: ``kwargs``)."""
    kwargs = policy.kwargs(deadline, label=label, venue=venue, started=started, on_retry=on_retry)
    return tenacity.Retrying(**kwargs, **extra)


def async_retrying(
    policy: RetryPolicy,
    deadline: float,
    *,
    label: str | None = None,
    venue: str | None = None,
    started: float | None = None,
    on_retry: RetryHook | None = None,
    **extra: Any,  # noqa: ANN401
) -> tenacity.AsyncRetrying:
    """An async retrying loop for one fetch (``label``, ``venue``, ``started``, ``on_retry``: ``kwargs``)."""
    kwargs = policy.kwargs(deadline, label=label, venue=venue, started=started, on_retry=on_retry)
    return tenacity.AsyncRetrying(**kwargs, **extra)
