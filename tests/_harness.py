"""One sync/async harness: drive a fetch or an aggregate through either client, the same way.

``mode`` is ``"sync"`` (a ``BalanceClient``) or ``"async"`` (an ``AsyncBalanceClient`` under
``asyncio.run``); parametrize a test over :data:`MODES` to run it through both drivers. A
``handler`` (a ``Simulator``, or any ``httpx.Request -> httpx.Response`` callable) answers
through an ``httpx.MockTransport``; without one the client opens its own connection pool (for
a ``LoopbackServer``). Other keyword settings go to the client as given (``retry=``,
``max_response_bytes=`` ...): the harness adds no default of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Final

import httpx
import pytest

import bastion_balance as bb

__all__ = ["MODES", "FakeClock", "Handler", "aggregate", "fetch", "fetch_error"]

MODES: Final = ("sync", "async")

Handler = Callable[[httpx.Request], httpx.Response]


def _settings(mode: str, handler: Handler | None, settings: dict[str, Any]) -> dict[str, Any]:
    if mode not in MODES:
        msg = f"mode must be one of {MODES}, got {mode!r}"
        raise ValueError(msg)
    if handler is None:
        return settings
    http = httpx.Client if mode == "sync" else httpx.AsyncClient
    return {"http_client": http(transport=httpx.MockTransport(handler)), **settings}


def fetch(
    mode: str,
    provider: Any,  # noqa: ANN401  # any BalanceProvider, well-formed or not
    handler: Handler | None = None,
    *,
    timeout: float | None = None,
    **settings: Any,  # noqa: ANN401
) -> bb.Balance:
    """``provider``'s balance through the ``mode`` client (opened and closed around the call)."""
    kwargs = _settings(mode, handler, settings)
    if mode == "sync":
        with bb.BalanceClient(**kwargs) as client:
            return client.fetch(provider, timeout=timeout)

    async def run() -> bb.Balance:
        async with bb.AsyncBalanceClient(**kwargs) as client:
            return await client.fetch(provider, timeout=timeout)

    return asyncio.run(run())


def aggregate(
    mode: str,
    providers: Iterable[Any],
    handler: Handler | None = None,
    *,
    timeout: float | None = None,
    strict: bool = False,
    rates: Any = None,  # noqa: ANN401  # a mapping, a rate source, or anything to be refused
    **settings: Any,  # noqa: ANN401
) -> bb.Portfolio:
    """The portfolio of ``providers`` through the ``mode`` client."""
    kwargs = _settings(mode, handler, settings)
    if mode == "sync":
        with bb.BalanceClient(**kwargs) as client:
            return client.aggregate(providers, timeout=timeout, strict=strict, rates=rates)

    async def run() -> bb.Portfolio:
        async with bb.AsyncBalanceClient(**kwargs) as client:
            return await client.aggregate(providers, timeout=timeout, strict=strict, rates=rates)

    return asyncio.run(run())


def fetch_error(
    mode: str,
    provider: Any,  # noqa: ANN401
    handler: Handler | None = None,
    *,
    expected: type[BaseException] = bb.BastionBalanceError,
    **kwargs: Any,  # noqa: ANN401
) -> BaseException:
    """The ``expected`` error a fetch raises (the test fails when it raises nothing, or another)."""
    with pytest.raises(expected) as info:
        fetch(mode, provider, handler, **kwargs)
    return info.value


class FakeClock:
    """Seconds that pass only when slept (or moved by the test): a clock and its sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)
