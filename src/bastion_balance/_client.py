"""BalanceClient and AsyncBalanceClient: the only code that sends anything.

Both drive a provider's sans-I/O flow (see ``_protocol``); they differ only in how they wait
and send. Retries wrap the whole flow, so each attempt is signed afresh.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType
from typing import Final, Self

import httpx

from . import _logging
from ._aggregate import build_portfolio, check_labels, normalize_rates
from ._models import Balance, Portfolio
from ._protocol import Acquire, BalanceProvider, Effect, Flow, Throttle
from ._retry import DEFAULT_RETRY, RetryPolicy, async_retrying, retrying
from .exceptions import (
    ConfigurationError,
    DeadlineExceededError,
    RateLimitedError,
    ResponseTooLargeError,
    TransportError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_RESPONSE_BYTES",
    "AsyncBalanceClient",
    "BalanceClient",
    "aaggregate",
    "afetch_balance",
    "aggregate",
    "fetch_balance",
]

logger = logging.getLogger("bastion_balance")

DEFAULT_TIMEOUT: Final = 10.0
MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024
MAX_THREADS: Final = 32
_LOCK_POLL: Final = (0.0005, 0.01)  # first and longest poll interval for async lock waits

_logging.install_redaction()


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        msg = f"timeout must be a positive number of seconds, got {timeout!r}"
        raise ConfigurationError(msg)
    return timeout


def _check_provider(provider: object) -> BalanceProvider:
    if not isinstance(provider, BalanceProvider):
        msg = f"{provider!r} is not a BalanceProvider (needs label, venue, balance_flow())"
        raise ConfigurationError(msg)
    return provider


def _venue(provider: BalanceProvider) -> str:
    return str(provider.venue)


def _throttle_wait(effect: Throttle, provider: BalanceProvider, deadline: float) -> float:
    booked, wait = effect.limiter.reserve(effect.cost, deadline - time.monotonic())
    if not booked:
        msg = (
            f"{provider.label}: client-side rate limit '{effect.limiter.name}' needs "
            f"{wait:.2f}s, past the fetch's deadline"
        )
        raise RateLimitedError(msg, venue=_venue(provider), retry_after=wait, transient=False)
    if wait > 0:
        logger.info("%s: waiting %.2fs for rate limit %s", provider.label, wait, effect.limiter.name)
    return wait


def _deadline_error(provider: BalanceProvider, what: str) -> DeadlineExceededError:
    return DeadlineExceededError(f"{provider.label}: deadline passed while {what}", venue=_venue(provider))


def _translate(exc: httpx.HTTPError, provider: BalanceProvider, deadline: float) -> TransportError:
    """Our error for an httpx failure; it names the host and path, never the query."""
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:  # an error raised before any request was attached
        request = None
    where = f" ({_where(request)})" if request is not None else ""
    text = _logging.redact(str(exc)) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException) and time.monotonic() >= deadline - 0.05:
        return DeadlineExceededError(
            f"{provider.label}: deadline passed waiting for the venue{where}",
            venue=_venue(provider),
        )
    return TransportError(f"{provider.label}: {type(exc).__name__}{where}: {text}", venue=_venue(provider))


def _where(request: httpx.Request) -> str:
    """Host and path of a request: never its query, which may carry a signature."""
    return f"{request.url.host}{request.url.path}"


def _prepare(request: httpx.Request, provider: BalanceProvider, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _deadline_error(provider, "sending a request")
    request.extensions = {**request.extensions, "timeout": httpx.Timeout(remaining).as_dict()}


def _too_large(provider: BalanceProvider, cap: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"{provider.label}: response body is larger than {cap} bytes", venue=_venue(provider)
    )


def _finish(response: httpx.Response, body: bytes) -> httpx.Response:
    """A read response: the decoded body, without the headers that described the encoding."""
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in {"content-encoding", "content-length", "transfer-encoding"}
    ]
    return httpx.Response(response.status_code, headers=headers, content=body, request=response.request)


def _checked_balance(value: object, provider: BalanceProvider) -> Balance:
    if not isinstance(value, Balance):
        msg = f"{provider!r}.balance_flow() returned {type(value).__name__}, not a Balance"
        raise TypeError(msg)
    return value


class _Settings:
    """What both clients hold besides their HTTP client."""

    def __init__(self, retry: RetryPolicy, timeout: float, max_response_bytes: int) -> None:
        if not isinstance(retry, RetryPolicy):
            msg = f"retry must be a RetryPolicy, got {retry!r}"
            raise ConfigurationError(msg)
        self.retry = retry
        self.timeout = _check_timeout(timeout)
        self.max_response_bytes = max_response_bytes

    def deadline(self, timeout: float | None) -> float:
        return time.monotonic() + _check_timeout(self.timeout if timeout is None else timeout)


def _user_agent() -> str:
    from ._version import __version__  # noqa: PLC0415  # cheap, but only needed here

    return f"bastion-balance/{__version__}"


class BalanceClient:
    """Fetches balances synchronously over one reusable connection pool.

    Pass your own ``httpx.Client`` as ``http_client`` to control proxies, TLS or transports;
    it is used as is and never closed by us. Otherwise the client makes one and closes it in
    :meth:`close` (or at the end of a ``with`` block).

    >>> with BalanceClient() as client:                           # doctest: +SKIP
    ...     portfolio = client.aggregate([Kraken(api_key=..., api_secret=...)])
    """

    def __init__(
        self,
        *,
        http_client: httpx.Client | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._settings = _Settings(retry, timeout, max_response_bytes)
        self._given_http = http_client
        self._made_http: httpx.Client | None = None
        self._lock = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def _http(self) -> httpx.Client:
        """The caller's client, or ours, made on first use (building TLS contexts is slow)."""
        if self._given_http is not None:
            return self._given_http
        with self._lock:
            if self._made_http is None:
                self._made_http = httpx.Client(headers={"User-Agent": _user_agent()})
            return self._made_http

    def close(self) -> None:
        """Close the connection pool, if this client made it."""
        with self._lock:
            made, self._made_http = self._made_http, None
        if made is not None:
            made.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def fetch(self, provider: BalanceProvider, *, timeout: float | None = None) -> Balance:
        """One provider's balance, retried within ``timeout`` seconds (the whole deadline).

        Raises a :class:`~bastion_balance.BastionBalanceError` subclass when it fails.
        """
        provider = _check_provider(provider)
        deadline = self._settings.deadline(timeout)
        for attempt in retrying(self._settings.retry, deadline, sleep=self._sleep):
            with attempt:
                return self._run(provider, deadline)
        raise AssertionError("unreachable")  # pragma: no cover  # tenacity re-raises

    def aggregate(
        self,
        providers: Iterable[BalanceProvider],
        *,
        rates: Mapping[str, Decimal] | None = None,
        timeout: float | None = None,
        strict: bool = False,
    ) -> Portfolio:
        """Fetch every provider at once (one thread each) and value them in USD.

        A venue that fails is reported in ``Portfolio.errors``; ``strict=True`` raises an
        ``ExceptionGroup`` instead. Works inside a running event loop (Jupyter).
        """
        checked = check_labels([_check_provider(p) for p in providers])
        table = normalize_rates(rates)
        if timeout is not None:
            _check_timeout(timeout)
        results: dict[str, Balance | Exception] = {}
        if checked:
            workers = min(len(checked), MAX_THREADS)
            with ThreadPoolExecutor(workers, thread_name_prefix="bastion-balance") as pool:
                futures = {p.label: pool.submit(self._fetch_or_error, p, timeout) for p in checked}
                results = {label: future.result() for label, future in futures.items()}
        return build_portfolio(results, table, strict=strict, fetched_at=datetime.now(UTC))

    def _fetch_or_error(self, provider: BalanceProvider, timeout: float | None) -> Balance | Exception:
        try:
            return self.fetch(provider, timeout=timeout)
        except Exception as exc:  # noqa: BLE001  # partial failure is a result (PRODUCT.md)
            return exc

    def _run(self, provider: BalanceProvider, deadline: float) -> Balance:
        flow: Flow = provider.balance_flow()
        try:
            effect: Effect = next(flow)
            while True:
                effect = flow.send(self._perform(effect, provider, deadline))
        except StopIteration as stop:
            return _checked_balance(stop.value, provider)
        finally:
            flow.close()

    def _perform(self, effect: Effect, provider: BalanceProvider, deadline: float) -> httpx.Response | None:
        if isinstance(effect, httpx.Request):
            return self._send(effect, provider, deadline)
        if isinstance(effect, Throttle):
            wait = _throttle_wait(effect, provider, deadline)
            if wait > 0:
                self._sleep(wait)
            return None
        if isinstance(effect, Acquire):
            if not effect.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise _deadline_error(provider, "waiting for this credential's turn")
            return None
        msg = f"{provider!r} yielded {effect!r}, which is not an effect"
        raise TypeError(msg)

    def _send(self, request: httpx.Request, provider: BalanceProvider, deadline: float) -> httpx.Response:
        _prepare(request, provider, deadline)
        cap = self._settings.max_response_bytes
        error: TransportError | None = None
        try:
            response = self._http.send(request, stream=True)
            try:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > cap:
                        raise _too_large(provider, cap)
                    if time.monotonic() >= deadline:  # socket timeouts bound each read, not the body
                        raise _deadline_error(provider, f"reading the answer ({_where(request)})")
            finally:
                response.close()
        except httpx.HTTPError as exc:
            error = _translate(exc, provider, deadline)
        if error is not None:
            raise error  # outside the except block: the httpx error (and its request) is dropped
        return _finish(response, bytes(body))


