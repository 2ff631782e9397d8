"""The clients against hostile or mistaken input: redirects, odd settings, raw protocol errors,
errors and logs that name the account."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from decimal import Decimal

import h11
import httpx
import pytest

import bastion_balance as bb
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    RAILS_TEST_API_KEY,
    RAILS_TEST_API_SECRET,
    SimulatedKraken,
    SimulatedRails,
    Simulator,
)
from bastion_balance.testing._loopback import Fault, LoopbackServer


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1"))) as running:
        yield running


def kraken(url: str = "https://api.kraken.com", label: str | None = None) -> bb.Kraken:
    return bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=url, label=label)


class TestRedirects:
    """A signed request is never re-sent elsewhere, whatever the caller's client says."""

    @pytest.mark.parametrize("status", [301, 302, 307, 308])
    def test_sync_redirect_is_an_error(self, server: LoopbackServer, status: int) -> None:
        with LoopbackServer(lambda r: httpx.Response(200, text="stolen")) as other:
            server.script(Fault.status(status, headers={"Location": f"{other.url}/steal"}))
            http = httpx.Client(follow_redirects=True)
            with bb.BalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
                with pytest.raises(bb.ExchangeAPIError, match=r"redirect to 127\.0\.0\.1") as info:
                    client.fetch(kraken(server.url))
            http.close()
            assert other.requests == []  # nothing, and no key, went to the other origin
        assert info.value.status_code == status
        assert "never followed" in str(info.value)

    def test_async_redirect_of_a_secret_header(self) -> None:
        """Rails sends its secret in a header: a redirect must not carry it anywhere."""
        venue = SimulatedRails(hosts=("127.0.0.1", "127.0.0.1"))
        with (
            LoopbackServer(Simulator(venue)) as server,
            LoopbackServer(lambda r: httpx.Response(200)) as evil,
        ):
            server.script(Fault.status(302, headers={"Location": f"{evil.url}/x"}))
            rails = bb.Rails(
                api_key=RAILS_TEST_API_KEY,
                api_secret=RAILS_TEST_API_SECRET,
                base_url=server.url,
                auth_url=server.url,
            )

            async def main() -> None:
                http = httpx.AsyncClient(follow_redirects=True)
                async with bb.AsyncBalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
                    with pytest.raises(bb.ExchangeAPIError, match="redirect"):
                        await client.fetch(rails)
                await http.aclose()

            asyncio.run(main())
            assert evil.requests == []


