"""A simulated Kraken public ``GET /0/public/Ticker``, for ``bb.KrakenRates``.

It answers the way Kraken documents: ``pair=`` is a comma-separated list; every known pair is
answered under its name with the ticker fields (``a`` ask, ``b`` bid, ``c`` last trade
``[price, lot volume]``, ...), prices as decimal strings; one unknown pair fails the whole call
with ``EQuery:Unknown asset pair``; a request that is not a GET, or that carries a credential
header, is refused (a public call needs none, and must not leak one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import httpx

from ._simulator import ScriptedVenue, json_response

__all__ = ["KRAKEN_TICKER_PRICES", "SimulatedKrakenTicker"]

#: Last trade prices the simulated ticker quotes, by Kraken's pair name. XXBTZUSD's is the one of
#: Kraken's documented Ticker example; the others are plausible figures, not market data.
KRAKEN_TICKER_PRICES: Final[Mapping[str, str]] = {
    "XXBTZUSD": "30303.20000",
    "XETHZUSD": "1834.56000",
    "USDTZUSD": "0.99985000",
    "USDCUSD": "1.00010000",
    "ZEURZUSD": "1.08420",
    "ZGBPZUSD": "1.26750",
    "SOLUSD": "21.3400000",
    "XXRPZUSD": "0.48210000",
    "XLTCZUSD": "92.410000",
    "XDGUSD": "0.0712300",
    "ADAUSD": "0.289500",
    "DOTUSD": "5.1840",
}

TICKER_PATH: Final = "/0/public/Ticker"
_CREDENTIAL_HEADERS: Final = ("api-key", "api-sign", "authorization")


def _ticker(price: str) -> dict[str, object]:
    """One pair's ticker object, shaped as Kraken's (figures around ``price``)."""
    return {
        "a": [price, "1", "1.000"],
        "b": [price, "2", "2.000"],
        "c": [price, "0.00067643"],
        "v": ["4083.67001100", "4412.73601799"],
        "p": [price, price],
        "t": [34619, 38907],
        "l": [price, price],
        "h": [price, price],
        "o": price,
    }


class SimulatedKrakenTicker(ScriptedVenue[str | int]):
    """Kraken's public Ticker on ``host`` (only its path: it shares the host with TradeBalance).

    ``prices`` (pair -> last trade, a decimal string) may be changed between calls; ``calls``
    counts the ticker calls and ``asked`` lists the pairs of each. ``fail_next(...)`` queues answers
    to give instead: a Kraken error string (in the ``error`` array, HTTP 200) or an HTTP status.
    """

    paths: tuple[str, ...] = (TICKER_PATH,)

    def __init__(self, *, prices: Mapping[str, str] | None = None, host: str = "api.kraken.com") -> None:
        super().__init__((host,))
        self.prices = dict(KRAKEN_TICKER_PRICES if prices is None else prices)
        self.asked: list[tuple[str, ...]] = []

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Answer one Ticker call as Kraken would."""
        if request.method != "GET":
            return json_response(200, {"error": ["EGeneral:Invalid arguments"]})
        if any(name in request.headers for name in _CREDENTIAL_HEADERS):
            return json_response(200, {"error": ["EGeneral:Invalid arguments:public call with a key"]})
        self.calls += 1
        pairs = tuple(p for p in request.url.params.get("pair", "").split(",") if p)
        self.asked.append(pairs)
        scripted = self.next_scripted()
        if isinstance(scripted, str):
            return json_response(200, {"error": [scripted]})
        if scripted is not None:
            return self.scripted_response(scripted)
        if not pairs:
            return json_response(200, {"error": ["EGeneral:Invalid arguments"]})
        if any(pair not in self.prices for pair in pairs):
            return json_response(200, {"error": ["EQuery:Unknown asset pair"]})
        return json_response(
            200, {"error": [], "result": {pair: _ticker(self.prices[pair]) for pair in pairs}}
        )
