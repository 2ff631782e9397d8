"""Fault tests over real loopback sockets: both clients against a misbehaving Kraken, and the server."""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qsl

import httpx
import pytest

import bastion_balance as bb
from bastion_balance._client import MAX_RESPONSE_BYTES
from bastion_balance.providers.kraken import Kraken
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    SimulatedKraken,
    Simulator,
    rate_limits_disabled,
)
from bastion_balance.testing._loopback import Fault, LoopbackServer, RecordedRequest

from . import _harness as harness

RETRY = bb.RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)
OTHER_SECRET = base64.b64encode(bytes(range(64))).decode()
SECRETS = (KRAKEN_TEST_KEY, KRAKEN_TEST_SECRET, OTHER_SECRET)
TOTAL = "382.2032"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Driver:
    """One way of fetching: the sync client, or the async client under ``asyncio.run`` (tests/_harness.py)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def fetch(
        self, provider: Kraken, *, timeout: float = 5.0, max_response_bytes: int = MAX_RESPONSE_BYTES
    ) -> bb.Balance:
        return harness.fetch(
            self.mode, provider, timeout=timeout, retry=RETRY, max_response_bytes=max_response_bytes
        )

    def aggregate(self, providers: list[Kraken], *, strict: bool = False) -> bb.Portfolio:
        return harness.aggregate(self.mode, providers, timeout=5.0, strict=strict, retry=RETRY)


@pytest.fixture(params=harness.MODES)
def driver(request: pytest.FixtureRequest) -> Driver:
    return Driver(request.param)


@pytest.fixture
def venue() -> SimulatedKraken:
    return SimulatedKraken(host="127.0.0.1")


@pytest.fixture
def server(venue: SimulatedKraken) -> Iterator[LoopbackServer]:
    with LoopbackServer(Simulator(venue)) as running:
        yield running


def kraken(server: LoopbackServer, **overrides: str) -> Kraken:
    settings = {"api_key": KRAKEN_TEST_KEY, "api_secret": KRAKEN_TEST_SECRET, "base_url": server.url}
    settings.update(overrides)
    return Kraken(**settings)  # type: ignore[arg-type]


def nonce(request: RecordedRequest) -> int:
    return int(dict(parse_qsl(request.body.decode()))["nonce"])


def assert_no_secret(exc: BaseException) -> None:
    """Neither ``exc`` nor anything chained to or grouped in it shows a credential."""
    pending, seen = [exc], []
    while pending:
        current = pending.pop()
        seen.append(current)
        for text in (str(current), repr(current), repr(current.args)):
            for secret in SECRETS:
                assert secret not in text
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        if isinstance(current, BaseExceptionGroup):
            pending += list(current.exceptions)
    assert seen


def fetch_fails(
    driver: Driver, provider: Kraken, expected: type[Exception], **kwargs: float
) -> tuple[Exception, float]:
    """The error a fetch raises and how long it took; the error names no secret."""
    start = time.monotonic()
    with pytest.raises(expected) as info:
        driver.fetch(provider, **kwargs)  # type: ignore[arg-type]
    assert_no_secret(info.value)
    return info.value, time.monotonic() - start


class TestTimeouts:
    def test_delay_past_timeout(
        self, driver: Driver, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A server that sits on the request past the timeout ends in DeadlineExceededError on
        time; the key's turn comes back once the abandoned request's grace has passed."""
        monkeypatch.setattr("bastion_balance._client.ABANDON_GRACE", 1.0)
        server.script(Fault.delay(3))

        _, elapsed = fetch_fails(driver, kraken(server), bb.DeadlineExceededError, timeout=0.4)

        assert elapsed < 0.4 + 1
        started = time.monotonic()
        assert TOTAL == str(driver.fetch(kraken(server)).total)  # the key's turn was given back
        assert 0.3 < time.monotonic() - started < 3

    @pytest.mark.parametrize("mode", ["sync", "async"])
    def test_slow_drip_past_deadline(self, mode: str, server: LoopbackServer) -> None:
        """A body dripped slower than the deadline ends in DeadlineExceededError on time."""
        server.script(Fault.drip(4, pause=0.3))

        _, elapsed = fetch_fails(Driver(mode), kraken(server), bb.DeadlineExceededError, timeout=0.5)

        assert elapsed < 0.5 + 1


