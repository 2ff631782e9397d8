"""No secret, signature or bearer token shows in a traceback formatted with its local variables.

Error trackers (Sentry and the like) record the ``repr`` of every local variable of every frame
of a traceback. For each venue a fetch fails in the middle of a send (the connection drops, or
the venue answers 500), and we look for the venue's secret, the signatures the provider computed
and the bearer tokens the venue issued in:

* the library's exception formatted by ``traceback.TracebackException(capture_locals=True)``;
* the exception object itself (message, attributes, chained exceptions);
* every frame on the stack at the moment of the send, captured by the transport itself,
  including the frames of the suspended flow generators (they are not in the traceback because
  the driver raises outside them, but they are alive and hold locals while the request is out).
"""

from __future__ import annotations

import json
import sys
import traceback
import types
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import bastion_balance as bb
from bastion_balance import _state
from bastion_balance._protocol import Acquire, Release
from bastion_balance.providers._common import Secret, SignedRequest, cached_token, masked_url
from bastion_balance.testing import (
    BINANCE_TEST_SECRET,
    BYBIT_TEST_SECRET,
    COINSWITCH_TEST_SECRET,
    KRAKEN_TEST_SECRET,
    POLYMARKET_RETAIL_TEST_SECRET,
    POLYMARKET_RETAIL_TEST_SEED,
    RAILS_TEST_API_SECRET,
    Simulator,
    _demo,
    polymarket_us_test_private_key_pem,
)

from . import _harness as harness

RETRY = bb.RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.002)
VENUES = tuple(name.lstrip("_") for name in _demo.DEMO_MODULES)
#: Request headers whose values are signatures or secrets (Authorization is handled apart).
SIGNATURE_HEADERS = ("api-sign", "x-bapi-sign", "x-auth-signature", "x-pm-signature", "x-api-secret")
TOKEN_PATHS = ("/api/v1/token", "/oauth/token")
MAX_DEPTH = 5


def _pem_lines() -> list[str]:
    """The base64 lines of the Polymarket US test private key (a repr would escape the newlines)."""
    return [line for line in polymarket_us_test_private_key_pem().splitlines() if not line.startswith("-")]


def static_secrets() -> list[str]:
    return [
        BINANCE_TEST_SECRET,
        BYBIT_TEST_SECRET,
        COINSWITCH_TEST_SECRET,
        KRAKEN_TEST_SECRET,
        POLYMARKET_RETAIL_TEST_SECRET,
        POLYMARKET_RETAIL_TEST_SEED,
        RAILS_TEST_API_SECRET,
        *_pem_lines(),
    ]


def render(value: object, depth: int = 0) -> str:
    """What an error tracker records for a local: reprs, walking into dicts and sequences."""
    if depth < MAX_DEPTH:
        if isinstance(value, dict):
            items = ", ".join(f"{render(k, depth + 1)}: {render(v, depth + 1)}" for k, v in value.items())
            return "{" + items + "}"
        if isinstance(value, list | tuple | set | frozenset):
            return "[" + ", ".join(render(v, depth + 1) for v in value) + "]"
    try:
        return repr(value)
    except Exception as exc:
        return f"<repr failed: {exc!r}>"


def _suspended_frames(value: object) -> Iterator[types.FrameType]:
    """The frames of a suspended generator or coroutine and of what it delegates to."""
    seen = 0
    while value is not None and seen < 20:
        seen += 1
        if isinstance(value, types.GeneratorType):
            frame, value = value.gi_frame, value.gi_yieldfrom
        elif isinstance(value, types.CoroutineType):
            frame, value = value.cr_frame, value.cr_await
        else:
            return
        if frame is not None:
            yield frame


def dump_frames(start: types.FrameType | None, *, stop_file: str) -> str:
    """Every local of ``start`` and its callers (up to the first frame of ``stop_file``), rendered,
    and of every generator or coroutine those frames hold."""
    lines: list[str] = []
    seen: set[int] = set()

    def visit(frame: types.FrameType) -> None:
        if id(frame) in seen:
            return
        seen.add(id(frame))
        where = f"{frame.f_code.co_filename}:{frame.f_code.co_qualname}"
        for name, value in dict(frame.f_locals).items():
            lines.append(f"{where}: {name} = {render(value)}")
            for inner in _suspended_frames(value):
                visit(inner)

    frame = start
    while frame is not None and frame.f_code.co_filename != stop_file:
        visit(frame)
        frame = frame.f_back
    return "\n".join(lines)


