"""RetryPolicy: checked settings, Retry-After on 429 and 503, and retry logs that name the account."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import attrs
import httpx
import pytest
import tenacity

import bastion_balance as bb
from bastion_balance._retry import async_retrying, retrying
from bastion_balance.providers._common import status_error
from bastion_balance.providers.binance import binance_error
from bastion_balance.providers.bybit import bybit_error
from bastion_balance.providers.kraken import Kraken
from bastion_balance.providers.polymarket_us import grpc_error
from bastion_balance.testing import KRAKEN_TEST_KEY, KRAKEN_TEST_SECRET, FakeProvider, SimulatedKraken

FAR = 1e12  # a deadline (monotonic seconds) no test reaches


def no_jitter(_low: float, _high: float) -> float:
    return 0.1


class TestSettings:
    @pytest.mark.parametrize(
        ("kwargs", "expected"),
        [
            ({"attempts": 0}, "pass attempts=1 (or use bb.NO_RETRY)"),
            ({"attempts": -3}, "whole number >= 1"),
            ({"attempts": True}, "whole number >= 1"),
            ({"attempts": 2.0}, "whole number >= 1"),
            ({"attempts": "4"}, "whole number >= 1"),
            ({"backoff": -1}, "e.g. backoff=0.25"),
            ({"backoff": math.nan}, "finite number of seconds"),
            ({"backoff": math.inf, "max_backoff": math.inf}, "finite number of seconds"),
            ({"backoff": "0.5"}, "finite number of seconds"),
            ({"backoff": False}, "finite number of seconds"),
            ({"max_backoff": math.nan}, "e.g. max_backoff=8.0"),
            ({"max_backoff": math.inf}, "finite number of seconds"),
            ({"max_backoff": -0.5}, "finite number of seconds"),
            ({"backoff": 2, "max_backoff": 1}, "pass max_backoff=2 or more"),
            ({"jitter": 3}, "e.g. random.uniform"),
        ],
    )
    def test_bad_values_say_what_to_pass(self, kwargs: dict[str, object], expected: str) -> None:
        """Each bad setting is a ConfigurationError naming the setting and a value to use."""
        with pytest.raises(bb.ConfigurationError) as info:
            bb.RetryPolicy(**kwargs)  # type: ignore[arg-type]
        assert str(info.value).startswith("RetryPolicy(")
        assert expected in str(info.value)

    def test_evolve_is_checked(self) -> None:
        """attrs.evolve runs the same checks."""
        with pytest.raises(bb.ConfigurationError, match="attempts"):
            attrs.evolve(bb.RetryPolicy(), attempts=0)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {},
            {"attempts": 1},
            {"backoff": 0, "max_backoff": 0},
            {"backoff": 1, "max_backoff": 1},
            {"attempts": 10},
        ],
    )
    def test_good_values(self, kwargs: dict[str, object]) -> None:
        """Edge values that make sense are accepted."""
        policy = bb.RetryPolicy(**kwargs)  # type: ignore[arg-type]
        assert attrs.asdict(policy, filter=lambda a, _v: a.name in kwargs) == kwargs
        assert bb.NO_RETRY.attempts == 1


def run(policy: bb.RetryPolicy, failures: list[Exception], **kwargs: object) -> list[float]:
    """Run a function that raises ``failures`` in turn then succeeds; return the waits."""
    waits: list[float] = []
    pending = list(failures)
    for attempt in retrying(policy, FAR, sleep=waits.append, **kwargs):  # type: ignore[arg-type]
        with attempt:
            if pending:
                raise pending.pop(0)
    return waits


class TestRetryAfter:
    policy = bb.RetryPolicy(backoff=0.1, max_backoff=0.1, jitter=no_jitter)

    def test_service_unavailable_retry_after(self) -> None:
        """A 503's retry_after is waited for, like a 429's."""
        waits = run(self.policy, [bb.ServiceUnavailableError("busy", retry_after=2.0)])
        assert waits == [2.0]

    def test_rate_limited_retry_after(self) -> None:
        """A 429's retry_after is waited for."""
        assert run(self.policy, [bb.RateLimitedError("slow", retry_after=2)]) == [2.0]

    def test_backoff_when_longer(self) -> None:
        """A retry_after shorter than the backoff does not shorten it."""
        assert run(self.policy, [bb.ServiceUnavailableError("busy", retry_after=0.01)]) == [0.1]

    def test_any_exception_carrying_one(self) -> None:
        """Any retried error with a retry_after attribute is honoured."""
        exc = bb.TransportError("reset")
        exc.retry_after = 3  # type: ignore[attr-defined]
        assert run(self.policy, [exc]) == [3.0]

    @pytest.mark.parametrize("value", [None, math.nan, math.inf, -1.0, "2", True])
    def test_unusable_retry_after_ignored(self, value: object) -> None:
        """None, NaN, infinite, negative or non-number waits fall back to the backoff."""
        exc = bb.ServiceUnavailableError("busy")
        exc.retry_after = value  # type: ignore[assignment]
        assert run(self.policy, [exc]) == [0.1]

    def test_retry_after_past_deadline_stops(self) -> None:
        """A wait that would pass the deadline raises the error at once."""
        now = 100.0
        kwargs = self.policy.kwargs(now + 1, monotonic=lambda: now)
        calls: list[int] = []

        def fetch() -> None:
            for attempt in tenacity.Retrying(**kwargs, sleep=lambda _s: None):
                with attempt:
                    calls.append(1)
                    raise bb.ServiceUnavailableError("busy", retry_after=2)

        with pytest.raises(bb.ServiceUnavailableError):
            fetch()
        assert len(calls) == 1


