"""Bybit V5: ``GET /v5/account/wallet-balance?accountType=UNIFIED`` (docs/venues/bybit.md).

``total`` = ``totalEquity``, ``available`` = ``totalAvailableBalance``, ``wallet`` =
``totalWalletBalance``, ``margin_used`` = ``totalInitialMargin``, ``unrealized_pnl`` =
``totalPerpUPL``, all in ``USD``, taken as Bybit sends them (never recomputed, even where they
differ from Bybit's formulas in the last digit). ``""`` is a missing figure, never zero.
``breakdown`` holds ``coin[]`` keyed by coin, each valued at its ``equity`` in that coin.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, final
from urllib.parse import urlencode

import attrs
import httpx

from .._convert import structure
from .._models import Balance, Holding
from .._protocol import Flow
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
    "ACCOUNT_TYPES",
    "DEFAULT_BASE_URL",
    "ENVIRONMENTS",
    "SERVER_TIME_PATH",
    "WALLET_BALANCE_PATH",
    "Bybit",
    "bybit_sign",
]

VENUE: Final = "bybit"
DEFAULT_BASE_URL: Final = "https://api.bybit.com"
WALLET_BALANCE_PATH: Final = "/v5/account/wallet-balance"
SERVER_TIME_PATH: Final = "/v5/market/time"

#: ``environment=`` -> base URL (docs/venues/bybit.md, 'Hosts'). Regional sites are separate Bybit
#: entities: a key made on one works only on its own host (``10003`` elsewhere).
ENVIRONMENTS: Final[Mapping[str, str]] = {
    "prod": DEFAULT_BASE_URL,
    "bytick": "https://api.bytick.com",
    "testnet": "https://api-testnet.bybit.com",
    "demo": "https://api-demo.bybit.com",
    "demo-testnet": "https://api-demo-testnet.bybit.com",
    "nl": "https://api.bybit.nl",
    "tr": "https://api.bybit.tr",
    "kz": "https://api.bybit.kz",
    "ge": "https://api.bybitgeorgia.ge",
    "ae": "https://api.bybit.ae",
    "eu": "https://api.bybit.eu",
    "id": "https://api.bybit.id",
    "jp": "https://api.manepa.jp",
}

#: ``UNIFIED`` for the Unified Trading Account; ``CONTRACT`` / ``SPOT`` for classic accounts,
#: whose account-wide totals Bybit leaves empty (that answer raises a typed error).
ACCOUNT_TYPES: Final = ("UNIFIED", "CONTRACT", "SPOT")

#: wallet-balance is limited per UID to 50 calls per second; the UID is unknown before the
#: first call, so the client-side bucket is kept per API key (one key belongs to one UID).
CALLS_PER_SECOND: Final = 50
_MAX_HEADER_DIGITS: Final = 18
IP_BAN_SECONDS: Final = 600.0
TOTALS: Final = (
    "totalEquity",
    "totalAvailableBalance",
    "totalWalletBalance",
    "totalMarginBalance",
    "totalInitialMargin",
    "totalPerpUPL",
)

TIMESTAMP_HELP: Final = (
    "Bybit refused the timestamp as outside recv_window even after reading its server time: "
    "the local clock jumps or the network is slow; synchronise the clock (NTP) or raise recv_window"
)
CLASSIC_HELP: Final = (
    "Bybit sent no account-wide totals (all empty): this is a classic (non-unified) account or "
    "an isolated-margin one, which has no account-wide equity; upgrade to the Unified Trading "
    "Account, or read the coins in raw"
)

_AUTH: Final = AuthenticationError
_ERRORS: Final[Mapping[int, tuple[type[ExchangeAPIError], str]]] = {
    10001: (ExchangeAPIError, "Bybit refused a parameter"),
    10002: (_AUTH, TIMESTAMP_HELP),
    10003: (_AUTH, "the API key is invalid, or belongs to another environment or region"),
    10004: (_AUTH, "the signature does not verify: check the API secret"),
    10005: (_AUTH, "permission denied: the key needs read access to 'Assets' / wallet"),
    10006: (RateLimitedError, "too many calls for this UID"),
    10007: (_AUTH, "user authentication failed"),
    10010: (_AUTH, "this IP is not on the key's IP list"),
    10016: (ServiceUnavailableError, "Bybit had a server error"),
    10017: (ExchangeAPIError, "Bybit does not know the endpoint"),
    10028: (ExchangeAPIError, "this endpoint needs a Unified Trading Account"),
    33004: (_AUTH, "the API key has expired"),
    -2015: (_AUTH, "the API key has expired"),
}


def bybit_sign(timestamp_ms: int | str, api_key: str, recv_window: int | str, query: str, secret: str) -> str:
    """X-BAPI-SIGN: hex HMAC-SHA256(secret, timestamp + api_key + recv_window + query).

    Pure and deterministic; checked against the local vector of docs/venues/bybit.md, 'Signing and the clock'.
    """
    message = f"{timestamp_ms}{api_key}{recv_window}{query}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _integer(value: object, *, field: str) -> int:
    """A JSON integer or a string of one (Bybit sends both, by value)."""
    return integer_field(value, venue=VENUE, field=field)


def _digits(text: str) -> bool:
    """A header holding a plain count or Unix time: ASCII digits, few enough to convert safely.

    ``str.isdigit()`` alone also passes ``"²"`` (which ``int()`` refuses) and thousands of
    digits (which ``int()`` or the float division refuses).
    """
    return text.isascii() and text.isdigit() and len(text) <= _MAX_HEADER_DIGITS


def reset_wait(headers: httpx.Headers, now_ms: int) -> float | None:
    """Seconds until ``X-Bapi-Limit-Reset-Timestamp`` (ms), else ``Retry-After``, else None."""
    reset = headers.get("X-Bapi-Limit-Reset-Timestamp", "")
    if _digits(reset):
        return max(0.0, (int(reset) - now_ms) / 1000)
    return retry_after_seconds(headers)


def bybit_error(code: int, message: str, *, response: httpx.Response, now_ms: int) -> ExchangeAPIError:
    """The exception for a non-zero ``retCode``; the raw code is kept on ``.code``."""
    cls, meaning = _ERRORS.get(code, (ExchangeAPIError, "Bybit refused the request"))
    text = f"bybit: {code} {message}: {meaning}"
    status = response.status_code
    if cls is RateLimitedError:
        wait = reset_wait(response.headers, now_ms)
        return RateLimitedError(text, venue=VENUE, code=code, status_code=status, retry_after=wait)
    if cls is ServiceUnavailableError:  # a Retry-After with it: the retry waits at least that long
        wait = retry_after_seconds(response.headers)
        return ServiceUnavailableError(text, venue=VENUE, code=code, status_code=status, retry_after=wait)
    return cls(text, venue=VENUE, code=code, status_code=status)


def http_error(response: httpx.Response, *, now_ms: int) -> ExchangeAPIError:
    """The exception for a non-200 answer without a Bybit envelope."""
    status = response.status_code
    if status == 401:
        msg = "bybit: HTTP 401: invalid API key or missing authentication headers"
        return AuthenticationError(msg, venue=VENUE, status_code=status)
    if status == 403:
        msg = (
            "bybit: HTTP 403: access too frequent for this IP (600 requests per 5 s; wait at least "
            "10 minutes), or the IP is in a region Bybit refuses"
        )
        return RateLimitedError(
            msg, venue=VENUE, status_code=status, retry_after=IP_BAN_SECONDS, transient=False
        )
    if status == 429:
        msg = "bybit: HTTP 429: Bybit's system-level protection asks to slow down"
        return RateLimitedError(
            msg, venue=VENUE, status_code=status, retry_after=reset_wait(response.headers, now_ms)
        )
    return status_error(response, venue=VENUE, message="Bybit did not answer the call")


@attrs.frozen
class _Coin:
    """One row of ``coin[]``; deprecated figures (``availableToWithdraw`` ...) are ignored."""

    coin: str
    equity: Decimal | None = None


@attrs.frozen
class _Wallet:
    """``result.list[0]``: the two required totals and the optional ones we map."""

    totalEquity: Decimal
    totalAvailableBalance: Decimal
    totalWalletBalance: Decimal | None = None
    totalInitialMargin: Decimal | None = None
    totalPerpUPL: Decimal | None = None
    coin: list[_Coin] = attrs.Factory(list)


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


def _account_type(value: object) -> str:
    return one_of(value, ACCOUNT_TYPES, venue=VENUE, name="account_type")


def _recv_window(value: object) -> int:
    return milliseconds(value, venue=VENUE, name="recv_window", most=60_000)


def _empty(value: object) -> bool:
    return value is None or value == ""


@final
@attrs.frozen(kw_only=True)
class Bybit(NoPickle):
    """A Bybit V5 account, read through ``GET /v5/account/wallet-balance``.

    ``environment`` picks the default base URL (``"prod"``, ``"testnet"``, ``"demo"``, a
    regional site such as ``"eu"`` ..., see :data:`ENVIRONMENTS`); ``base_url`` overrides it.
    ``recv_window`` is ``X-BAPI-RECV-WINDOW`` in milliseconds. ``clock`` returns Unix ns.

    >>> bybit = Bybit(api_key="...", api_secret="...")               # doctest: +SKIP
    >>> fetch_balance(bybit).total                                    # doctest: +SKIP
    Decimal('92255.96988644')
    """

    api_key: str = attrs.field(converter=_key, repr=False)
    api_secret: str = attrs.field(converter=_secret, repr=False)
    account_type: str = attrs.field(default="UNIFIED", converter=_account_type)
    label: str = attrs.field(default=None, converter=_label)
    environment: str = attrs.field(default="prod", converter=_environment)
    base_url: str = attrs.field(default=None, converter=_BASE_URL)  # type: ignore[misc]  # see _BASE_URL
    recv_window: int = attrs.field(default=5000, converter=_recv_window)
    clock: Callable[[], int] = attrs.field(default=time.time_ns, repr=False, eq=False)

    @property
    def venue(self) -> str:
        """``"bybit"``."""
        return VENUE

    @property
    def watch_pace(self) -> WatchPace:
        """One wallet-balance read per 0.025 s per key: 50 a second, as the limiter keeps it (bb.watch)."""
        return window_pace(pace_budget(VENUE, self.base_url, self.api_key), CALLS_PER_SECOND, 1.0)

    def now_ms(self) -> int:
        """The local clock in Unix milliseconds (without any server offset)."""
        return self.clock() // 1_000_000

    def build_request(self, timestamp_ms: int) -> httpx.Request:
        """The signed wallet-balance request; X-BAPI-SIGN covers the exact query sent."""
        query = urlencode([("accountType", self.account_type)])
        sign = Secret(bybit_sign(timestamp_ms, self.api_key, self.recv_window, query, self.api_secret))
        headers = {
            "X-BAPI-API-KEY": Secret(self.api_key),
            "X-BAPI-TIMESTAMP": str(timestamp_ms),
            "X-BAPI-RECV-WINDOW": str(self.recv_window),
            "X-BAPI-SIGN": sign,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        return SignedRequest("GET", f"{self.base_url}{WALLET_BALANCE_PATH}?{query}", headers=headers)

    def server_time_request(self) -> httpx.Request:
        """The public, unsigned server-time request (read once after a ``10002``)."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        return httpx.Request("GET", self.base_url + SERVER_TIME_PATH, headers=headers)

    def parse_server_time(self, response: httpx.Response) -> int:
        """Bybit's clock in Unix milliseconds: ``result.timeNano`` // 10**6, else ``time``."""
        payload, result = self._envelope(response)
        nano = result.get("timeNano")
        if not _empty(nano):
            return _integer(nano, field="$.result.timeNano") // 1_000_000
        return _integer(payload.get("time"), field="$.time")

    def parse_response(self, response: httpx.Response) -> Balance:
        """The Balance in a wallet-balance answer, or the exception its ``retCode`` means."""
        payload, result = self._envelope(response)
        accounts = result.get("list")
        if not isinstance(accounts, list) or not accounts or not isinstance(accounts[0], dict):
            msg = "expected a non-empty list of account objects"
            raise UnexpectedResponseError(msg, venue=VENUE, field="$.result.list", value=accounts)
        return self._balance(accounts[0], payload)

    def _envelope(self, response: httpx.Response) -> tuple[dict[str, Any], dict[str, Any]]:
        """The payload and its ``result`` after checking status and ``retCode``."""
        status = response.status_code
        if status != 200 and not _has_envelope(response):
            raise http_error(response, now_ms=self.now_ms())
        payload = decode_object(response, venue=VENUE)
        if "retCode" not in payload:
            msg = "the retCode member is missing"
            raise UnexpectedResponseError(msg, venue=VENUE, field="$.retCode", value=None)
        code = _integer(payload["retCode"], field="$.retCode")
        if code != 0:
            message = str(payload.get("retMsg", ""))
            raise bybit_error(code, message, response=response, now_ms=self.now_ms())
        if status != 200:
            raise http_error(response, now_ms=self.now_ms())
        result = payload.get("result")
        if not isinstance(result, dict):
            msg = "the result member is missing or not an object"
            raise UnexpectedResponseError(msg, venue=VENUE, field="$.result", value=result)
        return payload, result

    def _balance(self, account: Mapping[str, Any], payload: Mapping[str, Any]) -> Balance:
        path = "$.result.list[0]"
        if all(_empty(account.get(name)) for name in TOTALS):
            raise UnexpectedResponseError(
                CLASSIC_HELP, venue=VENUE, field=f"{path}.totalEquity", value=account.get("totalEquity")
            )
        wire = structure(account, _Wallet, venue=VENUE, path=path)
        return Balance(
            label=self.label,
            exchange=VENUE,
            currency="USD",
            total=wire.totalEquity,
            available=wire.totalAvailableBalance,
            wallet=wire.totalWalletBalance,
            margin_used=wire.totalInitialMargin,
            unrealized_pnl=wire.totalPerpUPL,
            breakdown={c.coin: Holding(currency=c.coin, total=c.equity) for c in wire.coin},
            extra=extra_figures(account, skip={"totalEquity", "totalAvailableBalance"}),
            fetched_at=now_utc(),
            raw=payload,
        )

    def _limiter(self) -> RateLimiter:
        state = shared_state(VENUE, self.base_url, self.api_key)
        return state.window_limiter("wallet-balance", CALLS_PER_SECOND, 1.0)  # 50 in any second

    def _note_limit(self, limiter: RateLimiter, response: httpx.Response) -> None:
        remaining = response.headers.get("X-Bapi-Limit-Status", "")
        if _digits(remaining):
            limiter.drain(max(0, limiter.capacity - int(remaining)))

    def balance_flow(self) -> Flow:
        """Throttle per key, sign with the (corrected) clock, send, parse.

        A ``10002`` (timestamp outside recv_window) reads Bybit's server time once, keeps the
        offset for this base URL, re-signs and retries exactly once (docs/decisions.md §8 and §19).
        """
        limiter = self._limiter()

        def wallet(now: Callable[[], int]) -> SubFlow[Balance]:
            return throttled_call(
                limiter,
                lambda: self.build_request(now()),
                self.parse_response,
                note=lambda answer: self._note_limit(limiter, answer),
            )

        def resync() -> SubFlow[None]:
            return measure_clock_offset(
                VENUE,
                self.base_url,
                now_ms=self.now_ms,
                request=self.server_time_request(),
                parse=self.parse_server_time,
            )

        return (
            yield from clock_corrected(
                wallet,
                venue=VENUE,
                base_url=self.base_url,
                now_ms=self.now_ms,
                is_clock_error=lambda exc: exc.code == 10002,
                resync=resync,
            )
        )


def _has_envelope(response: httpx.Response) -> bool:
    return "retCode" in error_body(response, venue=VENUE)