class TestRetries:
    @pytest.mark.parametrize("fault", [Fault.reset(), Fault.close_before_response()])
    def test_dropped_then_answered(
        self, driver: Driver, server: LoopbackServer, venue: SimulatedKraken, fault: Fault
    ) -> None:
        """A connection cut before the answer is retried, signed afresh with a new nonce."""
        server.script(fault)

        balance = driver.fetch(kraken(server))

        first, second = server.requests
        assert TOTAL == str(balance.total)
        assert nonce(first) < nonce(second)
        assert first.headers["API-Sign"] != second.headers["API-Sign"]
        assert [nonce(second)] == venue.nonces

    def test_reset_every_time(
        self,
        driver: Driver,
        server: LoopbackServer,
        venue: SimulatedKraken,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A connection reset on every try is a TransportError after exactly four attempts."""
        caplog.set_level(logging.DEBUG)
        server.script(*[Fault.reset()] * 6)

        exc, _ = fetch_fails(driver, kraken(server), bb.TransportError)

        assert type(exc) is bb.TransportError
        assert 4 == len(server.requests)
        assert 4 == len({nonce(r) for r in server.requests})
        assert 0 == venue.calls
        assert "retrying after TransportError" in caplog.text
        assert not any(secret in caplog.text for secret in SECRETS)

    @pytest.mark.parametrize(
        "fault",
        [
            Fault.status(503),
            Fault.status(429, headers={"Retry-After": "0"}),
            Fault.status(502, headers={"Content-Type": "text/html"}, body=b"<html>Bad Gateway</html>"),
        ],
    )
    def test_busy_then_answered(self, driver: Driver, server: LoopbackServer, fault: Fault) -> None:
        """A 503, a 429 asking for no wait, or an HTML 502 once is cured by the retry."""
        server.script(fault)

        with rate_limits_disabled():  # a 429 drains Kraken's call counter on our side
            balance = driver.fetch(kraken(server))

        assert TOTAL == str(balance.total)
        assert 2 == len(server.requests)

    def test_kraken_rate_limit_then_answered(
        self, driver: Driver, server: LoopbackServer, venue: SimulatedKraken
    ) -> None:
        """Kraken's own rate-limit answer (HTTP 200 + error string) is retried."""
        venue.fail_next("EAPI:Rate limit exceeded")

        with rate_limits_disabled():
            balance = driver.fetch(kraken(server))

        assert TOTAL == str(balance.total)
        assert 2 == venue.calls

    @pytest.mark.parametrize(
        "fault",
        [
            Fault.status(503),
            Fault.status(502, headers={"Content-Type": "text/html"}, body=b"<html>Bad Gateway</html>"),
        ],
    )
    def test_busy_every_time(self, driver: Driver, server: LoopbackServer, fault: Fault) -> None:
        """A 5xx (JSON-less or an HTML page) on every try is ServiceUnavailableError after four tries."""
        server.script(*[fault] * 6)

        exc, _ = fetch_fails(driver, kraken(server), bb.ServiceUnavailableError)

        assert fault.status_code == exc.status_code  # type: ignore[attr-defined]
        assert 4 == len(server.requests)

    def test_retry_after_past_deadline(self, driver: Driver, server: LoopbackServer) -> None:
        """A Retry-After longer than the time left raises RateLimitedError at once."""
        server.script(Fault.status(429, headers={"Retry-After": "30"}))

        exc, elapsed = fetch_fails(driver, kraken(server), bb.RateLimitedError, timeout=3)

        assert 30 == exc.retry_after  # type: ignore[attr-defined]
        assert elapsed < 1
        assert 1 == len(server.requests)


class TestNotRetried:
    def test_oversized_body(self, driver: Driver, server: LoopbackServer) -> None:
        """A body over max_response_bytes is ResponseTooLargeError, and not tried again."""
        server.script(Fault.body(b"x" * 64 * 1024))

        fetch_fails(driver, kraken(server), bb.ResponseTooLargeError, max_response_bytes=1024)

        assert 1 == len(server.requests)

    @pytest.mark.parametrize(
        "overrides", [{"api_key": "someone-else"}, {"api_secret": OTHER_SECRET}], ids=["key", "secret"]
    )
    def test_authentication(
        self,
        driver: Driver,
        server: LoopbackServer,
        overrides: dict[str, str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A refused key or signature is raised at once: the server sees exactly one request."""
        caplog.set_level(logging.DEBUG)

        fetch_fails(driver, kraken(server, **overrides), bb.AuthenticationError)

        assert 1 == len(server.requests)
        assert "retrying" not in caplog.text
        assert not any(secret in caplog.text for secret in SECRETS)


class TestAggregate:
    @pytest.fixture
    def down(self) -> Iterator[LoopbackServer]:
        with LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1"))) as running:
            running.script(*[Fault.reset()] * 6)
            yield running

    def test_partial_failure(self, driver: Driver, server: LoopbackServer, down: LoopbackServer) -> None:
        """One venue resetting every connection leaves the other summed and the portfolio incomplete."""
        portfolio = driver.aggregate([kraken(server, label="up"), kraken(down, label="down")])

        assert not portfolio.complete
        assert ["down"] == list(portfolio.errors)
        assert isinstance(portfolio.errors["down"], bb.TransportError)
        assert_no_secret(portfolio.errors["down"])
        assert ["up"] == list(portfolio.balances)
        assert TOTAL == str(portfolio.total_usd)
        assert 4 == len(down.requests)

    def test_strict(self, driver: Driver, server: LoopbackServer, down: LoopbackServer) -> None:
        """strict=True raises the failures as an ExceptionGroup."""
        with pytest.raises(ExceptionGroup) as info:
            driver.aggregate([kraken(server, label="up"), kraken(down, label="down")], strict=True)

        assert [bb.TransportError] == [type(e) for e in info.value.exceptions]
        assert_no_secret(info.value)


def echo(request: httpx.Request) -> httpx.Response:
    """A handler that tells what it received."""
    text = f"{request.method} {request.url} {request.content.decode()}"
    return httpx.Response(200, text=text, headers={"X-Seen-Host": request.url.host})


def raw(server: LoopbackServer, data: bytes) -> bytes:
    """Send raw bytes, half-close, and read everything until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def echo_server() -> Iterator[LoopbackServer]:
    with LoopbackServer(echo) as running:
        yield running


class TestLoopbackServer:
    def test_serves_and_records(self, echo_server: LoopbackServer) -> None:
        """Requests reach the handler over one kept-alive connection and are recorded."""
        before = time.monotonic()
        with httpx.Client(base_url=echo_server.url) as client:
            first = client.post("/a?x=1", content=b"hello", headers={"X-Test": "1"})
            second = client.get("/b")

        one, two = echo_server.requests
        assert f"POST {echo_server.url}/a?x=1 hello" == first.text
        assert "127.0.0.1" == first.headers["X-Seen-Host"]
        assert f"GET {echo_server.url}/b " == second.text
        assert ("POST", "/a?x=1", b"hello", "1") == (one.method, one.path, one.body, one.headers["x-test"])
        assert before <= one.arrived <= two.arrived
        assert one.connection == two.connection
        assert (None, None) == (one.fault, two.fault)

    @pytest.mark.anyio
    async def test_async_client(self, echo_server: LoopbackServer) -> None:
        """An httpx.AsyncClient is served too, and chunked request bodies are read whole."""

        async def parts() -> AsyncIterator[bytes]:
            yield b"ab"
            yield b"cd"

        async with httpx.AsyncClient(base_url=echo_server.url) as client:
            response = await client.post("/c", content=parts())

        assert f"POST {echo_server.url}/c abcd" == response.text
        assert "chunked" == echo_server.requests[0].headers["transfer-encoding"]

    def test_host_override(self) -> None:
        """host= makes a simulator that routes by host name answer on loopback."""
        with (
            LoopbackServer(Simulator(SimulatedKraken()), host="api.kraken.com") as server,
            bb.BalanceClient(retry=RETRY) as client,
        ):
            balance = client.fetch(kraken(server))

        assert TOTAL == str(balance.total)

    def test_raw_requests(self, echo_server: LoopbackServer) -> None:
        """HTTP/1.0 without Host, HEAD, chunk extensions and trailers are understood."""
        chunked = b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
        reply = raw(
            echo_server,
            b"HEAD /h HTTP/1.1\r\nHost: example\r\n\r\n"
            b"PUT /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"GET /g HTTP/1.0\r\n\r\n",
        )

        head, put, get = reply.split(b"HTTP/1.1 200 OK\r\n")[1:]
        assert head.endswith(b"Content-Length: %d\r\n\r\n" % len("HEAD http://example/h "))
        assert put.endswith(f"\r\n\r\nPUT {echo_server.url}/p abc".encode())
        assert get.endswith(f"GET {echo_server.url}/g ".encode())
        assert b"Connection: close" in get
        assert 1 == len({r.connection for r in echo_server.requests})

    @pytest.mark.parametrize(
        ("request_bytes", "alive"),
        [
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
        ],
    )
    def test_connection_header(self, echo_server: LoopbackServer, request_bytes: bytes, alive: bool) -> None:
        """The Connection header decides whether a second request is served on the connection."""
        reply = raw(echo_server, request_bytes * 2)

        assert (2 if alive else 1) == reply.count(b"HTTP/1.1 200 OK")

    @pytest.mark.parametrize(
        "request_bytes",
        [
            b"NONSENSE\r\n\r\n",
            b"GET / FTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: many\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        ],
    )
    def test_bad_request(self, echo_server: LoopbackServer, request_bytes: bytes) -> None:
        """What is not an HTTP/1.1 request gets a 400 and a closed connection."""
        reply = raw(echo_server, request_bytes)

        assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert [] == echo_server.requests

    def test_handler_failure(self) -> None:
        """A handler that raises gives a 500 and is kept in errors; the server goes on."""

        def broken(request: httpx.Request) -> httpx.Response:
            raise LookupError(request.url.path)

        with LoopbackServer(broken) as server, httpx.Client(base_url=server.url) as client:
            responses = [client.get("/x"), client.get("/y")]
            errors = server.errors

        assert [500, 500] == [r.status_code for r in responses]
        assert "loopback handler failed: LookupError" == responses[0].text
        assert ["/x", "/y"] == [str(e) for e in errors]

    def test_raw_bodies(self) -> None:
        """Streamed and content-encoded answers are sent as the handler made them."""

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/stream":
                return httpx.Response(200, content=iter([b"ab", b"cd"]))
            return httpx.Response(200, content=gzip.compress(b"zipped"), headers={"Content-Encoding": "gzip"})

        with LoopbackServer(handler) as server, httpx.Client(base_url=server.url) as client:
            assert b"abcd" == client.get("/stream").content
            assert b"zipped" == client.get("/gzip").content


class TestFaultScript:
    def test_status_and_body(self, echo_server: LoopbackServer) -> None:
        """Status and body faults answer in place of the handler, once each, then it answers again."""
        echo_server.script(
            Fault.status(599, headers={"X-Fault": "yes"}, body=b"odd"),
            Fault.body(b"{}", status_code=201, headers={"Content-Type": "application/json"}),
        )
        assert 2 == echo_server.pending

        with httpx.Client(base_url=echo_server.url) as client:
            odd, body, normal = (client.get("/") for _ in range(3))

        assert (599, "yes", b"odd") == (odd.status_code, odd.headers["x-fault"], odd.content)
        assert (201, b"{}") == (body.status_code, body.content)
        assert normal.text.startswith("GET ")
        assert 0 == echo_server.pending
        assert ["status", "body", None] == [r.fault and r.fault.kind for r in echo_server.requests]

    def test_drip(self, echo_server: LoopbackServer) -> None:
        """A drip sends the pieces apart, announced by one Content-Length."""
        echo_server.script(Fault.drip([b"ab", b"cd", b"ef"], pause=0.05), Fault.drip(100, pause=0))

        with httpx.Client(base_url=echo_server.url) as client:
            start = time.monotonic()
            with client.stream("GET", "/") as response:
                pieces = list(response.iter_raw())
            elapsed = time.monotonic() - start
            cut = client.get("/cut")

        assert b"abcdef" == b"".join(pieces)
        assert 3 == len(pieces)
        assert elapsed >= 0.1
        assert f"GET {echo_server.url}/cut " == cut.text

    def test_drip_of_empty_answer(self) -> None:
        """An empty answer drips as one empty piece."""
        with LoopbackServer(lambda _: httpx.Response(204)) as server:
            server.script(Fault.drip(3, pause=0.01))
            with httpx.Client(base_url=server.url) as client:
                assert 204 == client.get("/").status_code

    def test_drip_needs_a_chunk(self) -> None:
        """A drip of zero pieces is refused."""
        with pytest.raises(ValueError, match="at least one chunk"):
            Fault.drip(0, pause=0.1)

    def test_reset_and_close(self, echo_server: LoopbackServer) -> None:
        """A reset is a connection reset; a close is a disconnect without an answer."""
        echo_server.script(Fault.reset(), Fault.close_before_response())

        with httpx.Client(base_url=echo_server.url) as client:
            with pytest.raises(httpx.ReadError):
                client.get("/")
            with pytest.raises(httpx.RemoteProtocolError):
                client.get("/")
            assert 200 == client.get("/").status_code

    def test_delay(self, echo_server: LoopbackServer) -> None:
        """A delay holds the answer back, then answers normally."""
        echo_server.script(Fault.delay(0.1))

        with httpx.Client(base_url=echo_server.url) as client:
            start = time.monotonic()
            response = client.get("/")

        assert time.monotonic() - start >= 0.1
        assert 200 == response.status_code

    def test_client_gone_mid_drip(self, echo_server: LoopbackServer) -> None:
        """A client that resets mid-drip ends that connection, not the server."""
        echo_server.script(Fault.drip([b"a"] * 50, pause=0.02))

        with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.1)

        with httpx.Client(base_url=echo_server.url) as client:
            assert 200 == client.get("/").status_code
        assert [] == echo_server.errors

    def test_trickled_head_of_a_scripted_answer(self, echo_server: LoopbackServer) -> None:
        """With a body given, the trickled answer is the scripted status, headers and body."""
        echo_server.script(Fault.trickle_head(0, body=b"odd", status_code=418, headers={"X-Fault": "yes"}))

        with httpx.Client(base_url=echo_server.url) as client:
            odd = client.get("/")
            normal = client.get("/after")

        assert (418, "yes", b"odd") == (odd.status_code, odd.headers["x-fault"], odd.content)
        assert f"GET {echo_server.url}/after " == normal.text
        first, second = echo_server.requests
        assert first.connection == second.connection  # the connection stayed usable

    def test_trickled_head_answers_head_without_a_body(self, echo_server: LoopbackServer) -> None:
        """A HEAD gets the head only: a body written after it would garble the next answer."""
        echo_server.script(Fault.trickle_head(0))

        with httpx.Client(base_url=echo_server.url) as client:
            head = client.head("/")
            after = client.get("/after")

        assert 200 == head.status_code and b"" == head.content
        assert int(head.headers["content-length"]) > 0  # the handler's answer did have a body
        assert f"GET {echo_server.url}/after " == after.text
        assert ["HEAD", "GET"] == [r.method for r in echo_server.requests]
        first, second = echo_server.requests
        assert first.connection == second.connection

    def test_script_takes_faults(self, echo_server: LoopbackServer) -> None:
        """Anything but a Fault is refused, and nothing is queued."""
        with pytest.raises(TypeError, match="Fault objects"):
            echo_server.script(Fault.reset(), 503)  # type: ignore[arg-type]

        assert 0 == echo_server.pending


class TestLifecycle:
    def test_not_started(self) -> None:
        """A server that is not running has no port; stopping it does nothing."""
        server = LoopbackServer(echo)

        server.stop()
        with pytest.raises(RuntimeError, match="not started"):
            _ = server.url

    def test_start_twice(self) -> None:
        """A running server cannot be started again; after stop() it no longer answers."""
        server = LoopbackServer(echo).start()
        try:
            with pytest.raises(RuntimeError, match="already started"):
                server.start()
        finally:
            server.stop()
            server.stop()

        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url)

    def test_bind_failure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A failure to listen surfaces from start(), and the server can be tried again."""

        async def refuse(*args: object, **kwargs: object) -> None:
            raise OSError("no port for you")

        server = LoopbackServer(echo)
        with monkeypatch.context() as patch:
            patch.setattr(asyncio, "start_server", refuse)
            with pytest.raises(OSError, match="no port for you"):
                server.start()

        with server:
            assert server.url.startswith("http://127.0.0.1:")

    def test_stop_cuts_pending_answers(self, echo_server: LoopbackServer) -> None:
        """Stopping while an answer is held back ends at once."""
        echo_server.script(Fault.delay(30))
        with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            while not echo_server.requests:
                time.sleep(0.01)
            start = time.monotonic()
            echo_server.stop()

            assert b"" == sock.recv(1024)
        assert time.monotonic() - start < 2
