"""A simulated Polymarket US institutional exchange: its Auth0 tenant and its positions API.

The token endpoint checks the client assertion the way Auth0's ``private_key_jwt`` does,
written from the docs with ``cryptography`` directly (not through PyJWT or the library's
signer): RS256 only, the signature against the registered public key (else ``invalid_client``),
``iss`` == ``sub`` == ``client_id``, ``aud`` == the token URL, ``exp`` present, ``exp - iat <=
300`` and not passed, and a ``jti`` never seen before (else ``invalid_client_assertion``). It
issues opaque bearer tokens that live 180 s on the simulator's clock.

The token URL an assertion must name is, as for a real tenant, the endpoint the request was
sent to (scheme, host, port and ``/oauth/token``), unless ``token_url=`` pins it. So the
simulator can be served over real sockets: ``SimulatedPolymarketUS(host="127.0.0.1")`` answers
both the token endpoint and the API on one loopback host (routed by path) and expects ``aud`` ==
``http://127.0.0.1:PORT/oauth/token`` for the port the request arrived on.

The API checks the bearer token (unknown or expired -> 401, gRPC code 16), ``x-participant-id``
(missing or wrong -> 403, code 7) and the account name in the body, then answers.

SYNTHETIC: seed 003 (the venue's OpenAPI page) documents the response *schema* but gives no
example response, so :data:`POLYMARKET_US_SYNTHETIC_BALANCE` is made up by us to exercise every
documented field, so the mapping can be checked end to end. Its figures are not Polymarket's.

The test RSA key pair is generated at runtime, once per process; no private key is stored in
the repository.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ._simulator import ScriptedVenue, deprecated_alias, json_response

if TYPE_CHECKING:
    from ..providers.polymarket_us import PolymarketUS

#: What ``bastion_balance.testing`` exports of this venue (``demo_pair`` is the demo's, by name).
__all__ = [
    "POLYMARKET_US_SYNTHETIC_BALANCE",
    "POLYMARKET_US_TEST_ACCOUNT",
    "POLYMARKET_US_TEST_CLIENT_ID",
    "POLYMARKET_US_TEST_PARTICIPANT_ID",
    "SimulatedPolymarketUS",
    "polymarket_us_test_private_key_pem",
    "polymarket_us_test_public_key_pem",
]

POLYMARKET_US_TEST_CLIENT_ID: Final = "bastion-test-polymarket-us-client"
POLYMARKET_US_TEST_PARTICIPANT_ID: Final = "firms/BASTION-TEST/users/trader-1"
POLYMARKET_US_TEST_ACCOUNT: Final = "firms/BASTION-TEST/accounts/main"

#: SYNTHETIC (seed 003 has no response example): every documented field of
#: GetAccountBalanceResponse, camelCase as docs.polymarket.us shows it. total = balance + the
#: securities' marketValue = 1250.50 + 312.40 + 87.6050 = 1650.5050. The other figures are made
#: to agree with each other (haircuts in basis points, excessCapital = balance +
#: totalSecurityAvailableValue - capitalRequirement, buyingPower = balance +
#: totalSecurityAvailableValue - openOrders - marginRequirement), as an illustration only.
POLYMARKET_US_SYNTHETIC_BALANCE: Final[Mapping[str, Any]] = {
    "balance": "1250.50",
    "capitalRequirement": "100.00",
    "excessCapital": "1486.124",
    "buyingPower": "1125.874",
    "securities": {
        "tec-nfl-2026-11-29-kc-lv": {
            "balance": "520",
            "marketValue": "312.40",
            "haircut": "1500",
            "notionalValue": "520.00",
            "availableValue": "265.54",
        },
        "pol-fed-rate-cut-2026-12": {
            "balance": "125",
            "marketValue": "87.6050",
            "haircut": "2000",
            "notionalValue": "125.00",
            "availableValue": "70.084",
        },
    },
    "totalSecurityNotionalValue": "645.00",
    "totalSecurityAvailableValue": "335.624",
    "openOrders": "400.00",
    "alternateCapitalRequirementCurrency": "",
    "alternateCapitalRequirement": "0",
    "unsettledFunds": "25.00",
    "marginRequirement": "60.25",
    "updateTime": "2026-11-24T12:00:00Z",
}

_TOKEN_PATH: Final = "/oauth/token"
_BALANCE_PATH: Final = "/v1/positions/balance"
_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_TOKEN_LIFETIME: Final = 180
_MAX_ASSERTION_LIFETIME: Final = 300
_GRPC_FOR_STATUS: Final[Mapping[int, tuple[int, str]]] = {
    400: (3, "invalid argument"),
    401: (16, "unauthenticated: token expired"),
    403: (7, "permission denied"),
    404: (5, "not found"),
    429: (8, "rate limit exceeded"),
    500: (13, "internal error"),
    503: (14, "service unavailable"),
    504: (4, "deadline exceeded"),
}


@functools.cache
def _test_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def polymarket_us_test_private_key_pem() -> str:
    """The test client's RSA private key (PKCS#8 PEM), generated once per process."""
    return (
        _test_key()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode("ascii")
    )


