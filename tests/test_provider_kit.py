"""The provider seam is public: a provider outside ``providers/`` is as good as a built-in one.

``examples/custom_provider.py`` is that provider ("Acme"): written with public names only, it
signs, throttles, takes its key's turn and maps errors through ``bastion_balance.provider_kit``.
The shared sub-flows of the kit are also driven by hand here, effect by effect.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import pickle
import sys
import threading
from collections.abc import Generator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import httpx
import pytest

import bastion_balance as bb
from bastion_balance import provider_kit as kit
from bastion_balance import testing
from bastion_balance.providers import _common
from bastion_balance.testing import Simulator, json_response

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_provider.py"
PUBLIC_MODULES = {
    "bastion_balance": bb,
    "bastion_balance.provider_kit": kit,
    "bastion_balance.testing": testing,
}


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("custom_provider", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_provider"] = module  # attrs/cattrs resolve annotations through it
    spec.loader.exec_module(module)
    return module


acme = _load_example()


@pytest.fixture(autouse=True)
def _fresh_state() -> Generator[None, None, None]:
    testing.reset_shared_state()
    yield
    testing.reset_shared_state()


def provider(**settings: Any) -> Any:
    return acme.Acme(api_key=acme.TEST_KEY, api_secret=acme.TEST_SECRET, **settings)


class TestOnlyPublicNames:
    def test_imports_are_public(self) -> None:
        """The example imports only public modules of the library, and no private name."""
        tree = ast.parse(EXAMPLE.read_text())
        seen = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bastion_balance"):
                for alias in node.names:
                    qualified = f"{node.module}.{alias.name}"
                    assert node.module in PUBLIC_MODULES or qualified in PUBLIC_MODULES, qualified
                    assert not alias.name.startswith("_"), qualified
                    seen.add(qualified)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("bastion_balance"):
                        assert alias.name in PUBLIC_MODULES, alias.name
                        seen.add(alias.name)
        assert "bastion_balance.provider_kit" in seen

    def test_attributes_used_are_exported(self) -> None:
        """Every ``bb.X`` and ``kit.X`` the example uses is in that module's ``__all__``."""
        tree = ast.parse(EXAMPLE.read_text())
        used = {
            (node.value.id, node.attr)
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in {"bb", "kit"}
        }
        assert {name for _, name in used} >= {"throttled_call", "shared_state", "Acquire", "Balance"}
        for module, name in used:
            exported = bb.__all__ if module == "bb" else kit.__all__
            assert name in exported, f"{module}.{name}"

    def test_kit_exports_resolve(self) -> None:
        """Each name the kit exports exists, and is the very object the built-in venues use."""
        for name in kit.__all__:
            value = getattr(kit, name)
            if hasattr(_common, name):
                assert value is getattr(_common, name), name
        assert len(kit.__all__) == len(set(kit.__all__))


