"""Kraken spot: ``POST /0/private/TradeBalance`` (docs/venues/kraken.md).

``total`` = ``e`` (equity = trade balance + unrealized P/L), ``available`` = ``mf`` (free
margin), ``wallet`` = ``tb``, ``margin_used`` = ``m``, ``unrealized_pnl`` = ``n``; every other
figure (``eb`` all holdings, ``c``, ``v``, ``ml``, ``mfo``, ``uv`` ...) is kept in ``extra``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, Literal, final
from urllib.parse import urlencode

import attrs
import httpx

from .._convert import figures
from .._models import Balance
from .._protocol import Acquire, Flow
from .._state import shared_state
from ..exceptions import (
    AuthenticationError,
    ConfigurationError,
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
    WatchPace,
    check_base_url,
    counter_pace,
    credential,
    decode_object,
    label_or,
    now_utc,
    one_of,
    pace_budget,
    status_error,
    throttled_call,
)

__all__ = ["DEFAULT_BASE_URL", "TRADE_BALANCE_PATH", "Kraken", "kraken_sign"]

VENUE: Final = "kraken"
DEFAULT_BASE_URL: Final = "https://api.kraken.com"
TRADE_BALANCE_PATH: Final = "/0/private/TradeBalance"

#: REST call counter per API key: (maximum, decay per second), by verification tier.
TIERS: Final[Mapping[str, tuple[float, float]]] = {
    "starter": (15, 0.33),
    "intermediate": (20, 0.5),
    "pro": (20, 1.0),
}

#: Calls kept free below the tier's maximum: a call is counted by Kraken when it arrives, a
#: little after we booked it.
COUNTER_MARGIN: Final = 1

#: Kraken's asset codes -> the common currency names (the venue's name is kept where unknown).
ASSET_ALIASES: Final[Mapping[str, str]] = {
    "ZUSD": "USD",
    "ZEUR": "EUR",
    "ZGBP": "GBP",
    "ZCAD": "CAD",
    "ZJPY": "JPY",
    "ZAUD": "AUD",
    "ZCHF": "CHF",
    "XXBT": "BTC",
    "XBT": "BTC",
    "XETH": "ETH",
    "XXDG": "DOGE",
    "XDG": "DOGE",
    "XXRP": "XRP",
    "XLTC": "LTC",
    "XXLM": "XLM",
    "XXMR": "XMR",
    "XETC": "ETC",
    "XZEC": "ZEC",
}

NONCE_HELP: Final = (
    "Kraken refused the nonce as not larger than the last one it saw for this key. "
    "bastion_balance sends Unix time in microseconds, larger than the millisecond nonces of "
    "krakenex and ccxt, so a key used with them keeps working; a key that has seen larger "
    "nonces (python-kraken-sdk uses 1e-8 s units) must be replaced, or raise the key's "
    "'nonce window' in Kraken's API settings if several programs share it."
)

_AUTH: Final = AuthenticationError
_ERRORS: Final[Mapping[str, tuple[type[ExchangeAPIError], str]]] = {
    "EAPI:Invalid key": (_AUTH, "the API key is unknown, revoked or mistyped"),
    "EAPI:Invalid signature": (_AUTH, "the signature does not verify: check the API secret"),
    "EAPI:Invalid nonce": (_AUTH, NONCE_HELP),
    "EGeneral:Permission denied": (
        _AUTH,
        "the key lacks a permission: grant 'Query Funds' and 'Query open orders & trades'",
    ),
    "EAuth:Failed": (_AUTH, "authentication failed"),
    "EGeneral:Temporary lockout": (
        _AUTH,
        "locked out for some minutes after repeated invalid key, signature or nonce errors",
    ),
    "EAPI:Rate limit exceeded": (RateLimitedError, "the key's REST call counter is full"),
    "EService:Throttled": (RateLimitedError, "too many concurrent requests"),
    "EService:Unavailable": (ServiceUnavailableError, "Kraken is unavailable"),
    "EService:Busy": (ServiceUnavailableError, "Kraken is busy"),
    "EService:Deadline elapsed": (ServiceUnavailableError, "Kraken's deadline elapsed"),
    "EGeneral:Internal error": (ServiceUnavailableError, "Kraken had an internal error"),
    "EGeneral:Invalid arguments": (ExchangeAPIError, "Kraken refused the arguments (asset?)"),
    "EQuery:Unknown asset": (ExchangeAPIError, "Kraken does not know the asset"),
    "EQuery:Unknown asset pair": (ExchangeAPIError, "Kraken does not know a pair asked for (check pairs=)"),
    "EAPI:Bad request": (ExchangeAPIError, "Kraken refused the request"),
    "EGeneral:Unknown method": (ExchangeAPIError, "Kraken does not know the endpoint"),
}


def kraken_sign(uri_path: str, nonce: int | str, postdata: str, secret_b64: str) -> str:
    """API-Sign: base64(HMAC-SHA512(b64decode(secret), path + SHA256(nonce + postdata))).

    Pure and deterministic; checked against Kraken's published vector.
    """
    inner = hashlib.sha256(f"{nonce}{postdata}".encode()).digest()
    key = base64.b64decode(secret_b64, validate=True)
    digest = hmac.new(key, uri_path.encode() + inner, hashlib.sha512).digest()
    return base64.b64encode(digest).decode("ascii")


def error_key(message: str) -> str:
    """``"EService: Throttled: 1700000000"`` -> ``"EService:Throttled"``."""
    parts = [part.strip() for part in message.split(":")]
    return ":".join(parts[:2])


_MAX_STAMP_DIGITS: Final = 18


def _throttled_for(message: str, now_s: int) -> float | None:
    parts = [part.strip() for part in message.split(":")]
    # ASCII digits only ("²".isdigit() is true but int() refuses it), and few enough that
    # int() takes them and the wait fits a float: a Unix time in seconds has 10.
    stamp = parts[2] if len(parts) >= 3 else ""
    if stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_STAMP_DIGITS:
        return float(max(0, int(stamp) - now_s))  # float-ok: a wait in seconds
    return None


def kraken_error(message: str, *, status_code: int, now_s: int) -> ExchangeAPIError:
    """The exception for one string of Kraken's ``error`` array; the raw string is ``code``."""
    cls, meaning = _ERRORS.get(error_key(message), (ExchangeAPIError, "Kraken refused the request"))
    text = f"kraken: {message}: {meaning}"
    if cls is RateLimitedError:
        return RateLimitedError(
            text,
            venue=VENUE,
            code=message,
            status_code=status_code,
            retry_after=_throttled_for(message, now_s),
        )
    return cls(text, venue=VENUE, code=message, status_code=status_code)


