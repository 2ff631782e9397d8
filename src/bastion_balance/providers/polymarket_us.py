"""Polymarket US institutional: ``POST /v1/positions/balance`` (docs/venues/polymarket-us.md).

Authentication is OAuth2 client credentials with ``private_key_jwt`` through Auth0: an RS256
client assertion signed with the firm's RSA key buys a bearer token that lives 180 s. The token
is cached per (auth URL, client id) in the process-wide shared state and refreshed once, however
many fetches ask at the same moment (docs/decisions.md §9). A ``401`` on a cached token gets exactly
one refresh (docs/decisions.md §8).

Mapping (docs/decisions.md §7): ``total`` = ``balance`` + the exact sum of
``securities[*].marketValue``, ``available`` = ``buyingPower``, ``wallet`` = ``balance``,
``margin_used`` = ``marginRequirement``, currency = the request's ``currency``; ``breakdown`` holds
each security by symbol; every other numeric top-level figure (``excessCapital``,
``capitalRequirement``, ``totalSecurityNotionalValue``, ``openOrders`` ...) is in ``extra``.
camelCase and snake_case bodies are both accepted.
"""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from decimal import Decimal
from typing import Any, Final, final

import attrs
import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from .._convert import figures, structure
from .._decimal import exact_sum
from .._models import Balance, Holding
from .._protocol import Effect, Flow
from .._state import TokenCache, shared_state
from ..exceptions import (
    AuthenticationError,
    ConfigurationError,
    ExchangeAPIError,
    RateLimitedError,
    ServiceUnavailableError,
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
    check_base_url,
    credential,
    decode_object,
    environment_url,
    error_body,
    label_or,
    now_utc,
    one_of,
    pace_budget,
    parse_bearer_token,
    retry_after_seconds,
    status_error,
    throttled_call,
    window_pace,
)

__all__ = [
    "ASSERTION_LIFETIME",
    "BALANCE_PATH",
    "CLIENT_ASSERTION_TYPE",
    "ENVIRONMENTS",
    "TOKEN_PATH",
    "PolymarketUS",
    "client_assertion",
    "grpc_error",
    "token_error",
]


VENUE: Final = "polymarket_us"
BALANCE_PATH: Final = "/v1/positions/balance"
TOKEN_PATH: Final = "/oauth/token"
CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Seconds a client assertion is valid; Auth0 accepts at most 300 (exp - iat).
ASSERTION_LIFETIME: Final = 120
#: A cached token is used only while it stays valid this many more seconds (the docs' sample).
TOKEN_MARGIN: Final = 30.0
#: The documented token lifetime, used when the token answer leaves ``expires_in`` out.
DEFAULT_TOKEN_LIFETIME: Final = 180.0
#: Rate limits are per participant firm (docs/decisions.md §11): 20 requests per second.
FIRM_LIMIT: Final = (20.0, 1.0)  # 20 requests in any second, per firm

#: environment -> (API base URL = default JWT audience, Auth0 tenant URL).
ENVIRONMENTS: Final[Mapping[str, tuple[str, str]]] = {
    "prod": ("https://api.prod.polymarketexchange.com", "https://pmx-prod.us.auth0.com"),
    "preprod": ("https://api.preprod.polymarketexchange.com", "https://pmx-preprod.us.auth0.com"),
}

_PARTICIPANT: Final = re.compile(r"firms/([^/\s]+)/users/[^/\s]+")
_ACCOUNT: Final = re.compile(r"firms/[^/\s]+/accounts/[^/\s]+")
_CURRENCY: Final = re.compile(r"[A-Z0-9]{2,12}")

_AUTH: Final = AuthenticationError
_UNAVAILABLE: Final = ServiceUnavailableError

#: gRPC status codes in the API's error body ``{"code", "message", "details"}``.
_GRPC: Final[Mapping[int, tuple[type[ExchangeAPIError], str]]] = {
    16: (_AUTH, "UNAUTHENTICATED: the bearer token is missing, invalid or expired"),
    7: (_AUTH, "PERMISSION_DENIED: check the x-participant-id, the account and the read:positions scope"),
    8: (RateLimitedError, "RESOURCE_EXHAUSTED: the firm's rate limit is exceeded"),
    14: (_UNAVAILABLE, "UNAVAILABLE: the exchange is unavailable"),
    13: (_UNAVAILABLE, "INTERNAL: the exchange had an internal error"),
    4: (_UNAVAILABLE, "DEADLINE_EXCEEDED: the exchange did not answer in time"),
}

