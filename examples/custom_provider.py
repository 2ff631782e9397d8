"""Your own venue, as good as the built-in ones: a provider written with public names only.

"Acme" is a made-up futures venue: ``GET /v1/balance?nonce=N`` signed with HMAC-SHA256 of the
query in ``X-ACME-SIGN``, at most 5 calls per second per key, nonces strictly increasing per key,
errors as ``{"code": 1003, "message": "..."}`` with an HTTP status. The provider below signs,
throttles, takes the key's turn (so nonces reach the venue in order), maps errors to the
library's types and keeps every figure exact. ``SimulatedAcme`` plays the venue, checking the
signature and the nonce as the venue would, so this file runs offline:

    python examples/custom_provider.py

See docs/writing-a-provider.md for the walk-through.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar, Final
from urllib.parse import parse_qs, urlencode

import attrs
import httpx

import bastion_balance as bb
from bastion_balance import provider_kit as kit
from bastion_balance.testing import FakeProvider, Simulator, json_response

VENUE: Final = "acme"
DEFAULT_BASE_URL: Final = "https://api.acme.example"
BALANCE_PATH: Final = "/v1/balance"
CALLS_PER_SECOND: Final = 5

#: Acme's error codes: the library's exception class and what the code means for the user.
ERRORS: Final = {
    1001: (bb.AuthenticationError, "the API key is unknown"),
    1002: (bb.AuthenticationError, "the signature does not verify: check the API secret"),
    1003: (bb.RateLimitedError, "too many calls for this key"),
}


def acme_sign(query: str, secret: str) -> str:
    """X-ACME-SIGN: hex HMAC-SHA256(secret, query). Pure: test it against the venue's vector."""
    return hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


def acme_error(response: httpx.Response) -> bb.ExchangeAPIError:
    """The library's exception for an Acme error answer (HTML error pages included)."""
    body = kit.error_body(response, venue=VENUE)
    code = kit.error_code(body.get("code"))
    said = kit.error_text(body, "message") or kit.printable(response.text)
    known = ERRORS.get(code) if isinstance(code, int) else None
    if known is None:  # by HTTP status: 401/403 auth, 429 rate limit (Retry-After read), 5xx
        return kit.status_error(response, venue=VENUE, message=said, code=code)
    cls, meaning = known
    text = f"{VENUE}: {code} {said}: {meaning}"
    if cls is bb.RateLimitedError:
        wait = kit.retry_after_seconds(response.headers)
        return bb.RateLimitedError(
            text, venue=VENUE, code=code, status_code=response.status_code, retry_after=wait
        )
    return cls(text, venue=VENUE, code=code, status_code=response.status_code)


def _key(value: object) -> str:
    return kit.credential(value, venue=VENUE, name="api_key")


def _secret(value: object) -> str:
    return kit.credential(value, venue=VENUE, name="api_secret")


def _label(value: str | None) -> str:
    return kit.label_or(value, VENUE)


def _base_url(value: str | None) -> str:
    return kit.check_base_url(value, default=DEFAULT_BASE_URL, venue=VENUE)


@attrs.frozen
class _AcmeBalance:
    """The answer's figures, by Acme's names: decimal strings or JSON numbers."""

    equity: Decimal
    free: Decimal
    unrealizedPnl: Decimal | None = None  # the venue's field name


