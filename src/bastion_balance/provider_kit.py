"""Everything a provider needs that the built-in venues use: the public seam for your own venue.

A provider is any object with ``label``, ``venue`` and ``balance_flow()`` (``bb.BalanceProvider``).
Its flow is a generator that yields *effects* and returns a ``bb.Balance``; the clients perform
the effects (see ``docs/writing-a-provider.md``). This module gives a third-party provider the
same parts the seven built-in ones are made of, so it is as good as ours: rate limits that hold
across threads and event loops, a turn per credential, one token refresh for many fetches, clock
correction, secrets that never show in a ``repr`` or a traceback, typed errors by HTTP status.

>>> from bastion_balance import provider_kit as kit
>>> def balance_flow(self):                                          # doctest: +SKIP
...     limiter = kit.shared_state("acme", self.base_url, self.api_key).window_limiter("calls", 10, 1.0)
...     return (yield from kit.throttled_call(limiter, self.build_request, self.parse_response))

Names here are public and follow the project's versioning; the modules they come from are not.
"""

from __future__ import annotations

from ._convert import structure
from ._decimal import exact_sum, parse_amount
from ._protocol import Acquire, Effect, Flow, Release, Throttle
from ._rates import RateFlow
from ._state import (
    NonceCounter,
    RateLimiter,
    SharedState,
    TokenCache,
    Turn,
    WindowLimiter,
    clock_offset,
    shared_state,
)
from .providers._common import (
    USER_AGENT,
    NoPickle,
    Secret,
    SignedRequest,
    SubFlow,
    WatchPace,
    bearer_call,
    cached_token,
    check_base_url,
    clock_corrected,
    counter_pace,
    credential,
    decode_object,
    environment_url,
    error_body,
    error_code,
    error_text,
    extra_figures,
    integer_field,
    label_or,
    masked_url,
    measure_clock_offset,
    now_utc,
    one_of,
    pace_budget,
    parse_bearer_token,
    printable,
    retry_after_seconds,
    send,
    send_and_parse,
    status_error,
    throttled_call,
    window_pace,
)

__all__ = [
    # effects and flows
    "Acquire",
    "Effect",
    "Flow",
    "RateFlow",
    "Release",
    "SubFlow",
    "Throttle",
    # per-credential state shared by every fetch in the process
    "NonceCounter",
    "RateLimiter",
    "SharedState",
    "TokenCache",
    "Turn",
    "WindowLimiter",
    "clock_offset",
    "shared_state",
    # sub-flows (run them with ``yield from``)
    "bearer_call",
    "cached_token",
    "clock_corrected",
    "measure_clock_offset",
    "send",
    "send_and_parse",
    "throttled_call",
    # requests that carry secrets
    "Secret",
    "SignedRequest",
    "USER_AGENT",
    "masked_url",
    # settings
    "NoPickle",
    "check_base_url",
    "credential",
    "environment_url",
    "label_or",
    "one_of",
    # how often a watch may fetch an account (``bb.watch``): the venue's limit as a pace
    "WatchPace",
    "counter_pace",
    "pace_budget",
    "window_pace",
    # answers and errors
    "decode_object",
    "exact_sum",
    "parse_amount",
    "structure",
    "error_body",
    "error_code",
    "error_text",
    "extra_figures",
    "integer_field",
    "now_utc",
    "parse_bearer_token",
    "printable",
    "retry_after_seconds",
    "status_error",
]