class TestAcme:
    def test_fetch_is_exact(self) -> None:
        """The third-party provider's figures arrive exact, with its extra figures kept."""
        with Simulator(acme.SimulatedAcme()).client() as http:
            balance = bb.fetch_balance(provider(), client=http)
        assert balance.total == Decimal("1250.000000000000000001")
        assert balance.available == Decimal("1000.5")
        assert balance.unrealized_pnl == Decimal("-3.25")
        assert dict(balance.extra) == {"unrealizedPnl": Decimal("-3.25")}

    def test_aggregates_with_builtin_venues(self) -> None:
        """Acme sits in one portfolio beside the seven built-in venues (demo simulators)."""
        simulator, providers = testing.demo_setup()
        simulator.add(acme.SimulatedAcme())
        with simulator.client() as http:
            portfolio = bb.aggregate([*providers, provider()], client=http, rates={"EUR": Decimal("1.08")})
        assert portfolio.complete, portfolio.errors
        assert portfolio.balances["acme"].total == Decimal("1250.000000000000000001")

    def test_turn_keeps_nonces_in_order_across_threads(self) -> None:
        """16 threads on one key: the venue sees strictly increasing nonces, never two at once."""
        venue = acme.SimulatedAcme()
        at_venue = threading.Semaphore(1)
        overlaps: list[int] = []
        plain = venue.handle

        def handle(request: httpx.Request) -> httpx.Response:
            if not at_venue.acquire(blocking=False):
                overlaps.append(1)
                return plain(request)
            try:
                threading.Event().wait(0.002)
                return plain(request)
            finally:
                at_venue.release()

        venue.handle = handle
        errors: list[BaseException] = []
        with (
            testing.rate_limits_disabled(),
            bb.BalanceClient(http_client=Simulator(venue).client()) as client,
        ):

            def fetch() -> None:
                try:
                    client.fetch(provider())
                except BaseException as exc:  # pragma: no cover  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=fetch) for _ in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert not errors
        assert not overlaps
        assert len(venue.nonces) == 16
        assert venue.nonces == sorted(set(venue.nonces))

    def test_async_fetches_share_the_turn(self) -> None:
        """The same holds for concurrent async fetches on one event loop."""
        venue = acme.SimulatedAcme()

        async def main() -> list[bb.Balance]:
            async with bb.AsyncBalanceClient(http_client=Simulator(venue).async_client()) as client:
                return await asyncio.gather(*(client.fetch(provider()) for _ in range(8)))

        with testing.rate_limits_disabled():
            balances = asyncio.run(main())
        assert {b.total for b in balances} == {Decimal("1250.000000000000000001")}
        assert venue.nonces == sorted(set(venue.nonces))
        assert len(venue.nonces) == 8

    def test_rate_limit_answer_drains_the_limiter(self) -> None:
        """A 1003 is a RateLimitedError with the venue's wait, and the key's budget is marked spent."""
        venue = acme.SimulatedAcme()
        venue.answers.append(
            json_response(429, {"code": 1003, "message": "slow down"}, **{"Retry-After": "7"})
        )
        with bb.BalanceClient(http_client=Simulator(venue).client(), retry=bb.NO_RETRY) as client:
            with pytest.raises(bb.RateLimitedError, match="acme: 1003 slow down") as info:
                client.fetch(provider())
            assert info.value.retry_after == 7.0
            limiter = kit.shared_state("acme", acme.DEFAULT_BASE_URL, acme.TEST_KEY).window_limiter(
                "balance", acme.CALLS_PER_SECOND, 1.0
            )
            granted, wait = limiter.reserve(1, 0.0)
        assert not granted
        assert wait > 0

    @pytest.mark.parametrize(
        ("answer", "error", "match"),
        [
            (
                json_response(401, {"code": 1002, "message": "bad sig"}),
                bb.AuthenticationError,
                "check the API secret",
            ),
            (httpx.Response(503, text="<html>down</html>"), bb.ServiceUnavailableError, "HTTP 503"),
            (json_response(400, {"code": "E_ODD", "message": "odd"}), bb.ExchangeAPIError, "odd"),
            (json_response(200, {"equity": "NaN", "free": "1"}), bb.UnexpectedResponseError, "equity"),
        ],
    )
    def test_errors_are_typed(self, answer: httpx.Response, error: type[Exception], match: str) -> None:
        """Error answers become the library's typed errors; a bad figure names its field."""
        venue = acme.SimulatedAcme()
        venue.answers.append(answer)
        with bb.BalanceClient(http_client=Simulator(venue).client(), retry=bb.NO_RETRY) as client:
            with pytest.raises(error, match=match):
                client.fetch(provider())

    def test_secrets_stay_hidden(self) -> None:
        """Credentials are not in the repr, pickling is refused, the signed request hides them."""
        account = provider()
        assert acme.TEST_KEY not in repr(account)
        assert acme.TEST_SECRET not in repr(account)
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(account)
        request = account.build_request(1)
        assert acme.TEST_KEY not in repr(request)
        assert repr(request.headers["X-ACME-SIGN"]) != request.headers["X-ACME-SIGN"]

    def test_bad_settings(self) -> None:
        """Settings are checked at construction, naming the parameter and never the secret."""
        with pytest.raises(bb.ConfigurationError, match="api_secret is required"):
            acme.Acme(api_key="k", api_secret="")
        with pytest.raises(bb.ConfigurationError, match="must use https"):
            provider(base_url="http://acme.example")


# -- the kit's sub-flows, effect by effect -------------------------------------------------------


def run(
    flow: Generator[kit.Effect, httpx.Response | None, Any], answers: list[httpx.Response]
) -> tuple[Any, list[Any]]:
    """Drive ``flow`` by hand: answer each request from ``answers``; return (result, effects)."""
    effects: list[Any] = []
    sent: httpx.Response | None = None
    while True:
        try:
            effect = flow.send(sent)
        except StopIteration as stop:
            return stop.value, effects
        effects.append(effect)
        sent = answers.pop(0) if isinstance(effect, httpx.Request) else None