class Failing:
    """A transport handler in front of the simulator: notes every credential the client sends
    or receives, snapshots the stack's locals at each send it fails, then fails it."""

    def __init__(self, sim: Simulator, failure: str, *, fail_tokens: bool = False) -> None:
        self.sim, self.failure, self.fail_tokens = sim, failure, fail_tokens
        self.credentials: list[str] = []
        self.snapshots: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self._note_request(request)
        is_token = request.url.path.endswith(TOKEN_PATHS)
        if is_token and not self.fail_tokens:
            response = self.sim(request)
            self._note_token(response)
            return response
        self.snapshots.append(dump_frames(sys._getframe(1), stop_file=__file__))
        if self.failure == "connect":
            msg = "connection refused"
            raise httpx.ConnectError(msg, request=request)
        self.sim(request)  # the venue still checks the credentials it was sent
        return httpx.Response(500, text="internal error")

    def _note_request(self, request: httpx.Request) -> None:
        for name in SIGNATURE_HEADERS:
            if name in request.headers:
                self.credentials.append(request.headers[name])
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            self.credentials.append(token)
        signature = request.url.params.get("signature")
        if signature:
            self.credentials.append(signature)
        if request.url.path.endswith("/oauth/token"):
            assertion = json.loads(request.content).get("client_assertion")
            self.credentials.extend([assertion, *assertion.split(".")[1:]])

    def _note_token(self, response: httpx.Response) -> None:
        if response.status_code == 200:
            self.credentials.append(json.loads(response.content)["access_token"])


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def exception_text(exc: BaseException, *, formatter: bool = True) -> str:
    """The exception as a locals-capturing formatter and an error tracker would record it.

    ``formatter=False`` skips ``traceback.TracebackException``, whose plain ``repr`` of each
    local can itself fail on an object left half-built by the error (the frames are walked
    with a guarded ``repr`` either way).
    """
    parts = []
    if formatter:
        parts += traceback.TracebackException.from_exception(exc, capture_locals=True).format()
    for link in _chain(exc):
        parts += [str(link), repr(link), render(link.args), render(vars(link))]
        parts += [render(getattr(link, "__notes__", []))]
        for frame, _ in traceback.walk_tb(link.__traceback__):
            parts += [f"{name} = {render(value)}\n" for name, value in dict(frame.f_locals).items()]
    return "".join(parts)


def fetch_sync(provider: Any, handler: Failing) -> BaseException:  # noqa: ANN401
    return harness.fetch_error("sync", provider, handler, timeout=5, retry=RETRY)


def fetch_async(provider: Any, handler: Failing) -> BaseException:  # noqa: ANN401
    return harness.fetch_error("async", provider, handler, timeout=5, retry=RETRY)


DRIVERS: dict[str, Callable[[Any, Failing], BaseException]] = {"sync": fetch_sync, "async": fetch_async}


def demo_pair(venue: str) -> tuple[Any, Any]:
    import importlib

    module = importlib.import_module(f"bastion_balance.testing._{venue}")
    return module.demo_pair()  # type: ignore[no-any-return]


def assert_nothing_leaks(handler: Failing, exc: BaseException) -> None:
    assert handler.snapshots, "the transport never saw the failing send"
    assert handler.credentials, "no signature or token was sent: the check would be vacuous"
    texts = {"traceback and exception": exception_text(exc)}
    texts.update({f"stack at send {n}": text for n, text in enumerate(handler.snapshots)})
    assert_absent([*static_secrets(), *handler.credentials], texts)


def assert_absent(secrets: list[str], texts: dict[str, str]) -> None:
    for secret in secrets:
        assert len(secret) >= 16, secret  # a short value could match by chance
        for where, text in texts.items():
            leaks = [line.replace(secret, "<SECRET>")[:300] for line in text.splitlines() if secret in line]
            assert not leaks, f"{secret[:6]}... shows in the {where}:\n" + "\n".join(leaks)


@pytest.mark.parametrize("failure", ["connect", "500"])
@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("venue", VENUES)
def test_failed_fetch_shows_no_secret(venue: str, driver: str, failure: str) -> None:
    """The balance request fails (twice: the retry signs afresh and reuses a cached token)."""
    simulated, provider = demo_pair(venue)
    handler = Failing(Simulator(simulated), failure)
    exc = DRIVERS[driver](provider, handler)
    assert len(handler.snapshots) == RETRY.attempts
    # the suspended flow's own frame was looked at, not only the driver's and httpx's
    assert all(f":{type(provider).__name__}.balance_flow: self = " in s for s in handler.snapshots)
    assert_nothing_leaks(handler, exc)


@pytest.mark.parametrize("failure", ["connect", "500"])
@pytest.mark.parametrize("venue", ["rails", "polymarket_us"])
def test_failed_token_request_shows_no_secret(venue: str, failure: str) -> None:
    """The token request itself fails: its secret headers or client assertion stay hidden."""
    simulated, provider = demo_pair(venue)
    handler = Failing(Simulator(simulated), failure, fail_tokens=True)
    exc = fetch_sync(provider, handler)
    assert_nothing_leaks(handler, exc)


