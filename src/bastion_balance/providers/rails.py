"""Rails (rails.xyz) perpetuals: ``GET /api/v1/balances`` with a cached bearer token.

docs/venues/rails.md, 'Field mapping': ``total`` = ``totalBalance``, ``available`` =
``availableBalance``, ``wallet`` = ``totalBalance``, ``margin_used`` = ``margin``, currency
``USD``; every other numeric top-level figure (``deposit``, ``pnl``, ``maintenanceMargin`` ...)
is kept in ``extra`` exactly as sent; ``breakdown`` holds one :class:`Holding` per market of
``marketBalancesMap`` whose ``total`` is that market's ``margin``.

The bearer token (30 minutes) comes from ``POST {auth_url}/api/v1/token`` with the key and
secret in headers (no signing). It is cached per (auth URL, key) for the whole process and
refreshed once, however many fetches ask at the same moment, when fewer than 300 s remain.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, Literal, final

import attrs
import httpx

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
    bearer_call,
    cached_token,
    credential,
    decode_object,
    environment_url,
    error_body,
    error_code,
    error_text,
    extra_figures,
    label_or,
    now_utc,
    one_of,
    pace_budget,
    parse_bearer_token,
    printable,
    send_and_parse,
    status_error,
)

__all__ = [
    "BALANCES_PATH",
    "ENVIRONMENTS",
    "TOKEN_LIMIT",
    "TOKEN_MARGIN",
    "TOKEN_PATH",
    "Rails",
    "rails_error",
]

VENUE: Final = "rails"
TOKEN_PATH: Final = "/api/v1/token"
BALANCES_PATH: Final = "/api/v1/balances"
CURRENCY: Final = "USD"

#: environment -> (base_url, auth_url). Rails publishes no production hosts: ``None``.
ENVIRONMENTS: Final[Mapping[str, tuple[str, str] | None]] = {
    "sandbox": ("https://user-account.sandbox.rails.xyz", "https://api-auth.sandbox.rails.xyz"),
    "production": None,
}

#: Seconds of validity a cached token must still have to be used (tokens last 1800 s).
TOKEN_MARGIN: Final = 300.0
#: Lifetime assumed when the token answer leaves ``expires_in`` out (the documented one).
DOCUMENTED_LIFETIME: Final = 1800

#: The token endpoint's limit is 20 requests per minute per key. A token bucket of capacity C
#: refilled at r per second lets through at most C + 60 r requests in any 60 s window, so
#: (10, 10/60) never passes 20 in any window, while (20, 20/60) would allow 40 in the first minute.
TOKEN_LIMIT: Final[tuple[float, float]] = (10, 10 / 60)

_MARKET: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SNIPPET_CHARS: Final = 120

#: (endpoint, HTTP status) -> what it means; the class comes from the status (``status_error``).
_MEANINGS: Final[Mapping[tuple[str, int], str]] = {
    ("token", 400): "Rails refused the token request",
    ("token", 401): "the API key or secret is wrong, revoked or mistyped",
    ("token", 403): "the API key is not allowed to obtain a token",
    ("token", 429): "the token endpoint allows 20 requests per minute per API key",
    ("balances", 400): "Rails refused the request (unknown market?)",
    ("balances", 401): "Rails refused the bearer token (expired, or the key was revoked)",
    ("balances", 403): "the key lacks permission for the User Account API",
    ("balances", 404): "Rails does not know the endpoint or market",
    ("balances", 429): "Rails is throttling the User Account API",
}


def _error_details(response: httpx.Response) -> tuple[str, str | int | None]:
    """The message (``message``/``error`` member, else a short snippet) and code of an answer."""
    body = error_body(response, venue=VENUE)
    text = error_text(body, "message", "error", "error_description", "detail")
    code = body.get("code")
    return printable(response.text if text is None else text, _SNIPPET_CHARS), error_code(code)


def rails_error(response: httpx.Response, *, endpoint: Literal["token", "balances"]) -> ExchangeAPIError:
    """The exception for a non-2xx answer of ``endpoint`` (class by status, venue text kept)."""
    status = response.status_code
    detail, code = _error_details(response)
    meaning = _MEANINGS.get((endpoint, status))
    if meaning is None:
        meaning = "Rails is unavailable" if status >= 500 else "Rails refused the request"
    return status_error(response, venue=VENUE, message=f"{meaning} ({endpoint}): {detail}", code=code)


@attrs.frozen
class _Balances:
    """The balances object: total and available required, the rest optional."""

    totalBalance: Decimal  # the venue's field names
    availableBalance: Decimal
    margin: Decimal | None = None


@attrs.frozen
class _Market:
    """One entry of ``marketBalancesMap``; only ``margin`` is mapped (the rest stays in raw)."""

    margin: Decimal | None = None


def _key(value: str) -> str:
    return credential(value, venue=VENUE, name="api_key")


def _secret(value: str) -> str:
    return credential(value, venue=VENUE, name="api_secret")


def _label(value: str | None) -> str:
    return label_or(value, VENUE)


def _environment(value: object) -> str:
    return one_of(value, ENVIRONMENTS, venue=VENUE, name="environment")


def _host(index: int) -> Callable[[str], str | None]:
    def host(environment: str) -> str | None:
        hosts = ENVIRONMENTS[environment]
        return None if hosts is None else hosts[index]

    return host


_NO_HOSTS: Final = (
    "Rails publishes no production hosts; give base_url and auth_url explicitly, no host is guessed"
)
#: The environment's hosts unless given (mypy's attrs plugin cannot read a converter that sees the
#: instance, hence the ignores where they are used; the parameters' type is str | None).
_BASE_URL: Final = environment_url(_host(0), venue=VENUE, missing=_NO_HOSTS)
_AUTH_URL: Final = environment_url(_host(1), venue=VENUE, name="auth_url", missing=_NO_HOSTS)


def _market(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _MARKET.fullmatch(value):
        msg = f"rails: market must be a Rails market name such as 'ETH-USD', got {value!r}"
        raise ConfigurationError(msg)
    return value


def _unwrap(payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The balances object and its path: the body itself, or its ``balances`` member."""
    inner = payload.get("balances")
    if isinstance(inner, dict):
        return inner, "$.balances"
    return payload, "$"