class TestSettings:
    @pytest.mark.parametrize("timeout", [float("inf"), float("nan"), -1, 0, True, "10", 1e300, 86_400.5])
    def test_bad_timeouts(self, timeout: object) -> None:
        with pytest.raises(bb.ConfigurationError, match="timeout must be a positive, finite"):
            bb.fetch_balance(kraken(), timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(bb.ConfigurationError, match="timeout"):
            bb.BalanceClient(timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(bb.ConfigurationError, match="timeout"):
            bb.aggregate([kraken()], timeout=timeout)  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", [0, -5, True, 1.5, "4096"])
    def test_bad_sizes(self, value: object) -> None:
        with pytest.raises(bb.ConfigurationError, match="max_response_bytes must be a positive whole"):
            bb.BalanceClient(max_response_bytes=value)  # type: ignore[arg-type]
        with pytest.raises(bb.ConfigurationError, match="max_concurrency must be a positive whole"):
            bb.AsyncBalanceClient(max_concurrency=value)  # type: ignore[arg-type]

    def test_wrong_http_clients(self) -> None:
        with pytest.raises(bb.ConfigurationError, match=r"httpx\.Client"):
            bb.BalanceClient(http_client=httpx.AsyncClient())  # type: ignore[arg-type]
        with pytest.raises(bb.ConfigurationError, match=r"httpx\.AsyncClient"):
            bb.AsyncBalanceClient(http_client=httpx.Client())  # type: ignore[arg-type]

    def test_pool_size_of_a_callers_client(self) -> None:
        http = httpx.Client(limits=httpx.Limits(max_connections=7))
        assert bb.BalanceClient(http_client=http)._settings.max_concurrency == 7
        mock = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
        assert bb.BalanceClient(http_client=mock)._settings.max_concurrency == 100
        http.close()
        mock.close()

    def test_one_provider_instead_of_a_list(self) -> None:
        with pytest.raises(bb.ConfigurationError, match=r"aggregate\(\[kraken\]\)"):
            bb.aggregate(kraken())  # type: ignore[arg-type]


class TestProtocolErrors:
    def test_raw_h11_error_is_a_transport_error(self) -> None:
        """An error from below httpx that it did not translate is still ours."""

        def handler(request: httpx.Request) -> httpx.Response:
            raise h11.RemoteProtocolError("illegal header")

        http = httpx.Client(transport=httpx.MockTransport(handler))
        with bb.BalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
            with pytest.raises(bb.TransportError, match="RemoteProtocolError") as info:
                client.fetch(kraken(label="main"))
        assert info.value.__cause__ is None and info.value.__context__ is None
        assert str(info.value).startswith("main: ")

    def test_programming_errors_are_not_hidden(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise ZeroDivisionError

        http = httpx.Client(transport=httpx.MockTransport(handler))
        with bb.BalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
            with pytest.raises(ZeroDivisionError):
                client.fetch(kraken())


class TestNamedErrorsAndLogs:
    def test_error_names_the_label_once(self) -> None:
        venue = SimulatedKraken(keys={"other": KRAKEN_TEST_SECRET})
        with bb.BalanceClient(http_client=Simulator(venue).client()) as client:
            with pytest.raises(bb.AuthenticationError) as info:
                client.fetch(kraken(label="desk-7"))
            assert str(info.value).startswith("desk-7: kraken: EAPI:Invalid key")
            assert info.value.label == "desk-7"
            with pytest.raises(bb.AuthenticationError) as info:
                client.fetch(kraken())  # the default label is the venue: not said twice
            assert str(info.value).startswith("kraken: EAPI:Invalid key")

    def test_rate_limit_wait_log_carries_the_fields(self, caplog: pytest.LogCaptureFixture) -> None:
        sim = Simulator(SimulatedKraken())
        with bb.BalanceClient(http_client=sim.client()) as client:
            client._sleep = lambda _s: None
            provider = kraken(label="desk-7")
            from bastion_balance import _state

            state = _state.shared_state("kraken", "https://api.kraken.com", KRAKEN_TEST_KEY)
            state.limiter("calls", 15, 0.33).drain(15)
            with caplog.at_level(logging.INFO, logger="bastion_balance"):
                assert client.fetch(provider, timeout=30).total == Decimal("382.2032")
        record = next(r for r in caplog.records if "rate limit" in r.getMessage())
        assert record.label == "desk-7" and record.venue == "kraken"  # type: ignore[attr-defined]
        assert record.wait_s > 2 and record.elapsed_s >= 0  # type: ignore[attr-defined]
        assert record.getMessage().startswith("desk-7 (kraken): waiting")

    def test_retry_log_names_account_and_venue(self, caplog: pytest.LogCaptureFixture) -> None:
        venue = SimulatedKraken()
        venue.fail_next(502)
        with bb.BalanceClient(http_client=Simulator(venue).client()) as client:
            client._sleep = lambda _s: None
            with caplog.at_level(logging.INFO, logger="bastion_balance"):
                client.fetch(kraken(label="desk-7"))
        record = next(r for r in caplog.records if "retrying" in r.getMessage())
        assert record.label == "desk-7" and record.venue == "kraken"  # type: ignore[attr-defined]
        assert record.attempt == 1  # type: ignore[attr-defined]


class TestOddAnswers:
    def test_redirect_to_an_unparseable_location(self) -> None:
        """A 3xx whose Location cannot be parsed is a typed error, never followed."""
        answer = httpx.Response(302, headers={"Location": "http://[::1"})
        http = httpx.Client(transport=httpx.MockTransport(lambda r: answer))
        with bb.BalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
            with pytest.raises(bb.TransportError, match="Invalid URL in location header"):
                client.fetch(kraken())
        http.close()

    def test_async_functions_refuse_a_client_of_the_wrong_kind(self) -> None:
        """``client=`` of the async functions takes an AsyncBalanceClient or an httpx.AsyncClient."""

        async def main() -> None:
            http = httpx.Client()
            with pytest.raises(bb.ConfigurationError, match="AsyncClient"):
                await bb.afetch_balance(kraken(), client=http)  # type: ignore[arg-type]
            http.close()

        asyncio.run(main())
