"""A simulated Kraken spot ``TradeBalance`` that checks API-Sign and nonces as Kraken does.

Verification is written from Kraken's documentation, independently of the library's signer:
unknown key -> ``EAPI:Invalid key``; signature mismatch -> ``EAPI:Invalid signature``; a nonce
not larger than the last accepted one for the key -> ``EAPI:Invalid nonce``. It answers with
the documented TradeBalance example (seed 001).

With ``tier=`` it also keeps Kraken's REST call counter per key, as Kraken documents it: +1 per
call, decaying by the tier's rate every second, ``EAPI:Rate limit exceeded`` for a call that
would take it above the tier's maximum (such a call is refused and not counted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

import httpx

from ._simulator import ScriptedVenue, json_response

#: What ``bastion_balance.testing`` exports of this venue (``demo_pair`` is the demo's, by name).
__all__ = [
    "KRAKEN_DOCUMENTED_RESULT",
    "KRAKEN_TEST_KEY",
    "KRAKEN_TEST_SECRET",
    "SimulatedKraken",
]

#: The secret of Kraken's published signing example (docs/venues/kraken.md, 'Signing'): public, test only.
KRAKEN_TEST_SECRET: Final = (
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
)
KRAKEN_TEST_KEY: Final = "bastion-test-kraken-key"

#: The documented TradeBalance example (seed 001), figures as Kraken sends them.
KRAKEN_DOCUMENTED_RESULT: Final[Mapping[str, str]] = {
    "eb": "1101.3425",
    "tb": "392.2264",
    "m": "7.0354",
    "n": "-10.0232",
    "c": "21.1063",
    "v": "31.1297",
    "e": "382.2032",
    "mf": "375.1678",
    "ml": "5432.57",
}

_PATH: Final = "/0/private/TradeBalance"

#: Kraken's published call counter per verification tier: (maximum, decay per second).
_COUNTER_TIERS: Final[Mapping[str, tuple[float, float]]] = {
    "starter": (15, 0.33),
    "intermediate": (20, 0.5),
    "pro": (20, 1.0),
}


def _expected_sign(secret_b64: str, nonce: str, body: bytes) -> bytes:
    message = _PATH.encode() + hashlib.sha256(nonce.encode() + body).digest()
    return base64.b64encode(hmac.new(base64.b64decode(secret_b64), message, hashlib.sha512).digest())


class SimulatedKraken(ScriptedVenue[str | int]):
    """Kraken's TradeBalance, with its key, signature and nonce checks.

    ``keys`` maps API key -> base64 secret. ``nonces`` lists every accepted nonce in arrival
    order; ``calls`` counts every call. ``fail_next(...)`` queues answers to give instead of the
    next ones: an error string (sent in Kraken's ``error`` array with HTTP 200) or an HTTP status
    code (an HTML page with that status).

    ``tier`` (``"starter"``, ``"intermediate"`` or ``"pro"``; default none) turns on the call
    counter of each key, on ``clock`` (seconds; tests inject their own to speed time up):
    :meth:`counter` reads it, ``counter_peak`` is the highest it reached and ``rate_limited``
    counts the calls refused with ``EAPI:Rate limit exceeded``.
    """

    def __init__(
        self,
        *,
        keys: Mapping[str, str] | None = None,
        result: Mapping[str, Any] | None = None,
        host: str = "api.kraken.com",
        tier: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__((host,))
        self.keys = dict(keys) if keys is not None else {KRAKEN_TEST_KEY: KRAKEN_TEST_SECRET}
        self.result = dict(result) if result is not None else dict(KRAKEN_DOCUMENTED_RESULT)
        self._last: dict[str, int] = {}
        self.nonces: list[int] = []
        if tier is not None and tier not in _COUNTER_TIERS:
            msg = f"tier must be one of {', '.join(_COUNTER_TIERS)} or None, got {tier!r}"
            raise ValueError(msg)
        self._tier = None if tier is None else _COUNTER_TIERS[tier]
        self._clock = clock
        self._counters: dict[str, tuple[float, float]] = {}  # key -> (level, when)
        self.counter_peak = 0.0
        self.rate_limited = 0

    def counter(self, key: str = KRAKEN_TEST_KEY) -> float:
        """The call counter of ``key`` now (0 without a tier, or before its first call)."""
        with self._lock:
            return self._decayed(key, self._clock())

    def _decayed(self, key: str, now: float) -> float:
        if self._tier is None or key not in self._counters:
            return 0.0
        level, when = self._counters[key]
        return max(0.0, level - (now - when) * self._tier[1])

    def _count(self, key: str) -> bool:
        """Count one call of ``key``: False (not counted) when it would pass the maximum."""
        if self._tier is None:
            return True
        now = self._clock()
        level = self._decayed(key, now)
        if level + 1 > self._tier[0]:
            self._counters[key] = (level, now)
            self.rate_limited += 1
            return False
        self._counters[key] = (level + 1, now)
        self.counter_peak = max(self.counter_peak, level + 1)
        return True

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Verify and answer one TradeBalance call."""
        self.calls += 1
        if request.method != "POST" or request.url.path != _PATH:
            return _error("EGeneral:Unknown method")
        answer = self.next_scripted()
        if answer is not None:
            return _error(answer) if isinstance(answer, str) else self.scripted_response(answer)
        return self._verified(request)

    def _verified(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("API-Key", "")
        secret = self.keys.get(key)
        if secret is None:
            return _error("EAPI:Invalid key")
        if not self._count(key):
            return _error("EAPI:Rate limit exceeded")
        body = request.content
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        nonce_text = params.get("nonce", "")
        if not nonce_text.isdigit():
            return _error("EAPI:Invalid nonce")
        try:
            given = request.headers.get("API-Sign", "").encode()
            expected = _expected_sign(secret, nonce_text, body)
        except (binascii.Error, ValueError):  # pragma: no cover  # secrets are ours
            return _error("EAPI:Invalid signature")
        if not hmac.compare_digest(given, expected):
            return _error("EAPI:Invalid signature")
        nonce = int(nonce_text)
        if nonce <= self._last.get(key, 0):
            return _error("EAPI:Invalid nonce")
        self._last[key] = nonce
        self.nonces.append(nonce)
        if not params.get("asset", "ZUSD").isalnum():
            return _error("EGeneral:Invalid arguments")
        return json_response(200, {"error": [], "result": self.result})


def _error(message: str) -> httpx.Response:
    return json_response(200, {"error": [message]})


def demo_pair() -> tuple[SimulatedKraken, Any]:
    """The demo's Kraken: the simulated venue and a provider with the published test secret."""
    from ..providers.kraken import Kraken  # noqa: PLC0415  # venue modules load on first use

    return SimulatedKraken(), Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET)
