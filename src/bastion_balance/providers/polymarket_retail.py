"""Polymarket US retail: ``GET /v1/account/balances`` (docs/venues/polymarket-us-retail.md).

The answer is ``{"balances": [UserBalance, ...]}``, one entry per currency, with JSON numbers
(decoded straight to Decimal, digit for digit). For the entry whose ``currency`` is the
provider's ``currency`` (default ``USD``): ``total`` = ``currentBalance + assetNotional`` (cash
plus securities at notional: the venue sends no total), ``available`` = ``buyingPower``, ``wallet`` =
``currentBalance``, ``margin_used`` = ``marginRequirement``; every other numeric figure of the
entry is kept in ``extra``. Other currencies' entries go into ``breakdown`` keyed by currency
(and, when not zero, into ``uncounted``).

Requests are signed with Ed25519: ``X-PM-Signature`` = base64 of the signature over
``timestamp_ms + METHOD + path`` (the path without the query).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, final

import attrs
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .._convert import structure
from .._decimal import exact_sum
from .._models import Balance, Holding
from .._protocol import Flow
from .._state import shared_state
from ..exceptions import ConfigurationError, ExchangeAPIError, UnexpectedResponseError
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
    error_code,
    error_text,
    extra_figures,
    label_or,
    now_utc,
    pace_budget,
    status_error,
    throttled_call,
    window_pace,
)

__all__ = ["BALANCES_PATH", "DEFAULT_BASE_URL", "PolymarketUSRetail", "polymarket_retail_sign"]

VENUE: Final = "polymarket_us_retail"
DEFAULT_BASE_URL: Final = "https://api.polymarket.us"
BALANCES_PATH: Final = "/v1/account/balances"

#: 20 requests per second per API key, all authenticated endpoints (capacity, units/s).
RATE_LIMIT: Final = (20.0, 1.0)  # 20 requests in any second, per key

_SEED_BYTES: Final = 32
_KEYPAIR_BYTES: Final = 64

#: HTTP status -> what it means at Polymarket US retail. The class follows the status (401
#: and 403 AuthenticationError, 429 RateLimitedError, 5xx ServiceUnavailableError, other 4xx
#: ExchangeAPIError); ``.code`` is the body's ``code``/``status`` when sent, else the status.
_MEANINGS: Final[Mapping[int, str]] = {
    400: "Polymarket refused the request",
    401: (
        "unknown key id, bad signature, or X-PM-Timestamp more than 30 s from Polymarket's "
        "clock (check the system clock)"
    ),
    403: "the key may not read account balances (permission denied)",
    404: "Polymarket does not know the endpoint",
    429: "rate limit exceeded (20 requests per second per API key; no Retry-After is sent)",
}


def _seed(secret_b64: str) -> bytes:
    """The 32-byte Ed25519 seed of a base64 secret (bare seed, or seed followed by public key)."""
    raw = base64.b64decode(secret_b64, validate=True)
    if len(raw) not in {_SEED_BYTES, _KEYPAIR_BYTES}:
        msg = f"an Ed25519 secret key is 32 or 64 bytes, got {len(raw)}"
        raise ValueError(msg)
    return raw[:_SEED_BYTES]


def polymarket_retail_sign(timestamp_ms: int | str, method: str, path: str, secret_b64: str) -> str:
    """X-PM-Signature: base64(Ed25519.sign(seed, utf8(timestamp + METHOD + path))).

    ``path`` is the URL path without query; ``secret_b64`` is base64 of the 32-byte seed or of
    the 64-byte seed-and-public-key form. Pure and deterministic; checked against the local
    vector in docs/venues/polymarket-us-retail.md, 'Signing'.
    """
    key = Ed25519PrivateKey.from_private_bytes(_seed(secret_b64))
    signature = key.sign(f"{timestamp_ms}{method.upper()}{path}".encode())
    return base64.b64encode(signature).decode("ascii")


@attrs.frozen
class _UserBalance:
    """One ``balances[]`` entry. Figures are JSON numbers; null or absent is None.

    The figures ``total`` and ``available`` need are checked where the entry is used, so a
    currency we do not count cannot fail the fetch by missing one.
    """

    currency: str
    currentBalance: Decimal | None = None  # the venue's names
    buyingPower: Decimal | None = None
    assetNotional: Decimal | None = None
    assetAvailable: Decimal | None = None
    marginRequirement: Decimal | None = None
    openOrders: Decimal | None = None
    lastUpdated: str | None = None


@attrs.frozen
class _Balances:
    balances: list[_UserBalance]


def _secret(value: str) -> str:
    secret = credential(value, venue=VENUE, name="secret_key")
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) not in {_SEED_BYTES, _KEYPAIR_BYTES}:
        msg = (
            "polymarket_us_retail: secret_key must be the base64 Ed25519 secret key shown by "
            "polymarket.us/developer (32-byte seed, or 64 bytes: seed then public key)"
        )
        raise ConfigurationError(msg)
    if len(raw) == _KEYPAIR_BYTES:
        public = Ed25519PrivateKey.from_private_bytes(raw[:_SEED_BYTES]).public_key()
        if public.public_bytes(Encoding.Raw, PublicFormat.Raw) != raw[_SEED_BYTES:]:
            msg = (
                "polymarket_us_retail: secret_key is 64 bytes but its second half is not the "
                "public key of its first half (a corrupted or mixed-up key)"
            )
            raise ConfigurationError(msg)
    return secret


def _key_id(value: str) -> str:
    return credential(value, venue=VENUE, name="key_id")


def _label(value: str | None) -> str:
    return label_or(value, VENUE)


def _base_url(value: str | None) -> str:
    return check_base_url(value, default=DEFAULT_BASE_URL, venue=VENUE)


def _currency(value: object) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isalnum():
        msg = f"polymarket_us_retail: currency must be a currency code such as 'USD', got {value!r}"
        raise ConfigurationError(msg)
    return value.upper()


def polymarket_retail_error(response: httpx.Response) -> ExchangeAPIError:
    """The exception for a non-2xx answer (body ``{"status"|"code": ..., "message": ...}``)."""
    status = response.status_code
    meaning = _MEANINGS.get(status, "Polymarket refused the request")
    if status >= 500:
        meaning = "Polymarket had a server error"
    payload = error_body(response, venue=VENUE)
    said = error_text(payload, "message")
    found = (error_code(payload.get(name)) for name in ("code", "status"))
    code: str | int = next((c for c in found if c is not None), status)
    text = f"{said}: {meaning}" if said else meaning
    return status_error(response, venue=VENUE, message=text, code=code)


def _required(value: Decimal | None, index: int, name: str) -> Decimal:
    if value is None:
        field = f"$.balances[{index}].{name}"
        raise UnexpectedResponseError("required field is missing", venue=VENUE, field=field, value=None)
    return value


def _entry_total(entry: _UserBalance) -> Decimal | None:
    if entry.currentBalance is None or entry.assetNotional is None:
        return None
    return exact_sum((entry.currentBalance, entry.assetNotional))


@final
@attrs.frozen(kw_only=True)
class PolymarketUSRetail(NoPickle):
    """A Polymarket US retail account, read through ``/v1/account/balances``.

    ``key_id`` is the API key id (a UUID) and ``secret_key`` the base64 Ed25519 secret key from
    polymarket.us/developer. ``currency`` picks the balances entry that is the Balance (default
    ``USD``). ``clock`` returns Unix time in nanoseconds (tests inject their own).

    >>> pm = PolymarketUSRetail(key_id="...", secret_key="...")   # doctest: +SKIP
    >>> fetch_balance(pm).available                               # doctest: +SKIP
    Decimal('850')
    """

    key_id: str = attrs.field(converter=_key_id, repr=False)
    secret_key: str = attrs.field(converter=_secret, repr=False)
    label: str = attrs.field(default=None, converter=_label)
    base_url: str = attrs.field(default=None, converter=_base_url)
    currency: str = attrs.field(default="USD", converter=_currency)
    clock: Callable[[], int] = attrs.field(default=time.time_ns, repr=False, eq=False)

    @property
    def venue(self) -> str:
        """``"polymarket_us_retail"``."""
        return VENUE

    @property
    def watch_pace(self) -> WatchPace:
        """One balances read per 0.0625 s per key: 20 a second, as the limiter keeps it (``bb.watch``)."""
        return window_pace(pace_budget(VENUE, self.base_url, self.key_id), *RATE_LIMIT)

    def build_request(self, timestamp_ms: int) -> httpx.Request:
        """The signed balances request at ``timestamp_ms`` (Unix milliseconds)."""
        headers = {
            "X-PM-Access-Key": Secret(self.key_id),
            "X-PM-Timestamp": str(timestamp_ms),
            "X-PM-Signature": Secret(
                polymarket_retail_sign(timestamp_ms, "GET", BALANCES_PATH, self.secret_key)
            ),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        return SignedRequest("GET", self.base_url + BALANCES_PATH, headers=headers)

    def parse_response(self, response: httpx.Response) -> Balance:
        """The Balance in a balances answer, or the exception its status means."""
        if not 200 <= response.status_code < 300:
            raise polymarket_retail_error(response)
        payload = decode_object(response, venue=VENUE)
        wire = structure(payload, _Balances, venue=VENUE)
        return self._balance(wire, payload)

    def _balance(self, wire: _Balances, payload: Mapping[str, Any]) -> Balance:
        chosen: tuple[int, _UserBalance] | None = None
        breakdown: dict[str, Holding] = {}
        uncounted: list[str] = []
        seen: set[str] = set()
        for index, entry in enumerate(wire.balances):
            if entry.currency in seen:
                msg = f"two balances entries for currency {entry.currency!r}"
                field = f"$.balances[{index}].currency"
                raise UnexpectedResponseError(msg, venue=VENUE, field=field, value=entry.currency)
            seen.add(entry.currency)
            if entry.currency == self.currency:
                chosen = (index, entry)
                continue
            total = _entry_total(entry)
            breakdown[entry.currency] = Holding(
                currency=entry.currency, total=total, available=entry.buyingPower
            )
            if total != 0:
                uncounted.append(entry.currency)
        if chosen is None:
            reported = sorted(seen)
            msg = (
                f"no balances entry for currency {self.currency!r}; the account reports "
                f"{reported or 'none'} (pass currency= to count another one)"
            )
            raise UnexpectedResponseError(msg, venue=VENUE, field="$.balances", value=reported)
        index, entry = chosen
        cash = _required(entry.currentBalance, index, "currentBalance")
        notional = _required(entry.assetNotional, index, "assetNotional")
        return Balance(
            label=self.label,
            exchange=VENUE,
            currency=self.currency,
            total=exact_sum((cash, notional)),
            available=_required(entry.buyingPower, index, "buyingPower"),
            wallet=cash,
            margin_used=entry.marginRequirement,
            breakdown=breakdown,
            extra=extra_figures(payload["balances"][index], skip={"buyingPower", "lastUpdated"}),
            uncounted=tuple(uncounted),
            fetched_at=now_utc(),
            raw=payload,
        )

    def balance_flow(self) -> Flow:
        """Wait for this key's 20-per-second budget, sign with the current time, send, parse."""
        state = shared_state(VENUE, self.base_url, self.key_id)
        limiter = state.window_limiter("requests", *RATE_LIMIT)
        return (
            yield from throttled_call(
                limiter, lambda: self.build_request(self.clock() // 1_000_000), self.parse_response
            )
        )