def test_failure_after_a_cached_token_shows_no_secret() -> None:
    """A token cached by an earlier, successful fetch does not show when a later fetch fails."""
    simulated, provider = demo_pair("rails")
    sim = Simulator(simulated)
    issued: list[str] = []

    def first(request: httpx.Request) -> httpx.Response:
        response = sim(request)
        if request.url.path.endswith(TOKEN_PATHS):
            issued.append(json.loads(response.content)["access_token"])
        return response

    with bb.BalanceClient(http_client=httpx.Client(transport=httpx.MockTransport(first))) as client:
        client.fetch(provider, timeout=5)
    handler = Failing(sim, "500")
    handler.credentials += issued
    exc = fetch_sync(provider, handler)
    assert issued
    assert_nothing_leaks(handler, exc)


def test_header_that_cannot_be_encoded_shows_no_secret() -> None:
    """A key httpx cannot put in a header fails while the request is built: the frames that
    are then in the traceback (the provider's, httpx's) hold the secret headers as Secret."""
    from bastion_balance.providers.rails import Rails

    try:
        provider = Rails(api_key="clé-non-ascii", api_secret=RAILS_TEST_API_SECRET)
    except bb.ConfigurationError as exc:  # refusing such a key up front is fine too
        assert_absent([RAILS_TEST_API_SECRET], {"traceback": exception_text(exc)})
        return
    client = bb.BalanceClient(http_client=Simulator().client(), retry=RETRY)
    with client, pytest.raises(UnicodeEncodeError) as info:
        client.fetch(provider, timeout=5)
    assert_absent([RAILS_TEST_API_SECRET], {"traceback": exception_text(info.value, formatter=False)})


class TestSecret:
    def test_repr_is_masked_and_the_value_is_kept(self) -> None:
        secret = Secret("tok-0123456789abcdef")
        assert repr(secret) == "'***'"
        assert f"{secret!r}" == "'***'"
        assert repr({"token": secret}) == "{'token': '***'}"
        assert str(secret) == "tok-0123456789abcdef"
        assert type(str(secret)) is str
        assert f"Bearer {secret}" == "Bearer tok-0123456789abcdef"
        assert secret == "tok-0123456789abcdef"
        assert hash(secret) == hash("tok-0123456789abcdef")
        assert json.dumps({"a": secret}) == '{"a": "tok-0123456789abcdef"}'

    def test_httpx_sends_the_real_value(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200)

        headers = {"Authorization": Secret("Bearer tok-0123456789"), "API-Sign": Secret("c2lnbmF0dXJl")}
        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            client.send(SignedRequest("GET", "https://venue.test/x", headers=headers))
        assert seen[0].headers["authorization"] == "Bearer tok-0123456789"
        assert seen[0].headers.raw[-1] == (b"API-Sign", b"c2lnbmF0dXJl")


class TestSignedRequest:
    URL = "https://fapi.binance.com/fapi/v2/account?timestamp=17&recvWindow=5000&signature=deadbeef0123"

    def test_repr_masks_the_signature_and_keeps_the_rest(self) -> None:
        request = SignedRequest("GET", self.URL, headers={"X-MBX-APIKEY": "key-0123456789"})
        text = repr(request)
        assert text == (
            "<SignedRequest('GET', "
            "'https://fapi.binance.com/fapi/v2/account?timestamp=17&recvWindow=5000&signature=***')>"
        )
        assert "key-0123456789" not in text
        assert isinstance(request, httpx.Request)
        assert str(request.url) == self.URL  # what is sent is untouched
        assert request.url.params["signature"] == "deadbeef0123"

    def test_repr_without_a_query_is_the_url(self) -> None:
        request = SignedRequest("POST", "https://api.kraken.com/0/private/TradeBalance", content=b"nonce=1")
        assert repr(request) == "<SignedRequest('POST', 'https://api.kraken.com/0/private/TradeBalance')>"

    @pytest.mark.parametrize(
        ("query", "shown"),
        [
            ("Signature=abc&a=1", "Signature=***&a=1"),
            ("a=1&sign=abc", "a=1&sign=***"),
            ("access_token=abc", "access_token=***"),
            ("sig%6Eature=abc%3D%3D", "sig%6Eature=***"),
            ("signature", "signature"),  # no value: nothing to hide
            ("market=ETH-USD", "market=ETH-USD"),
        ],
    )
    def test_masked_url(self, query: str, shown: str) -> None:
        assert masked_url(httpx.URL(f"https://h.test/p?{query}")) == f"https://h.test/p?{shown}"

    def test_a_subclass_can_mask_more(self) -> None:
        class VenueRequest(SignedRequest):
            masked_params = SignedRequest.masked_params | {"otp"}

        text = repr(VenueRequest("GET", "https://h.test/p?otp=123456&signature=abc"))
        assert "123456" not in text
        assert "abc" not in text