#: OAuth2 / Auth0 ``error`` strings of the token endpoint.
_OAUTH: Final[Mapping[str, tuple[type[ExchangeAPIError], str]]] = {
    "invalid_client": (_AUTH, "the client assertion does not verify against the registered public key"),
    "invalid_client_assertion": (
        _AUTH,
        "the client assertion's claims were refused (aud, exp, a reused jti, or not RS256)",
    ),
    "unauthorized_client": (_AUTH, "the client may not use the client-credentials grant"),
    "access_denied": (_AUTH, "access denied (unknown audience, or the client is not authorised for it)"),
    "invalid_grant": (_AUTH, "the grant was refused"),
    "invalid_scope": (_AUTH, "the requested scope was refused"),
    "too_many_requests": (RateLimitedError, "the auth service's rate limit is exceeded"),
    "server_error": (_UNAVAILABLE, "the auth service had an internal error"),
    "temporarily_unavailable": (_UNAVAILABLE, "the auth service is temporarily unavailable"),
}

_MAX_MESSAGE: Final = 200


def client_assertion(
    *,
    client_id: str,
    private_key: RSAPrivateKey,
    token_url: str,
    issued_at: int,
    jti: str,
    lifetime: int = ASSERTION_LIFETIME,
) -> str:
    """The RS256 client-assertion JWT for Auth0's ``private_key_jwt``.

    Polymarket's flow is written out in docs/venues/polymarket-us.md, 'How authentication works'.

    Claims: ``iss`` = ``sub`` = ``client_id``, ``aud`` = the token endpoint URL, ``iat`` =
    ``issued_at`` (Unix s), ``exp`` = ``iat + lifetime`` (at most 300 s), ``jti`` unique per
    request. Pure and deterministic (RSASSA-PKCS1-v1_5 has no randomness).
    """
    if not 0 < lifetime <= 300:
        msg = f"{VENUE}: the client assertion may live at most 300 s, got {lifetime}"
        raise ConfigurationError(msg)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "jti": jti,
    }
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"typ": "JWT"})


def _text(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def _grpc_code(value: object) -> int | None:
    # Bounded: int(Decimal("1e999999")) is a million digits that str() then refuses.
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and value == value.to_integral_value()
        and value.copy_abs() < 10**18  # abs() would round to the context and overflow
    ):
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)  # ASCII: "²".isdigit() is true but int() refuses it
    return None


def _make(
    cls: type[ExchangeAPIError], text: str, code: str | int | None, response: httpx.Response
) -> ExchangeAPIError:
    status = response.status_code
    if cls is RateLimitedError:
        return RateLimitedError(
            text,
            venue=VENUE,
            code=code,
            status_code=status,
            retry_after=retry_after_seconds(response.headers),
        )
    if cls is ServiceUnavailableError:  # a 503's Retry-After: the retry waits at least that long
        wait = retry_after_seconds(response.headers)
        return ServiceUnavailableError(text, venue=VENUE, code=code, status_code=status, retry_after=wait)
    return cls(text, venue=VENUE, code=code, status_code=status)


def grpc_error(response: httpx.Response) -> ExchangeAPIError:
    """The exception for a non-200 API answer: by gRPC ``code`` first, HTTP status second."""
    body = error_body(response, venue=VENUE)
    code = _grpc_code(body.get("code"))
    message = _text(body.get("message", "")) or "no message"
    known = _GRPC.get(code) if code is not None else None
    if known is None:
        return status_error(response, venue=VENUE, message=f"code {code}: {message}", code=code)
    cls, meaning = known
    text = f"{VENUE}: HTTP {response.status_code}: gRPC code {code} {meaning}: {message}"
    return _make(cls, text, code, response)


