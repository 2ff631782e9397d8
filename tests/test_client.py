"""BalanceClient / AsyncBalanceClient: drivers, retries, deadlines, limits, ownership."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal

import attrs
import httpx
import pytest

import bastion_balance as bb
from bastion_balance import _state
from bastion_balance._logging import RedactingFilter, install_redaction, redact
from bastion_balance._protocol import Acquire, Flow, Release, Throttle
from bastion_balance.providers.kraken import Kraken
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    FakeProvider,
    SimulatedKraken,
    Simulator,
)

from . import _harness as harness

FAST = bb.RetryPolicy(attempts=4, backoff=0.001, max_backoff=0.002)


def kraken(**overrides: object) -> Kraken:
    return Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, **overrides)  # type: ignore[arg-type]


@pytest.fixture(params=harness.MODES)
def fetch(request: pytest.FixtureRequest) -> Callable[..., bb.Balance]:
    """fetch(provider, sim, **client_kwargs) through the sync or the async client (timeout 5 s)."""

    def through(provider: object, sim: Simulator, timeout: float = 5, **kwargs: object) -> bb.Balance:
        return harness.fetch(request.param, provider, sim, timeout=timeout, **kwargs)

    return through


class TestRetries:
    def test_transient_retried_then_succeeds(self, fetch: Callable[..., bb.Balance]) -> None:
        """A 5xx and a busy answer are retried, each attempt signed with a fresh nonce."""
        venue = SimulatedKraken()
        venue.fail_next(503, "EService:Busy")
        assert fetch(kraken(), Simulator(venue), retry=FAST).total == Decimal("382.2032")
        assert venue.calls == 3
        assert len(venue.nonces) == 1

    def test_gives_up_after_four_attempts(self, fetch: Callable[..., bb.Balance]) -> None:
        """At most four attempts, then the last error is raised."""
        venue = SimulatedKraken()
        venue.fail_next(*([502] * 5))
        with pytest.raises(bb.ServiceUnavailableError):
            fetch(kraken(), Simulator(venue), retry=FAST)
        assert venue.calls == 4

    def test_auth_never_retried(self, fetch: Callable[..., bb.Balance]) -> None:
        """A rejected key is raised at once."""
        venue = SimulatedKraken(keys={"other": KRAKEN_TEST_SECRET})
        with pytest.raises(bb.AuthenticationError):
            fetch(kraken(), Simulator(venue), retry=FAST)
        assert venue.calls == 1

    def test_retry_after_past_deadline_raises_at_once(self, fetch: Callable[..., bb.Balance]) -> None:
        """When the venue's wait would pass the deadline, the error comes now, not at the deadline."""
        venue = SimulatedKraken()
        venue.fail_next("EService: Throttled: 99999999999")
        started = time.monotonic()
        with pytest.raises(bb.RateLimitedError) as info:
            fetch(kraken(), Simulator(venue), timeout=3, retry=FAST)
        assert time.monotonic() - started < 1
        assert info.value.retry_after is not None and info.value.retry_after > 3


def test_retry_after_is_honoured() -> None:
    """The wait before a retry is at least the venue's Retry-After."""
    waits: list[float] = []
    venue = SimulatedKraken()
    venue.fail_next("EService: Throttled: 1700000002")
    with bb.BalanceClient(http_client=Simulator(venue).client(), retry=FAST) as client:
        client._sleep = waits.append
        balance = client.fetch(kraken(clock=lambda: 1_700_000_000 * 10**9), timeout=30)
    assert balance.total == Decimal("382.2032")
    assert waits and waits[0] >= 2


def test_backoff_uses_full_jitter() -> None:
    """Backoff waits are drawn from [0, base * 2**n], capped."""
    bounds: list[float] = []
    policy = bb.RetryPolicy(backoff=1, max_backoff=3, jitter=lambda low, high: bounds.append(high) or low)
    venue = SimulatedKraken()
    venue.fail_next(500, 500, 500)
    with bb.BalanceClient(http_client=Simulator(venue).client(), retry=policy) as client:
        client._sleep = lambda _s: None
        client.fetch(kraken())
    assert bounds == [1, 2, 3]


