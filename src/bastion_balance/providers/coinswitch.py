"""CoinSwitch PRO futures: ``GET /trade/api/v2/futures/wallet_balance`` (docs/venues/coinswitch.md).

``total`` = ``total_balance``, ``available`` = ``total_available_balance``, ``wallet`` =
``total_balance``, ``margin_used`` = ``total_blocked_balance``, all of the
``data.base_asset_balances[]`` entry whose ``base_asset`` is the provider's ``base_asset``
(default ``USDT``); its other figures (``total_position_margin``, ``total_open_order_margin``,
which may be negative) are kept in ``extra``. Other settlement assets go into ``breakdown``
(keyed by the asset) and, when not zero, into ``uncounted``; the per-symbol ``data.asset[]``
rows go into ``breakdown`` keyed by symbol, ``total`` = the symbol's ``blocked_balance``.

Requests are signed with Ed25519: hex signature over ``METHOD + unquote_plus(path?query) +
epoch_ms`` with the secret key's 32-byte seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, final
from urllib.parse import unquote_plus

import attrs
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .._convert import structure
from .._models import Balance, Holding
from .._protocol import Flow
from .._state import shared_state
from ..exceptions import (
    ConfigurationError,
    ExchangeAPIError,
    UnexpectedResponseError,
)
from ._common import (
    USER_AGENT,
    NoPickle,
    Secret,
    SignedRequest,
    WatchPace,
    check_base_url,
    credential,
    decode_object,
    error_body,
    error_text,
    extra_figures,
    label_or,
    now_utc,
    pace_budget,
    status_error,
    throttled_call,
    window_pace,
)

__all__ = ["DEFAULT_BASE_URL", "WALLET_BALANCE_PATH", "CoinSwitch", "coinswitch_sign"]

VENUE: Final = "coinswitch"
DEFAULT_BASE_URL: Final = "https://coinswitch.co"
WALLET_BALANCE_PATH: Final = "/trade/api/v2/futures/wallet_balance"

#: wallet_balance: 20 requests per 60 seconds per API key (capacity, units per second).
RATE_LIMIT: Final = (20.0, 60.0)  # 20 calls in any 60 s, per key

_HEX: Final = frozenset("0123456789abcdefABCDEF")

#: HTTP status -> what it means at CoinSwitch (docs/venues/coinswitch.md, 'Errors'). It has no
#: error codes of its own: the class follows the status (401/403 AuthenticationError, 429
#: RateLimitedError, 5xx ServiceUnavailableError, other 4xx ExchangeAPIError, see
#: ``status_error``) and the status is kept on ``.code``.
_MEANINGS: Final[Mapping[int, str]] = {
    401: (
        "bad signature, unknown or revoked API key, or X-AUTH-EPOCH more than 60 s from "
        "CoinSwitch's clock (check the system clock)"
    ),
    403: "the API key may not use this endpoint",
    404: "CoinSwitch does not know the endpoint",
    422: "CoinSwitch refused a parameter",
    429: "rate limit exceeded (wallet_balance: 20 requests per 60 s per key)",
}


def coinswitch_sign(method: str, path_with_query: str, epoch: int | str, secret_hex: str) -> str:
    """X-AUTH-SIGNATURE: hex Ed25519 signature of ``METHOD + unquote_plus(path?query) + epoch``.

    Pure and deterministic (Ed25519 signatures are); ``secret_hex`` is the hex of the 32-byte
    seed. Checked against the local vectors of docs/venues/coinswitch.md, 'Signing'.
    """
    message = f"{method.upper()}{unquote_plus(path_with_query)}{epoch}"
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret_hex))
    return key.sign(message.encode("utf-8")).hex()


@attrs.frozen
class _Totals:
    """``balances`` of one settlement asset: every figure a decimal string."""

    total_balance: Decimal
    total_available_balance: Decimal
    total_blocked_balance: Decimal | None = None
    total_position_margin: Decimal | None = None
    total_open_order_margin: Decimal | None = None


@attrs.frozen
class _SettlementAsset:
    base_asset: str
    balances: _Totals


@attrs.frozen
class _SymbolRow:
    """One ``asset[]`` row: margin locked for one symbol."""

    symbol: str
    base_asset: str | None = None
    exchange: str | None = None
    blocked_balance: Decimal | None = None
    position_margin: Decimal | None = None
    open_order_margin: Decimal | None = None


@attrs.frozen
class _WalletBalance:
    base_asset_balances: list[_SettlementAsset]
    asset: list[_SymbolRow] = attrs.field(factory=list)


def _hex32(value: object, name: str) -> str:
    text = credential(value, venue=VENUE, name=name)
    if len(text) != 64 or not set(text) <= _HEX:  # 32 bytes as hex
        msg = f"coinswitch: {name} must be 64 hex characters (a 32-byte Ed25519 key)"
        raise ConfigurationError(msg)
    return text


def _secret(value: str) -> str:
    return _hex32(value, "api_secret")


def _key(value: str) -> str:
    return credential(value, venue=VENUE, name="api_key")


def _label(value: str | None) -> str:
    return label_or(value, VENUE)


def _base_url(value: str | None) -> str:
    return check_base_url(value, default=DEFAULT_BASE_URL, venue=VENUE)


def _base_asset(value: object) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isalnum():
        msg = f"coinswitch: base_asset must be an asset code such as 'USDT', got {value!r}"
        raise ConfigurationError(msg)
    return value.upper()


def coinswitch_error(response: httpx.Response) -> ExchangeAPIError:
    """The exception for a non-2xx answer; the HTTP status is the ``code``."""
    status = response.status_code
    meaning = _MEANINGS.get(status, "CoinSwitch refused the request")
    if status >= 500:
        meaning = "CoinSwitch had a server error (for a read, safe to retry)"
    said = error_text(error_body(response, venue=VENUE), "message")
    text = f"{said}: {meaning}" if said else meaning
    return status_error(response, venue=VENUE, message=text, code=status)


@final
@attrs.frozen(kw_only=True)
class CoinSwitch(NoPickle):
    """A CoinSwitch PRO futures wallet, read through ``wallet_balance``.

    ``api_key`` is the hex Ed25519 public key CoinSwitch shows, ``api_secret`` the hex of the
    32-byte private seed. ``base_asset`` is the settlement asset whose totals are the Balance
    (default ``USDT``). ``clock`` returns Unix time in nanoseconds (tests inject their own).

    >>> cs = CoinSwitch(api_key="...", api_secret="...")          # doctest: +SKIP
    >>> fetch_balance(cs).total                                   # doctest: +SKIP
    Decimal('60960.82599588')
    """

    api_key: str = attrs.field(converter=_key, repr=False)
    api_secret: str = attrs.field(converter=_secret, repr=False)
    label: str = attrs.field(default=None, converter=_label)
    base_url: str = attrs.field(default=None, converter=_base_url)
    base_asset: str = attrs.field(default="USDT", converter=_base_asset)
    clock: Callable[[], int] = attrs.field(default=time.time_ns, repr=False, eq=False)

    @property
    def venue(self) -> str:
        """``"coinswitch"``."""
        return VENUE

    @property
    def watch_pace(self) -> WatchPace:
        """One wallet_balance read per 3.15 s per key: 20 a minute, as the limiter keeps it (``bb.watch``)."""
        return window_pace(pace_budget(VENUE, self.base_url, self.api_key), *RATE_LIMIT)

    def build_request(self, epoch_ms: int) -> httpx.Request:
        """The signed wallet_balance request at ``epoch_ms`` (Unix milliseconds)."""
        headers = {
            "X-AUTH-APIKEY": Secret(self.api_key),
            "X-AUTH-SIGNATURE": Secret(
                coinswitch_sign("GET", WALLET_BALANCE_PATH, epoch_ms, self.api_secret)
            ),
            "X-AUTH-EPOCH": str(epoch_ms),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        return SignedRequest("GET", self.base_url + WALLET_BALANCE_PATH, headers=headers)

    def parse_response(self, response: httpx.Response) -> Balance:
        """The Balance in a wallet_balance answer, or the exception its status means."""
        if not 200 <= response.status_code < 300:
            raise coinswitch_error(response)
        payload = decode_object(response, venue=VENUE)
        data = payload.get("data")
        if not isinstance(data, dict):
            msg = "the data member is missing or not an object"
            raise UnexpectedResponseError(msg, venue=VENUE, field="$.data", value=data)
        wire = structure(data, _WalletBalance, venue=VENUE, path="$.data")
        return self._balance(wire, data, payload)

    def _balance(self, wire: _WalletBalance, data: Mapping[str, Any], payload: Any) -> Balance:  # noqa: ANN401
        counted: _SettlementAsset | None = None
        counted_raw: Any = None
        breakdown: dict[str, Holding] = {}
        uncounted: list[str] = []
        for index, entry in enumerate(wire.base_asset_balances):
            if entry.base_asset == self.base_asset:
                if counted is not None:
                    msg = f"{self.base_asset!r} appears twice in base_asset_balances"
                    field = f"$.data.base_asset_balances[{index}].base_asset"
                    raise UnexpectedResponseError(msg, venue=VENUE, field=field, value=entry.base_asset)
                counted, counted_raw = entry, data["base_asset_balances"][index]["balances"]
                continue
            _put(breakdown, entry.base_asset, _holding(entry), f"base_asset_balances[{index}]")
            if entry.balances.total_balance != 0:
                uncounted.append(entry.base_asset)
        if counted is None:
            reported = [entry.base_asset for entry in wire.base_asset_balances]
            msg = (
                f"no base_asset_balances entry for base_asset {self.base_asset!r}; the account "
                f"reports {reported or 'none'} (pass base_asset= to count another one)"
            )
            raise UnexpectedResponseError(
                msg, venue=VENUE, field="$.data.base_asset_balances", value=reported
            )
        for index, row in enumerate(wire.asset):
            holding = Holding(currency=row.base_asset or self.base_asset, total=row.blocked_balance)
            _put(breakdown, row.symbol, holding, f"asset[{index}]")
        totals = counted.balances
        return Balance(
            label=self.label,
            exchange=VENUE,
            currency=self.base_asset,
            total=totals.total_balance,
            available=totals.total_available_balance,
            wallet=totals.total_balance,
            margin_used=totals.total_blocked_balance,
            breakdown=breakdown,
            extra=extra_figures(counted_raw, skip={"total_balance", "total_available_balance"}),
            uncounted=tuple(uncounted),
            fetched_at=now_utc(),
            raw=payload,
        )

    def balance_flow(self) -> Flow:
        """Wait for this key's 20-per-minute budget, sign with the current epoch, send, parse."""
        state = shared_state(VENUE, self.base_url, self.api_key)
        limiter = state.window_limiter("wallet_balance", *RATE_LIMIT)
        return (
            yield from throttled_call(
                limiter, lambda: self.build_request(self.clock() // 1_000_000), self.parse_response
            )
        )


def _holding(entry: _SettlementAsset) -> Holding:
    return Holding(
        currency=entry.base_asset,
        total=entry.balances.total_balance,
        available=entry.balances.total_available_balance,
    )


def _put(breakdown: dict[str, Holding], key: str, holding: Holding, where: str) -> None:
    """Add one breakdown row; a name seen twice is an error, never a silent overwrite."""
    if key in breakdown:
        msg = f"{key!r} appears twice in the breakdown"
        raise UnexpectedResponseError(msg, venue=VENUE, field=f"$.data.{where}", value=key)
    breakdown[key] = holding
