"""A simulated Polymarket US retail ``GET /v1/account/balances`` with its X-PM-* checks.

Verification is written from Polymarket's authentication page (docs/venues/polymarket-us-retail.md),
independently of the library's signer: ``X-PM-Access-Key`` must be a registered key id;
``X-PM-Timestamp`` (Unix ms) must be within 30 s of the simulator's clock; ``X-PM-Signature``
must be the base64 Ed25519 signature of ``timestamp + METHOD + path`` (path without query),
verified with the public key registered for the key id. Refusals are HTTP 401.

What is synthetic (the docs give the schema, not a full example response): the error body
shape for 401/403/404 (``{"status": <http status>, "message": ...}``, copied from the documented
429 body), the ``assetNotional``, ``pendingCredit``, ``unsettledFunds`` and
``balanceReservation`` figures of the answer, and the test key id. The figures of the documented
buying-power example (``currentBalance`` 1000 + ``assetAvailable`` 250 - ``openOrders`` 400 -
``marginRequirement`` 0 = ``buyingPower`` 850) are the docs' own. Figures are JSON numbers
(``marginRequirement`` a bare integer ``0``) and ``lastUpdated`` is null, as the venue sends them.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._simulator import ScriptedVenue, json_response

if TYPE_CHECKING:
    from ..providers.polymarket_retail import PolymarketUSRetail

#: What ``bastion_balance.testing`` exports of this venue (``demo_pair`` is the demo's, by name).
__all__ = [
    "POLYMARKET_RETAIL_DOCUMENTED_BALANCES",
    "POLYMARKET_RETAIL_TEST_KEY_ID",
    "POLYMARKET_RETAIL_TEST_PUBLIC_KEY",
    "POLYMARKET_RETAIL_TEST_SECRET",
    "POLYMARKET_RETAIL_TEST_SEED",
    "SimulatedPolymarketRetail",
]

#: RFC 8032 test-1 key, as polymarket.us/developer shows secrets: base64 of seed || public key.
POLYMARKET_RETAIL_TEST_SECRET: Final = (
    "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg=="
)
#: The same key as a bare 32-byte seed (also accepted by the SDKs and by the provider).
POLYMARKET_RETAIL_TEST_SEED: Final = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
#: Its public key, base64 (what the venue registers for the key id).
POLYMARKET_RETAIL_TEST_PUBLIC_KEY: Final = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#: A synthetic key id (real ones are UUIDs).
POLYMARKET_RETAIL_TEST_KEY_ID: Final = "00000000-0000-4000-8000-00000000b0b0"

#: A documented-shape answer. Documented figures: 1000 + 250 - 400 - 0 = 850; the rest synthetic.
POLYMARKET_RETAIL_DOCUMENTED_BALANCES: Final[Sequence[Mapping[str, Any]]] = (
    {
        "currentBalance": Decimal("1000.00"),
        "currency": "USD",
        "lastUpdated": None,
        "buyingPower": Decimal("850.00"),
        "assetNotional": Decimal("312.75"),
        "assetAvailable": Decimal("250.00"),
        "pendingCredit": Decimal(0),
        "openOrders": Decimal("400.00"),
        "unsettledFunds": Decimal(0),
        "pendingWithdrawals": [],
        "marginRequirement": 0,
        "balanceReservation": None,
    },
)

_PATH: Final = "/v1/account/balances"
WINDOW_MS: Final = 30_000


class SimulatedPolymarketRetail(ScriptedVenue[int | tuple[int, str]]):
    """Polymarket US retail's balances endpoint, with its key, timestamp and signature checks.

    ``keys`` maps key id -> base64 Ed25519 public key. ``clock`` is the server's Unix time in
    nanoseconds. ``timestamps`` lists every accepted timestamp; ``calls`` counts every call.
    ``fail_next(...)`` queues answers to give instead of the next ones: an HTTP status (429 gets
    the documented body, others an HTML page) or ``(status, message)``.
    """

    def __init__(
        self,
        *,
        keys: Mapping[str, str] | None = None,
        balances: Sequence[Mapping[str, Any]] | None = None,
        host: str = "api.polymarket.us",
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__((host,))
        default = {POLYMARKET_RETAIL_TEST_KEY_ID: POLYMARKET_RETAIL_TEST_PUBLIC_KEY}
        self.keys = dict(keys) if keys is not None else default
        self.balances = (
            list(balances) if balances is not None else list(POLYMARKET_RETAIL_DOCUMENTED_BALANCES)
        )
        self.clock = clock
        self.timestamps: list[int] = []

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Verify and answer one balances call."""
        self.calls += 1
        if request.method != "GET" or request.url.path != _PATH:
            return _error(404, "Not Found")
        answer = self.next_scripted()
        if answer == 429:  # the documented body, no Retry-After
            return _error(429, "Too Many Requests")
        if answer is not None:
            return self.scripted_response(answer) if isinstance(answer, int) else _error(*answer)
        return self._verified(request)

    def _verified(self, request: httpx.Request) -> httpx.Response:
        public_b64 = self.keys.get(request.headers.get("X-PM-Access-Key", ""))
        if public_b64 is None:
            return _error(401, "invalid API key")
        stamp = request.headers.get("X-PM-Timestamp", "")
        if not stamp.isdigit():
            return _error(401, "invalid timestamp")
        if abs(int(stamp) - self.clock() // 1_000_000) > WINDOW_MS:
            return _error(401, "timestamp outside the 30 second window")
        message = (stamp + request.method + request.url.path).encode()
        try:
            signature = base64.b64decode(request.headers.get("X-PM-Signature", ""), validate=True)
            Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64)).verify(signature, message)
        except (InvalidSignature, binascii.Error, ValueError):
            return _error(401, "invalid signature")
        self.timestamps.append(int(stamp))
        return json_response(200, {"balances": self.balances})


def _error(status: int, message: str) -> httpx.Response:
    return json_response(status, {"status": status, "message": message})


def demo_pair() -> tuple[SimulatedPolymarketRetail, PolymarketUSRetail]:
    """A simulated Polymarket US retail and a provider with the test key at the production URL."""
    from ..providers.polymarket_retail import PolymarketUSRetail  # noqa: PLC0415  # lazy venue module

    provider = PolymarketUSRetail(
        key_id=POLYMARKET_RETAIL_TEST_KEY_ID, secret_key=POLYMARKET_RETAIL_TEST_SECRET
    )
    return SimulatedPolymarketRetail(), provider