def request(path: str = "/") -> httpx.Request:
    return httpx.Request("GET", f"https://venue.example{path}")


def refused(status: int = 401, code: int | None = None) -> bb.AuthenticationError:
    return bb.AuthenticationError("refused", venue="v", status_code=status, code=code)


class TestSubFlows:
    def test_send_refuses_a_missing_answer(self) -> None:
        """A driver that answers a request with None is a bug, reported as a TypeError."""
        flow = kit.send(request())
        next(flow)
        with pytest.raises(TypeError, match="answered a request with None"):
            flow.send(None)

    def test_throttled_call_builds_after_the_wait(self) -> None:
        """The request is built after Throttle is answered (a fresh nonce), then noted and parsed."""
        limiter = kit.RateLimiter(5, 1.0)
        built: list[int] = []
        noted: list[int] = []

        def build() -> httpx.Request:
            built.append(1)
            return request()

        flow = kit.throttled_call(
            limiter, build, lambda r: r.status_code, cost=2, note=lambda r: noted.append(1)
        )
        assert next(flow) == kit.Throttle(limiter, 2)
        assert not built
        assert isinstance(flow.send(None), httpx.Request)
        with pytest.raises(StopIteration) as stop:
            flow.send(httpx.Response(204))
        assert (stop.value.value, built, noted) == (204, [1], [1])

    def test_throttled_call_drains_only_when_asked(self) -> None:
        """A rate-limit error drains the limiter unless ``drains`` says it is not about this budget."""

        def parse(_response: httpx.Response) -> None:
            raise bb.RateLimitedError("busy", venue="v", code="concurrency")

        for drains, left in ((lambda _exc: True, False), (lambda _exc: False, True)):
            limiter = kit.RateLimiter(5, 1.0)
            with pytest.raises(bb.RateLimitedError):
                run(kit.throttled_call(limiter, request, parse, drains=drains), [httpx.Response(429)])
            assert limiter.reserve(1, 0.0)[0] is left

    def test_clock_corrected_resyncs_once(self) -> None:
        """A clock error runs ``resync`` once and the call again with the new offset; a second is raised."""
        calls: list[int] = []
        kit_state = []

        def call(now: Any) -> Generator[kit.Effect, httpx.Response | None, str]:
            calls.append(now())
            yield from kit.send(request())
            if len(calls) <= limit:
                raise refused(code=-1021)
            return "ok"

        def resync() -> Generator[kit.Effect, httpx.Response | None, None]:
            kit_state.append(1)
            yield from kit.measure_clock_offset(
                "clockvenue",
                "https://venue.example",
                now_ms=lambda: 1000,
                request=request("/time"),
                parse=lambda _r: 1600,
            )

        def corrected() -> Any:
            return kit.clock_corrected(
                call,
                venue="clockvenue",
                base_url="https://venue.example",
                now_ms=lambda: 1000,
                is_clock_error=lambda exc: exc.code == -1021,
                resync=resync,
            )

        limit = 1
        result, _ = run(corrected(), [httpx.Response(200)] * 3)
        assert (result, calls, kit_state) == ("ok", [1000, 1600], [1])
        assert kit.clock_offset("clockvenue", "https://venue.example") == 600
        calls.clear()
        limit = 5
        with pytest.raises(bb.AuthenticationError):
            run(corrected(), [httpx.Response(200)] * 3)
        assert len(calls) == 2
        with pytest.raises(bb.AuthenticationError):  # not a clock error: raised at once
            run(
                kit.clock_corrected(
                    call,
                    venue="clockvenue",
                    base_url="https://venue.example",
                    now_ms=lambda: 1000,
                    is_clock_error=lambda exc: False,
                    resync=resync,
                ),
                [httpx.Response(200)],
            )

    @pytest.mark.parametrize(
        ("cached", "refusals", "tokens_asked", "outcome"),
        [
            (True, 1, 2, "ok"),  # a cached token refused: one refresh, one retry
            (True, 2, 2, "refused"),  # refused again after the refresh: raised
            (False, 1, 1, "refused"),  # a token just issued refused: raised, no refresh
            (True, 0, 1, "ok"),
        ],
    )
    def test_bearer_call(self, cached: bool, refusals: int, tokens_asked: int, outcome: str) -> None:
        """One refresh when a cached token is refused; a refused token is always dropped."""
        cache = kit.TokenCache()
        asked: list[str] = []
        seen: list[str] = []

        def token() -> Generator[kit.Effect, httpx.Response | None, tuple[str, bool]]:
            asked.append("t")
            yield from ()
            value = f"token{len(asked)}"
            cache.store(value, 60)
            return value, cached and len(asked) == 1

        def call(value: str) -> Generator[kit.Effect, httpx.Response | None, str]:
            seen.append(value)
            yield from kit.send(request())
            if len(seen) <= refusals:
                raise refused()
            return "ok"

        flow = kit.bearer_call(token, call, cache=cache, is_refused=lambda exc: exc.status_code == 401)
        if outcome == "ok":
            assert run(flow, [httpx.Response(200)] * 2)[0] == "ok"
        else:
            with pytest.raises(bb.AuthenticationError):
                run(flow, [httpx.Response(200)] * 2)
            assert cache.get(0) is None  # the refused token is not kept
        assert len(asked) == tokens_asked

    def test_bearer_call_other_auth_errors_keep_the_token(self) -> None:
        """An auth error that is not a refused token (a 403 permission) is raised; the token stays."""
        cache = kit.TokenCache()
        cache.store("t", 60)

        def token() -> Generator[kit.Effect, httpx.Response | None, tuple[str, bool]]:
            yield from ()
            return "t", True

        def call(_value: str) -> Generator[kit.Effect, httpx.Response | None, str]:
            yield from kit.send(request())
            raise refused(403)

        flow = kit.bearer_call(token, call, cache=cache, is_refused=lambda exc: exc.status_code == 401)
        with pytest.raises(bb.AuthenticationError):
            run(flow, [httpx.Response(200)])
        assert cache.get(0) == "t"


