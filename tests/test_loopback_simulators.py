"""Every simulated venue served over real sockets by ``LoopbackServer``, through both clients.

Each simulator is given the loopback host (``host="127.0.0.1"``, or both of Rails' hosts), each
provider points its ``base_url`` (and ``auth_url``) at ``server.url``, and the balance fetched
through ``bb.BalanceClient`` and ``bb.AsyncBalanceClient`` must carry the simulator's documented
figures. The signatures, tokens and client assertions are checked by the simulators exactly as
in memory, so this also proves that nothing in a signature depends on the production host.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple

import httpx
import jwt
import pytest

import bastion_balance as bb
from bastion_balance.testing import (
    BINANCE_TEST_KEY,
    BINANCE_TEST_SECRET,
    BYBIT_TEST_KEY,
    BYBIT_TEST_SECRET,
    COINSWITCH_TEST_KEY,
    COINSWITCH_TEST_SECRET,
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    POLYMARKET_RETAIL_TEST_KEY_ID,
    POLYMARKET_RETAIL_TEST_SECRET,
    POLYMARKET_US_TEST_ACCOUNT,
    POLYMARKET_US_TEST_CLIENT_ID,
    POLYMARKET_US_TEST_PARTICIPANT_ID,
    RAILS_TEST_API_KEY,
    RAILS_TEST_API_SECRET,
    LoopbackServer,
    SimulatedBinance,
    SimulatedBybit,
    SimulatedCoinSwitch,
    SimulatedKraken,
    SimulatedPolymarketRetail,
    SimulatedPolymarketUS,
    SimulatedRails,
    SimulatedVenue,
    Simulator,
    polymarket_us_test_private_key_pem,
)

LOOPBACK = "127.0.0.1"


class Case(NamedTuple):
    """A simulator on the loopback host, a provider for a base URL, and the documented figures."""

    venue: Callable[[], SimulatedVenue]
    provider: Callable[[str], Any]
    total: str
    available: str


def polymarket_us(url: str) -> bb.PolymarketUS:
    return bb.PolymarketUS(
        client_id=POLYMARKET_US_TEST_CLIENT_ID,
        private_key=polymarket_us_test_private_key_pem(),
        participant_id=POLYMARKET_US_TEST_PARTICIPANT_ID,
        account=POLYMARKET_US_TEST_ACCOUNT,
        base_url=url,
        auth_url=url,
    )


CASES: dict[str, Case] = {
    "kraken": Case(
        lambda: SimulatedKraken(host=LOOPBACK),
        lambda url: bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=url),
        "382.2032",
        "375.1678",
    ),
    "coinswitch": Case(
        lambda: SimulatedCoinSwitch(host=LOOPBACK),
        lambda url: bb.CoinSwitch(
            api_key=COINSWITCH_TEST_KEY, api_secret=COINSWITCH_TEST_SECRET, base_url=url
        ),
        "60960.82599588",
        "60910.77418715",
    ),
    "polymarket_us": Case(
        lambda: SimulatedPolymarketUS(host=LOOPBACK), polymarket_us, "1650.5050", "1125.874"
    ),
    "polymarket_us_retail": Case(
        lambda: SimulatedPolymarketRetail(host=LOOPBACK),
        lambda url: bb.PolymarketUSRetail(
            key_id=POLYMARKET_RETAIL_TEST_KEY_ID, secret_key=POLYMARKET_RETAIL_TEST_SECRET, base_url=url
        ),
        "1312.75",
        "850.00",
    ),
    "rails": Case(
        lambda: SimulatedRails(hosts=(LOOPBACK, LOOPBACK)),
        lambda url: bb.Rails(
            api_key=RAILS_TEST_API_KEY, api_secret=RAILS_TEST_API_SECRET, base_url=url, auth_url=url
        ),
        "99996952.15429778",
        "99521353.92161779",
    ),
    "binance_futures": Case(
        lambda: SimulatedBinance(host=LOOPBACK),
        lambda url: bb.BinanceFutures(api_key=BINANCE_TEST_KEY, api_secret=BINANCE_TEST_SECRET, base_url=url),
        "31.02261200",
        "31.02261200",
    ),
    "bybit": Case(
        lambda: SimulatedBybit(host=LOOPBACK),
        lambda url: bb.Bybit(api_key=BYBIT_TEST_KEY, api_secret=BYBIT_TEST_SECRET, base_url=url),
        "92255.96988644",
        "89987.9688149",
    ),
}


def fetch(mode: str, provider: Any) -> bb.Balance:  # noqa: ANN401  # any provider
    if mode == "sync":
        with bb.BalanceClient(retry=bb.NO_RETRY) as client:
            return client.fetch(provider, timeout=10)

    async def run() -> bb.Balance:
        async with bb.AsyncBalanceClient(retry=bb.NO_RETRY) as client:
            return await client.fetch(provider, timeout=10)

    return asyncio.run(run())


def in_memory(case: Case) -> bb.Balance:
    """The same venue answered through the in-memory transport, at the production URL."""
    venue = case.venue()
    provider = case.provider("http://" + LOOPBACK)
    with bb.BalanceClient(http_client=Simulator(venue).client(), retry=bb.NO_RETRY) as client:
        return client.fetch(provider, timeout=10)


def test_every_simulator_is_covered() -> None:
    """The table names every simulated venue the package exports."""
    import bastion_balance.testing as testing

    exported = {name for name in testing.__all__ if name.startswith("Simulated") and name != "SimulatedVenue"}
    exported.discard("SimulatedKrakenTicker")  # a rate source's, not a balance venue's: tests/test_rates.py
    covered = {type(case.venue()).__name__ for case in CASES.values()}
    assert covered == exported


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_served_over_loopback(name: str, mode: str) -> None:
    """Over real sockets, each venue answers its documented balance to both clients."""
    case = CASES[name]
    venue = case.venue()
    with LoopbackServer(Simulator(venue)) as server:
        provider = case.provider(server.url)
        balance = fetch(mode, provider)
        assert server.requests, "the balance did not come over the socket"
        assert not server.errors
    assert balance.exchange == provider.venue
    assert (balance.total, balance.available) == (Decimal(case.total), Decimal(case.available))
    memory = in_memory(case)
    assert (balance.total, balance.available, balance.wallet, balance.margin_used) == (
        memory.total,
        memory.available,
        memory.wallet,
        memory.margin_used,
    )
    assert balance.breakdown == memory.breakdown
    assert balance.extra == memory.extra


class TestPolymarketUSAudience:
    """Over loopback the Auth0 simulator still checks the client assertion's aud exactly."""

    def assertion_aud(self, server: LoopbackServer) -> object:
        token_call = next(r for r in server.requests if r.path == "/oauth/token")
        assertion = json.loads(token_call.body)["client_assertion"]
        return jwt.decode(assertion, options={"verify_signature": False})["aud"]

    def test_aud_is_the_loopback_token_url(self) -> None:
        """The assertion names http://127.0.0.1:PORT/oauth/token, the URL it was sent to."""
        venue = SimulatedPolymarketUS(host=LOOPBACK)
        with LoopbackServer(Simulator(venue)) as server:
            assert fetch("sync", polymarket_us(server.url)).total == Decimal("1650.5050")
            assert self.assertion_aud(server) == f"{server.url}/oauth/token"
        assert (venue.tokens_issued, venue.calls) == (1, 1)

    def test_wrong_aud_refused_over_loopback(self) -> None:
        """A pinned token_url that is not the one the client signs is refused (invalid_client_assertion)."""
        venue = SimulatedPolymarketUS(host=LOOPBACK, token_url="https://pmx-prod.us.auth0.com/oauth/token")
        with LoopbackServer(Simulator(venue)) as server, pytest.raises(bb.AuthenticationError) as caught:
            fetch("sync", polymarket_us(server.url))
        assert caught.value.code == "invalid_client_assertion"
        assert (venue.tokens_issued, venue.calls) == (0, 0)

    def test_pinned_token_url_accepted(self) -> None:
        """token_url= pins the aud: a server whose handler sees another host still accepts it."""
        venue = SimulatedPolymarketUS(token_url="http://127.0.0.1:1/oauth/token")
        request = httpx.Request("POST", "https://pmx-prod.us.auth0.com/oauth/token")
        assert venue.audience_for(request) == "http://127.0.0.1:1/oauth/token"
        assert venue.token_url == "http://127.0.0.1:1/oauth/token"

    def test_default_aud_is_the_request_url(self) -> None:
        """Without token_url= the expected aud follows the URL the request reached, port included."""
        venue = SimulatedPolymarketUS()
        assert venue.token_url == "https://pmx-prod.us.auth0.com/oauth/token"
        production = httpx.Request("POST", "https://pmx-prod.us.auth0.com/oauth/token")
        assert venue.audience_for(production) == venue.token_url
        loopback = httpx.Request("POST", "http://127.0.0.1:8443/oauth/token")
        assert venue.audience_for(loopback) == "http://127.0.0.1:8443/oauth/token"

    def test_one_host_routes_by_path(self) -> None:
        """With host=, other paths go to the API (a gRPC 404), the token path to Auth0."""
        venue = SimulatedPolymarketUS(host=LOOPBACK)
        assert venue.hosts == (LOOPBACK, LOOPBACK)
        other = venue.handle(httpx.Request("POST", f"http://{LOOPBACK}:9/v1/other"))
        assert other.status_code == 404
        assert "code" in other.json()
        token = venue.handle(httpx.Request("POST", f"http://{LOOPBACK}:9/oauth/token", content=b"x"))
        assert token.json()["error"] == "invalid_request"
        assert venue.token_calls == 1
