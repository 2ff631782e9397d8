"""``bastion-balance mcp`` in-process: the tools through the MCP SDK's own client, the HTTP transport
with its bearer token on a real socket, and the command's options.

The SDK's ``Client(server)`` connects in memory (``mode="auto"``: the 2026-07-28 per-request path;
``mode="legacy"``: the initialize handshake), so the server's code runs in this process where
coverage sees it. tests/test_mcp_stdio.py runs the console script itself over stdio and HTTP.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import select
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

import bastion_balance as bb
from bastion_balance import _mcp, cli
from bastion_balance.testing import (
    KRAKEN_DOCUMENTED_RESULT,
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    FakeProvider,
    LoopbackServer,
    SimulatedKraken,
    Simulator,
    demo_setup,
)

TOKEN = "test-token-0123456789abcdef"
HUGE = Decimal("12345678901234567890.123456789012345678")  # no float holds it
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def digits(value: Any) -> Any:
    """Every number as the digits it was written with: Decimal('1.10') stays '1.10'."""
    if isinstance(value, dict):
        return {key: digits(item) for key, item in value.items()}
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return str(value)
    return value


def exact_loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


async def expected_portfolio(sim: Simulator, providers: list[Any]) -> bb.Portfolio:
    """What the library itself answers for these providers, to compare the tools with."""
    async with sim.async_client() as http:
        return await bb.aaggregate(providers, client=http, timeout=10)


def demo(*extra: Any) -> tuple[Simulator, list[Any]]:
    sim, providers = demo_setup()
    return sim, [*providers, *extra]


@pytest.fixture
async def demo_client() -> AsyncIterator[Client]:
    sim, providers = demo()
    async with Client(
        _mcp.create_server(providers, http_client=sim.async_client), raise_exceptions=True
    ) as client:
        yield client


# -- the tools ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_lists_two_read_only_tools_that_take_no_credential(demo_client: Client) -> None:
    listed = {tool.name: tool for tool in (await demo_client.list_tools()).tools}
    assert set(listed) == {"bastion_get_balance", "bastion_get_exchanges"}
    for tool in listed.values():
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is True
        assert tool.annotations.destructive_hint is False
        assert tool.input_schema["type"] == "object"
        assert tool.input_schema["additionalProperties"] is False
        assert tool.output_schema is not None
    assert set(listed["bastion_get_balance"].input_schema["properties"]) == {"exchanges"}
    assert listed["bastion_get_exchanges"].input_schema["properties"] == {}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_balance_text_is_dumps_of_to_bastion_with_every_digit(mode: str) -> None:
    huge = FakeProvider(label="huge", total=HUGE, available=HUGE - 1)
    sim, providers = demo(huge)
    expected = (await expected_portfolio(sim, providers)).to_bastion()
    assert str(float(expected["total_usd"])) != str(expected["total_usd"])  # a float would round it
    server = _mcp.create_server(providers, http_client=sim.async_client)
    async with Client(server, mode=mode, raise_exceptions=mode == "auto") as client:
        result = await client.call_tool("bastion_get_balance", {})
    assert not result.is_error
    assert len(result.content) == 1
    text = result.content[0].text  # type: ignore[union-attr]
    assert text == bb.dumps(expected)
    assert digits(exact_loads(text)) == digits(expected)
    assert exact_loads(text) == expected
    # Structured content: the same object, each figure the exact string of its digits.
    assert result.structured_content == digits(expected)
    assert result.structured_content["exchanges"]["huge"]["total"] == str(HUGE)


@pytest.mark.anyio
async def test_tiny_figures_are_spelled_alike_in_text_and_structured_content() -> None:
    """A zero of eight places is 0.00000000 in both contents (str() would say 0E-8)."""
    tiny = FakeProvider(label="tiny", total=Decimal("0E-8"), available=Decimal("1E-9"))
    sim, providers = demo(tiny)
    server = _mcp.create_server(providers, http_client=sim.async_client)
    async with Client(server, mode="auto", raise_exceptions=True) as client:
        result = await client.call_tool("bastion_get_balance", {})
    text = result.content[0].text  # type: ignore[union-attr]
    row = result.structured_content["exchanges"]["tiny"]
    assert row == {"total": "0.00000000", "available": "0.000000001"}
    assert '"tiny": {"total": 0.00000000, "available": 0.000000001}' in text


@pytest.mark.anyio
async def test_balance_of_selected_labels_only(demo_client: Client) -> None:
    result = await demo_client.call_tool("bastion_get_balance", {"exchanges": ["rails", "kraken", "kraken"]})
    answer = exact_loads(result.content[0].text)  # type: ignore[union-attr]
    assert list(answer["exchanges"]) == ["rails", "kraken"]  # in the order asked, each once
    assert answer["total_usd"] == Decimal("382.2032") + Decimal("99996952.15429778")
    assert answer["available_margin_usd"] == Decimal("375.1678") + Decimal("99521353.92161779")


@pytest.mark.anyio
async def test_an_unknown_label_is_a_tool_error_naming_the_known_ones(demo_client: Client) -> None:
    result = await demo_client.call_tool("bastion_get_balance", {"exchanges": ["kraken", "krakken"]})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert "unknown exchanges krakken" in text
    for label in (
        "binance",
        "bybit",
        "kraken",
        "coinswitch",
        "polymarket_us",
        "polymarket_us_retail",
        "rails",
    ):
        assert label in text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"exchanges": []}, "non-empty list"),
        ({"exchanges": "kraken"}, "non-empty list"),
        ({"exchanges": ["kraken", 7]}, "non-empty list"),
        ({"exchanges": None, "api_key": "x"}, "takes only exchanges; got api_key"),
    ],
)
async def test_bad_balance_arguments_are_tool_errors(demo_client: Client, arguments: Any, says: str) -> None:
    result = await demo_client.call_tool("bastion_get_balance", arguments)
    assert result.is_error
    assert says in result.content[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_exchanges_takes_no_arguments_and_unknown_tools_are_errors(demo_client: Client) -> None:
    result = await demo_client.call_tool("bastion_get_exchanges", {"label": "kraken"})
    assert result.is_error
    assert "takes no arguments; got label" in result.content[0].text  # type: ignore[union-attr]
    result = await demo_client.call_tool("bastion_get_secrets", {})
    assert result.is_error
    assert "unknown tool 'bastion_get_secrets'" in result.content[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_exchanges_are_unknown_before_any_fetch(demo_client: Client) -> None:
    result = await demo_client.call_tool("bastion_get_exchanges", {})
    rows = result.structured_content["exchanges"]
    _, providers = demo_setup()
    assert [(row["label"], row["venue"]) for row in rows] == [(p.label, p.venue) for p in providers]
    assert all(
        row["status"] == "unknown" and row["error"] is None and row["last_sync"] is None for row in rows
    )
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_venue_down_is_named_in_a_second_block_and_in_the_statuses() -> None:
    down = bb.Kraken(
        api_key=KRAKEN_TEST_KEY,
        api_secret=KRAKEN_TEST_SECRET,
        label="kraken-down",
        base_url="https://down.invalid",
    )
    sim, providers = demo(down)
    expected = (await expected_portfolio(sim, providers[:-1])).to_bastion()
    server = _mcp.create_server(providers, http_client=sim.async_client, retry=bb.NO_RETRY)
    async with Client(server, raise_exceptions=True) as client:
        result = await client.call_tool("bastion_get_balance", {})
        statuses = (await client.call_tool("bastion_get_exchanges", {})).structured_content["exchanges"]
    assert not result.is_error
    first, second = (block.text for block in result.content)  # type: ignore[union-attr]
    assert first == bb.dumps(expected)
    assert "kraken-down" not in exact_loads(first)["exchanges"]
    lines = second.splitlines()
    assert lines[0] == "1 of 8 accounts failed and are not in the figures above:"
    assert lines[1].startswith("kraken-down: TransportError: ConnectError")
    assert len(lines) == 2
    assert KRAKEN_TEST_SECRET not in second
    by_label = {row["label"]: row for row in statuses}
    assert by_label["kraken-down"]["status"] == "error"
    assert by_label["kraken-down"]["venue"] == "kraken"
    assert by_label["kraken-down"]["error"] == lines[1].removeprefix("kraken-down: ")
    assert by_label["kraken-down"]["last_sync"] is None
    assert by_label["kraken"]["status"] == "ok"
    assert by_label["kraken"]["error"] is None
    assert by_label["kraken"]["last_sync"].endswith("+00:00")


@pytest.mark.anyio
async def test_a_failure_after_a_success_keeps_the_last_sync() -> None:
    kraken_sim = SimulatedKraken()
    sim = Simulator(kraken_sim)
    kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET)
    server = _mcp.create_server([kraken], http_client=sim.async_client, retry=bb.NO_RETRY)
    async with Client(server, raise_exceptions=True) as client:
        await client.call_tool("bastion_get_balance", {})
        ok = (await client.call_tool("bastion_get_exchanges", {})).structured_content["exchanges"][0]
        kraken_sim.fail_next("EAPI:Invalid key")
        failed = await client.call_tool("bastion_get_balance", {"exchanges": ["kraken"]})
        after = (await client.call_tool("bastion_get_exchanges", {})).structured_content["exchanges"][0]
        await client.call_tool("bastion_get_balance", {})
        again = (await client.call_tool("bastion_get_exchanges", {})).structured_content["exchanges"][0]
    assert ok["status"] == "ok"
    assert exact_loads(failed.content[0].text) == {  # type: ignore[union-attr]
        "total_usd": 0,
        "available_margin_usd": 0,
        "exchanges": {},
    }
    assert failed.content[1].text.startswith("1 of 1 accounts failed")  # type: ignore[union-attr]
    assert after["status"] == "error"
    assert "AuthenticationError" in after["error"]
    assert after["last_sync"] == ok["last_sync"]
    assert again["status"] == "ok"
    assert again["error"] is None
    assert again["last_sync"] > ok["last_sync"]


@pytest.mark.anyio
async def test_failure_reasons_are_one_line_without_secrets() -> None:
    kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, label="k")
    leaky = FakeProvider(
        label="leaky", error=bb.ExchangeAPIError(f"leaky: refused\nsecret {KRAKEN_TEST_SECRET} x")
    )
    long = FakeProvider(label="long", error=bb.ExchangeAPIError("long: " + "y" * 1000))
    silent = FakeProvider(label="silent", error=RuntimeError())
    async with bb.AsyncBalanceClient() as client:
        service = _mcp.BalanceService([kraken, leaky, long, silent], client, timeout=5)
        # The secret belongs to another account here: only the failed provider's own are masked,
        # the redaction of signatures and credential headers applies to all.
        assert service._reason("k", RuntimeError(f"k: boom\n{KRAKEN_TEST_SECRET} signature=abc")) == (
            "RuntimeError: boom *** signature=***"
        )
        result = await service.balance({"exchanges": ["leaky", "long", "silent"]})
    second = result.content[1].text  # type: ignore[union-attr]
    lines = second.splitlines()
    assert lines[1] == f"leaky: ExchangeAPIError: refused secret {KRAKEN_TEST_SECRET} x"
    assert lines[2].startswith("long: ExchangeAPIError: yyy")
    assert len(lines[2]) == len("long: ") + 300
    assert lines[2].endswith("...")
    assert lines[3] == "silent: RuntimeError"


@pytest.mark.anyio
async def test_one_balance_client_for_the_servers_life_closed_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[bb.AsyncBalanceClient] = []
    closed: list[bb.AsyncBalanceClient] = []

    class Counting(bb.AsyncBalanceClient):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            made.append(self)

        async def aclose(self) -> None:
            closed.append(self)
            await super().aclose()

    monkeypatch.setattr(_mcp, "AsyncBalanceClient", Counting)
    sim = Simulator(SimulatedKraken(host="127.0.0.1"))
    with LoopbackServer(sim) as venue:
        kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=venue.url)
        async with Client(_mcp.create_server([kraken]), raise_exceptions=True) as client:
            for _ in range(3):
                result = await client.call_tool("bastion_get_balance", {})
                assert not result.is_error
            assert closed == []
        connections = {request.connection for request in venue.requests}
    assert len(made) == 1
    assert closed == made
    assert len(venue.requests) == 3
    assert connections == {1}  # one pooled connection carried every call


@pytest.mark.anyio
async def test_the_demo_http_client_is_closed_with_the_server() -> None:
    sim, providers = demo()
    made: list[httpx.AsyncClient] = []

    def factory() -> httpx.AsyncClient:
        made.append(sim.async_client())
        return made[-1]

    async with Client(_mcp.create_server(providers, http_client=factory)) as client:
        await client.call_tool("bastion_get_balance", {"exchanges": ["kraken"]})
        assert not made[0].is_closed
    assert len(made) == 1
    assert made[0].is_closed


# -- streamable HTTP, in this process on a real socket ---------------------------------------


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    """The demo accounts plus one that is down, served on 127.0.0.1 with TOKEN; yields the URL."""
    down = FakeProvider(label="down", venue="bybit", error=bb.ServiceUnavailableError("down: HTTP 503"))
    sim, providers = demo(down)
    server = _mcp.create_server(providers, http_client=sim.async_client)
    stop = anyio.Event()
    err = io.StringIO()
    async with anyio.create_task_group() as group:
        port = await group.start(
            lambda task_status: _mcp.serve_http(
                server, host="127.0.0.1", port=0, token=TOKEN, err=err, stop=stop, task_status=task_status
            )
        )
        yield f"http://127.0.0.1:{port}/mcp"
        stop.set()
    assert err.getvalue() == f"bastion-balance mcp: serving http://127.0.0.1:{port}/mcp\n"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_http_with_the_token_lists_and_calls_both_tools(http_server: str, mode: str) -> None:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        Client(streamable_http_client(http_server, http_client=http), mode=mode) as client,
    ):
        assert {tool.name for tool in (await client.list_tools()).tools} == {
            "bastion_get_balance",
            "bastion_get_exchanges",
        }
        result = await client.call_tool("bastion_get_balance", {})
        statuses = (await client.call_tool("bastion_get_exchanges", {})).structured_content["exchanges"]
    text, failures = (block.text for block in result.content)  # type: ignore[union-attr]
    answer = exact_loads(text)
    assert text == bb.dumps(answer)
    assert digits(result.structured_content) == digits(answer)
    assert answer["total_usd"] == Decimal("100153545.43099210")
    assert str(answer["total_usd"]) == "100153545.43099210"
    assert "down" not in answer["exchanges"]
    assert failures.splitlines()[1] == "down: ServiceUnavailableError: HTTP 503"
    assert {row["label"]: row["status"] for row in statuses}["down"] == "error"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789abc"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
)
async def test_http_without_the_right_token_is_401(http_server: str, headers: dict[str, str]) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient() as http:
        response = await http.post(http_server, json=ping, headers={**accept, **headers})
        elsewhere = await http.get(http_server.removesuffix("/mcp") + "/other", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "BASTION_MCP_TOKEN" in response.json()["error"]
    assert TOKEN not in response.text
    assert elsewhere.status_code == 401


@pytest.mark.anyio
async def test_http_sdk_client_with_a_wrong_token_cannot_connect(http_server: str) -> None:
    with anyio.fail_after(30):
        async with httpx2.AsyncClient(headers={"Authorization": "Bearer nope-nope-nope-nope"}) as http:
            with pytest.raises(ExceptionGroup) as caught:  # noqa: PT012  # the connect is what fails
                async with Client(streamable_http_client(http_server, http_client=http)) as client:
                    await client.list_tools()
    assert caught.group_contains(MCPError, match="error response")


@pytest.mark.anyio
async def test_http_lowercase_bearer_scheme_is_accepted(http_server: str) -> None:
    headers = {"Authorization": f"bearer {TOKEN}", "Accept": "application/json, text/event-stream"}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(http_server, json=body, headers=headers)
        if "mcp-session-id" in response.headers:
            await http.delete(
                http_server, headers={**headers, "mcp-session-id": response.headers["mcp-session-id"]}
            )
    assert response.status_code == 200


@pytest.mark.anyio
async def test_http_refuses_a_foreign_host_header_even_with_the_token(http_server: str) -> None:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json, text/event-stream",
        "Host": "evil.example:80",
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(
            http_server, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers
        )
    assert response.status_code in {403, 421}


# -- the command ----------------------------------------------------------------------------


def run_main(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = _mcp.main(list(argv), environ={} if environ is None else environ, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _no_default_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The developer's own ~/.config/bastion-balance/config.toml never leaks into a test."""
    monkeypatch.setattr(_mcp, "DEFAULT_CONFIG", tmp_path / "absent" / "config.toml")


