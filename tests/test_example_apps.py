"""The service and multi-account examples do what their docstrings say, against the simulators."""

from __future__ import annotations

import importlib.util
import json
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

import bastion_balance as bb
from bastion_balance import testing
from bastion_balance.testing import FakeProvider, SimulatedBybit, SimulatedKraken, Simulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def service() -> ModuleType:
    pytest.importorskip("starlette")
    return load("service")


def kraken(label: str = "kraken", key: str = testing.KRAKEN_TEST_KEY) -> bb.Kraken:
    return bb.Kraken(api_key=key, api_secret=testing.KRAKEN_TEST_SECRET, label=label)


def test_the_service_answers_exact_json_from_one_shared_client(service: ModuleType) -> None:
    """/portfolio is to_dict() with every digit; every request reuses the one client made at start."""
    from starlette.testclient import TestClient

    simulator = Simulator(SimulatedKraken(), SimulatedBybit())
    providers = [kraken(), bb.Bybit(api_key=testing.BYBIT_TEST_KEY, api_secret=testing.BYBIT_TEST_SECRET)]
    app = service.make_app(providers, http_client=simulator.async_client)
    with TestClient(app) as http:
        first = http.get("/portfolio")
        client = app.state.client
        second = http.get("/portfolio")
        assert app.state.client is client
        summary = http.get("/summary").text
    assert (first.status_code, first.headers["content-type"]) == (200, "application/json")
    body = json.loads(second.text, parse_float=Decimal)
    expected = bb.aggregate(providers, client=simulator.client())
    assert body["total_usd"] == expected.total_usd and body["complete"] is True
    assert str(body["balances"]["bybit"]["total"]) == str(expected.balances["bybit"].total)
    assert summary == expected.summary()
    assert client._made_http is None  # closed at shutdown


def test_a_partial_answer_is_200_and_none_at_all_is_503(service: ModuleType) -> None:
    from starlette.testclient import TestClient

    simulator = Simulator(SimulatedKraken())
    partial = service.make_app(
        [kraken(), kraken("bad", key="unknown-key")], http_client=simulator.async_client
    )
    with TestClient(partial) as http:
        answer = http.get("/portfolio")
    body = json.loads(answer.text, parse_float=Decimal)
    assert answer.status_code == 200 and body["complete"] is False
    assert body["errors"]["bad"]["type"] == "AuthenticationError"
    down = service.make_app([kraken("bad", key="unknown-key")], http_client=simulator.async_client)
    with TestClient(down) as http:
        assert http.get("/portfolio").status_code == 503
    empty = service.make_app([])
    with TestClient(empty) as http:
        assert http.get("/portfolio").status_code == 200


def test_multi_account_reads_labels_secrets_and_rates(tmp_path: Path) -> None:
    """Secrets come from the variables the file names (never the file); [rates] values EUR."""
    example = load("multi_account")
    path = tmp_path / "accounts.toml"
    path.write_text(example.SAMPLE, encoding="utf-8")
    assert testing.KRAKEN_TEST_SECRET not in path.read_text()
    environ = {
        "SAMPLE_KRAKEN_SECRET": testing.KRAKEN_TEST_SECRET,
        "SAMPLE_BYBIT_SECRET": testing.BYBIT_TEST_SECRET,
    }
    providers, rates = example.read_accounts(path, environ)
    assert [p.label for p in providers] == ["kraken-usd", "kraken-eur", "bybit"]
    assert rates == {"EUR": Decimal("1.0842")}
    simulator, _ = testing.demo_setup()
    pf = bb.aggregate(providers, rates=rates, client=simulator.client())
    assert pf.complete
    assert pf.usd(pf.balances["kraken-eur"])[0] == pf.balances["kraken-eur"].total * Decimal("1.0842")
    with pytest.raises(KeyError):
        example.read_accounts(path, {})  # a variable the file names is missing


def test_fake_provider_is_enough_for_a_service(service: ModuleType) -> None:
    """Any BalanceProvider works behind the service (here a FakeProvider, no HTTP at all)."""
    from starlette.testclient import TestClient

    with TestClient(service.make_app([FakeProvider(label="f", total=Decimal("1.10"))])) as http:
        body = json.loads(http.get("/portfolio").text, parse_float=Decimal)
    assert str(body["total_usd"]) == "1.10"