def polymarket_us_test_public_key_pem() -> str:
    """The public half of the test key: what the firm registers at onboarding."""
    return (
        _test_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _oauth(status: int, error: str, description: str) -> httpx.Response:
    return json_response(status, {"error": error, "error_description": description})


def _grpc(status: int, code: int, message: str, **headers: str) -> httpx.Response:
    return json_response(status, {"code": code, "message": message, "details": []}, **headers)


class SimulatedPolymarketUS(ScriptedVenue[int | httpx.Response]):
    """Polymarket US institutional: an Auth0 token endpoint and ``POST /v1/positions/balance``.

    ``clients`` maps client id -> registered public key (PEM); ``participants`` maps
    participant id -> the accounts it may read; ``balance`` is the answer (default: the
    synthetic one). ``clock`` gives Unix ns (token expiry, assertion windows).
    ``host`` serves the Auth0 tenant and the API on that one host (e.g. ``"127.0.0.1"`` behind a
    :class:`~bastion_balance.testing.LoopbackServer`), told apart by path; the API ``audience``
    stays ``https://<api_host>``. A client assertion's ``aud`` must be the URL the token
    request was sent to, or exactly ``token_url`` when that is given.
    ``token_calls`` counts token requests (accepted or not), ``tokens_issued`` the tokens
    handed out, ``calls`` the balance calls. ``fail_next(...)`` queues answers for the
    next balance calls (an HTTP status, answered with the matching gRPC body, or an
    ``httpx.Response``); ``fail_next_token(...)`` does the same for token requests (an OAuth
    ``error`` string, answered with 401, or an HTTP status or ``httpx.Response``).
    ``expire_tokens()`` forgets every issued token.

    Deprecated aliases, kept working: ``balance_calls`` (``calls``) and ``token_requests``
    (``token_calls``).
    """

    def __init__(
        self,
        *,
        clients: Mapping[str, str] | None = None,
        participants: Mapping[str, tuple[str, ...]] | None = None,
        balance: Mapping[str, Any] | None = None,
        auth_host: str = "pmx-prod.us.auth0.com",
        api_host: str = "api.prod.polymarketexchange.com",
        audience: str | None = None,
        host: str | None = None,
        token_url: str | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        registered = (
            clients
            if clients is not None
            else {POLYMARKET_US_TEST_CLIENT_ID: polymarket_us_test_public_key_pem()}
        )
        self._keys = {cid: self._load_public(pem) for cid, pem in registered.items()}
        self.participants = (
            dict(participants)
            if participants is not None
            else {POLYMARKET_US_TEST_PARTICIPANT_ID: (POLYMARKET_US_TEST_ACCOUNT,)}
        )
        self.balance = dict(balance) if balance is not None else dict(POLYMARKET_US_SYNTHETIC_BALANCE)
        self._auth_host = host if host is not None else auth_host
        self._api_host = host if host is not None else api_host
        super().__init__((self._auth_host, self._api_host))
        self._token_url = token_url
        self.audience = audience if audience is not None else f"https://{api_host}"
        self.clock = clock
        self._jtis: set[str] = set()
        self._tokens: dict[str, int] = {}  # token -> expiry (Unix ns)
        self._token_script: deque[str | int | httpx.Response] = deque()
        self.token_calls = 0
        self.tokens_issued = 0

    @staticmethod
    def _load_public(pem: str) -> rsa.RSAPublicKey:
        key = serialization.load_pem_public_key(pem.encode())
        if not isinstance(key, rsa.RSAPublicKey):  # pragma: no cover  # our own keys are RSA
            msg = "registered client keys must be RSA"
            raise TypeError(msg)
        return key

    @property
    def token_url(self) -> str:
        """The token endpoint (``token_url=`` if given, else ``https://<auth host>/oauth/token``).

        A client of the production host signs this as ``aud``; without ``token_url=`` the check
        is against the URL each token request was actually sent to (see :meth:`audience_for`).
        """
        return self._token_url or f"https://{self._auth_host}{_TOKEN_PATH}"

    def audience_for(self, request: httpx.Request) -> str:
        """The ``aud`` a client assertion sent in ``request`` must carry.

        ``token_url=`` if given; otherwise the token endpoint the request reached, as a real
        tenant checks its own URL: ``scheme://host[:port]/oauth/token``.
        """
        if self._token_url is not None:
            return self._token_url
        url = request.url
        return f"{url.scheme}://{url.netloc.decode('ascii')}{_TOKEN_PATH}"

    def fail_next_token(self, *answers: str | int | httpx.Response) -> None:
        """Give these answers to the next token requests (strings are OAuth ``error`` codes)."""
        with self._lock:
            self._token_script.extend(answers)

    def expire_tokens(self) -> None:
        """Forget every issued token, as if they had all expired on the server."""
        with self._lock:
            self._tokens.clear()

    balance_calls = deprecated_alias("calls")
    token_requests = deprecated_alias("token_calls")

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Answer one request for either host."""
        shared = self._auth_host == self._api_host  # one host: told apart by path
        if request.url.host == self._auth_host and (not shared or request.url.path == _TOKEN_PATH):
            return self._token_call(request)
        return self._api_call(request)

    # -- Auth0 ------------------------------------------------------------------------------

    def _token_call(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or request.url.path != _TOKEN_PATH:
            return _oauth(404, "not_found", "Not Found")
        self.token_calls += 1
        if self._token_script:
            answer = self._token_script.popleft()
            if isinstance(answer, str):
                return _oauth(401, answer, f"scripted {answer}")
            return self.scripted_response(answer, text="<html>auth0 error</html>")
        try:
            body = json.loads(request.content)
        except ValueError:
            return _oauth(400, "invalid_request", "the body is not JSON")
        if not isinstance(body, dict):
            return _oauth(400, "invalid_request", "the body is not a JSON object")
        if body.get("grant_type") != "client_credentials":
            return _oauth(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if body.get("client_assertion_type") != _ASSERTION_TYPE:
            return _oauth(400, "invalid_request", "client_assertion_type must be jwt-bearer")
        client_id = body.get("client_id")
        key = self._keys.get(client_id) if isinstance(client_id, str) else None
        if key is None or not isinstance(client_id, str):
            return _oauth(401, "invalid_client", "Unknown client")
        refusal = self._check_assertion(
            body.get("client_assertion"), client_id, key, self.audience_for(request)
        )
        if refusal is not None:
            return refusal
        if body.get("audience") != self.audience:
            return _oauth(403, "access_denied", f"Service not found: {body.get('audience')}")
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self.clock() + _TOKEN_LIFETIME * 10**9
        self.tokens_issued += 1
        return json_response(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": _TOKEN_LIFETIME}
        )

    def _check_assertion(
        self, assertion: object, client_id: str, key: rsa.RSAPublicKey, token_url: str
    ) -> httpx.Response | None:
        if not isinstance(assertion, str) or assertion.count(".") != 2:
            return _oauth(401, "invalid_client_assertion", "client_assertion is not a JWT")
        head_b64, claims_b64, sig_b64 = assertion.split(".")
        try:
            header = json.loads(_b64url(head_b64))
            claims = json.loads(_b64url(claims_b64))
            signature = _b64url(sig_b64)
        except (ValueError, binascii.Error):
            return _oauth(401, "invalid_client_assertion", "client_assertion is not a JWT")
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            return _oauth(401, "invalid_client_assertion", "only RS256 is accepted")
        try:
            key.verify(signature, f"{head_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return _oauth(401, "invalid_client", "Invalid signature for the client assertion")
        return self._check_claims(claims, client_id, token_url)

    def _check_claims(self, claims: object, client_id: str, token_url: str) -> httpx.Response | None:
        def refuse(why: str) -> httpx.Response:
            return _oauth(401, "invalid_client_assertion", why)

        if not isinstance(claims, dict):
            return refuse("the claims are not an object")
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return refuse("iss and sub must be the client_id")
        aud = claims.get("aud")
        if aud != token_url and not (isinstance(aud, list) and token_url in aud):
            return refuse(f"aud must be {token_url}")
        exp, iat, jti = claims.get("exp"), claims.get("iat"), claims.get("jti")
        if not isinstance(exp, int) or isinstance(exp, bool):
            return refuse("exp is required")
        if not isinstance(iat, int) or isinstance(iat, bool):
            return refuse("iat is required")
        if exp - iat > _MAX_ASSERTION_LIFETIME:
            return refuse("the assertion may live at most 300 seconds")
        now = self.clock() // 10**9
        if exp <= now:
            return refuse("the assertion has expired")
        if iat > now + 60:
            return refuse("iat is in the future")
        if not isinstance(jti, str) or not jti:
            return refuse("jti is required")
        if jti in self._jtis:
            return refuse("jti has already been used")
        self._jtis.add(jti)
        return None

    # -- positions API ----------------------------------------------------------------------

    def _api_call(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or request.url.path != _BALANCE_PATH:
            return _grpc(404, 5, "Not Found")
        self.calls += 1
        answer = self.next_scripted()
        if isinstance(answer, httpx.Response):
            return answer
        if answer is not None:
            code, message = _GRPC_FOR_STATUS.get(answer, (2, "unknown"))
            extra = {"Retry-After": "1"} if answer == 429 else {}
            return _grpc(answer, code, message, **extra)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= self.clock():
            return _grpc(401, 16, "unauthenticated: invalid or expired token")
        participant = request.headers.get("x-participant-id")
        if participant is None:
            return _grpc(403, 7, "permission denied: missing x-participant-id")
        accounts = self.participants.get(participant)
        if accounts is None:
            return _grpc(403, 7, "permission denied: unknown participant")
        try:
            body = json.loads(request.content)
        except ValueError:
            return _grpc(400, 3, "invalid JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body.get("currency"):
            return _grpc(400, 3, "name and currency are required")
        if body["name"] not in accounts:
            return _grpc(403, 7, "permission denied: account not accessible to this participant")
        if body["currency"] != "USD":
            return _grpc(404, 5, f"no balance in {body['currency']}")
        return json_response(200, self.balance)


def demo_pair() -> tuple[SimulatedPolymarketUS, PolymarketUS]:
    """A simulated venue and a provider holding the test credentials (production URLs)."""
    from ..providers.polymarket_us import PolymarketUS  # noqa: PLC0415  # venue modules load lazily

    provider = PolymarketUS(
        client_id=POLYMARKET_US_TEST_CLIENT_ID,
        private_key=polymarket_us_test_private_key_pem(),
        participant_id=POLYMARKET_US_TEST_PARTICIPANT_ID,
        account=POLYMARKET_US_TEST_ACCOUNT,
    )
    return SimulatedPolymarketUS(), provider
