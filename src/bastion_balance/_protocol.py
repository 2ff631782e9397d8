"""The provider protocol: a sans-I/O flow of effects that ends in a Balance.

A provider never sends anything. ``balance_flow()`` returns a generator that yields *effects*
and receives their results; only the drivers in ``_client.py`` perform them:

* an ``httpx.Request``: send it, receive the ``httpx.Response`` (body already read);
* :class:`Throttle`: wait for the limiter's permission (sleeping without blocking an event
  loop), receive ``None``;
* :class:`Acquire`: take a :class:`~bastion_balance._state.Turn` (first come, first served
  across threads and event loops; async waiters never block their loop), receive ``None``;
* :class:`Release`: give a turn back early, receive ``None``.

The driver owns every turn it took for a flow: whatever the flow did not release is released
by the driver when the flow ends, however it ends (a return, an error, a ``KeyboardInterrupt``
or a cancelled task), so a flow cannot leak one. A fetch abandoned while its request is at the
venue (cancelled, or past its deadline) keeps its turns until that request is answered or a
grace period has passed, so a later request on the same key cannot overtake it.

The generator's return value is the :class:`~bastion_balance.Balance`. A simple third-party
provider only ever yields requests.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Protocol, TypeAlias, runtime_checkable

import attrs
import httpx

from ._models import Balance
from ._state import RateLimiter, Turn

__all__ = ["Acquire", "BalanceProvider", "Effect", "Flow", "Release", "Throttle"]


@attrs.frozen
class Throttle:
    """Ask ``limiter`` for ``cost`` units before going on."""

    limiter: RateLimiter
    cost: float = 1


@attrs.frozen(eq=False)
class Acquire:
    """Take ``lock`` (within the deadline); held until :class:`Release` or the flow's end."""

    lock: Turn


@attrs.frozen(eq=False)
class Release:
    """Give ``lock`` back now (the driver would at the end of the flow otherwise)."""

    lock: Turn


Effect: TypeAlias = httpx.Request | Throttle | Acquire | Release
Flow: TypeAlias = Generator[Effect, httpx.Response | None, Balance]


@runtime_checkable
class BalanceProvider(Protocol):
    """What ``fetch_balance`` and ``aggregate`` accept: any object with these members."""

    @property
    def label(self) -> str:
        """The account's name in a Portfolio (unique within one aggregate)."""

    @property
    def venue(self) -> str:
        """The venue's short name, e.g. ``"kraken"``."""

    def balance_flow(self) -> Flow:
        """Build, sign and parse: yield effects, return the Balance."""
