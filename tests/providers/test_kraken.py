"""Kraken TradeBalance: signer vectors, request shape, parsing, errors, nonces, cassette."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from urllib.parse import parse_qsl

import httpx
import pytest

import bastion_balance as bb
from bastion_balance import _state
from bastion_balance.providers.kraken import (
    COUNTER_MARGIN,
    NONCE_HELP,
    TRADE_BALANCE_PATH,
    Kraken,
    canonical_currency,
    error_key,
    kraken_sign,
)
from bastion_balance.testing import (
    KRAKEN_DOCUMENTED_RESULT,
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    SimulatedKraken,
    Simulator,
    json_response,
    rate_limits_disabled,
)
from bastion_balance.testing._kraken import demo_pair

from ._venue_cases import VenueCases

NONCE = 1616492376594


def kraken(**overrides: object) -> Kraken:
    settings: dict[str, object] = {"api_key": KRAKEN_TEST_KEY, "api_secret": KRAKEN_TEST_SECRET}
    settings.update(overrides)
    return Kraken(**settings)  # type: ignore[arg-type]


def respond(provider: Kraken, response: httpx.Response) -> bb.Balance:
    response.request = provider.build_request(NONCE)
    return provider.parse_response(response)


CASES = VenueCases(
    make=kraken,
    venue=SimulatedKraken,
    demo=demo_pair,
    respond=lambda response: respond(kraken(), response),
    secrets=(KRAKEN_TEST_SECRET, KRAKEN_TEST_KEY, "246810"),
    repr_settings={"otp": "246810"},
    bad_settings=(
        {"api_key": ""},
        {"api_key": None},
        {"api_key": " key"},
        {"api_secret": "not base64!"},
        {"api_secret": ""},
        {"base_url": "http://api.kraken.com"},
        {"base_url": "ftp://api.kraken.com"},
        {"base_url": "https://api.kraken.com/?x=1"},
        {"tier": "gold"},
        {"asset": "Z/USD"},
        {"label": ""},
        {"otp": ""},
    ),
    error_secrets=(KRAKEN_TEST_SECRET,),
    defaults={"base_url": "https://api.kraken.com"},
    fetch_hosts=("api.kraken.com",),
    fetched={"total": Decimal("382.2032")},
    venue_after_fetch={"calls": 1},
    demo_fetched={"total": Decimal("382.2032"), "available": Decimal("375.1678")},
    cassette="kraken/trade_balance.yaml",
    cassette_uris=("https://api.kraken.com/0/private/TradeBalance",),
    cassette_fetched={"total": Decimal("382.2032"), "extra.eb": Decimal("1101.3425")},
)


class TestSigner:
    def test_official_vector(self) -> None:
        """Kraken's published AddOrder example signs to the published API-Sign."""
        body = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
        assert kraken_sign("/0/private/AddOrder", NONCE, body, KRAKEN_TEST_SECRET) == (
            "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
        )

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (
                "nonce=1616492376594&asset=ZUSD",
                "4kkab29qg45NEyvtsvC1RBhoM7ZQJxJVJXAqpuxz+YBT0vzHeE0Xqajf0JrmJGy82yNJPJG/GKMhtGiPr2HyWg==",
            ),
            (
                '{"nonce":1616492376594,"asset":"ZUSD"}',
                "uaBv3nb73gFXj1JWTcLXjgGHDnKOEiVDKS/6nBg+bBQwRMk1dIT5cYIcDPm5rG5l+MLe9yIvcL3kN44506mjWw==",
            ),
        ],
    )
    def test_trade_balance_local_vectors(self, body: str, expected: str) -> None:
        """The TradeBalance vectors of docs/venues/kraken.md, 'Signing' (form and JSON bodies) reproduce."""
        assert kraken_sign(TRADE_BALANCE_PATH, NONCE, body, KRAKEN_TEST_SECRET) == expected

    def test_request_is_signed_form_body(self) -> None:
        """The request is a form POST whose API-Sign covers exactly the bytes sent."""
        request = kraken(otp="123456").build_request(NONCE)
        body = request.content.decode()
        assert request.method == "POST"
        assert str(request.url) == "https://api.kraken.com/0/private/TradeBalance"
        assert parse_qsl(body) == [("nonce", str(NONCE)), ("asset", "ZUSD"), ("otp", "123456")]
        assert request.headers["API-Key"] == KRAKEN_TEST_KEY
        assert request.headers["API-Sign"] == kraken_sign(TRADE_BALANCE_PATH, NONCE, body, KRAKEN_TEST_SECRET)
        assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
        assert request.headers["User-Agent"].startswith("bastion-balance/")