class TestAnswerHelpers:
    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ("E1", "E1"),
            ("", None),
            (Decimal(-1021), -1021),
            (7, 7),
            (Decimal("1.5"), None),
            (Decimal("1e30"), None),
            (Decimal("1E+99999999999"), None),  # beyond the context's Emax: abs() would overflow
            (Decimal("NaN"), None),
            (True, None),
            (None, None),
            ([1], None),
        ],
    )
    def test_error_code(self, value: object, code: object) -> None:
        """Codes are strings as sent or bounded whole numbers; anything else is no code."""
        assert kit.error_code(value) == code

    def test_error_text_and_printable(self) -> None:
        """The first non-blank message member; long or blank texts printed on one short line."""
        assert kit.error_text({"message": "  ", "error": "bad key"}, "message", "error") == "bad key"
        assert kit.error_text({"message": 3}, "message") is None
        assert kit.printable("a\n  b") == "a b"
        assert kit.printable("x" * 300, 10) == "x" * 10 + "..."
        assert kit.printable("   ") == "(empty body)"

    def test_error_body(self) -> None:
        """An HTML or non-object error body is ``{}``; a JSON object is decoded exactly."""
        assert kit.error_body(httpx.Response(502, text="<html/>"), venue="v") == {}
        assert kit.error_body(httpx.Response(400, content=b"[1]"), venue="v") == {}
        assert kit.error_body(httpx.Response(400, content=b'{"code": 1.50}'), venue="v") == {
            "code": Decimal("1.50")
        }

    def test_integer_field(self) -> None:
        """Whole numbers as JSON numbers or strings; anything else names the field."""
        assert kit.integer_field("42", venue="v", field="$.n") == 42
        with pytest.raises(bb.UnexpectedResponseError, match=r"expected an integer"):
            kit.integer_field(Decimal("4.2"), venue="v", field="$.n")
        with pytest.raises(bb.UnexpectedResponseError, match=r"bad number"):
            kit.integer_field("four", venue="v", field="$.n")

    def test_environment_url(self) -> None:
        """An environment's host unless given; given URLs are checked; no host is a clear error."""
        hosts = {"live": "https://live.example", "private": None}

        @attrs.frozen(kw_only=True)
        class Venue:
            environment: str = "live"
            base_url: str = attrs.field(default=None, converter=kit.environment_url(hosts.get, venue="v"))  # type: ignore[misc]

        assert Venue().base_url == "https://live.example"
        assert Venue(base_url="https://other.example/").base_url == "https://other.example"
        with pytest.raises(
            bb.ConfigurationError, match=r"environment='private' has no published host.*base_url is missing"
        ):
            Venue(environment="private")
        assert (
            Venue(environment="private", base_url="https://mine.example").base_url == "https://mine.example"
        )
        with pytest.raises(bb.ConfigurationError, match="must use https"):
            Venue(base_url="http://live.example")