class TestDeadlines:
    def test_lock_wait_past_deadline(self, fetch: Callable[..., bb.Balance]) -> None:
        """Waiting for a key's turn longer than the deadline raises DeadlineExceededError."""
        lock = _state.shared_state("kraken", "https://api.kraken.com", KRAKEN_TEST_KEY).inflight
        lock.acquire()
        try:
            with pytest.raises(bb.DeadlineExceededError):
                fetch(kraken(), Simulator(SimulatedKraken()), timeout=0.2, retry=FAST)
        finally:
            lock.release()

    def test_limiter_past_deadline(self, fetch: Callable[..., bb.Balance]) -> None:
        """A rate-limit wait that would pass the deadline raises RateLimitedError, not retried."""
        state = _state.shared_state("kraken", "https://api.kraken.com", KRAKEN_TEST_KEY)
        state.limiter("calls", 15, 0.33).drain(15)
        with pytest.raises(bb.RateLimitedError, match="client-side") as info:
            fetch(kraken(), Simulator(SimulatedKraken()), timeout=1, retry=FAST)
        assert info.value.transient is False

    def test_limiter_wait_within_deadline(self, fetch: Callable[..., bb.Balance]) -> None:
        """A short rate-limit wait is slept through, then the fetch goes on."""
        state = _state.shared_state("kraken", "https://api.kraken.com", KRAKEN_TEST_KEY)
        limiter = state.limiter("calls", 15, 0.33)
        limiter.drain(14.02)  # leaves 0.98 of a call: a wait of about 0.06 s
        assert fetch(kraken(), Simulator(SimulatedKraken()), timeout=2).total == Decimal("382.2032")

    @pytest.mark.parametrize("timeout", [0, -1, True, "5", float("nan")])
    def test_bad_timeout(self, timeout: object) -> None:
        """A timeout that is not a positive number is a ConfigurationError."""
        with pytest.raises(bb.ConfigurationError):
            bb.fetch_balance(kraken(), timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(bb.ConfigurationError):
            bb.aggregate([], timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(bb.ConfigurationError):
            asyncio.run(bb.aaggregate([], timeout=timeout))  # type: ignore[arg-type]

    def test_deadline_already_passed_before_send(self) -> None:
        """A request is not sent once the deadline has passed."""
        venue = SimulatedKraken()

        @attrs.frozen
        class Slow:
            label: str = "slow"
            venue: str = "slow"

            def balance_flow(self) -> Flow:
                time.sleep(0.05)
                yield httpx.Request("GET", "https://api.kraken.com/")
                raise AssertionError

        with bb.BalanceClient(http_client=Simulator(venue).client(), retry=FAST) as client:
            with pytest.raises(bb.DeadlineExceededError):
                client.fetch(Slow(), timeout=0.01)  # type: ignore[arg-type]
        assert venue.calls == 0


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> bb.BalanceClient:
    return bb.BalanceClient(http_client=httpx.Client(transport=httpx.MockTransport(handler)), retry=FAST)


class TestTransport:
    def test_connect_error_is_transport_error_without_secrets(self) -> None:
        """A connection failure becomes TransportError naming host and path, no secret, no chain."""

        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        with mock(refuse) as client, pytest.raises(bb.TransportError) as info:
            client.fetch(kraken())
        text = str(info.value)
        assert "api.kraken.com/0/private/TradeBalance" in text
        assert KRAKEN_TEST_SECRET not in text and KRAKEN_TEST_KEY not in text
        assert info.value.__cause__ is None and info.value.__context__ is None

    def test_read_timeout_before_deadline_is_retried(self) -> None:
        """A timeout that leaves time in the deadline is a transient TransportError."""
        calls = []

        def flaky(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            if len(calls) == 1:
                raise httpx.ReadTimeout("slow", request=request)
            return SimulatedKraken().handle(request)

        with mock(flaky) as client:
            assert client.fetch(kraken()).total == Decimal("382.2032")
        assert len(calls) == 2

    def test_body_over_cap(self) -> None:
        """A body over max_response_bytes raises ResponseTooLargeError, not retried."""
        calls = []

        def huge(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            return httpx.Response(200, content=b" " * 2048)

        client = bb.BalanceClient(
            http_client=httpx.Client(transport=httpx.MockTransport(huge)), max_response_bytes=1024
        )
        with client, pytest.raises(bb.ResponseTooLargeError):
            client.fetch(kraken())
        assert calls == [1]

    def test_body_over_cap_async(self) -> None:
        """The async client enforces the cap too."""

        async def go() -> None:
            transport = httpx.MockTransport(lambda r: httpx.Response(200, content=b" " * 2048))
            async with bb.AsyncBalanceClient(
                http_client=httpx.AsyncClient(transport=transport), max_response_bytes=1024
            ) as c:
                await c.fetch(kraken())

        with pytest.raises(bb.ResponseTooLargeError):
            asyncio.run(go())

    def test_gzip_body_decoded_once(self) -> None:
        """A gzip-encoded answer reaches the provider decoded, and parses."""

        def zipped(request: httpx.Request) -> httpx.Response:
            plain = SimulatedKraken().handle(request)
            return httpx.Response(
                200, content=gzip.compress(plain.content), headers={"Content-Encoding": "gzip"}
            )

        with mock(zipped) as client:
            assert client.fetch(kraken()).available == Decimal("375.1678")


class TestFlowContract:
    def test_unknown_effect(self, fetch: Callable[..., bb.Balance]) -> None:
        """A provider yielding something that is not an effect is a TypeError."""

        @attrs.frozen
        class Odd:
            label: str = "odd"
            venue: str = "odd"

            def balance_flow(self) -> Flow:
                yield "GET /"  # type: ignore[misc]
                raise AssertionError

        with pytest.raises(TypeError, match="not an effect"):
            fetch(Odd(), Simulator())

    def test_not_a_balance(self, fetch: Callable[..., bb.Balance]) -> None:
        """A flow returning something else than a Balance is a TypeError."""

        @attrs.frozen
        class Wrong:
            label: str = "w"
            venue: str = "w"

            def balance_flow(self) -> Flow:
                yield from ()
                return 42  # type: ignore[return-value]

        with pytest.raises(TypeError, match="not a Balance"):
            fetch(Wrong(), Simulator())

    def test_lock_released_when_flow_fails(self, fetch: Callable[..., bb.Balance]) -> None:
        """A turn taken through Acquire is released by the driver however the flow ends; the
        flow itself releases nothing."""
        lock = _state.Turn()
        early = _state.Turn()

        @attrs.frozen
        class Locking:
            label: str = "l"
            venue: str = "l"

            def balance_flow(self) -> Flow:
                yield Throttle(_state.RateLimiter(5, 5))
                yield Acquire(early)
                yield Release(early)
                assert not early.locked()
                yield Acquire(lock)
                assert lock.locked()
                yield httpx.Request("GET", "https://nowhere.invalid/")
                raise AssertionError

        with pytest.raises(bb.TransportError):
            fetch(Locking(), Simulator(), retry=bb.NO_RETRY)
        assert not lock.locked()
        assert not early.locked()

    def test_async_lock_wait_does_not_block_loop(self) -> None:
        """While one task waits for a held lock, other tasks on the loop keep running."""
        lock = _state.Turn()
        lock.acquire()
        ticks: list[int] = []

        @attrs.frozen
        class Locking:
            label: str = "l"
            venue: str = "l"

            def balance_flow(self) -> Flow:
                yield Acquire(lock)
                return bb.Balance(
                    label="l",
                    exchange="l",
                    currency="USD",
                    total=Decimal(1),
                    available=Decimal(1),
                    fetched_at=__import__("datetime").datetime.now(__import__("datetime").UTC),
                )

        async def ticker() -> None:
            for i in range(5):
                ticks.append(i)
                await asyncio.sleep(0.01)
            lock.release()

        async def go() -> bb.Balance:
            async with bb.AsyncBalanceClient(http_client=httpx.AsyncClient()) as client:
                result, _ = await asyncio.gather(client.fetch(Locking()), ticker())  # type: ignore[arg-type]
                return result

        assert asyncio.run(go()).total == 1
        assert ticks == [0, 1, 2, 3, 4]


class TestOwnership:
    def test_callers_client_not_closed(self) -> None:
        """A caller's httpx.Client stays open after fetch_balance and BalanceClient.close()."""
        http = Simulator(SimulatedKraken()).client()
        bb.fetch_balance(kraken(), client=http)
        with bb.BalanceClient(http_client=http) as client:
            client.fetch(kraken())
        assert not http.is_closed
        http.close()

    def test_async_callers_client_not_closed(self) -> None:
        """A caller's httpx.AsyncClient stays open after afetch_balance."""

        async def go() -> bool:
            http = Simulator(SimulatedKraken()).async_client()
            balance = await bb.afetch_balance(kraken(), client=http)
            portfolio = await bb.aaggregate([kraken()], client=http)
            assert balance.total == portfolio.total_usd
            closed = http.is_closed
            await http.aclose()
            return closed

        assert asyncio.run(go()) is False

    def test_own_client_made_lazily_and_closed(self) -> None:
        """A BalanceClient makes its pool on first use and closes it on exit."""
        client = bb.BalanceClient()
        assert client._made_http is None
        made = client._http
        client.close()
        assert made.is_closed

    def test_async_own_client_closed(self) -> None:
        """An AsyncBalanceClient closes the pool it made."""

        async def go() -> httpx.AsyncClient:
            async with bb.AsyncBalanceClient() as client:
                return client._http

        assert asyncio.run(go()).is_closed

    @pytest.mark.parametrize("client", ["http://x", 3])
    def test_bad_client(self, client: object) -> None:
        """client= must be ours or httpx's."""
        with pytest.raises(bb.ConfigurationError):
            bb.fetch_balance(kraken(), client=client)  # type: ignore[arg-type]
        with pytest.raises(bb.ConfigurationError):
            asyncio.run(bb.afetch_balance(kraken(), client=client))  # type: ignore[arg-type]

    def test_bad_retry(self) -> None:
        """retry= must be a RetryPolicy."""
        with pytest.raises(bb.ConfigurationError):
            bb.BalanceClient(retry=3)  # type: ignore[arg-type]

    def test_module_functions_share_one_pool(self) -> None:
        """fetch_balance without client= reuses one process-wide BalanceClient."""
        from bastion_balance import _client

        assert _client._default_client() is _client._default_client()


def test_sync_aggregate_inside_running_loop() -> None:
    """aggregate() works from inside a running event loop, as in a Jupyter cell."""
    sim = Simulator(SimulatedKraken())

    async def cell() -> bb.Portfolio:
        assert asyncio.get_running_loop().is_running()
        return bb.aggregate([kraken(), FakeProvider(label="cash", total=Decimal("10"))], client=sim.client())

    portfolio = asyncio.run(cell())
    assert portfolio.total_usd == Decimal("392.2032")
    assert portfolio.complete


def test_aggregate_runs_venues_concurrently() -> None:
    """Sync aggregate fetches providers at the same time, not one after another."""
    barrier = threading.Barrier(3, timeout=5)

    def meet(request: httpx.Request) -> httpx.Response:
        barrier.wait()
        return httpx.Response(200)

    client = bb.BalanceClient(http_client=httpx.Client(transport=httpx.MockTransport(meet)))
    providers = [FakeProvider(label=str(i), url=f"https://h{i}.example/") for i in range(3)]
    assert client.aggregate(providers).complete


class TestLogging:
    def test_redact(self) -> None:
        """signature= values and credential header values are masked."""
        text = "GET https://fapi.binance.com/fapi/v2/account?timestamp=1&signature=abcdef123 API-Key: k3y"
        cleaned = redact(text)
        assert "abcdef123" not in cleaned and "k3y" not in cleaned
        assert "signature=***" in cleaned

    def test_filter_on_httpx_logger(self, caplog: pytest.LogCaptureFixture) -> None:
        """httpx's request log line reaches handlers with the signature masked."""
        install_redaction()
        with caplog.at_level(logging.DEBUG, logger="httpx"):
            logging.getLogger("httpx").info("HTTP Request: %s %s", "GET", "https://x/?signature=deadbeef")
        assert "deadbeef" not in caplog.text
        assert any(isinstance(f, RedactingFilter) for f in logging.getLogger("httpx").filters)

    def test_retry_logged_at_info(self, caplog: pytest.LogCaptureFixture) -> None:
        """Retries are logged by the bastion_balance logger, without secrets."""
        venue = SimulatedKraken()
        venue.fail_next(503)
        with caplog.at_level(logging.INFO, logger="bastion_balance"):
            with bb.BalanceClient(http_client=Simulator(venue).client(), retry=FAST) as client:
                client.fetch(kraken())
        assert "retrying after ServiceUnavailableError" in caplog.text
        assert KRAKEN_TEST_SECRET not in caplog.text