class TestParse:
    def test_documented_example(self) -> None:
        """The documented TradeBalance example maps exactly onto the common model."""
        balance = respond(kraken(), json_response(200, {"error": [], "result": KRAKEN_DOCUMENTED_RESULT}))
        assert (balance.total, balance.available) == (Decimal("382.2032"), Decimal("375.1678"))
        assert (balance.wallet, balance.margin_used, balance.unrealized_pnl) == (
            Decimal("392.2264"),
            Decimal("7.0354"),
            Decimal("-10.0232"),
        )
        assert balance.currency == "USD"
        assert balance.extra["eb"] == Decimal("1101.3425")
        assert set(balance.extra) == {"eb", "tb", "m", "n", "c", "v", "ml"}
        assert balance.total == balance.wallet + balance.unrealized_pnl  # e = tb + n holds exactly

    def test_optional_fields_absent_or_empty(self) -> None:
        """Without positions ml/mfo/uv are absent; an empty optional figure is None, never 0."""
        result = {"e": "10.5", "mf": "10.5", "tb": "", "mfo": "9.1"}
        balance = respond(kraken(), json_response(200, {"error": [], "result": result}))
        assert balance.wallet is None
        assert balance.extra == {"mfo": Decimal("9.1")}

    @pytest.mark.parametrize("field", ["e", "mf"])
    @pytest.mark.parametrize("value", [None, "", "NaN", "1_0", " 1", "0x10"])
    def test_required_figure_bad(self, field: str, value: object) -> None:
        """A missing or malformed total/available is an error naming venue, field and value."""
        result = dict(KRAKEN_DOCUMENTED_RESULT)
        if value is None:
            del result[field]
        else:
            result[field] = value
        with pytest.raises(bb.UnexpectedResponseError) as info:
            respond(kraken(), json_response(200, {"error": [], "result": result}))
        assert info.value.venue == "kraken"
        assert info.value.field == f"$.result.{field}"

    def test_json_float_figure_is_exact(self) -> None:
        """A figure sent as a JSON number is decoded straight to Decimal, digit for digit."""
        body = '{"error": [], "result": {"e": 0.1000000000000000055511151231257827, "mf": 1}}'
        balance = respond(kraken(), httpx.Response(200, content=body.encode()))
        assert balance.total == Decimal("0.1000000000000000055511151231257827")

    def test_warnings_are_not_errors(self) -> None:
        """Strings starting with W are warnings: the result is still used."""
        payload = {"error": ["WGeneral:Something"], "result": KRAKEN_DOCUMENTED_RESULT}
        assert respond(kraken(), json_response(200, payload)).total == Decimal("382.2032")

    @pytest.mark.parametrize(
        "payload",
        [{"error": "EAPI:Invalid key"}, {"error": [], "result": []}, {"error": []}, [1, 2]],
    )
    def test_bad_envelope(self, payload: object) -> None:
        """An envelope of the wrong shape is an UnexpectedResponseError."""
        with pytest.raises(bb.UnexpectedResponseError):
            respond(kraken(), json_response(200, payload))

    @pytest.mark.parametrize("status", [500, 502, 520, 530])
    def test_server_errors(self, status: int) -> None:
        """Cloudflare and server 5xx pages are ServiceUnavailableError (retryable)."""
        with pytest.raises(bb.ServiceUnavailableError) as info:
            respond(kraken(), httpx.Response(status, text="<html>down</html>"))
        assert info.value.status_code == status
        assert info.value.transient

    def test_unexpected_status_without_error(self) -> None:
        """A 4xx with an empty error array is still an ExchangeAPIError."""
        with pytest.raises(bb.ExchangeAPIError) as info:
            respond(kraken(), json_response(404, {"error": []}))
        assert info.value.status_code == 404

    @pytest.mark.parametrize(
        ("asset", "currency"), [("ZUSD", "USD"), ("ZEUR", "EUR"), ("XXBT", "BTC"), ("USDT", "USDT")]
    )
    def test_valuation_currency(self, asset: str, currency: str) -> None:
        """The asset parameter sets the Balance currency, with Kraken's codes made common."""
        assert kraken(asset=asset).currency == currency == canonical_currency(asset)


