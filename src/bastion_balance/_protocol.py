"""The provider protocol: a sans-I/O flow of effects that ends in a Balance.

A provider never sends anything. ``balance_flow()`` returns a generator that yields *effects*
and receives their results; only the drivers in ``_client.py`` perform them:

* an ``httpx.Request``: send it, receive the ``httpx.Response`` (body already read);
* :class:`Throttle`: wait for the limiter's permission (sleeping without blocking an event
  loop), receive ``None``;
* :class:`Acquire`: take a ``threading.Lock`` (polled from async code so no event loop
  blocks), receive ``None``. The flow releases it itself in a ``finally`` block, which runs
  when the driver closes the generator, whatever happened.

The generator's return value is the :class:`~bastion_balance.Balance`. A simple third-party
provider only ever yields requests.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Protocol, TypeAlias, runtime_checkable

import attrs
import httpx

from ._models import Balance
from ._state import RateLimiter

__all__ = ["Acquire", "BalanceProvider", "Effect", "Flow", "Throttle"]


@attrs.frozen
class Throttle:
    """Ask ``limiter`` for ``cost`` units before going on."""

    limiter: RateLimiter
    cost: float = 1


@attrs.frozen(eq=False)
class Acquire:
    """Take ``lock`` (within the deadline); the flow releases it."""

    lock: threading.Lock


Effect: TypeAlias = httpx.Request | Throttle | Acquire
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