def response(status: int, headers: dict[str, str] | None = None, **kwargs: object) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "https://x/"), **kwargs)  # type: ignore[arg-type]


class TestStatusError:
    @pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
    def test_5xx_retry_after_seconds(self, status: int) -> None:
        """status_error sets retry_after from a 5xx's Retry-After."""
        exc = status_error(response(status, {"Retry-After": "2"}), venue="v", message="down")
        assert isinstance(exc, bb.ServiceUnavailableError)
        assert exc.retry_after == 2.0

    def test_5xx_retry_after_date(self) -> None:
        """An HTTP-date Retry-After becomes seconds from now."""
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
        exc = status_error(response(503, {"Retry-After": when}), venue="v", message="down")
        assert isinstance(exc, bb.ServiceUnavailableError)
        assert exc.retry_after is not None and 25 < exc.retry_after <= 30

    def test_5xx_without_header(self) -> None:
        """No header, or one that is not a wait: retry_after is None."""
        for headers in (None, {"Retry-After": "soon"}):
            exc = status_error(response(503, headers), venue="v", message="down")
            assert isinstance(exc, bb.ServiceUnavailableError)
            assert exc.retry_after is None

    def test_binance_503(self) -> None:
        """Binance's own 5xx error carries the Retry-After."""
        exc = binance_error(None, "busy", response=response(503, {"Retry-After": "2"}), now_ms=0)
        assert isinstance(exc, bb.ServiceUnavailableError) and exc.retry_after == 2.0
        busy = binance_error(-1001, "disconnected", response=response(200), now_ms=0)
        assert isinstance(busy, bb.ServiceUnavailableError) and busy.retry_after is None

    def test_bybit_server_error(self) -> None:
        """Bybit's 10016 carries a Retry-After when one came with it."""
        exc = bybit_error(10016, "Internal error", response=response(503, {"Retry-After": "2"}), now_ms=0)
        assert isinstance(exc, bb.ServiceUnavailableError) and exc.retry_after == 2.0

    def test_polymarket_us_unavailable(self) -> None:
        """Polymarket US's gRPC UNAVAILABLE on a 503 carries the Retry-After."""
        answer = response(503, {"Retry-After": "2"}, json={"code": 14, "message": "unavailable"})
        exc = grpc_error(answer)
        assert isinstance(exc, bb.ServiceUnavailableError) and exc.retry_after == 2.0


def flaky_transport(
    first: httpx.Response, then: Callable[[httpx.Request], httpx.Response]
) -> httpx.MockTransport:
    """A transport that gives ``first`` once, then answers with ``then``."""
    answers = [first]

    def handle(request: httpx.Request) -> httpx.Response:
        return answers.pop() if answers else then(request)

    return httpx.MockTransport(handle)


FAST = bb.RetryPolicy(backoff=0.1, max_backoff=0.1, jitter=no_jitter)


class TestClientsHonourRetryAfter:
    @pytest.mark.parametrize("status", [503, 429])
    def test_sync(self, status: int) -> None:
        """The sync client waits the 503's (and 429's) Retry-After: 2 before retrying."""
        transport = flaky_transport(
            httpx.Response(status, headers={"Retry-After": "2"}), lambda _r: httpx.Response(200)
        )
        waits: list[float] = []
        with bb.BalanceClient(http_client=httpx.Client(transport=transport), retry=FAST) as client:
            client._sleep = waits.append
            balance = client.fetch(FakeProvider(label="a", total=Decimal(5), url="https://fake.test/"))
        assert balance.total == 5
        assert waits == [2.0]

    def test_async(self) -> None:
        """The async client waits the 503's Retry-After: 2 too."""
        transport = flaky_transport(
            httpx.Response(503, headers={"Retry-After": "2"}), lambda _r: httpx.Response(200)
        )
        waits: list[float] = []

        async def record(seconds: float) -> None:
            waits.append(seconds)

        async def go() -> bb.Balance:
            async with bb.AsyncBalanceClient(
                http_client=httpx.AsyncClient(transport=transport), retry=FAST
            ) as client:
                client._sleep = record
                return await client.fetch(FakeProvider(label="a", total=Decimal(5), url="https://fake.test/"))

        assert asyncio.run(go()).total == 5
        assert waits == [2.0]

    def test_kraken_503(self) -> None:
        """A real venue's 503 with Retry-After: 2 is retried after 2 s, not after the backoff."""
        venue = SimulatedKraken()
        transport = flaky_transport(
            httpx.Response(503, headers={"Retry-After": "2"}, text="<html>busy</html>"), venue.handle
        )
        waits: list[float] = []
        kraken = Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET)
        with bb.BalanceClient(http_client=httpx.Client(transport=transport), retry=FAST) as client:
            client._sleep = waits.append
            assert client.fetch(kraken).total == Decimal("382.2032")
        assert waits == [2.0]