ERRORS = [
    ("EAPI:Invalid key", bb.AuthenticationError),
    ("EAPI:Invalid signature", bb.AuthenticationError),
    ("EAPI:Invalid nonce", bb.AuthenticationError),
    ("EGeneral:Permission denied", bb.AuthenticationError),
    ("EAuth:Failed", bb.AuthenticationError),
    ("EGeneral:Temporary lockout", bb.AuthenticationError),
    ("EAPI:Rate limit exceeded", bb.RateLimitedError),
    ("EService: Throttled: 1700000000", bb.RateLimitedError),
    ("EService:Unavailable", bb.ServiceUnavailableError),
    ("EService:Busy", bb.ServiceUnavailableError),
    ("EGeneral:Internal error", bb.ServiceUnavailableError),
    ("EService:Deadline elapsed", bb.ServiceUnavailableError),
    ("EGeneral:Invalid arguments:Index unavailable", bb.ExchangeAPIError),
    ("EQuery:Unknown asset", bb.ExchangeAPIError),
    ("EAPI:Bad request", bb.ExchangeAPIError),
    ("EGeneral:Unknown method", bb.ExchangeAPIError),
    ("EFunding:Something new", bb.ExchangeAPIError),
]


class TestErrors:
    @pytest.mark.parametrize(("message", "cls"), ERRORS)
    def test_error_string_maps_to_class(self, message: str, cls: type[bb.ExchangeAPIError]) -> None:
        """Each Kraken error string raises its class, with the raw string as the code."""
        with pytest.raises(bb.ExchangeAPIError) as info:
            respond(kraken(), json_response(200, {"error": [message]}))
        assert type(info.value) is cls
        assert info.value.code == message
        assert info.value.venue == "kraken"

    def test_throttled_retry_after(self) -> None:
        """EService: Throttled carries the wait until Kraken's timestamp."""
        provider = kraken(clock=lambda: 1_699_999_990 * 10**9)
        with pytest.raises(bb.RateLimitedError) as info:
            respond(provider, json_response(200, {"error": ["EService: Throttled: 1700000000"]}))
        assert info.value.retry_after == 10

    def test_error_key(self) -> None:
        """Error strings are matched on category and message, spaces ignored."""
        assert error_key("EService: Throttled: 1700000000") == "EService:Throttled"

    def test_nonce_error_explains_units(self) -> None:
        """The Invalid nonce error says which unit we use and what to change."""
        with pytest.raises(bb.AuthenticationError, match="microseconds") as info:
            respond(kraken(), json_response(200, {"error": ["EAPI:Invalid nonce"]}))
        assert NONCE_HELP in str(info.value)


def client_for(sim: Simulator) -> bb.BalanceClient:
    return bb.BalanceClient(http_client=sim.client(), retry=bb.NO_RETRY)


class TestAgainstSimulator:
    def test_wrong_secret_is_refused(self) -> None:
        """A secret that does not match the key fails as Kraken fails: Invalid signature."""
        sim = Simulator(SimulatedKraken())
        other = "QUJD" * 22
        with client_for(sim) as client, pytest.raises(bb.AuthenticationError) as info:
            client.fetch(kraken(api_secret=other))
        assert info.value.code == "EAPI:Invalid signature"

    def test_stale_nonce_resigned_once(self) -> None:
        """One Invalid nonce answer gets exactly one fresh re-sign, which succeeds."""
        venue = SimulatedKraken()
        venue.fail_next("EAPI:Invalid nonce")
        with client_for(Simulator(venue)) as client:
            assert client.fetch(kraken()).available == Decimal("375.1678")
        assert venue.calls == 2

    def test_stale_nonce_twice_raises(self) -> None:
        """A second Invalid nonce in a row is raised, with the explanation."""
        venue = SimulatedKraken()
        venue.fail_next("EAPI:Invalid nonce", "EAPI:Invalid nonce")
        with client_for(Simulator(venue)) as client, pytest.raises(bb.AuthenticationError):
            client.fetch(kraken())
        assert venue.calls == 2

    def test_nonce_already_used_by_another_program(self) -> None:
        """Nonces continue above the last one this process handed out, even if the clock stalls."""
        venue = SimulatedKraken()
        with client_for(Simulator(venue)) as client:
            provider = kraken(clock=lambda: 5_000_000_000_000)
            client.fetch(provider)
            client.fetch(provider)
        assert venue.nonces == [5_000_000_000, 5_000_000_001]

    def test_rate_limit_exceeded_drains_our_limiter(self) -> None:
        """After Kraken says the counter is full, our limiter makes the next call wait."""
        venue = SimulatedKraken()
        venue.fail_next("EAPI:Rate limit exceeded")
        with client_for(Simulator(venue)) as client:
            with pytest.raises(bb.RateLimitedError):
                client.fetch(kraken())
            with pytest.raises(bb.RateLimitedError, match="client-side rate limit") as info:
                client.fetch(kraken(), timeout=0.5)
        assert not info.value.transient
        assert venue.calls == 1

    def test_burst_within_tier_needs_no_wait(self) -> None:
        """The starter tier's counter tops out at 15: a burst of 14 calls (one kept as margin for
        the time a call takes to arrive) goes out at once, then the limiter waits."""
        venue = SimulatedKraken()
        with client_for(Simulator(venue)) as client:
            for _ in range(15 - COUNTER_MARGIN):
                client.fetch(kraken(), timeout=0.5)
            with pytest.raises(bb.RateLimitedError):
                client.fetch(kraken(), timeout=0.5)
        assert venue.calls == 14