@pytest.mark.parametrize(
    ("argv", "environ", "says"),
    [
        (["--demo", "--transport", "streamable-http"], {}, "needs BASTION_MCP_TOKEN set"),
        (["--demo", "--transport", "streamable-http"], {"BASTION_MCP_TOKEN": "short"}, "at least 16"),
        (
            ["--demo", "--transport", "streamable-http", "--host", "0.0.0.0"],
            {"BASTION_MCP_TOKEN": TOKEN},
            "--allow-remote",
        ),  # noqa: S104
        (
            ["--demo", "--transport", "streamable-http", "--host", "example.com"],
            {"BASTION_MCP_TOKEN": TOKEN},
            "not a loopback",
        ),
        (
            ["--demo", "--transport", "streamable-http", "--port", "70000"],
            {"BASTION_MCP_TOKEN": TOKEN},
            "0-65535",
        ),
        (["--demo", "--timeout", "0"], {}, "--timeout 0.0"),
        (["--demo", "--timeout", "inf"], {}, "--timeout inf"),
        (["--demo", "--config", "x.toml"], {}, "takes no --config"),
        ([], {}, "no accounts configured"),
        ([], {"BASTION_KRAKEN_API_KEY": KRAKEN_TEST_KEY}, "kraken: missing api_secret"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], environ: dict[str, str], says: str) -> None:
    code, out, err = run_main(*argv, environ=environ)
    assert code == 2
    assert out == ""
    last = err.splitlines()[-1]
    assert last.startswith("bastion-balance mcp: ")
    assert says in last
    assert TOKEN not in err


def test_no_token_is_one_line_and_nothing_else() -> None:
    code, out, err = run_main("--demo", "--transport", "streamable-http")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1


def test_help_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main("--help")
    assert code == 0
    assert "--transport {stdio,streamable-http}" in out
    assert "--allow-remote" in out
    code, out, err = run_main("--transport", "carrier-pigeon")
    assert code == 2
    assert "invalid choice" in err
    assert capsys.readouterr() == ("", "")


def test_the_cli_dispatches_mcp() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert cli.run(["mcp", "--help"], environ={}, out=out, err=err) == 0
    assert out.getvalue().startswith("usage: bastion-balance mcp")


def test_duplicate_labels_in_a_config_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    account = f'[[account]]\nvenue = "kraken"\nlabel = "main"\napi_key = "{KRAKEN_TEST_KEY}"\napi_secret_env = "S"\n'
    config.write_text(account * 2)
    config.chmod(0o600)
    code, _, err = run_main("--config", str(config), environ={"S": KRAKEN_TEST_SECRET})
    assert code == 2
    assert "two accounts are labelled main" in err
    assert KRAKEN_TEST_SECRET not in err


def test_the_default_config_file_is_read_when_present(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[account]]\nvenue = "kraken"\nlabel = "from-default"\n')
    config.chmod(0o600)
    monkeypatch.setattr(_mcp, "DEFAULT_CONFIG", config)
    code, _, err = run_main(environ={"BASTION_KRAKEN_API_KEY": KRAKEN_TEST_KEY})
    assert code == 2
    assert "kraken: missing api_key, api_secret" in err  # the file's account, not the variable's


def test_a_port_in_use_is_a_usage_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_main(
            "--demo",
            "--transport",
            "streamable-http",
            "--port",
            str(port),
            environ={"BASTION_MCP_TOKEN": TOKEN},
        )
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_remote_bind_needs_the_flag_and_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[dict[str, Any]] = []

    async def fake_serve_http(server: Any, **kwargs: Any) -> None:
        served.append(kwargs)

    monkeypatch.setattr(_mcp, "serve_http", fake_serve_http)
    environ = {"BASTION_MCP_TOKEN": TOKEN}
    argv = ["--demo", "--transport", "streamable-http", "--host", "0.0.0.0", "--allow-remote", "--port", "9"]  # noqa: S104
    code, out, err = run_main(*argv, environ=environ)
    assert (code, out) == (0, "")
    assert "warning: --allow-remote: serving on 0.0.0.0, reachable from other machines" in err
    assert served == [{"host": "0.0.0.0", "port": 9, "token": TOKEN, "err": served[0]["err"]}]  # noqa: S104
    for loopback in ("::1", "localhost", "127.0.0.2"):
        code, _, err = run_main(
            "--demo", "--transport", "streamable-http", "--host", loopback, environ=environ
        )
        assert code == 0
        assert "warning" not in err
        assert served[-1]["host"] == loopback


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    async def interrupted(server: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_mcp, "serve_stdio", interrupted)
    code, out, err = run_main("--demo")
    assert (code, out) == (130, "")
    assert err.endswith("bastion-balance mcp: interrupted\n")


def test_without_the_extra_main_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("mcp_types", "mcp", "mcp.server", "mcp.server.stdio", "uvicorn"):
        monkeypatch.setitem(sys.modules, name, None)  # makes "import name" raise ImportError
    spec = importlib.util.spec_from_file_location("bastion_balance._mcp_without_extra", _mcp.__file__)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "bastion_balance"
    spec.loader.exec_module(module)
    err = io.StringIO()
    assert module.main(["--demo"], environ={}, out=io.StringIO(), err=err) == 2
    assert "pip install 'bastion-balance[mcp]'" in err.getvalue()


# -- the command over stdio, in this process -------------------------------------------------


class Pipes:
    """Pipes for the server's stdin and stdout, for main() running in a thread.

    Answers are read from the raw descriptor with ``select``, so a server that does not answer
    fails the test after ``READ_TIMEOUT`` seconds instead of hanging it.
    """

    READ_TIMEOUT = 60.0

    def __init__(self) -> None:
        in_read, self._in_write = os.pipe()
        self._out_read, out_write = os.pipe()
        self.stdin = open(in_read, encoding="utf-8")  # noqa: SIM115  # closed in close()
        self.stdout = open(out_write, "w", encoding="utf-8")  # noqa: SIM115
        self._pending = b""
        self.codes: list[int] = []
        self.thread: threading.Thread | None = None

    def send(self, message: dict[str, Any]) -> None:
        os.write(self._in_write, json.dumps(message).encode() + b"\n")

    def _next_message(self, timeout: float) -> dict[str, Any] | None:
        while b"\n" not in self._pending:
            ready, _, _ = select.select([self._out_read], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._out_read, 65536)
            assert chunk, "the server closed its output"
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return the next message, its answer."""
        self.send(message)
        answer = self._next_message(self.READ_TIMEOUT)
        assert answer is not None, f"no answer from the server within {self.READ_TIMEOUT} s"
        return answer

    def rest_of_output(self) -> bytes:
        """What the server wrote after the last answer, once it has stopped."""
        self.stdout.close()
        rest = self._pending
        while select.select([self._out_read], [], [], self.READ_TIMEOUT)[0]:
            chunk = os.read(self._out_read, 65536)
            if not chunk:
                return rest
            rest += chunk
        pytest.fail("the server's output did not end")

    def serve(self, argv: list[str], environ: dict[str, str]) -> io.StringIO:
        """Run ``main(argv)`` in a thread over these pipes; returns its stderr."""
        err = io.StringIO()

        def run() -> None:
            self.codes.append(_mcp.main(argv, environ=environ, err=err))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return err

    def stop(self) -> None:
        """End the server's input and wait for main() to return."""
        if self._in_write >= 0:
            os.close(self._in_write)
            self._in_write = -1
        if self.thread is not None:
            self.thread.join(self.READ_TIMEOUT)
            assert not self.thread.is_alive(), "main() did not return after its input ended"

    def close(self) -> None:
        try:
            self.stop()  # first: the server's reader holds stdin's buffer until it sees the end
        finally:
            # A server thread still reading holds stdin's buffer lock: closing stdin would wait for
            # it forever, so a failed stop() leaves stdin to the daemon thread instead of hanging.
            if self.thread is None or not self.thread.is_alive():
                self.stdin.close()
            self.stdout.close()
            os.close(self._out_read)


@pytest.fixture
def pipes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipes]:
    """main() serving stdio over pipes: the SDK's stdio_server is handed them as its streams.

    (Replacing sys.stdin and sys.stdout would race with pytest's own capture of sys.stdout.)
    """
    pipes = Pipes()
    real = _mcp.stdio_server

    def over_pipes(stdin: Any = None, stdout: Any = None) -> Any:
        assert (stdin, stdout) == (None, None)  # main() serves the process's own streams
        return real(anyio.wrap_file(pipes.stdin), anyio.wrap_file(pipes.stdout))

    monkeypatch.setattr(_mcp, "stdio_server", over_pipes)
    yield pipes
    pipes.close()