class TestRetryLog:
    def test_fields_and_message(self, caplog: pytest.LogCaptureFixture) -> None:
        """The record names label and venue, and carries attempt, wait_s, elapsed_s as attributes."""
        now = [10.0]
        policy = bb.RetryPolicy(backoff=0.42, max_backoff=1, jitter=lambda _low, high: high)
        failures = [(10.5, bb.TransportError("reset")), (11.03, bb.ServiceUnavailableError("busy"))]
        with caplog.at_level(logging.INFO, logger="bastion_balance"):
            kwargs = policy.kwargs(
                FAR, monotonic=lambda: now[0], label="kraken-main", venue="kraken", started=10.0
            )
            for attempt in tenacity.Retrying(**kwargs, sleep=lambda _s: None):
                with attempt:
                    if failures:
                        now[0], exc = failures.pop(0)  # the attempt took until then, and failed
                        raise exc
        records = [r for r in caplog.records if r.name == "bastion_balance"]
        assert [r.getMessage() for r in records] == [
            "kraken-main (kraken): retrying after TransportError (attempt 1, waiting 0.42s, 0.50s elapsed)",
            "kraken-main (kraken): retrying after ServiceUnavailableError (attempt 2, waiting 0.84s, 1.03s elapsed)",
        ]
        second = records[1]
        assert (second.label, second.venue, second.attempt) == ("kraken-main", "kraken", 2)  # type: ignore[attr-defined]
        assert second.wait_s == pytest.approx(0.84)  # type: ignore[attr-defined]
        assert second.elapsed_s == pytest.approx(1.03)  # type: ignore[attr-defined]
        assert second.error == "ServiceUnavailableError"  # type: ignore[attr-defined]
        assert second.levelno == logging.INFO

    def test_label_equal_to_venue(self, caplog: pytest.LogCaptureFixture) -> None:
        """A label that is the venue's name is not repeated."""
        with caplog.at_level(logging.INFO, logger="bastion_balance"):
            run(FAST, [bb.TransportError("reset")], label="kraken", venue="kraken", started=0.0)
        (record,) = caplog.records
        assert record.getMessage().startswith(
            "kraken: retrying after TransportError (attempt 1, waiting 0.10s, "
        )
        assert record.elapsed_s >= 0  # type: ignore[attr-defined]

    def test_without_account(self, caplog: pytest.LogCaptureFixture) -> None:
        """Called without label, venue or start, the fields are there and None."""
        with caplog.at_level(logging.INFO, logger="bastion_balance"):
            run(FAST, [bb.TransportError("reset")])
        (record,) = caplog.records
        assert record.getMessage() == "retrying after TransportError (attempt 1, waiting 0.10s)"
        assert (record.label, record.venue, record.elapsed_s) == (None, None, None)  # type: ignore[attr-defined]
        assert (record.attempt, record.wait_s) == (1, 0.1)  # type: ignore[attr-defined]

    def test_async_retrying_logs_too(self, caplog: pytest.LogCaptureFixture) -> None:
        """async_retrying takes the same account arguments."""
        waits: list[float] = []

        async def record(seconds: float) -> None:
            waits.append(seconds)

        async def go() -> None:
            pending = [bb.ServiceUnavailableError("busy", retry_after=2)]
            loop = async_retrying(FAST, FAR, label="pm", venue="polymarket_us", started=0.0, sleep=record)
            async for attempt in loop:
                with attempt:
                    if pending:
                        raise pending.pop(0)

        with caplog.at_level(logging.INFO, logger="bastion_balance"):
            asyncio.run(go())
        assert waits == [2.0]
        (record_,) = [r for r in caplog.records if r.name == "bastion_balance"]
        assert record_.getMessage().startswith(
            "pm (polymarket_us): retrying after ServiceUnavailableError (attempt 1, waiting 2.00s"
        )
        assert (record_.label, record_.venue, record_.wait_s) == ("pm", "polymarket_us", 2.0)  # type: ignore[attr-defined]