def canonical_currency(asset: str) -> str:
    """Kraken's asset code as the common currency name (``ZUSD`` -> ``USD``)."""
    return ASSET_ALIASES.get(asset, asset)


@attrs.frozen
class _TradeBalance:
    """TradeBalance ``result``: every figure a decimal string; ``ml``/``mfo``/``uv`` optional."""

    e: Decimal
    mf: Decimal
    eb: Decimal | None = None
    tb: Decimal | None = None
    m: Decimal | None = None
    n: Decimal | None = None
    c: Decimal | None = None
    v: Decimal | None = None
    ml: Decimal | None = None
    mfo: Decimal | None = None
    uv: Decimal | None = None


def _secret(value: str) -> str:
    secret = credential(value, venue=VENUE, name="api_secret")
    try:
        base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        msg = "kraken: api_secret must be the base64 private key shown by Kraken"
        raise ConfigurationError(msg) from None
    return secret


def _key(value: str) -> str:
    return credential(value, venue=VENUE, name="api_key")


def _otp(value: str | None) -> str | None:
    return None if value is None else credential(value, venue=VENUE, name="otp")


def _label(value: str | None) -> str:
    return label_or(value, VENUE)


def _base_url(value: str | None) -> str:
    return check_base_url(value, default=DEFAULT_BASE_URL, venue=VENUE)


def _tier(value: object) -> str:
    return one_of(value, TIERS, venue=VENUE, name="tier")


def _asset(value: object) -> str:
    if not isinstance(value, str) or not value.isalnum():
        msg = f"kraken: asset must be a Kraken asset code such as 'ZUSD', got {value!r}"
        raise ConfigurationError(msg)
    return value