def token_error(response: httpx.Response) -> ExchangeAPIError:
    """The exception for a refused token request: by OAuth ``error`` first, HTTP status second."""
    body = error_body(response, venue=VENUE)
    error = body.get("error")
    code = error if isinstance(error, str) and error else None
    description = _text(body.get("error_description", "")) or "no description"
    known = _OAUTH.get(code) if code is not None else None
    if known is None:
        if code is not None and response.status_code in {400, 401, 403}:
            # Any other refusal of our credentials by the token endpoint is still an auth error.
            known = (_AUTH, "the token request was refused")
        else:
            return status_error(
                response, venue=VENUE, message=f"token request: {code or 'error'}: {description}", code=code
            )
    cls, meaning = known
    text = f"{VENUE}: token request: HTTP {response.status_code}: {code}: {meaning}: {description}"
    return _make(cls, text, code, response)


@functools.lru_cache(maxsize=1024)  # the same few field names in every answer
def camel_case(key: str) -> str:
    """``"buying_power"`` -> ``"buyingPower"`` (camelCase keys are returned unchanged)."""
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel_keys(obj: Mapping[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = camel_case(key)
        if name in out and out[name] != value:
            msg = "the same field is sent in camelCase and snake_case with different values"
            raise UnexpectedResponseError(msg, venue=VENUE, field=f"{path}.{name}", value=value)
        out[name] = value
    return out


def normalize(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The balance object with snake_case keys (v1beta1 docs) turned into camelCase.

    Security symbols (the keys of ``securities``) are names, not fields: they stay as sent.
    """
    securities = payload.get("securities")
    if (
        securities.__class__ is dict
        and "_" not in "".join(payload)
        and not any(entry.__class__ is not dict or "_" in "".join(entry) for entry in securities.values())
    ):
        return dict(payload)  # camelCase throughout (the v1 answer): nothing to rename
    result = _camel_keys(payload, "$")
    securities = result.get("securities")
    if securities is None:
        result["securities"] = {}
    elif isinstance(securities, dict):
        result["securities"] = {
            symbol: _camel_keys(entry, f"$.securities.{symbol}") if isinstance(entry, dict) else entry
            for symbol, entry in securities.items()
        }
    return result


@attrs.frozen
class _Security:
    """One ``SecurityEntry``: decimal strings; ``haircut`` (int64 as string) is not used."""

    marketValue: Decimal  # camelCase: the venue's field names
    balance: Decimal | None = None
    notionalValue: Decimal | None = None
    availableValue: Decimal | None = None


@attrs.frozen
class _AccountBalance:
    """``GetAccountBalanceResponse`` after key normalisation."""

    balance: Decimal
    buyingPower: Decimal
    marginRequirement: Decimal | None = None
    securities: dict[str, _Security] = attrs.field(factory=dict)


def _client_id(value: str) -> str:
    return credential(value, venue=VENUE, name="client_id")


def _private_key(value: str | bytes) -> RSAPrivateKey:
    if isinstance(value, str):
        data = value.strip().encode("utf-8")
    elif isinstance(value, bytes | bytearray):
        data = bytes(value).strip()
    else:
        msg = f"{VENUE}: private_key is required (the RSA private key as PEM text or bytes)"
        raise ConfigurationError(msg)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        msg = f"{VENUE}: private_key is encrypted; pass the decrypted PEM (the key is never stored)"
        raise ConfigurationError(msg) from None
    except (ValueError, UnsupportedAlgorithm):
        msg = f"{VENUE}: private_key is not a PEM private key (expected '-----BEGIN ... PRIVATE KEY-----')"
        raise ConfigurationError(msg) from None
    if not isinstance(key, RSAPrivateKey):
        msg = f"{VENUE}: private_key must be an RSA key (the client assertion is RS256)"
        raise ConfigurationError(msg)
    if key.key_size < 2048:
        msg = f"{VENUE}: private_key must be an RSA key of at least 2048 bits"
        raise ConfigurationError(msg)
    return key


def _participant(value: str) -> str:
    text = credential(value, venue=VENUE, name="participant_id")
    if not _PARTICIPANT.fullmatch(text):
        msg = f"{VENUE}: participant_id must look like 'firms/<FIRM>/users/<USER>' (as given at onboarding)"
        raise ConfigurationError(msg)
    return text


def _account(value: str) -> str:
    text = credential(value, venue=VENUE, name="account")
    if not _ACCOUNT.fullmatch(text):
        msg = f"{VENUE}: account must look like 'firms/<FIRM>/accounts/<ACCOUNT>', got {text!r}"
        raise ConfigurationError(msg)
    return text


def _currency(value: object) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        msg = f"{VENUE}: currency must be an upper-case ISO code such as 'USD', got {value!r}"
        raise ConfigurationError(msg)
    return value


def _environment(value: object) -> str:
    return one_of(value, ENVIRONMENTS, venue=VENUE, name="environment")


def _label(value: str | None) -> str:
    return label_or(value, VENUE)


def _api_host(environment: str) -> str:
    return ENVIRONMENTS[environment][0]


def _checked_auth_url(value: str | None, instance: Any) -> str:  # noqa: ANN401  # the provider being built
    auth = ENVIRONMENTS[instance.environment][1]
    auth_url = check_base_url(value, default=auth, venue=VENUE, name="auth_url")
    if httpx.URL(auth_url).path not in {"", "/"}:
        msg = (
            f"{VENUE}: auth_url is the auth service's base URL (scheme and host, e.g. {auth}); "
            f"the provider appends {TOKEN_PATH}"
        )
        raise ConfigurationError(msg)
    return auth_url


def _checked_audience(value: str | None, instance: Any) -> str:  # noqa: ANN401  # the provider being built
    audience = _api_host(instance.environment) if value is None else value
    return credential(audience, venue=VENUE, name="audience")


#: URLs and audience default to the environment's (mypy's attrs plugin cannot read a converter that
#: sees the instance, hence the ignores where they are used; the parameters' type is str | None).
_BASE_URL: Final = environment_url(_api_host, venue=VENUE)
_AUTH_URL: Final = attrs.Converter(_checked_auth_url, takes_self=True)
_AUDIENCE: Final = attrs.Converter(_checked_audience, takes_self=True)


@final
@attrs.frozen(kw_only=True)
class PolymarketUS(NoPickle):
    """A Polymarket US institutional account, read through ``POST /v1/positions/balance``.

    ``client_id`` and ``private_key`` (RSA, PEM text or bytes) come from onboarding, as do
    ``participant_id`` (``firms/F/users/U``, sent as ``x-participant-id``) and ``account``
    (``firms/F/accounts/A``, see ``GET /v1/accounts``). ``environment`` (``"prod"`` or
    ``"preprod"``) only picks the defaults of ``base_url``, ``auth_url`` (the Auth0 tenant, scheme
    and host; ``/oauth/token`` is appended) and ``audience`` (the environment's API URL).
    ``clock`` returns Unix time in nanoseconds for the client assertion's ``iat``/``exp``.

    >>> pm = PolymarketUS(client_id="...", private_key=pem, participant_id="firms/F/users/U",
    ...                   account="firms/F/accounts/A")                 # doctest: +SKIP
    >>> fetch_balance(pm).available                                     # doctest: +SKIP
    """

    client_id: str = attrs.field(converter=_client_id, repr=False)
    private_key: RSAPrivateKey = attrs.field(converter=_private_key, repr=False, eq=False)
    participant_id: str = attrs.field(converter=_participant, repr=False)
    account: str = attrs.field(converter=_account)
    currency: str = attrs.field(default="USD", converter=_currency)
    environment: str = attrs.field(default="prod", converter=_environment)
    label: str = attrs.field(default=None, converter=_label)
    base_url: str = attrs.field(default=None, converter=_BASE_URL)  # type: ignore[misc]  # see _BASE_URL
    auth_url: str = attrs.field(default=None, converter=_AUTH_URL)  # type: ignore[misc]
    audience: str = attrs.field(default=None, converter=_AUDIENCE)  # type: ignore[misc]
    clock: Callable[[], int] = attrs.field(default=time.time_ns, repr=False, eq=False)

    @property
    def venue(self) -> str:
        """``"polymarket_us"``."""
        return VENUE

    @property
    def watch_pace(self) -> WatchPace:
        """One balance read per 0.0625 s per participant firm: 20 a second, shared by the firm's accounts
        (``bb.watch``)."""
        return window_pace(pace_budget(VENUE, self.base_url, "firm:" + self.firm), *FIRM_LIMIT)

    @property
    def token_url(self) -> str:
        """The Auth0 token endpoint, also the client assertion's ``aud``."""
        return self.auth_url + TOKEN_PATH

    @property
    def firm(self) -> str:
        """The firm segment of ``participant_id``: what the venue's rate limits are keyed on."""
        found = _PARTICIPANT.fullmatch(self.participant_id)
        assert found is not None  # noqa: S101  # checked at construction
        return found.group(1)

    def build_token_request(self, issued_at: int, jti: str) -> httpx.Request:
        """The client-credentials token request, with a client assertion issued at ``issued_at``."""
        assertion = Secret(
            client_assertion(
                client_id=self.client_id,
                private_key=self.private_key,
                token_url=self.token_url,
                issued_at=issued_at,
                jti=jti,
            )
        )
        body = {
            "client_id": self.client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
            "audience": self.audience,
            "grant_type": "client_credentials",
        }
        return SignedRequest(
            "POST",
            self.token_url,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            content=json.dumps(body, separators=(",", ":")).encode(),
        )

    def parse_token_response(self, response: httpx.Response) -> tuple[str, float]:
        """``(access token, lifetime in seconds)`` from the token answer, or the error it means."""
        if response.status_code != 200:
            raise token_error(response)
        return parse_bearer_token(response, venue=VENUE, default_lifetime=DEFAULT_TOKEN_LIFETIME)

    def build_request(self, token: str) -> httpx.Request:
        """The balance request for ``account`` in ``currency``, authorised by bearer ``token``."""
        body = json.dumps({"name": self.account, "currency": self.currency}, separators=(",", ":"))
        headers = {
            "Authorization": Secret(f"Bearer {token}"),
            "x-participant-id": self.participant_id,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        return SignedRequest("POST", self.base_url + BALANCE_PATH, headers=headers, content=body.encode())

    def parse_response(self, response: httpx.Response) -> Balance:
        """The Balance in a ``GetAccountBalanceResponse``, or the exception an error body means."""
        if response.status_code != 200:
            raise grpc_error(response)
        payload = decode_object(response, venue=VENUE)
        return self._balance(payload)

    def _balance(self, payload: Mapping[str, Any]) -> Balance:
        result = normalize(payload)
        wire = structure(result, _AccountBalance, venue=VENUE, path="$")
        extra = figures(result, _AccountBalance, venue=VENUE, path="$")
        extra.pop("buyingPower")
        securities = wire.securities
        total = exact_sum([wire.balance, *(s.marketValue for s in securities.values())])
        breakdown = {
            symbol: Holding(currency=self.currency, total=s.marketValue, available=s.availableValue)
            for symbol, s in securities.items()
        }
        return Balance(
            label=self.label,
            exchange=VENUE,
            currency=self.currency,
            total=total,
            available=wire.buyingPower,
            wallet=wire.balance,
            margin_used=wire.marginRequirement,
            breakdown=breakdown,
            extra=extra,
            fetched_at=now_utc(),
            raw=payload,
        )

    def _token(self, cache: TokenCache) -> Generator[Effect, httpx.Response | None, tuple[str, bool]]:
        """A bearer token: ``(token, came from the cache)``; only one fetch asks Auth0 at a time."""
        return (
            yield from cached_token(
                cache,
                margin=TOKEN_MARGIN,
                request=lambda: self.build_token_request(self.clock() // 10**9, str(uuid.uuid4())),
                parse=self.parse_token_response,
            )
        )

    def balance_flow(self) -> Flow:
        """Get a bearer token (cached, refreshed once), throttle per firm, send, parse.

        A ``401`` (gRPC 16) on a token from the cache drops it, fetches a new one and retries
        once; any other failure is raised.
        """
        # A token is good for one client and one audience: both key the cache.
        cache = shared_state(VENUE, self.auth_url, f"{self.client_id} {self.audience}").token
        limiter = shared_state(VENUE, self.base_url, "firm:" + self.firm).window_limiter("firm", *FIRM_LIMIT)
        return (
            yield from bearer_call(
                lambda: self._token(cache),
                lambda token: throttled_call(limiter, lambda: self.build_request(token), self.parse_response),
                cache=cache,
                is_refused=lambda exc: exc.status_code == 401 or exc.code == 16,
            )
        )
