"""A simulated Bybit V5 wallet-balance API that checks keys, HMAC signatures and timestamps.

Verification is written from Bybit's documentation (docs/venues/bybit.md), independently of the
library's signer: missing authentication headers -> HTTP 401; an unknown key -> ``10003``;
``X-BAPI-SIGN`` not the hex HMAC-SHA256 of ``timestamp + api_key + recv_window + query`` (the
exact query sent) -> ``10004``; a timestamp outside
``server_time - recv_window <= timestamp < server_time + 1000`` -> ``10002``. The simulator's
clock is injectable and may be skewed. It answers ``GET /v5/market/time``, sends the
``X-Bapi-Limit*`` headers and, by default, the body Bybit really sent
(:data:`BYBIT_RECORDED_WALLET`).
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
    from ..providers.bybit import Bybit

#: What ``bastion_balance.testing`` exports of this venue (``demo_pair`` is the demo's, by name).
__all__ = [
    "BYBIT_RECORDED_WALLET",
    "BYBIT_TEST_KEY",
    "BYBIT_TEST_SECRET",
    "SimulatedBybit",
]

#: The key and secret of the local signing vector (docs/venues/bybit.md, 'Signing and the clock'): test only.
BYBIT_TEST_KEY: Final = "XXXXXXXXXX"
BYBIT_TEST_SECRET: Final = "test_secret_0123456789"


_COIN_FIELDS: Final = (
    "coin",
    "equity",
    "usdValue",
    "unrealisedPnl",
    "walletBalance",
    "cumRealisedPnl",
    "totalPositionIM",
    "totalPositionMM",
    "locked",
)


def _coin(row: str) -> dict[str, Any]:
    """One ``coin[]`` row of the recording from its figures, in ``_COIN_FIELDS`` order.

    The fields that are alike in every row (zeros, flags, the deprecated ``""``) are filled in
    as Bybit sent them.
    """
    figures = dict(zip(_COIN_FIELDS, row.split(), strict=True))
    return {
        "availableToBorrow": "",
        "bonus": "0",
        "accruedInterest": "0",
        "availableToWithdraw": "",
        "totalOrderIM": "0",
        "equity": figures["equity"],
        "totalPositionMM": figures["totalPositionMM"],
        "usdValue": figures["usdValue"],
        "unrealisedPnl": figures["unrealisedPnl"],
        "collateralSwitch": True,
        "spotHedgingQty": "0",
        "borrowAmount": "0.000000000000000000",
        "totalPositionIM": figures["totalPositionIM"],
        "walletBalance": figures["walletBalance"],
        "cumRealisedPnl": figures["cumRealisedPnl"],
        "locked": figures["locked"],
        "marginCollateral": True,
        "coin": figures["coin"],
    }


#: The seven ``coin[]`` rows of the recording: coin, equity, usdValue, unrealisedPnl,
#: walletBalance, cumRealisedPnl, totalPositionIM, totalPositionMM, locked.
_COINS: Final = (
    "USDC 5848.53933918 5849.59207626 0.3392 5848.20013918 6393.66232648 3.18541012 0.33266212 0",
    "BTC 0.85581394 82669.24739887 0 0.85581394 -0.00190505 0 0 0",
    "ETH 0.09174816 294.05285546 0 0.09174816 -0.000001 0 0 0",
    "ADA 38.68128 37.93302931 0 38.68128 -0.03872 0 0 0",
    "XRP 38.47905187 98.98308977 -1.573407 40.05245888 -0.56741988 0.19805874 0.02068388 0",
    "USDT 3304.29766609 3304.05314806 -17.9613 3322.25896609 -10225.43901403 50.61831144 7.00285644 42",
    "LTC 0.02101953 2.10828867 0 0.02101953 -0.00001428 0 0 0",
)

#: A real ``GET /v5/account/wallet-balance?accountType=UNIFIED`` answer recorded from Bybit and
#: stored by ccxt's static response tests (ccxt/ccxt ts/src/test/static/response/bybit.json,
#: fetchBalance "balance after availableToWithdraw update"): ``retCode`` and ``time`` as strings,
#: ``""`` in the deprecated ``availableToWithdraw`` / ``availableToBorrow``, seven coins.
BYBIT_RECORDED_WALLET: Final[Mapping[str, Any]] = {
    "retCode": "0",
    "retMsg": "OK",
    "result": {
        "list": [
            {
                "totalEquity": "92255.96988644",
                "accountIMRate": "0.0006",
                "totalMarginBalance": "90042.2788482",
                "totalInitialMargin": "54.3100333",
                "accountType": "UNIFIED",
                "totalAvailableBalance": "89987.9688149",
                "accountMMRate": "0",
                "totalPerpUPL": "-21.66812467",
                "totalWalletBalance": "90060.46626531",
                "accountLTV": "0",
                "totalMaintenanceMargin": "7.38826721",
                "coin": [_coin(row) for row in _COINS],
            }
        ]
    },
    "retExtInfo": {},
    "time": "1736866023302",
}

_WALLET: Final = "/v5/account/wallet-balance"
_TIME: Final = "/v5/market/time"
LIMIT: Final = 50

#: Bybit's messages for the retCodes the simulator gives.
MESSAGES: Final[Mapping[int, str]] = {
    10001: "Illegal category",
    10002: "invalid request, please check your server timestamp or recv_window param",
    10003: "API key is invalid.",
    10004: "Error sign, please check your signature generation algorithm.",
    10005: "Permission denied, please check your API key permissions.",
    10006: "Too many visits. Exceeded the API Rate Limit.",
    10007: "User authentication failed.",
    10010: "Unmatched IP, please check your API key's bound IP addresses.",
    10016: "Server error.",
    10028: "The API can only be accessed by unified account users.",
    33004: "Your api key has expired.",
}


class SimulatedBybit(ScriptedVenue[int | httpx.Response]):
    """Bybit V5's wallet-balance and server-time endpoints, with Bybit's checks.

    ``keys`` maps API key -> secret. ``clock`` is the server's clock (Unix ns) and ``skew_ms``
    is added to it. ``wallet`` replaces the answer body. ``fail_next(...)`` queues answers for
    the next wallet-balance calls: a retCode (int >= 10000, sent with HTTP 200), an HTTP status
    (sent with an HTML page) or a ready ``httpx.Response``. ``timestamps`` lists every accepted
    timestamp; ``calls`` counts the wallet-balance calls, ``time_calls`` the server-time calls.
    """

    def __init__(
        self,
        *,
        keys: Mapping[str, str] | None = None,
        wallet: Mapping[str, Any] | None = None,
        host: str = "api.bybit.com",
        clock: Callable[[], int] = time.time_ns,
        skew_ms: int = 0,
    ) -> None:
        super().__init__((host,))
        self.keys = dict(keys) if keys is not None else {BYBIT_TEST_KEY: BYBIT_TEST_SECRET}
        self.wallet: Mapping[str, Any] = wallet if wallet is not None else BYBIT_RECORDED_WALLET
        self.clock = clock
        self.skew_ms = skew_ms
        self._second = -1
        self._used = 0
        self.timestamps: list[int] = []
        self.time_calls = 0

    def server_time(self) -> int:
        """The simulated server's clock in Unix milliseconds."""
        return self.clock() // 1_000_000 + self.skew_ms

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Verify and answer one request."""
        path = request.url.path
        if request.method != "GET" or path not in {_WALLET, _TIME}:
            return httpx.Response(404, text="404 page not found")
        if path == _TIME:
            self.time_calls += 1
            now = self.server_time()
            result = {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000 + 123_456)}
            return json_response(200, _envelope(0, "OK", result, now))
        self.calls += 1
        limit = self._spend()
        answer = self.next_scripted()
        if answer is None:
            return self._verified(request, limit)
        if isinstance(answer, int) and answer >= 10000:
            return self._error(answer, limit)
        return self.scripted_response(answer, headers=limit)

    def _spend(self) -> dict[str, str]:
        now = self.server_time()
        if now // 1000 != self._second:
            self._second, self._used = now // 1000, 0
        self._used += 1
        return {
            "X-Bapi-Limit": str(LIMIT),
            "X-Bapi-Limit-Status": str(max(0, LIMIT - self._used)),
            "X-Bapi-Limit-Reset-Timestamp": str((self._second + 1) * 1000),
        }

    def _error(self, code: int, headers: Mapping[str, str], message: str | None = None) -> httpx.Response:
        text = MESSAGES[code] if message is None else message
        return json_response(200, _envelope(code, text, {}, self.server_time()), **headers)

    def _verified(self, request: httpx.Request, limit: dict[str, str]) -> httpx.Response:
        key = request.headers.get("X-BAPI-API-KEY")
        sign = request.headers.get("X-BAPI-SIGN")
        stamp = request.headers.get("X-BAPI-TIMESTAMP")
        if not key or not sign or not stamp:
            return httpx.Response(401, text="", headers=limit)
        secret = self.keys.get(key)
        if secret is None:
            return self._error(10003, limit)
        window = request.headers.get("X-BAPI-RECV-WINDOW", "5000")
        query = request.url.query.decode("ascii", "replace")
        origin = f"{stamp}{key}{window}{query}"
        expected = hmac.new(secret.encode(), origin.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sign.encode(), expected.encode()):
            return self._error(10004, limit)
        if not stamp.isdigit() or not window.isdigit():
            return self._error(10001, limit, "invalid X-BAPI-TIMESTAMP or X-BAPI-RECV-WINDOW")
        server, timestamp = self.server_time(), int(stamp)
        if not server - int(window) <= timestamp < server + 1000:
            detail = f"req_timestamp[{timestamp}],server_timestamp[{server}],recv_window[{window}]"
            return self._error(10002, limit, f"{MESSAGES[10002]}. {detail}")
        if dict(parse_qsl(query)).get("accountType") not in {"UNIFIED", "CONTRACT", "SPOT"}:
            return self._error(10001, limit, "accountType only support UNIFIED, CONTRACT, SPOT")
        self.timestamps.append(timestamp)
        return json_response(200, self.wallet, **limit)


def _envelope(code: int, message: str, result: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    return {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {}, "time": now_ms}


def demo_pair() -> tuple[SimulatedBybit, Bybit]:
    """A simulated Bybit answering the real recording, and a provider with the test keys.

    The figures are a real Bybit answer recorded by ccxt's static tests; the provider uses the
    production URL so the simulator's MockTransport routes it by host.
    """
    from ..providers.bybit import Bybit  # noqa: PLC0415  # venue modules load lazily

    return SimulatedBybit(), Bybit(api_key=BYBIT_TEST_KEY, api_secret=BYBIT_TEST_SECRET)
