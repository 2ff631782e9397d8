"""Helpers every provider shares: base URL checks, Retry-After, the cached-token sub-flow."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

import bastion_balance as bb
from bastion_balance._protocol import Acquire, Throttle
from bastion_balance._state import RateLimiter, TokenCache
from bastion_balance.providers._common import cached_token, check_base_url, retry_after_seconds
from bastion_balance.testing import json_response

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


class TestBaseUrl:
    @pytest.mark.parametrize(
        "value",
        [5, "", "not a url", "https://", "http://example.com", "https://user:pw@example.com", "https://[::1"],
    )
    def test_refused(self, value: object) -> None:
        """Non-strings, non-URLs, plain http to a public host and user info are refused."""
        with pytest.raises(bb.ConfigurationError):
            check_base_url(value, default="https://d", venue="v")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, "https://d"),
            ("https://proxy.example/kraken/", "https://proxy.example/kraken"),
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://[::1]:9000/", "http://[::1]:9000"),
            ("http://127.0.0.2", "http://127.0.0.2"),
        ],
    )
    def test_accepted(self, value: str | None, expected: str) -> None:
        """https anywhere, http only to loopback; a trailing slash is dropped."""
        assert check_base_url(value, default="https://d", venue="v") == expected


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("header", "seconds"),
        [
            ("12", 12.0),
            (" 1.5 ", 1.5),
            ("-3", 0.0),
            ("Tue, 24 Nov 2026 12:00:30 GMT", 30.0),
            ("Tue, 24 Nov 2026 11:59:00 GMT", 0.0),
            ("Tue, 24 Nov 2026 12:00:30 -0000", 30.0),  # no zone given (RFC 5322 "-0000"): read as UTC
            ("soon", None),
        ],
    )
    def test_forms(self, header: str, seconds: float | None) -> None:
        """Delta seconds and HTTP dates are read; anything else is ignored."""
        assert retry_after_seconds(httpx.Headers({"Retry-After": header}), now=lambda: NOW) == seconds

    def test_absent(self) -> None:
        """No header, no wait."""
        assert retry_after_seconds(httpx.Headers()) is None


class TestCachedToken:
    def test_rate_limited_token_endpoint_spends_the_budget(self) -> None:
        """A 429 from the token endpoint drains the limiter; the flow leaves the lock to its driver."""
        cache = TokenCache()
        limiter = RateLimiter(10, 1, monotonic=lambda: 100.0)

        def parse(response: httpx.Response) -> tuple[str, float]:
            raise bb.RateLimitedError("slow down", venue="v", status_code=response.status_code)

        flow = cached_token(
            cache,
            margin=1,
            request=lambda: httpx.Request("POST", "https://a/t"),
            parse=parse,
            limiter=limiter,
        )
        assert isinstance(next(flow), Acquire)
        cache.refresh_lock.acquire()
        assert isinstance(flow.send(None), Throttle)
        assert isinstance(flow.send(None), httpx.Request)
        with pytest.raises(bb.RateLimitedError):
            flow.send(json_response(429, {}))
        assert cache.refresh_lock.locked()  # the driver, which took it, releases it
        cache.refresh_lock.release()
        assert limiter.reserve(1, 0) == (False, 1.0)
