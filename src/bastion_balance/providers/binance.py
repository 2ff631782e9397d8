"""Binance USD-M futures: ``GET /fapi/v2/account`` (docs/venues/binance.md).

``total`` = ``totalMarginBalance`` (wallet + unrealized PnL), ``available`` =
``availableBalance``, ``wallet`` = ``totalWalletBalance``, ``margin_used`` =
``totalInitialMargin``, ``unrealized_pnl`` = ``totalUnrealizedProfit``. The currency is ``USDT``
in single-asset mode and ``USD`` when ``multiAssetsMargin`` is true (docs/decisions.md §6: v2, not v3,
because only v2 says which mode the account is in). In single-asset mode Binance's totals
cover USDT only: every other asset with a non-zero ``walletBalance`` is listed in
``Balance.uncounted``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, final
from urllib.parse import urlencode

import attrs
import httpx

from .._convert import structure
from .._models import Balance, Holding
from .._protocol import Flow, Throttle
from .._state import RateLimiter, shared_state
from ..exceptions import (
    AuthenticationError,
    ExchangeAPIError,
    RateLimitedError,
    ServiceUnavailableError,
    UnexpectedResponseError,
)
from ._common import (
    USER_AGENT,
    NoPickle,
    Secret,
    SignedRequest,
    SubFlow,
    WatchPace,
    clock_corrected,
    credential,
    decode_object,
    environment_url,
    error_body,
    extra_figures,
    integer_field,
    label_or,
    measure_clock_offset,
    milliseconds,
    now_utc,
    one_of,
    pace_budget,
    retry_after_seconds,
    status_error,
    throttled_call,
    window_pace,
)

__all__ = [
    "ACCOUNT_PATH",
    "ACCOUNT_WEIGHT",
    "DEFAULT_BASE_URL",
    "ENVIRONMENTS",
    "SERVER_TIME_PATH",
    "BinanceFutures",
    "binance_sign",
]

VENUE: Final = "binance"
DEFAULT_BASE_URL: Final = "https://fapi.binance.com"
ACCOUNT_PATH: Final = "/fapi/v2/account"
SERVER_TIME_PATH: Final = "/fapi/v1/time"

#: ``environment=`` -> base URL. Binance's docs now name ``demo-fapi`` as the futures testnet;
#: the official SDK still ships ``testnet.binancefuture.com`` (docs/venues/binance.md, 'Hosts').
ENVIRONMENTS: Final[Mapping[str, str]] = {
    "prod": DEFAULT_BASE_URL,
    "demo": "https://demo-fapi.binance.com",
    "testnet": "https://testnet.binancefuture.com",
}

#: REQUEST_WEIGHT per IP: 2400 per minute, refilled at 40 per second; the account call weighs 5.
WEIGHT_PER_MINUTE: Final = 2400
ACCOUNT_WEIGHT: Final = 5
SERVER_TIME_WEIGHT: Final = 1
MAX_RECV_WINDOW: Final = 60_000
USED_WEIGHT_HEADER: Final = "X-MBX-USED-WEIGHT-1M"

#: Figures of the account object that are not money (ids, flags, times) stay out of ``extra``.
NOT_FIGURES: Final = frozenset({"feeTier", "tradeGroupId", "updateTime"})

TIMESTAMP_HELP: Final = (
    "Binance refused the timestamp as outside recvWindow even after reading its server time: "
    "the local clock jumps or the network is slow; synchronise the clock (NTP) or raise recv_window"
)

_AUTH: Final = AuthenticationError
_BUSY: Final = ServiceUnavailableError
_ERRORS: Final[Mapping[int, tuple[type[ExchangeAPIError], str]]] = {
    -1000: (_BUSY, "an unknown error occurred while processing the request"),
    -1001: (_BUSY, "Binance's internal connection was broken"),
    -1003: (RateLimitedError, "too many requests for this IP (request weight)"),
    -1007: (_BUSY, "Binance's backend timed out; the outcome is unknown"),
    -1021: (_AUTH, TIMESTAMP_HELP),
    -1022: (_AUTH, "the signature does not verify: check the API secret"),
    -1131: (ExchangeAPIError, "recvWindow must be less than 60000"),
    -2014: (_AUTH, "the API key's format is invalid"),
    -2015: (
        _AUTH,
        "invalid API key, IP or permissions: the key needs 'Enable Futures' and this IP on its list",
    ),
}

_BANNED_UNTIL: Final = re.compile(r"banned until (\d{10,16})")


def binance_sign(total_params: str, secret: str) -> str:
    """``signature``: lowercase hex HMAC-SHA256(secret, the exact query string sent).

    Pure and deterministic; checked against Binance's published vector.
    """
    return hmac.new(secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()


def _integer(value: object, *, field: str) -> int:
    return integer_field(value, venue=VENUE, field=field)


def _retry_after(response: httpx.Response, message: str, now_ms: int) -> tuple[float | None, bool]:
    """The wait Binance asked for, and whether it is a ban (not worth retrying soon)."""
    banned = _BANNED_UNTIL.search(message)
    if banned is not None:
        return max(0.0, (int(banned.group(1)) - now_ms) / 1000), True
    return retry_after_seconds(response.headers), response.status_code == 418


def binance_error(
    code: int | None, message: str, *, response: httpx.Response, now_ms: int
) -> ExchangeAPIError:
    """The exception for Binance's ``{"code", "msg"}`` (or a bare 418/429/5xx status).

    The raw code is kept on ``.code``.
    """
    status = response.status_code
    default = (ExchangeAPIError, "Binance refused the request")
    cls, meaning = default if code is None else _ERRORS.get(code, default)
    if status in {418, 429}:
        cls = RateLimitedError
    elif status >= 500:
        cls = ServiceUnavailableError
    text = (
        f"binance: HTTP {status}: {message}: {meaning}"
        if code is None
        else (f"binance: {code} {message}: {meaning}")
    )
    if cls is RateLimitedError:
        wait, banned = _retry_after(response, message, now_ms)
        return RateLimitedError(
            text, venue=VENUE, code=code, status_code=status, retry_after=wait, transient=not banned
        )
    if cls is ServiceUnavailableError:  # a 503's Retry-After: the retry waits at least that long
        wait = retry_after_seconds(response.headers)
        return ServiceUnavailableError(text, venue=VENUE, code=code, status_code=status, retry_after=wait)
    return cls(text, venue=VENUE, code=code, status_code=status)


@attrs.frozen
class _Asset:
    """One row of ``assets[]``; ``updateTime`` 0 marks a row Binance never updated."""

    asset: str
    walletBalance: Decimal
    marginBalance: Decimal | None = None
    updateTime: Decimal | None = None


@attrs.frozen
class _Account:
    """The account totals we map; every other numeric figure goes to ``extra``."""

    totalMarginBalance: Decimal
    availableBalance: Decimal
    totalWalletBalance: Decimal | None = None
    totalInitialMargin: Decimal | None = None
    totalUnrealizedProfit: Decimal | None = None
    assets: list[_Asset] = attrs.Factory(list)


def _key(value: str) -> str:
    return credential(value, venue=VENUE, name="api_key")


def _secret(value: str) -> str:
    return credential(value, venue=VENUE, name="api_secret")


def _label(value: str | None) -> str:
    return label_or(value, VENUE)


#: ``base_url``: the environment's host unless given (mypy's attrs plugin cannot read a converter
#: that sees the instance, hence the ignore where it is used; the parameter's type is str | None).
_BASE_URL: Final = environment_url(ENVIRONMENTS.get, venue=VENUE)


def _environment(value: object) -> str:
    return one_of(value, ENVIRONMENTS, venue=VENUE, name="environment")


def _recv_window(value: object) -> int:
    return milliseconds(value, venue=VENUE, name="recv_window", most=MAX_RECV_WINDOW - 1)


def stale(row: _Asset) -> bool:
    """A placeholder row: never updated (``updateTime`` 0) and holding nothing."""
    return row.updateTime == 0 and row.walletBalance == 0 and not row.marginBalance


@final
@attrs.frozen(kw_only=True)
class BinanceFutures(NoPickle):
    """A Binance USD-M futures account, read through ``GET /fapi/v2/account``.

    ``environment`` picks the default base URL (``"prod"``, ``"demo"`` or ``"testnet"``, see
    :data:`ENVIRONMENTS`); ``base_url`` overrides it. ``recv_window`` is Binance's
    ``recvWindow`` in milliseconds (< 60000). ``clock`` returns Unix time in nanoseconds.

    >>> binance = BinanceFutures(api_key="...", api_secret="...")     # doctest: +SKIP
    >>> fetch_balance(binance).total                                   # doctest: +SKIP
    Decimal('31.02261200')
    """

    api_key: str = attrs.field(converter=_key, repr=False)
    api_secret: str = attrs.field(converter=_secret, repr=False)
    label: str = attrs.field(default=None, converter=_label)
    environment: str = attrs.field(default="prod", converter=_environment)
    base_url: str = attrs.field(default=None, converter=_BASE_URL)  # type: ignore[misc]  # see _BASE_URL
    recv_window: int = attrs.field(default=5000, converter=_recv_window)
    clock: Callable[[], int] = attrs.field(default=time.time_ns, repr=False, eq=False)

    @property
    def venue(self) -> str:
        """``"binance"``."""
        return VENUE

    @property
    def watch_pace(self) -> WatchPace:
        """One account read per 0.13 s per base URL: Binance counts 2,400 weight a minute per IP, not per
        key, and the read weighs 5, so every account at one base URL shares it (``bb.watch``)."""
        return window_pace(pace_budget(VENUE, self.base_url, "ip"), WEIGHT_PER_MINUTE, 60.0, ACCOUNT_WEIGHT)

    def now_ms(self) -> int:
        """The local clock in Unix milliseconds (without any server offset)."""
        return self.clock() // 1_000_000

    def build_request(self, timestamp_ms: int) -> httpx.Request:
        """The signed account request: ``timestamp``, ``recvWindow``, then ``signature`` last."""
        query = urlencode([("timestamp", str(timestamp_ms)), ("recvWindow", str(self.recv_window))])
        signed = Secret(f"{query}&signature={binance_sign(query, self.api_secret)}")
        headers = {
            "X-MBX-APIKEY": Secret(self.api_key),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        # SignedRequest: its repr (a traceback's locals) masks the signature in the query
        return SignedRequest("GET", f"{self.base_url}{ACCOUNT_PATH}?{signed}", headers=headers)

    def server_time_request(self) -> httpx.Request:
        """The public, unsigned server-time request (read once after a ``-1021``)."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        return httpx.Request("GET", self.base_url + SERVER_TIME_PATH, headers=headers)

    def parse_server_time(self, response: httpx.Response) -> int:
        """Binance's clock in Unix milliseconds, from ``{"serverTime": ms}``."""
        payload = self._checked(response)
        return _integer(payload.get("serverTime"), field="$.serverTime")

    def parse_response(self, response: httpx.Response) -> Balance:
        """The Balance in an account answer, or the exception Binance's error means."""
        return self._balance(self._checked(response))

    def _checked(self, response: httpx.Response) -> dict[str, Any]:
        """The decoded body of a successful answer; any error answer is raised."""
        if response.status_code == 200:
            payload = decode_object(response, venue=VENUE)
        else:  # error pages may be HTML: their status still says what happened
            payload = error_body(response, venue=VENUE)
        self._raise_for_error(response, payload)
        return payload

    def _raise_for_error(self, response: httpx.Response, payload: Mapping[str, Any]) -> None:
        status = response.status_code
        code = payload.get("code")
        if code is not None and "msg" in payload:
            number = _integer(code, field="$.code")
            if number != 200:  # some Binance endpoints say {"code": 200, "msg": "success"}
                raise binance_error(number, str(payload["msg"]), response=response, now_ms=self.now_ms())
        if status in {418, 429}:
            text = "IP banned for ignoring 429 answers" if status == 418 else "too many requests"
            raise binance_error(None, text, response=response, now_ms=self.now_ms())
        if status == 403:
            msg = "binance: HTTP 403: Binance's web application firewall refused the request"
            raise ExchangeAPIError(msg, venue=VENUE, status_code=status)
        if status != 200:
            raise status_error(response, venue=VENUE, message="Binance did not answer the call")

    def _balance(self, payload: Mapping[str, Any]) -> Balance:
        wire = structure(payload, _Account, venue=VENUE, path="$")
        multi = payload.get("multiAssetsMargin")
        if multi is not None and not isinstance(multi, bool):
            msg = "expected true, false or absent"
            raise UnexpectedResponseError(msg, venue=VENUE, field="$.multiAssetsMargin", value=multi)
        currency = "USD" if multi else "USDT"
        rows = [row for row in wire.assets if not stale(row)]
        uncounted: tuple[str, ...] = ()
        if not multi:
            uncounted = tuple(r.asset for r in rows if r.asset != "USDT" and r.walletBalance != 0)
        return Balance(
            label=self.label,
            exchange=VENUE,
            currency=currency,
            total=wire.totalMarginBalance,
            available=wire.availableBalance,
            wallet=wire.totalWalletBalance,
            margin_used=wire.totalInitialMargin,
            unrealized_pnl=wire.totalUnrealizedProfit,
            breakdown={r.asset: Holding(currency=r.asset, total=r.marginBalance) for r in rows},
            extra=extra_figures(payload, skip={"totalMarginBalance", "availableBalance", *NOT_FIGURES}),
            uncounted=uncounted,
            fetched_at=now_utc(),
            raw=payload,
        )

    def _weight_limiter(self) -> RateLimiter:
        # Binance counts request weight per IP, not per key, per minute: one sliding window per
        # base URL (a bucket refilling 40 per second would let a minute exceed 2,400).
        return shared_state(VENUE, self.base_url, "ip").window_limiter("weight", WEIGHT_PER_MINUTE, 60.0)

    def _note_weight(self, limiter: RateLimiter, response: httpx.Response) -> None:
        used = response.headers.get(USED_WEIGHT_HEADER, "")
        if used.isascii() and used.isdigit() and len(used) <= 18:  # int() refuses "²" and 5,000 digits
            limiter.drain(int(used))

    def balance_flow(self) -> Flow:
        """Throttle by IP weight, sign with the (corrected) clock, send, parse.

        A ``-1021`` (timestamp outside recvWindow) reads Binance's server time once, keeps the
        offset for this base URL, re-signs and retries exactly once (docs/decisions.md §8 and §19).
        """
        limiter = self._weight_limiter()

        def account(now: Callable[[], int]) -> SubFlow[Balance]:
            return throttled_call(
                limiter,
                lambda: self.build_request(now()),
                self.parse_response,
                cost=ACCOUNT_WEIGHT,
                note=lambda answer: self._note_weight(limiter, answer),
            )

        def resync() -> SubFlow[None]:
            yield Throttle(limiter, SERVER_TIME_WEIGHT)

            def server_time(answer: httpx.Response) -> int:
                self._note_weight(limiter, answer)
                return self.parse_server_time(answer)

            yield from measure_clock_offset(
                VENUE,
                self.base_url,
                now_ms=self.now_ms,
                request=self.server_time_request(),
                parse=server_time,
            )

        return (
            yield from clock_corrected(
                account,
                venue=VENUE,
                base_url=self.base_url,
                now_ms=self.now_ms,
                is_clock_error=lambda exc: exc.code == -1021,
                resync=resync,
            )
        )