@pytest.mark.parametrize("venue", VENUES)
def test_every_signed_request_is_a_signed_request(venue: str) -> None:
    """Every credential-bearing request a built-in provider yields masks its repr."""
    simulated, provider = demo_pair(venue)
    sim = Simulator(simulated)
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return sim(request)

    with bb.BalanceClient(http_client=httpx.Client(transport=httpx.MockTransport(handler))) as client:
        client.fetch(provider, timeout=5)
    assert sent
    assert all(type(request) is SignedRequest for request in sent)


def test_token_cache_and_shared_state_reprs_hide_the_token() -> None:
    state = _state.shared_state("rails", "https://auth.test", "key")
    state.token.store("plain-0123456789abcdef", 60)  # even one stored as a plain str
    assert "plain-0123456789abcdef" not in repr(state)
    assert "plain-0123456789abcdef" not in repr(state.token)
    assert state.token.get(0) == "plain-0123456789abcdef"


def test_cached_token_hands_out_a_secret_whatever_parse_returns() -> None:
    """A third-party provider's parse may return a plain str: the token is kept as Secret."""
    cache = _state.TokenCache()
    flow = cached_token(
        cache,
        margin=0,
        request=lambda: httpx.Request("POST", "https://auth.test/token"),
        parse=lambda response: ("plain-0123456789abcdef", 60.0),
    )
    effect = next(flow)
    try:
        while True:
            if isinstance(effect, Acquire):
                assert effect.lock.acquire(timeout=1)
            elif isinstance(effect, Release):
                effect.lock.release()
            effect = flow.send(httpx.Response(200) if isinstance(effect, httpx.Request) else None)
    except StopIteration as stop:
        token, cached = stop.value
    assert (token, cached) == ("plain-0123456789abcdef", False)
    assert isinstance(token, Secret)
    assert isinstance(cache.get(0), Secret)


LEAKY_TOKEN = "issued-token-0123456789abcdef"


def _token_answer(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})


def _refused_token_answer(answer: httpx.Response, **client: Any) -> str:
    """Rails answers the token request with ``answer``; the failed fetch, as an error tracker sees it.

    (The answer comes as a Response, whose repr hides its body: this frame is in the traceback.)
    """
    simulated, provider = demo_pair("rails")
    simulated.fail_next_token(answer)
    http = Simulator(simulated).client()
    with bb.BalanceClient(http_client=http, retry=bb.RetryPolicy(attempts=1), **client) as balance_client:
        with pytest.raises(bb.BastionBalanceError) as info:
            balance_client.fetch(provider, timeout=5)
    return exception_text(info.value)


# Token answers the library refuses: the token must not sit in the error, its chain or any local.
def test_refused_token_answer_shows_no_token() -> None:
    answer = _token_answer(b'{"access_token": "%s", "token_type": "mac"}' % LEAKY_TOKEN.encode())
    text = _refused_token_answer(answer)
    assert_absent([LEAKY_TOKEN], {"traceback": text})


def test_token_answer_that_is_not_json_shows_no_token() -> None:
    text = _refused_token_answer(_token_answer(b'{"access_token": "%s", ' % LEAKY_TOKEN.encode()))
    assert_absent([LEAKY_TOKEN], {"traceback": text})


def test_token_answer_over_the_size_cap_shows_no_token() -> None:
    body = b'{"access_token": "%s", "token_type": "Bearer", "expires_in": 1800}' % LEAKY_TOKEN.encode()
    text = _refused_token_answer(_token_answer(body), max_response_bytes=40)
    assert_absent([LEAKY_TOKEN], {"traceback": text})


class TestTheDetector:
    """The checks above can fail: they find a secret held the ways the library might hold one."""

    def test_finds_a_plain_local(self) -> None:
        token = "plain-token-value-0123456789"

        def inner() -> str:
            return dump_frames(sys._getframe(0), stop_file="<none>")

        assert token in inner()

    def test_finds_a_header_dict_in_a_suspended_generator(self) -> None:
        def flow() -> Iterator[int]:
            headers = {"API-Sign": "signature-value-0123456789"}
            yield len(headers)

        gen = flow()
        next(gen)

        def holder(held: object) -> str:
            return dump_frames(sys._getframe(0), stop_file="<none>")

        assert "signature-value-0123456789" in holder(gen)

    def test_finds_a_signed_url_in_a_plain_request(self) -> None:
        request = httpx.Request(
            "GET", "https://fapi.binance.com/x?timestamp=1&signature=abcdef0123456789abcdef"
        )
        assert "abcdef0123456789abcdef" in render({"effect": request})

    def test_finds_a_secret_in_an_exception_attribute(self) -> None:
        exc = bb.UnexpectedResponseError("bad", venue="x", field="$.a", value="secret-value-0123456789")
        assert "secret-value-0123456789" in exception_text(exc)