@final
@attrs.frozen(kw_only=True)
class Rails(NoPickle):
    """A Rails perpetuals account, read through the User Account API.

    ``environment`` picks the default hosts: ``"sandbox"`` (the default) uses Rails' published
    sandbox; ``"production"`` needs ``base_url`` and ``auth_url`` given explicitly because Rails
    publishes no production hosts. ``market`` (e.g. ``"ETH-USD"``) asks for one market only.

    >>> rails = Rails(api_key="...", api_secret="...")            # doctest: +SKIP
    >>> fetch_balance(rails).total                                # doctest: +SKIP
    Decimal('99996952.15429778')
    """

    api_key: str = attrs.field(converter=_key, repr=False)
    api_secret: str = attrs.field(converter=_secret, repr=False)
    environment: Literal["sandbox", "production"] = attrs.field(default="sandbox", converter=_environment)
    label: str = attrs.field(default=None, converter=_label)
    base_url: str = attrs.field(default=None, converter=_BASE_URL)  # type: ignore[misc]  # see _BASE_URL
    auth_url: str = attrs.field(default=None, converter=_AUTH_URL)  # type: ignore[misc]
    market: str | None = attrs.field(default=None, converter=_market)
    clock: Callable[[], int] = attrs.field(default=time.time_ns, repr=False, eq=False)

    @property
    def venue(self) -> str:
        """``"rails"``."""
        return VENUE

    @property
    def watch_pace(self) -> WatchPace:
        """No pace of its own: the User Account API has no per-user limit, and the token (limited to 20
        requests a minute) is cached for its life (``bb.watch``)."""
        return WatchPace(pace_budget(VENUE, self.base_url, self.api_key), 0.0)

    def build_token_request(self) -> httpx.Request:
        """``POST {auth_url}/api/v1/token`` with the key and secret in headers, no body."""
        headers = {
            "X-Api-Key": Secret(self.api_key),
            "X-Api-Secret": Secret(self.api_secret),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        return SignedRequest("POST", self.auth_url + TOKEN_PATH, headers=headers)

    def parse_token_response(self, response: httpx.Response) -> tuple[str, float]:
        """``(access_token, lifetime in seconds)`` from a token answer, or the error it means."""
        if response.status_code != 200:
            raise rails_error(response, endpoint="token")
        return parse_bearer_token(response, venue=VENUE, default_lifetime=DOCUMENTED_LIFETIME)

    def build_request(self, token: str) -> httpx.Request:
        """``GET {base_url}/api/v1/balances[?market=...]`` with ``Authorization: Bearer``."""
        params = {"market": self.market} if self.market is not None else None
        headers = {
            "Authorization": Secret(f"Bearer {token}"),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        return SignedRequest("GET", self.base_url + BALANCES_PATH, params=params, headers=headers)

    def parse_response(self, response: httpx.Response) -> Balance:
        """The Balance in a balances answer (bare or wrapped in ``balances``), or its error."""
        if response.status_code != 200:
            raise rails_error(response, endpoint="balances")
        payload = decode_object(response, venue=VENUE)
        body, path = _unwrap(payload)
        wire = structure(body, _Balances, venue=VENUE, path=path)
        return Balance(
            label=self.label,
            exchange=VENUE,
            currency=CURRENCY,
            total=wire.totalBalance,
            available=wire.availableBalance,
            wallet=wire.totalBalance,
            margin_used=wire.margin,
            breakdown=self._markets(body.get("marketBalancesMap"), path),
            extra=extra_figures(body, skip={"totalBalance", "availableBalance"}),
            fetched_at=now_utc(),
            raw=payload,
        )

    def _markets(self, markets: object, path: str) -> dict[str, Holding]:
        if markets is None:
            return {}
        where = f"{path}.marketBalancesMap"
        if not isinstance(markets, dict):
            msg = "marketBalancesMap is not an object"
            raise UnexpectedResponseError(msg, venue=VENUE, field=where, value=markets)
        holdings: dict[str, Holding] = {}
        for name, entry in markets.items():
            if not isinstance(entry, dict):
                msg = "a market entry is not an object"
                raise UnexpectedResponseError(msg, venue=VENUE, field=f"{where}.{name}", value=entry)
            market = structure(entry, _Market, venue=VENUE, path=f"{where}.{name}")
            holdings[name] = Holding(currency=CURRENCY, total=market.margin, available=None)
        return holdings

    def balance_flow(self) -> Flow:
        """Get a token (cached, refreshed once per credential), fetch the balances, parse.

        Only the fetch that holds the credential's refresh lock asks for a token, and it
        throttles itself under the lock (the limiter never waits for the lock, so this cannot
        deadlock), so concurrent fetches neither spend the token endpoint's budget nor queue
        on a limiter they do not need. A ``401`` on a cached token drops it and gets exactly
        one refresh and retry (docs/decisions.md §8); a ``401`` on a token just issued is raised.
        """
        state = shared_state(VENUE, self.auth_url, self.api_key)
        return (
            yield from bearer_call(
                lambda: cached_token(
                    state.token,
                    margin=TOKEN_MARGIN,
                    request=self.build_token_request,
                    parse=self.parse_token_response,
                    limiter=state.limiter("token", *TOKEN_LIMIT),
                ),
                lambda token: send_and_parse(self.build_request(token), self.parse_response),
                cache=state.token,
                is_refused=lambda exc: exc.status_code == 401,
            )
        )
