"""A simulated Rails: the token service and the User Account ``/api/v1/balances``.

Written from Rails' documentation (docs/venues/rails.md), independently of the library's provider:

* ``POST https://api-auth.sandbox.rails.xyz/api/v1/token`` checks ``X-Api-Key`` and
  ``X-Api-Secret`` against the registered credentials (401 otherwise), allows 20 token
  requests per rolling 60 s per key (429 beyond), and issues an opaque random token with
  ``expires_in`` 1800.
* ``GET https://user-account.sandbox.rails.xyz/api/v1/balances`` checks the bearer token
  (unknown or expired: 401) and answers the documented example of seed 004.

Synthetic, because Rails documents none of it: the error bodies (``{"message": ...}``), the
opaque token (Rails issues an HS256 JWT; nothing here or in the client reads its claims), the
``?market=`` answer (the documented example with ``marketBalancesMap`` filtered to that market,
top-level figures unchanged; an unknown market is a 400), and the wrapped envelope option.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import httpx

from ._simulator import ScriptedVenue, deprecated_alias, json_response

if TYPE_CHECKING:
    from ..providers.rails import Rails

#: What ``bastion_balance.testing`` exports of this venue (``demo_pair`` is the demo's, by name).
__all__ = [
    "RAILS_AUTH_HOST",
    "RAILS_DOCUMENTED_BALANCES",
    "RAILS_HOST",
    "RAILS_TEST_API_KEY",
    "RAILS_TEST_API_SECRET",
    "SimulatedRails",
]

#: Invented credentials for tests and the demo: Rails publishes no test keys.
RAILS_TEST_API_KEY: Final = "rails-test-key"
RAILS_TEST_API_SECRET: Final = "rails-test-secret-not-real"

RAILS_AUTH_HOST: Final = "api-auth.sandbox.rails.xyz"
RAILS_HOST: Final = "user-account.sandbox.rails.xyz"

_TOKEN_PATH: Final = "/api/v1/token"
_BALANCES_PATH: Final = "/api/v1/balances"
_WINDOW: Final = 60.0
_TOKENS_PER_WINDOW: Final = 20
_LIFETIME: Final = 1800

_BTC_USD: Final[Mapping[str, str]] = {
    "position": "467782.520726",
    "positionQuantity": "7",
    "liquidationPrice": "126380.268279734335477455",
    "openBuy": "60000",
    "openBuyQty": "1",
    "openSell": "0",
    "openSellQty": "0",
    "pnl": "-1292.78457349",
    "positionPnl": "-1292.7845734999864",
    "funding": "113.21723468000002",
    "positionFunding": "113.21723468000002",
    "volume": "600695.07832",
    "fees": "600.69507826",
    "liquidationFees": "0",
    "margin": "6498468.2474181248786156",
    "maintenanceMargin": "527842.520726",
}
_ETH_USD: Final[Mapping[str, str]] = {
    "position": "28894.648055999998",
    "positionQuantity": "8",
    "liquidationPrice": "28902.648056",
    "openBuy": "0",
    "openBuyQty": "0",
    "openSell": "8000",
    "openSellQty": "3",
    "pnl": "406.23975999",
    "positionPnl": "406.2397599999995",
    "funding": "-486.82005787000037",
    "positionFunding": "-486.82005787000037",
    "volume": "43545.091964",
    "fees": "43.54509196",
    "liquidationFees": "0",
    "margin": "762320.7471059860003337",
    "maintenanceMargin": "28902.648056",
}

#: The documented ``GET /api/v1/balances`` example (seed 004), figures exactly as Rails sends them.
RAILS_DOCUMENTED_BALANCES: Final[Mapping[str, Any]] = {
    "totalBalance": "99996952.15429778",
    "availableBalance": "99521353.92161779",
    "deposit": "100000000",
    "withdraw": "879.12",
    "withdrawFees": "8.88",
    "fees": "608.02030021",
    "pnl": "-1292.78457349",
    "funding": "-259.04082851",
    "volume": "608020.300274",
    "margin": "7261788.9945241110003337",
    "maintenanceMargin": "475598.23267999",
    "leverage": "1",
    "promoCredit": "0",
    "marketBalancesMap": {"BTC-USD": _BTC_USD, "ETH-USD": _ETH_USD},
}


class SimulatedRails(ScriptedVenue[int | httpx.Response]):
    """Rails' token service and balances endpoint, with their credential and token checks.

    ``credentials`` maps API key -> secret. ``wrapped=True`` answers ``{"balances": {...}}``
    (the older documented envelope). ``clock`` gives monotonic seconds (token expiry and the
    token rate window); ``token_lifetime`` is the ``expires_in`` it issues. ``calls`` counts the
    calls to the balances endpoint, ``token_calls`` every call to the token endpoint, ``tokens``
    lists the tokens issued, in order, and ``rate_limited`` the token calls refused with 429.
    ``fail_next(...)`` / ``fail_next_token(...)`` queue answers (an HTTP status, sent with
    ``{"message": ...}``, or a whole ``httpx.Response``) for the next balances / token calls;
    ``expire_tokens()`` forgets every issued token, as a key rotation on Rails' side would.

    Deprecated aliases, kept working: ``balance_requests`` (``calls``), ``token_requests``
    (``token_calls``) and ``revoke_tokens()`` (``expire_tokens()``).
    """

    def __init__(
        self,
        *,
        credentials: Mapping[str, str] | None = None,
        balances: Mapping[str, Any] | None = None,
        wrapped: bool = False,
        clock: Callable[[], float] = time.monotonic,
        token_lifetime: int = _LIFETIME,
        hosts: tuple[str, str] = (RAILS_AUTH_HOST, RAILS_HOST),
    ) -> None:
        super().__init__(hosts)
        self.credentials = (
            dict(credentials) if credentials is not None else {RAILS_TEST_API_KEY: RAILS_TEST_API_SECRET}
        )
        self.balances = dict(balances) if balances is not None else dict(RAILS_DOCUMENTED_BALANCES)
        self.wrapped = wrapped
        self.clock = clock
        self.token_lifetime = token_lifetime
        self._auth_host, self._host = hosts
        self._issued: dict[str, tuple[str, float]] = {}  # token -> (api key, expiry)
        self._windows: dict[str, deque[float]] = {}
        self._token_script: deque[int | httpx.Response] = deque()
        self.tokens: list[str] = []
        self.token_calls = 0
        self.rate_limited = 0

    def fail_next_token(self, *answers: int | httpx.Response) -> None:
        """Give these answers to the next token calls instead of the real ones."""
        with self._lock:
            self._token_script.extend(answers)

    def expire_tokens(self) -> None:
        """Forget every issued token: the next balances call with one gets a 401."""
        with self._lock:
            self._issued.clear()

    def revoke_tokens(self) -> None:
        """Deprecated alias of :meth:`expire_tokens` (still works)."""
        self.expire_tokens()

    balance_requests = deprecated_alias("calls")
    token_requests = deprecated_alias("token_calls")

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Answer one call to the token service or the User Account API."""
        host, path, method = request.url.host, request.url.path, request.method
        if host == self._auth_host and path == _TOKEN_PATH and method == "POST":
            self.token_calls += 1
            token_answer = self._token_script.popleft() if self._token_script else None
            return self._token(request) if token_answer is None else _scripted(token_answer)
        if host == self._host and path == _BALANCES_PATH and method == "GET":
            self.calls += 1
            answer = self.next_scripted()
            return self._balance(request) if answer is None else _scripted(answer)
        return _error(404, "Not Found")

    def _token(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("X-Api-Key", "")
        secret = self.credentials.get(key)
        given = request.headers.get("X-Api-Secret", "")
        if secret is None or not hmac.compare_digest(given.encode(), secret.encode()):
            return _error(401, "Invalid API key or secret")
        now = self.clock()
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - _WINDOW:
            window.popleft()
        if len(window) >= _TOKENS_PER_WINDOW:
            self.rate_limited += 1
            return _error(429, "Too many token requests")
        window.append(now)
        token = secrets.token_urlsafe(32)
        self._issued[token] = (key, now + self.token_lifetime)
        self.tokens.append(token)
        payload = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime}
        return json_response(200, payload)

    def _balance(self, request: httpx.Request) -> httpx.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        entry = self._issued.get(token) if scheme == "Bearer" else None
        if entry is None or self.clock() >= entry[1]:
            return _error(401, "Unauthorized")
        body = dict(self.balances)
        market = request.url.params.get("market")
        if market is not None:
            markets = body.get("marketBalancesMap", {})
            if market not in markets:
                return _error(400, f"Unknown market {market}")
            body["marketBalancesMap"] = {market: markets[market]}
        return json_response(200, {"balances": body} if self.wrapped else body)


def _error(status: int, message: str) -> httpx.Response:
    return json_response(status, {"message": message})


def _scripted(answer: int | httpx.Response) -> httpx.Response:
    if isinstance(answer, httpx.Response):
        return answer
    return _error(answer, f"scripted failure {answer}")


def demo_pair() -> tuple[SimulatedRails, Rails]:
    """A simulated Rails sandbox and a provider on its default (sandbox) hosts with the test keys."""
    from ..providers.rails import Rails  # noqa: PLC0415  # venue modules are imported lazily

    return SimulatedRails(), Rails(api_key=RAILS_TEST_API_KEY, api_secret=RAILS_TEST_API_SECRET)