@attrs.frozen(kw_only=True)
class Acme(kit.NoPickle):
    """An Acme futures account. Credentials never appear in ``repr``; pickling is refused."""

    api_key: str = attrs.field(converter=_key, repr=False)
    api_secret: str = attrs.field(converter=_secret, repr=False)
    label: str = attrs.field(default=None, converter=_label)
    base_url: str = attrs.field(default=None, converter=_base_url)
    clock: Callable[[], int] = attrs.field(default=time.time_ns, repr=False, eq=False)

    @property
    def venue(self) -> str:
        """``"acme"``."""
        return VENUE

    def build_request(self, nonce: int) -> httpx.Request:
        """The signed balance request for ``nonce``: pure, so a test can check it byte by byte."""
        query = urlencode([("nonce", str(nonce))])
        headers = {
            "X-ACME-KEY": kit.Secret(self.api_key),  # Secret: '***' in any repr or traceback
            "X-ACME-SIGN": kit.Secret(acme_sign(query, self.api_secret)),
            "Accept": "application/json",
            "User-Agent": kit.USER_AGENT,
        }
        return kit.SignedRequest("GET", f"{self.base_url}{BALANCE_PATH}?{query}", headers=headers)

    def parse_response(self, response: httpx.Response) -> bb.Balance:
        """The Balance in an answer (every figure a Decimal, as sent), or the error it means."""
        if response.status_code != 200:
            raise acme_error(response)
        payload = kit.decode_object(response, venue=VENUE)  # JSON numbers arrive as Decimal
        # Strict and exact: a missing figure, NaN, "1e999" or a float-looking bool is an
        # UnexpectedResponseError naming the field ("$.equity"), never a silent zero.
        wire = kit.structure(payload, _AcmeBalance, venue=VENUE)
        return bb.Balance(
            label=self.label,
            exchange=VENUE,
            currency="USD",
            total=wire.equity,
            available=wire.free,
            unrealized_pnl=wire.unrealizedPnl,
            extra=kit.extra_figures(payload, skip={"equity", "free"}),
            fetched_at=kit.now_utc(),
            raw=payload,
        )

    def balance_flow(self) -> kit.Flow:
        """Take the key's turn, wait for its budget, sign with a fresh nonce, send, parse.

        The turn keeps one request per key at the venue at a time, across threads and event
        loops, so nonces arrive in order; the driver gives it back however the fetch ends. The
        limiter is booked inside the turn; a 1003 from Acme drains it (the venue says the budget
        is spent).
        """
        state = kit.shared_state(VENUE, self.base_url, self.api_key)
        limiter = state.window_limiter("balance", CALLS_PER_SECOND, 1.0)
        yield kit.Acquire(state.inflight)
        return (
            yield from kit.throttled_call(
                limiter,
                lambda: self.build_request(state.nonce.next(self.clock() // 1000)),
                self.parse_response,
            )
        )


TEST_KEY: Final = "acme-test-key"
TEST_SECRET: Final = "acme-test-secret"  # a made-up test secret, like the venues' published ones


class SimulatedAcme:
    """Acme played offline: checks key, signature and nonce as Acme does; scripted failures."""

    def __init__(self, *, equity: str = "1250.000000000000000001", free: str = "1000.5") -> None:
        self.equity, self.free = equity, free
        self.nonces: list[int] = []
        self.answers: list[httpx.Response] = []

    hosts: ClassVar = ("api.acme.example",)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.answers:
            return self.answers.pop(0)
        query = request.url.query.decode()
        if request.headers.get("X-ACME-KEY") != TEST_KEY:
            return json_response(401, {"code": 1001, "message": "invalid key"})
        if not hmac.compare_digest(request.headers.get("X-ACME-SIGN", ""), acme_sign(query, TEST_SECRET)):
            return json_response(401, {"code": 1002, "message": "invalid signature"})
        nonce = int(parse_qs(query)["nonce"][0])
        if self.nonces and nonce <= self.nonces[-1]:
            return json_response(400, {"code": 1004, "message": "nonce too small"})
        self.nonces.append(nonce)
        body: dict[str, Any] = {"equity": self.equity, "free": self.free, "unrealizedPnl": "-3.25"}
        return json_response(200, body)


def main() -> None:
    venue = SimulatedAcme()
    acme = Acme(api_key=TEST_KEY, api_secret=TEST_SECRET)
    cash = FakeProvider(label="bank", total=Decimal("500"), available=Decimal("500"))
    with Simulator(venue).client() as http:
        portfolio = bb.aggregate([acme, cash], client=http)
    print(repr(acme))  # no key, no secret
    if portfolio.errors:
        raise SystemExit(f"failed: {dict(portfolio.errors)}")
    print("acme total:", portfolio.balances["acme"].total, "extra:", dict(portfolio.balances["acme"].extra))
    print("total USD:", portfolio.total_usd, "available USD:", portfolio.available_margin_usd)


if __name__ == "__main__":
    main()