@final
@attrs.frozen(kw_only=True)
class Kraken(NoPickle):
    """A Kraken spot account, read through ``TradeBalance``.

    ``asset`` is the valuation currency of every figure (default ``ZUSD``, reported as
    ``USD``); ``otp`` is only for keys with two-factor protection; ``tier`` picks the client-side
    call-counter limit. ``clock`` returns Unix time in nanoseconds (tests inject their own).

    >>> kraken = Kraken(api_key="...", api_secret="...")          # doctest: +SKIP
    >>> fetch_balance(kraken).total                               # doctest: +SKIP
    Decimal('382.2032')
    """

    api_key: str = attrs.field(converter=_key, repr=False)
    api_secret: str = attrs.field(converter=_secret, repr=False)
    label: str = attrs.field(default=None, converter=_label)
    base_url: str = attrs.field(default=None, converter=_base_url)
    asset: str = attrs.field(default="ZUSD", converter=_asset)
    otp: str | None = attrs.field(default=None, converter=_otp, repr=False)
    tier: Literal["starter", "intermediate", "pro"] = attrs.field(default="starter", converter=_tier)
    clock: Callable[[], int] = attrs.field(default=time.time_ns, repr=False, eq=False)

    @property
    def venue(self) -> str:
        """``"kraken"``."""
        return VENUE

    @property
    def currency(self) -> str:
        """The currency every figure is valued in (the ``asset`` parameter, canonical)."""
        return canonical_currency(self.asset)

    @property
    def watch_pace(self) -> WatchPace:
        """One TradeBalance per ``1 / decay`` seconds per key (3.03 s on the starter tier): the
        rate the tier's call counter decays at, so a watch never fills it (``bb.watch``)."""
        return counter_pace(pace_budget(VENUE, self.base_url, self.api_key), TIERS[self.tier][1])

    def build_request(self, nonce: int) -> httpx.Request:
        """The signed, form-encoded TradeBalance request for ``nonce``."""
        fields: list[tuple[str, str]] = [("nonce", str(nonce)), ("asset", self.asset)]
        if self.otp is not None:
            fields.append(("otp", self.otp))
        body = urlencode(fields)
        headers = {
            "API-Key": Secret(self.api_key),
            "API-Sign": Secret(kraken_sign(TRADE_BALANCE_PATH, nonce, body, self.api_secret)),
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        return SignedRequest(
            "POST", self.base_url + TRADE_BALANCE_PATH, headers=headers, content=body.encode()
        )

    def parse_response(self, response: httpx.Response) -> Balance:
        """The Balance in a TradeBalance answer, or the exception its ``error`` array means."""
        status = response.status_code
        if status >= 500 or status == 429:
            raise status_error(response, venue=VENUE, message="Kraken did not answer the call")
        payload = decode_object(response, venue=VENUE)
        errors = payload.get("error", [])
        if errors.__class__ is not list or errors:  # the common answer: "error": []
            if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
                msg = "the error member is not a list of strings"
                raise UnexpectedResponseError(msg, venue=VENUE, field="$.error", value=errors)
            failures = [e for e in errors if not e.startswith("W")]
            if failures:
                raise kraken_error(failures[0], status_code=status, now_s=self.clock() // 10**9)
        if status != 200:
            raise status_error(response, venue=VENUE, message="unexpected status")
        result = payload.get("result")
        if not isinstance(result, dict):
            msg = "the result member is missing or not an object"
            raise UnexpectedResponseError(msg, venue=VENUE, field="$.result", value=result)
        return self._balance(result, payload)

    def _balance(self, result: dict[str, Any], payload: Mapping[str, Any]) -> Balance:
        found = figures(result, _TradeBalance, venue=VENUE, path="$.result")
        extra = found.copy()
        del extra["e"], extra["mf"]
        return Balance(
            label=self.label,
            exchange=VENUE,
            currency=self.currency,
            total=found["e"],
            available=found["mf"],
            wallet=found.get("tb"),
            margin_used=found.get("m"),
            unrealized_pnl=found.get("n"),
            extra=extra,
            fetched_at=now_utc(),
            raw=payload,
        )

    def balance_flow(self) -> Flow:
        """Take this key's turn, throttle, sign with a fresh nonce, send, parse.

        One TradeBalance is in flight per key per process (docs/decisions.md §10), so nonces reach
        Kraken in order. The call counter is booked inside the turn, just before the call is
        signed and sent, so calls reach Kraken as far apart as they were booked; it keeps one
        call of margin below the tier's maximum for the time a request takes to arrive. A stale
        nonce gets exactly one fresh re-sign, booked as one more call.
        """
        state = shared_state(VENUE, self.base_url, self.api_key)
        most, decay = TIERS[self.tier]
        limiter = state.limiter("calls", most - COUNTER_MARGIN, decay)
        yield Acquire(state.inflight)  # held until the flow ends; the driver releases it
        for attempt in range(2):
            try:
                return (
                    yield from throttled_call(
                        limiter,
                        lambda: self.build_request(state.nonce.next(self.clock() // 1000)),
                        self.parse_response,
                        drains=_counter_full,  # not for "EService:Throttled": that is concurrency
                    )
                )
            except AuthenticationError as exc:
                if attempt or error_key(str(exc.code)) != "EAPI:Invalid nonce":
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


def _counter_full(exc: RateLimitedError) -> bool:
    """Kraken says this key's call counter is full."""
    return error_key(str(exc.code)) == "EAPI:Rate limit exceeded"