def test_200_concurrent_fetches_send_increasing_nonces() -> None:
    """Threads and asyncio tasks mixed: every nonce Kraken sees is larger than the last."""
    venue = SimulatedKraken()
    sim = Simulator(venue)
    provider_objects = [kraken(label=f"k{i}") for i in range(4)]  # same key, four objects
    failures: list[BaseException] = []

    def sync_worker(count: int) -> None:
        with client_for(sim) as client:
            for i in range(count):
                client.fetch(provider_objects[i % 4])

    async def async_batch(count: int) -> None:
        async with bb.AsyncBalanceClient(http_client=sim.async_client(), retry=bb.NO_RETRY) as client:
            await asyncio.gather(*(client.fetch(provider_objects[i % 4]) for i in range(count)))

    def loop_worker(count: int) -> None:
        try:
            asyncio.run(async_batch(count))
        except BaseException as exc:
            failures.append(exc)

    with rate_limits_disabled():
        loops = [threading.Thread(target=loop_worker, args=(50,)) for _ in range(2)]
        for thread in loops:
            thread.start()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(sync_worker, [25, 25, 25, 25]))
        for thread in loops:
            thread.join()
    assert failures == []
    assert len(venue.nonces) == 200
    assert all(a < b for a, b in zip(venue.nonces, venue.nonces[1:], strict=False))


class TestSimulatorChecks:
    """The simulated Kraken's own checks, request by request (handle() without a client)."""

    def post(self, venue: SimulatedKraken, body: str, path: str = TRADE_BALANCE_PATH) -> object:
        nonce = dict(parse_qsl(body)).get("nonce", "")
        headers = {"API-Key": KRAKEN_TEST_KEY}
        if nonce.isdigit():
            headers["API-Sign"] = kraken_sign(path, int(nonce), body, KRAKEN_TEST_SECRET)
        response = venue.handle(
            httpx.Request("POST", "https://api.kraken.com" + path, content=body, headers=headers)
        )
        return response.json()["error"]

    def test_refusals(self) -> None:
        """Unknown method, unknown key, a nonce that is not a number or not larger, bad arguments."""
        venue = SimulatedKraken()
        assert self.post(venue, "nonce=5&asset=ZUSD", path="/0/private/Balance") == [
            "EGeneral:Unknown method"
        ]
        assert self.post(SimulatedKraken(keys={}), "nonce=5") == ["EAPI:Invalid key"]
        assert self.post(venue, "nonce=soon") == ["EAPI:Invalid nonce"]
        assert self.post(venue, "nonce=5&asset=ZUSD") == []
        assert self.post(venue, "nonce=5&asset=ZUSD") == ["EAPI:Invalid nonce"]  # not larger than 5
        assert self.post(venue, "nonce=6&asset=Z%2FUSD") == ["EGeneral:Invalid arguments"]
        assert (venue.calls, venue.nonces) == (5, [5, 6])

    def test_scripted_answers(self) -> None:
        """fail_next gives error strings in Kraken's envelope and statuses as HTML pages, in order."""
        venue = SimulatedKraken()
        venue.fail_next("EService:Busy", 520)
        assert self.post(venue, "nonce=1") == ["EService:Busy"]
        page = venue.handle(httpx.Request("POST", "https://api.kraken.com" + TRADE_BALANCE_PATH))
        assert (page.status_code, page.text) == (520, "<html>error</html>")
        assert self.post(venue, "nonce=1") == []
        assert venue.calls == 3


def test_shared_state_is_per_credential() -> None:
    """Two objects with one key share a nonce counter; another key has its own."""
    one = _state.shared_state("kraken", "https://api.kraken.com", KRAKEN_TEST_KEY)
    assert one is _state.shared_state("kraken", "https://api.kraken.com/", KRAKEN_TEST_KEY)
    assert one is not _state.shared_state("kraken", "https://api.kraken.com", "other-key")
