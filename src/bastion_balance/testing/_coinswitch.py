"""A simulated CoinSwitch PRO futures ``wallet_balance`` that checks signatures as CoinSwitch does.

Verification is written from CoinSwitch's authentication page (docs/venues/coinswitch.md), independently
of the library's signer: the API key in ``X-AUTH-APIKEY`` must be registered (it is the hex
Ed25519 public key, which verifies the signature); ``X-AUTH-SIGNATURE`` must be the hex Ed25519
signature of ``METHOD + url-decoded path?query + X-AUTH-EPOCH``; an epoch more than 60,000 ms
from the simulator's clock is refused. Every refusal is HTTP 401 with ``{"message": ...}``. It
answers with the documented example response (seed 002), figures as strings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_plus

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._simulator import ScriptedVenue, json_response

if TYPE_CHECKING:
    from ..providers.coinswitch import CoinSwitch

#: What ``bastion_balance.testing`` exports of this venue (``demo_pair`` is the demo's, by name).
__all__ = [
    "COINSWITCH_DOCUMENTED_DATA",
    "COINSWITCH_TEST_KEY",
    "COINSWITCH_TEST_SECRET",
    "SimulatedCoinSwitch",
]

#: RFC 8032 test-1 key (docs/venues/coinswitch.md, 'Signing'): public, test only. API key = public key.
COINSWITCH_TEST_SECRET: Final = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
COINSWITCH_TEST_KEY: Final = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

#: The documented wallet_balance example (seed 002), the ``data`` member as CoinSwitch sends it.
COINSWITCH_DOCUMENTED_DATA: Final[Mapping[str, Any]] = {
    "base_asset_balances": [
        {
            "base_asset": "USDT",
            "balances": {
                "total_balance": "60960.82599588",
                "total_available_balance": "60910.77418715",
                "total_blocked_balance": "50.05180873",
                "total_position_margin": "56.83032573",
                "total_open_order_margin": "-6.778517",
            },
        }
    ],
    "asset": [
        {
            "symbol": "DOGEUSDT",
            "base_asset": "USDT",
            "exchange": "EXCHANGE_2",
            "blocked_balance": "50.04968529",
            "position_margin": "50.04959675",
            "open_order_margin": "0.00008854",
        }
    ],
}

_PATH: Final = "/trade/api/v2/futures/wallet_balance"
MAX_SKEW_MS: Final = 60_000


class SimulatedCoinSwitch(ScriptedVenue[int | tuple[int, str]]):
    """CoinSwitch's futures wallet_balance, with its key, signature and epoch checks.

    ``keys`` lists the registered API keys (hex public keys). ``clock`` is the server's Unix
    time in nanoseconds. ``epochs`` lists every accepted epoch; ``calls`` counts every call.
    ``fail_next(...)`` queues answers to give instead of the next ones: an HTTP status (an HTML
    page with that status), or ``(status, message)`` sent as ``{"message": ...}``.
    """

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        data: Mapping[str, Any] | None = None,
        host: str = "coinswitch.co",
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__((host,))
        self.keys = {k.lower() for k in keys} if keys is not None else {COINSWITCH_TEST_KEY}
        self.data = dict(data) if data is not None else dict(COINSWITCH_DOCUMENTED_DATA)
        self.clock = clock
        self.epochs: list[int] = []

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Verify and answer one wallet_balance call."""
        self.calls += 1
        if request.method != "GET" or request.url.path != _PATH:
            return _error(404, "Not Found")
        answer = self.next_scripted()
        if answer is not None:
            return self.scripted_response(answer) if isinstance(answer, int) else _error(*answer)
        return self._verified(request)

    def _verified(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("X-AUTH-APIKEY", "").lower()
        if key not in self.keys:
            return _error(401, "Invalid API key")
        epoch_text = request.headers.get("X-AUTH-EPOCH", "")
        if not epoch_text.isdigit():
            return _error(401, "Invalid X-AUTH-EPOCH")
        epoch = int(epoch_text)
        if abs(epoch - self.clock() // 1_000_000) > MAX_SKEW_MS:
            return _error(401, "Request expired: X-AUTH-EPOCH is too far from server time")
        # The signed path is the URL-decoded path and query, as CoinSwitch's reference client.
        target = request.url.raw_path.decode("ascii")
        message = f"{request.method}{unquote_plus(target)}{epoch_text}".encode()
        try:
            public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key))
            public.verify(bytes.fromhex(request.headers.get("X-AUTH-SIGNATURE", "")), message)
        except (InvalidSignature, ValueError):
            return _error(401, "Invalid signature")
        self.epochs.append(epoch)
        return json_response(200, {"data": self.data})


def _error(status: int, message: str) -> httpx.Response:
    return json_response(status, {"message": message})


def demo_pair() -> tuple[SimulatedCoinSwitch, CoinSwitch]:
    """A simulated CoinSwitch and a provider with the test key at the production URL."""
    from ..providers.coinswitch import CoinSwitch  # noqa: PLC0415  # venue modules load lazily

    provider = CoinSwitch(api_key=COINSWITCH_TEST_KEY, api_secret=COINSWITCH_TEST_SECRET)
    return SimulatedCoinSwitch(), provider