def handshake(pipes: Pipes) -> dict[str, Any]:
    hello = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    }
    answer = pipes.ask({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello})
    pipes.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    return answer


def test_stdio_two_labelled_accounts_on_one_venue_from_a_config(pipes: Pipes, tmp_path: Path) -> None:
    second_secret = "c2Vjb25kIGtyYWtlbiBzZWNyZXQgZm9yIHRoZSBtY3AgdGVzdHM="
    sim = Simulator(
        SimulatedKraken(host="127.0.0.1", keys={KRAKEN_TEST_KEY: KRAKEN_TEST_SECRET, "k2": second_secret})
    )
    with LoopbackServer(sim) as venue:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[[account]]\nvenue = "kraken"\nlabel = "main"\napi_key = "{KRAKEN_TEST_KEY}"\n'
            f'api_secret_env = "MAIN_SECRET"\nbase_url = "{venue.url}"\n\n'
            f'[[account]]\nvenue = "kraken"\nlabel = "alt"\napi_key = "k2"\n'
            f'api_secret_env = "ALT_SECRET"\nbase_url = "{venue.url}"\n'
        )
        config.chmod(0o600)
        environ = {"MAIN_SECRET": KRAKEN_TEST_SECRET, "ALT_SECRET": second_secret}
        err = pipes.serve(["--config", str(config), "--timeout", "20"], environ)
        hello = handshake(pipes)
        assert hello["result"]["serverInfo"]["name"] == "bastion-balance"
        call = {"name": "bastion_get_balance", "arguments": {}}
        balance = pipes.ask({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call})
        call = {"name": "bastion_get_exchanges", "arguments": {}}
        exchanges = pipes.ask({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        pipes.stop()
        rest = pipes.rest_of_output()
    assert pipes.codes == [0]
    assert rest == b""
    text = balance["result"]["content"][0]["text"]
    assert text == (
        '{"total_usd": 764.4064, "available_margin_usd": 750.3356, "exchanges": {'
        '"main": {"total": 382.2032, "available": 375.1678}, "alt": {"total": 382.2032, "available": 375.1678}}}'
    )
    assert len(balance["result"]["content"]) == 1
    rows = exchanges["result"]["structuredContent"]["exchanges"]
    assert [(row["label"], row["venue"], row["status"]) for row in rows] == [
        ("main", "kraken", "ok"),
        ("alt", "kraken", "ok"),
    ]
    assert "2 accounts (main, alt) over stdio" in err.getvalue()
    for secret in (KRAKEN_TEST_SECRET, second_secret):
        assert secret not in err.getvalue()
        assert secret not in json.dumps([hello, balance, exchanges])


def test_stdio_account_from_environment_variables(pipes: Pipes) -> None:
    sim = Simulator(SimulatedKraken(host="127.0.0.1"))
    with LoopbackServer(sim) as venue:
        environ = {
            "BASTION_KRAKEN_API_KEY": KRAKEN_TEST_KEY,
            "BASTION_KRAKEN_API_SECRET": KRAKEN_TEST_SECRET,
            "BASTION_KRAKEN_LABEL": "from-env",
            "BASTION_KRAKEN_BASE_URL": venue.url,
        }
        pipes.serve([], environ)
        handshake(pipes)
        call = {"name": "bastion_get_balance", "arguments": {"exchanges": ["from-env"]}}
        balance = pipes.ask({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call})
        pipes.stop()
        pipes.rest_of_output()
    assert pipes.codes == [0]
    assert balance["result"]["structuredContent"] == {
        "total_usd": "382.2032",
        "available_margin_usd": "375.1678",
        "exchanges": {"from-env": {"total": "382.2032", "available": "375.1678"}},
    }


# -- the docs --------------------------------------------------------------------------------


def docs_snippets() -> list[dict[str, Any]]:
    blocks = [json.loads(block) for block in _json_blocks((DOCS / "mcp.md").read_text())]
    return [block for block in blocks if "mcpServers" in block]


def _json_blocks(text: str) -> list[str]:
    import re

    return re.findall(r"```json\n(.*?)```", text, re.DOTALL)


def test_the_docs_snippets_parse_and_name_the_real_command() -> None:
    snippets = docs_snippets()
    assert snippets
    scripts = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert 'bastion-balance = "bastion_balance.cli:main"' in scripts
    for snippet in snippets:
        for entry in snippet["mcpServers"].values():
            assert entry["command"] == "bastion-balance"
            assert entry["args"][0] == "mcp"
            assert (
                _mcp.main([*entry["args"][1:], "--help"], environ={}, out=io.StringIO(), err=io.StringIO())
                == 0
            )
            for name, value in entry.get("env", {}).items():
                assert name.startswith("BASTION_")
                assert "..." in value or value.startswith("/")  # placeholders, never a real secret


# -- bastion_get_drawdown, with --history ---------------------------------------------------


def recorded_history(path: Path, *totals: str) -> None:
    with bb.History(path) as history:
        for total in totals:
            history.record(
                bb.aggregate([FakeProvider(label="book", total=Decimal(total), available=Decimal(0))])
            )


@pytest.mark.anyio
async def test_drawdown_from_the_history(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    recorded_history(path, "1000.00", "1250.000000000000000001", "900.10")
    server = _mcp.create_server([], history=lambda: bb.History(path))
    async with Client(server, raise_exceptions=True) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        result = await client.call_tool("bastion_get_drawdown", {})
        capital = await client.call_tool(
            "bastion_get_drawdown", {"baseline_usd": "800", "since": "2000-01-01T00:00:00Z"}
        )
        as_number = await client.call_tool("bastion_get_drawdown", {"baseline_usd": 800.5})
    assert listed["bastion_get_drawdown"].annotations.read_only_hint is True  # type: ignore[union-attr]
    answer = exact_loads(result.content[0].text)  # type: ignore[union-attr]
    assert "equity" not in answer
    assert str(answer["baseline_usd"]) == "1000.00"
    assert str(answer["peak_usd"]) == "1250.000000000000000001"
    assert str(answer["drawdown_usd"]) == "349.900000000000000001"
    assert answer["snapshots"] == 3
    assert result.structured_content["drawdown_usd"] == "349.900000000000000001"
    assert result.structured_content["snapshots"] == 3
    assert exact_loads(capital.content[0].text)["baseline_usd"] == 800  # type: ignore[union-attr]
    assert str(exact_loads(as_number.content[0].text)["baseline_usd"]) == "800.5"  # type: ignore[union-attr]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"since": "2026-01-01T00:00:00"}, "with a timezone"),
        ({"since": "yesterday"}, "with a timezone"),
        ({"since": 17}, "with a timezone"),
        ({"baseline_usd": True}, "baseline_usd must be a number"),
        ({"baseline_usd": "lots"}, "not an amount"),
        ({"until": "2026-01-01T00:00:00Z"}, "takes only baseline_usd, since; got until"),
    ],
)
async def test_bad_drawdown_arguments_are_tool_errors(tmp_path: Path, arguments: Any, says: str) -> None:
    path = tmp_path / "history.sqlite3"
    recorded_history(path, "1000")
    async with Client(_mcp.create_server([], history=lambda: bb.History(path))) as client:
        result = await client.call_tool("bastion_get_drawdown", arguments)
    assert result.is_error
    assert says in result.content[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_drawdown_of_an_empty_history_is_a_tool_error_and_absent_without_history(
    tmp_path: Path,
) -> None:
    async with Client(
        _mcp.create_server([], history=lambda: bb.History(tmp_path / "empty.sqlite3"))
    ) as client:
        empty = await client.call_tool("bastion_get_drawdown", {})
    assert empty.is_error
    async with Client(_mcp.create_server([])) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        missing = await client.call_tool("bastion_get_drawdown", {})
    assert "bastion_get_drawdown" not in names
    assert missing.is_error
    assert (
        "unknown tool 'bastion_get_drawdown'; the tools are bastion_get_balance, bastion_get_exchanges"
        in (
            missing.content[0].text  # type: ignore[union-attr]
        )
    )


def test_history_option_opens_the_history_for_the_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "history.sqlite3"
    recorded_history(path, "1000")
    listed: list[set[str]] = []

    async def list_only(server: Any) -> None:
        async with Client(server) as client:
            listed.append({tool.name for tool in (await client.list_tools()).tools})

    monkeypatch.setattr(_mcp, "serve_stdio", list_only)
    assert run_main("--demo", "--history", str(path))[0] == 0
    assert "bastion_get_drawdown" in listed[0]
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert run_main("--demo", "--history")[0] == 0  # the default history file
    assert "bastion_get_drawdown" in listed[1]
    code, _, err = run_main("--demo", "--history", "nosuchdb://x")
    assert code == 2
    assert "bastion-balance mcp: " in err
    monkeypatch.setitem(sys.modules, "bastion_balance._history", None)
    code, _, err = run_main("--demo", "--history", str(path))
    assert code == 2
    assert "pip install 'bastion-balance[history]'" in err


def test_the_configs_rates_are_the_servers(tmp_path: Path) -> None:
    """A config's [rates] values the balances as the command line does: fixed rates, or a source."""
    import argparse

    config = tmp_path / "config.toml"
    account = f'[[account]]\nvenue = "kraken"\napi_key = "{KRAKEN_TEST_KEY}"\napi_secret_env = "S"\nasset = "ZEUR"\n'
    config.write_text(account + '[rates]\nEUR = "1.1"\n')
    config.chmod(0o600)
    args = argparse.Namespace(config=config)
    err = io.StringIO()
    providers, rates = _mcp._accounts(args, {"S": KRAKEN_TEST_SECRET}, err)
    assert [p.currency for p in providers] == ["EUR"]
    assert rates == {"EUR": "1.1"}
    config.write_text(account + '[rates]\nsource = "kraken"\n')
    _, live = _mcp._accounts(args, {"S": KRAKEN_TEST_SECRET}, err)
    assert isinstance(live, bb.KrakenRates)


@pytest.mark.anyio
async def test_a_eur_account_is_valued_through_the_servers_rates() -> None:
    """create_server(rates=...): bastion_get_balance counts the EUR account at that rate."""
    sim, _ = demo_setup()
    kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, asset="ZEUR")
    server = _mcp.create_server([kraken], http_client=sim.async_client, rates={"EUR": "1.1"})
    async with Client(server, mode="auto", raise_exceptions=True) as client:
        result = await client.call_tool("bastion_get_balance", {})
    answer = exact_loads(result.content[0].text)  # type: ignore[union-attr]
    assert answer["total_usd"] == Decimal(KRAKEN_DOCUMENTED_RESULT["e"]) * Decimal("1.1")