class AsyncBalanceClient:
    """Fetches balances with asyncio over one reusable connection pool.

    The async twin of :class:`BalanceClient`: same arguments, ``await`` on ``fetch`` and
    ``aggregate``, ``aclose()`` / ``async with``. A caller's ``httpx.AsyncClient`` is never
    closed by us.
    """

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._settings = _Settings(retry, timeout, max_response_bytes)
        self._given_http = http_client
        self._made_http: httpx.AsyncClient | None = None
        self._sleep: Callable[[float], object] = asyncio.sleep

    @property
    def _http(self) -> httpx.AsyncClient:
        """The caller's client, or ours, made on first use (building TLS contexts is slow)."""
        if self._given_http is not None:
            return self._given_http
        if self._made_http is None:
            self._made_http = httpx.AsyncClient(headers={"User-Agent": _user_agent()})
        return self._made_http

    async def aclose(self) -> None:
        """Close the connection pool, if this client made it."""
        made, self._made_http = self._made_http, None
        if made is not None:
            await made.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def fetch(self, provider: BalanceProvider, *, timeout: float | None = None) -> Balance:
        """One provider's balance, retried within ``timeout`` seconds (the whole deadline)."""
        provider = _check_provider(provider)
        deadline = self._settings.deadline(timeout)
        scope = asyncio.timeout(deadline - time.monotonic())
        try:
            async with scope:
                async for attempt in async_retrying(self._settings.retry, deadline, sleep=self._sleep):
                    with attempt:
                        return await self._run(provider, deadline)
        except TimeoutError:
            if not scope.expired():
                raise
        raise _deadline_error(provider, f"fetching ({provider.venue})")

    async def aggregate(
        self,
        providers: Iterable[BalanceProvider],
        *,
        rates: Mapping[str, Decimal] | None = None,
        timeout: float | None = None,
        strict: bool = False,
    ) -> Portfolio:
        """Fetch every provider concurrently and value them in USD (see ``BalanceClient``)."""
        checked = check_labels([_check_provider(p) for p in providers])
        table = normalize_rates(rates)
        if timeout is not None:
            _check_timeout(timeout)
        outcomes = await asyncio.gather(*(self._fetch_or_error(p, timeout) for p in checked))
        results = {p.label: outcome for p, outcome in zip(checked, outcomes, strict=True)}
        return build_portfolio(results, table, strict=strict, fetched_at=datetime.now(UTC))

    async def _fetch_or_error(self, provider: BalanceProvider, timeout: float | None) -> Balance | Exception:
        try:
            return await self.fetch(provider, timeout=timeout)
        except Exception as exc:  # noqa: BLE001  # partial failure is a result (PRODUCT.md)
            return exc

    async def _run(self, provider: BalanceProvider, deadline: float) -> Balance:
        flow: Flow = provider.balance_flow()
        try:
            effect: Effect = next(flow)
            while True:
                effect = flow.send(await self._perform(effect, provider, deadline))
        except StopIteration as stop:
            return _checked_balance(stop.value, provider)
        finally:
            flow.close()

    async def _perform(
        self, effect: Effect, provider: BalanceProvider, deadline: float
    ) -> httpx.Response | None:
        if isinstance(effect, httpx.Request):
            return await self._send(effect, provider, deadline)
        if isinstance(effect, Throttle):
            wait = _throttle_wait(effect, provider, deadline)
            if wait > 0:
                await self._sleep(wait)  # type: ignore[misc]  # asyncio.sleep or a test double
            return None
        if isinstance(effect, Acquire):
            await _acquire(effect.lock)  # bounded by the fetch's asyncio.timeout
            return None
        msg = f"{provider!r} yielded {effect!r}, which is not an effect"
        raise TypeError(msg)

    async def _send(
        self, request: httpx.Request, provider: BalanceProvider, deadline: float
    ) -> httpx.Response:
        _prepare(request, provider, deadline)
        cap = self._settings.max_response_bytes
        error: TransportError | None = None
        try:
            response = await self._http.send(request, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > cap:
                        raise _too_large(provider, cap)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            error = _translate(exc, provider, deadline)
        if error is not None:
            raise error  # outside the except block: the httpx error (and its request) is dropped
        return _finish(response, bytes(body))


async def _acquire(lock: threading.Lock) -> None:
    """Take a threading lock without blocking the event loop (polls with growing pauses)."""
    pause, longest = _LOCK_POLL
    while not lock.acquire(blocking=False):
        await asyncio.sleep(pause)
        pause = min(pause * 2, longest)


_DEFAULT_LOCK: Final = threading.Lock()
_DEFAULT: list[BalanceClient] = []


def _default_client() -> BalanceClient:
    """One process-wide client for the module-level functions, so repeated calls reuse a pool."""
    with _DEFAULT_LOCK:
        if not _DEFAULT:
            _DEFAULT.append(BalanceClient())
            atexit.register(_DEFAULT[0].close)
        return _DEFAULT[0]


@contextlib.contextmanager
def _sync_client(client: BalanceClient | httpx.Client | None) -> Iterator[BalanceClient]:
    if client is None:
        yield _default_client()
        return
    if isinstance(client, BalanceClient):
        yield client
        return
    if not isinstance(client, httpx.Client):
        msg = f"client must be a BalanceClient or httpx.Client, got {type(client).__name__}"
        raise ConfigurationError(msg)
    with BalanceClient(http_client=client) as made:
        yield made


@contextlib.asynccontextmanager
async def _async_client(
    client: AsyncBalanceClient | httpx.AsyncClient | None,
) -> AsyncIterator[AsyncBalanceClient]:
    if isinstance(client, AsyncBalanceClient):
        yield client
        return
    if client is not None and not isinstance(client, httpx.AsyncClient):
        msg = f"client must be an AsyncBalanceClient or httpx.AsyncClient, got {type(client).__name__}"
        raise ConfigurationError(msg)
    async with AsyncBalanceClient(http_client=client) as made:
        yield made


def fetch_balance(
    provider: BalanceProvider,
    *,
    client: BalanceClient | httpx.Client | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Balance:
    """Fetch one account's balance.

    ``client`` may be a :class:`BalanceClient` or an ``httpx.Client`` to reuse (never closed
    here). ``timeout`` is the whole deadline, retries and rate-limit waits included.

    >>> bal = fetch_balance(Kraken(api_key="...", api_secret="..."))   # doctest: +SKIP
    >>> bal.total, bal.available                                        # doctest: +SKIP
    (Decimal('382.2032'), Decimal('375.1678'))
    """
    with _sync_client(client) as balance_client:
        return balance_client.fetch(provider, timeout=timeout)


async def afetch_balance(
    provider: BalanceProvider,
    *,
    client: AsyncBalanceClient | httpx.AsyncClient | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Balance:
    """The async twin of :func:`fetch_balance`."""
    async with _async_client(client) as balance_client:
        return await balance_client.fetch(provider, timeout=timeout)


def aggregate(
    providers: Iterable[BalanceProvider],
    *,
    rates: Mapping[str, Decimal] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    strict: bool = False,
    client: BalanceClient | httpx.Client | None = None,
) -> Portfolio:
    """Fetch every account at once and add them up in USD.

    Failed venues land in ``Portfolio.errors`` (``strict=True`` raises an ``ExceptionGroup``).
    ``rates`` maps currency -> USD rate on top of the defaults (USD, USDT, USDC at 1). Safe to
    call inside a running event loop, e.g. a Jupyter cell.
    """
    with _sync_client(client) as balance_client:
        return balance_client.aggregate(providers, rates=rates, timeout=timeout, strict=strict)


async def aaggregate(
    providers: Iterable[BalanceProvider],
    *,
    rates: Mapping[str, Decimal] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    strict: bool = False,
    client: AsyncBalanceClient | httpx.AsyncClient | None = None,
) -> Portfolio:
    """The async twin of :func:`aggregate`: every venue concurrently on this event loop."""
    async with _async_client(client) as balance_client:
        return await balance_client.aggregate(providers, rates=rates, timeout=timeout, strict=strict)
