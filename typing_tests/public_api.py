"""Checked by mypy --strict in CI (never run): the public API's types as users see them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, assert_type

import httpx

import bastion_balance as bb


def sync_use(kraken: bb.Kraken, http: httpx.Client) -> None:
    balance = bb.fetch_balance(kraken, client=http, timeout=5.0)
    assert_type(balance, bb.Balance)
    assert_type(balance.total, Decimal)
    assert_type(balance.available, Decimal)
    assert_type(balance.wallet, Decimal | None)
    assert_type(balance.breakdown, Mapping[str, bb.Holding])
    assert_type(balance.extra, Mapping[str, Decimal])
    assert_type(balance.fetched_at, datetime)
    portfolio = bb.aggregate([kraken], rates={"EUR": Decimal("1.08")}, strict=False)
    assert_type(portfolio, bb.Portfolio)
    assert_type(portfolio.total_usd, Decimal)
    assert_type(portfolio.available_margin_usd, Decimal)
    assert_type(portfolio.complete, bool)
    assert_type(portfolio.errors, Mapping[str, Exception])
    assert_type(portfolio.to_bastion(), dict[str, Any])
    assert_type(bb.dumps(portfolio.to_bastion()), str)
    with bb.BalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
        assert_type(client.fetch(kraken), bb.Balance)


async def async_use(providers: list[bb.BalanceProvider]) -> None:
    async with bb.AsyncBalanceClient() as client:
        assert_type(await client.aggregate(providers), bb.Portfolio)
    assert_type(await bb.afetch_balance(providers[0]), bb.Balance)
    assert_type(await bb.aaggregate(providers, timeout=3.0), bb.Portfolio)


def errors(exc: bb.BastionBalanceError) -> None:
    if isinstance(exc, bb.RateLimitedError):
        assert_type(exc.retry_after, float | None)
    if isinstance(exc, bb.ExchangeAPIError):
        assert_type(exc.code, str | int | None)
        assert_type(exc.status_code, int | None)
    if isinstance(exc, bb.ServiceUnavailableError):
        assert_type(exc.retry_after, float | None)


def strict_use(providers: list[bb.BalanceProvider]) -> bb.Portfolio | None:
    try:
        return bb.aggregate(providers, strict=True)
    except bb.AggregateError as group:
        assert_type(group.errors, Mapping[str, Exception])
        assert_type(group.portfolio, bb.Portfolio | None)
        assert_type(group.exceptions, tuple[Exception | ExceptionGroup[Exception], ...])
        transport, _rest = group.split(bb.TransportError)
        if transport is not None:
            assert_type(transport.errors, Mapping[str, Exception])
        return group.portfolio


def checked_settings() -> bb.RetryPolicy:
    return bb.RetryPolicy(attempts=3, backoff=0.5, max_backoff=4.0)


def dumped(portfolio: bb.Portfolio) -> str:
    try:
        return bb.dumps(portfolio.to_dict(), indent=2)
    except bb.ConfigurationError as exc:
        assert_type(exc.message, str)
        raise
