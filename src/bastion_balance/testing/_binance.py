"""A simulated Binance USD-M futures API that checks keys, HMAC signatures and timestamps.

Verification is written from Binance's documentation (docs/venues/binance.md), independently of the
library's signer: an unknown ``X-MBX-APIKEY`` -> ``-2015``; ``signature`` not the last
parameter or not the hex HMAC-SHA256 of the exact query before ``&signature=`` -> ``-1022``;
``recvWindow`` of 60000 or more -> ``-1131``; a timestamp outside the window
(``timestamp < serverTime + 1000`` and ``serverTime - timestamp <= recvWindow``) -> ``-1021``.
The simulator's clock is injectable and may be skewed from the client's. It answers
``GET /fapi/v1/time``, sends ``X-MBX-USED-WEIGHT-1M`` on every answer and, by default, the
account body Binance really sent (:data:`BINANCE_RECORDED_ACCOUNT`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import httpx

from ._simulator import ScriptedVenue, json_response

if TYPE_CHECKING:
    from ..providers.binance import BinanceFutures

#: What ``bastion_balance.testing`` exports of this venue (``demo_pair`` is the demo's, by name).
__all__ = [
    "BINANCE_RECORDED_ACCOUNT",
    "BINANCE_TEST_KEY",
    "BINANCE_TEST_SECRET",
    "SimulatedBinance",
]

#: The apiKey / secretKey of Binance's published signing example (docs/venues/binance.md): public.
BINANCE_TEST_KEY: Final = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
BINANCE_TEST_SECRET: Final = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"

#: A real ``GET /fapi/v2/account`` answer (single-asset mode), recorded from Binance and stored
#: by ccxt's static response tests (ccxt/ccxt ts/src/test/static/response/binance.json at
#: 05776890e288bf88d1aeba7b62da9e697d3e37f5, "Linear swap balance"); figures as Binance sent them.
BINANCE_RECORDED_ACCOUNT: Final[Mapping[str, Any]] = {
    "feeTier": "0",
    "canTrade": True,
    "canDeposit": True,
    "canWithdraw": True,
    "tradeGroupId": "-1",
    "updateTime": "0",
    "multiAssetsMargin": False,
    "totalInitialMargin": "0.00000000",
    "totalMaintMargin": "0.00000000",
    "totalWalletBalance": "31.02261200",
    "totalUnrealizedProfit": "0.00000000",
    "totalMarginBalance": "31.02261200",
    "totalPositionInitialMargin": "0.00000000",
    "totalOpenOrderInitialMargin": "0.00000000",
    "totalCrossWalletBalance": "31.02261200",
    "totalCrossUnPnl": "0.00000000",
    "availableBalance": "31.02261200",
    "maxWithdrawAmount": "31.02261200",
    "assets": [
        {
            "asset": "USDT",
            "walletBalance": "31.02261200",
            "unrealizedProfit": "0.00000000",
            "marginBalance": "31.02261200",
            "maintMargin": "0.00000000",
            "initialMargin": "0.00000000",
            "positionInitialMargin": "0.00000000",
            "openOrderInitialMargin": "0.00000000",
            "maxWithdrawAmount": "31.02261200",
            "crossWalletBalance": "31.02261200",
            "crossUnPnl": "0.00000000",
            "availableBalance": "31.02261200",
            "marginAvailable": True,
            "updateTime": "1701270042059",
        }
    ],
    "positions": [],
}

_ACCOUNT: Final = "/fapi/v2/account"
_TIME: Final = "/fapi/v1/time"
_WEIGHTS: Final = {_ACCOUNT: 5, _TIME: 1}

#: Binance's own messages for the errors the simulator gives: code -> (HTTP status, msg).
ERRORS: Final[Mapping[int, tuple[int, str]]] = {
    -1000: (500, "An unknown error occured while processing the request."),
    -1001: (503, "Internal error; unable to process your request. Please try again."),
    -1003: (429, "Too many requests; current limit is 2400 requests per minute."),
    -1007: (503, "Timeout waiting for response from backend server. Send status unknown."),
    -1021: (400, "Timestamp for this request is outside of the recvWindow."),
    -1022: (400, "Signature for this request is not valid."),
    -1102: (400, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."),
    -1131: (400, "recvWindow must be less than 60000"),
    -2014: (401, "API-key format invalid."),
    -2015: (401, "Invalid API-key, IP, or permissions for action."),
}


class SimulatedBinance(ScriptedVenue[int | httpx.Response]):
    """Binance USD-M futures' account and server-time endpoints, with Binance's checks.

    ``keys`` maps API key -> secret. ``clock`` is the server's clock (Unix ns) and ``skew_ms``
    is added to it, so a test can put the server ahead of or behind the client. ``account``
    replaces the answer body. ``extra_weight`` is weight other programs on the same IP used
    this minute. ``fail_next(...)`` queues answers for the next account calls: a Binance error
    code (negative int, sent with Binance's status and message), an HTTP status (sent with an
    HTML page) or a ready ``httpx.Response``. ``timestamps`` lists every accepted timestamp;
    ``calls`` counts the account calls, ``time_calls`` the server-time calls.
    """

    def __init__(
        self,
        *,
        keys: Mapping[str, str] | None = None,
        account: Mapping[str, Any] | None = None,
        host: str = "fapi.binance.com",
        clock: Callable[[], int] = time.time_ns,
        skew_ms: int = 0,
    ) -> None:
        super().__init__((host,))
        self.keys = dict(keys) if keys is not None else {BINANCE_TEST_KEY: BINANCE_TEST_SECRET}
        self.account: Mapping[str, Any] = account if account is not None else BINANCE_RECORDED_ACCOUNT
        self.clock = clock
        self.skew_ms = skew_ms
        self.extra_weight = 0
        self._minute = -1
        self._used = 0
        self.timestamps: list[int] = []
        self.time_calls = 0

    def server_time(self) -> int:
        """The simulated server's clock in Unix milliseconds."""
        return self.clock() // 1_000_000 + self.skew_ms

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Verify and answer one request."""
        path = request.url.path
        if request.method != "GET" or path not in _WEIGHTS:
            return json_response(404, {"code": -5000, "msg": "Path not found"})
        weight = self._spend(_WEIGHTS[path])
        if path == _TIME:
            self.time_calls += 1
            return json_response(200, {"serverTime": self.server_time()}, **weight)
        self.calls += 1
        answer = self.next_scripted()
        if answer is None:
            return self._verified(request, weight)
        if isinstance(answer, int) and answer < 0:
            return _error(answer, weight)
        return self.scripted_response(answer, headers=weight)

    def _spend(self, units: int) -> dict[str, str]:
        minute = self.server_time() // 60_000
        if minute != self._minute:
            self._minute, self._used = minute, 0
        self._used += units
        return {"X-MBX-USED-WEIGHT-1M": str(self._used + self.extra_weight)}

    def _verified(self, request: httpx.Request, weight: dict[str, str]) -> httpx.Response:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            return _error(-2014, weight)
        secret = self.keys.get(key)
        if secret is None:
            return _error(-2015, weight)
        query = request.url.query.decode("ascii", "replace")
        signed, marker, signature = query.rpartition("&signature=")
        if not marker or "&" in signature:  # absent, or not the last parameter
            return _error(-1022, weight)
        expected = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
            return _error(-1022, weight)
        params = dict(parse_qsl(signed, keep_blank_values=True))
        timestamp, window = params.get("timestamp", ""), params.get("recvWindow", "5000")
        if not timestamp.isdigit():
            return _error(-1102, weight)
        if not window.isdigit() or int(window) >= 60_000:
            return _error(-1131, weight)
        server = self.server_time()
        if not (int(timestamp) < server + 1000 and server - int(timestamp) <= int(window)):
            return _error(-1021, weight)
        self.timestamps.append(int(timestamp))
        return json_response(200, self.account, **weight)


def _error(code: int, headers: Mapping[str, str]) -> httpx.Response:
    status, message = ERRORS[code]
    return json_response(status, {"code": code, "msg": message}, **headers)


def demo_pair() -> tuple[SimulatedBinance, BinanceFutures]:
    """A simulated Binance answering the real recording, and a provider with the test keys.

    The figures are a real Binance answer recorded by ccxt's static tests; the provider uses
    the production URL so the simulator's MockTransport routes it by host.
    """
    from ..providers.binance import BinanceFutures  # noqa: PLC0415  # venue modules load lazily

    return SimulatedBinance(), BinanceFutures(api_key=BINANCE_TEST_KEY, api_secret=BINANCE_TEST_SECRET)
