"""The console script itself: ``bastion-balance mcp`` as a subprocess, driven by the MCP SDK's client.

Over stdio (``--demo``, and a config of two labelled accounts on one venue plus one that is down,
served by a loopback simulator), and over streamable HTTP (a real server process on 127.0.0.1,
with the right token, a wrong one and none). Every wait is bounded, so a server that hangs fails
the test instead of CI.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

import bastion_balance as bb
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    LoopbackServer,
    SimulatedKraken,
    Simulator,
    demo_setup,
)

BIN = Path(sys.executable).parent
COMMAND = str(BIN / "bastion-balance")
DOCS = Path(__file__).resolve().parent.parent / "docs"
TOKEN = "subprocess-token-0123456789"
SECOND_SECRET = "c2Vjb25kIGtyYWtlbiBzZWNyZXQgZm9yIHRoZSBtY3AgdGVzdHM="
WAIT = 60.0

pytestmark = pytest.mark.skipif(not Path(COMMAND).exists(), reason="the console script is not installed")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def exact_loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: no BASTION_ variables or config of the developer's leak in."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def text_of(result: Any, index: int = 0) -> str:
    text: str = result.content[index].text
    return text


@pytest.mark.anyio
async def test_stdio_demo_from_the_docs_snippet_lists_and_calls_both_tools(tmp_path: Path) -> None:
    """The docs' demo entry, as an MCP client would start it, answers both tools with exact figures."""
    snippet = next(block for block in _docs_json() if "bastion-demo" in block.get("mcpServers", {}))
    entry = snippet["mcpServers"]["bastion-demo"]
    assert entry["command"] == "bastion-balance"
    sim, providers = demo_setup()
    async with sim.async_client() as http:
        expected = (await bb.aaggregate(providers, client=http)).to_bastion()
    params = StdioServerParameters(command=COMMAND, args=entry["args"], env=clean_env(tmp_path))
    with anyio.fail_after(WAIT):
        async with Client(params, read_timeout_seconds=WAIT) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            before = await client.call_tool("bastion_get_exchanges", {})
            balance = await client.call_tool("bastion_get_balance", {})
            after = await client.call_tool("bastion_get_exchanges", {})
    assert tools == {"bastion_get_balance", "bastion_get_exchanges"}
    assert {row["status"] for row in before.structured_content["exchanges"]} == {"unknown"}
    assert text_of(balance) == bb.dumps(expected)
    assert exact_loads(text_of(balance)) == expected
    assert str(exact_loads(text_of(balance))["total_usd"]) == str(expected["total_usd"])
    assert len(balance.content) == 1
    assert {row["status"] for row in after.structured_content["exchanges"]} == {"ok"}


def _docs_json() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", (DOCS / "mcp.md").read_text(), re.DOTALL)
    return [json.loads(block) for block in blocks]


@pytest.fixture
def kraken_venue() -> Iterator[LoopbackServer]:
    keys = {KRAKEN_TEST_KEY: KRAKEN_TEST_SECRET, "second-key": SECOND_SECRET}
    with LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1", keys=keys))) as server:
        yield server


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.anyio
async def test_stdio_config_with_two_labels_on_one_venue_and_one_down(
    tmp_path: Path, kraken_venue: LoopbackServer
) -> None:
    config = tmp_path / "accounts.toml"
    config.write_text(
        "".join(
            f'[[account]]\nvenue = "kraken"\nlabel = "{label}"\napi_key = "{key}"\n'
            f'api_secret_env = "{variable}"\nbase_url = "{url}"\n\n'
            for label, key, variable, url in [
                ("main", KRAKEN_TEST_KEY, "MAIN_SECRET", kraken_venue.url),
                ("alt", "second-key", "ALT_SECRET", kraken_venue.url),
                ("down", KRAKEN_TEST_KEY, "MAIN_SECRET", f"http://127.0.0.1:{closed_port()}"),
            ]
        )
    )
    config.chmod(0o600)
    env = clean_env(tmp_path, MAIN_SECRET=KRAKEN_TEST_SECRET, ALT_SECRET=SECOND_SECRET)
    params = StdioServerParameters(
        command=COMMAND, args=["mcp", "--config", str(config), "--timeout", "20"], env=env
    )
    with anyio.fail_after(WAIT):
        async with Client(params, read_timeout_seconds=WAIT) as client:
            both = await client.call_tool("bastion_get_balance", {"exchanges": ["main", "alt"]})
            everything = await client.call_tool("bastion_get_balance", {})
            statuses = (await client.call_tool("bastion_get_exchanges", {})).structured_content["exchanges"]
            unknown = await client.call_tool("bastion_get_balance", {"exchanges": ["nope"]})
    figures = {"total": Decimal("382.2032"), "available": Decimal("375.1678")}
    assert exact_loads(text_of(both)) == {
        "total_usd": Decimal("764.4064"),
        "available_margin_usd": Decimal("750.3356"),
        "exchanges": {"main": figures, "alt": figures},
    }
    assert len(both.content) == 1
    assert text_of(everything) == text_of(both)
    failed = text_of(everything, 1).splitlines()
    assert failed[0] == "1 of 3 accounts failed and are not in the figures above:"
    assert failed[1].startswith("down: TransportError: ")
    assert [(row["label"], row["venue"], row["status"]) for row in statuses] == [
        ("main", "kraken", "ok"),
        ("alt", "kraken", "ok"),
        ("down", "kraken", "error"),
    ]
    assert unknown.is_error
    assert "the known labels are: main, alt, down" in text_of(unknown)
    for result in (both, everything, unknown):
        for secret in (KRAKEN_TEST_SECRET, SECOND_SECRET):
            assert secret not in result.model_dump_json()
    # Each account is one key at the venue: the two labels signed with their own keys.
    assert {request.headers["API-Key"] for request in kraken_venue.requests} == {
        KRAKEN_TEST_KEY,
        "second-key",
    }


def test_stdio_stdout_carries_nothing_but_protocol(tmp_path: Path) -> None:
    """Raw JSON-RPC over the pipes: every line the server writes is one JSON-RPC message."""
    process = subprocess.Popen(  # noqa: S603  # our own console script
        [COMMAND, "mcp", "--demo"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(tmp_path),
    )
    assert process.stdin is not None
    assert process.stdout is not None
    hello = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    }
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "bastion_get_balance"}},
    ]
    try:
        for request in requests:
            process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
        lines: list[bytes] = []
        pending = b""
        while len(lines) < 3:
            ready, _, _ = select.select([process.stdout], [], [], WAIT)
            assert ready, f"no answer within {WAIT} s; got {lines}"
            chunk = os.read(process.stdout.fileno(), 65536)
            assert chunk, f"the server closed stdout after {lines}"
            pending += chunk
            *done, pending = pending.split(b"\n")
            lines.extend(done)
        process.stdin.close()
        process.wait(WAIT)
        rest = process.stdout.read()
        err = process.stderr.read().decode() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()
    assert process.returncode == 0
    assert pending + rest == b""
    messages = [json.loads(line) for line in lines]
    assert [message["id"] for message in messages] == [1, 2, 3]
    assert all(message["jsonrpc"] == "2.0" and "result" in message for message in messages)
    total = exact_loads(messages[2]["result"]["content"][0]["text"])["total_usd"]
    assert total > 0
    assert "over stdio" in err


# -- streamable HTTP -----------------------------------------------------------------------


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``bastion-balance mcp --demo --transport streamable-http --port 0``; yields its URL."""
    env = clean_env(tmp_path, BASTION_MCP_TOKEN=TOKEN)
    process = subprocess.Popen(  # noqa: S603  # our own console script
        [COMMAND, "mcp", "--demo", "--transport", "streamable-http", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stderr is not None
    try:
        seen = b""
        while b"/mcp\n" not in seen:
            ready, _, _ = select.select([process.stderr], [], [], WAIT)
            assert ready, f"the server did not start within {WAIT} s: {seen!r}"
            chunk = os.read(process.stderr.fileno(), 4096)
            assert chunk, f"the server ended: {seen!r}"
            seen += chunk
        match = re.search(rb"serving (http://127\.0\.0\.1:\d+/mcp)", seen)
        assert match, seen
        yield match.group(1).decode(), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(WAIT)
            except subprocess.TimeoutExpired:  # pragma: no cover  # only when the server hangs
                process.kill()
                process.wait(WAIT)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


@pytest.mark.anyio
async def test_http_subprocess_serves_with_the_token_only(
    http_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = http_server
    with anyio.fail_after(WAIT):
        async with httpx.AsyncClient(timeout=WAIT) as raw:
            ping = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            accept = {"Accept": "application/json, text/event-stream"}
            missing = await raw.post(url, json=ping, headers=accept)
            wrong = await raw.post(
                url, json=ping, headers={**accept, "Authorization": "Bearer wrong-wrong-wrong"}
            )
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=WAIT) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            tools = {tool.name for tool in (await client.list_tools()).tools}
            balance = await client.call_tool("bastion_get_balance", {"exchanges": ["kraken", "rails"]})
            statuses = (await client.call_tool("bastion_get_exchanges", {})).structured_content["exchanges"]
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert tools == {"bastion_get_balance", "bastion_get_exchanges"}
    assert text_of(balance) == (
        '{"total_usd": 99997334.35749778, "available_margin_usd": 99521729.08941779, "exchanges": {'
        '"kraken": {"total": 382.2032, "available": 375.1678}, '
        '"rails": {"total": 99996952.15429778, "available": 99521353.92161779}}}'
    )
    assert balance.structured_content["total_usd"] == "99997334.35749778"
    ok = {row["label"] for row in statuses if row["status"] == "ok"}
    assert ok == {"kraken", "rails"}
    process.send_signal(signal.SIGINT)
    assert process.wait(WAIT) == 130
    assert process.stdout is not None
    assert process.stdout.read() == b""  # nothing but protocol, and HTTP has no protocol on stdout


def test_http_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603  # our own console script
        [COMMAND, "mcp", "--demo", "--transport", "streamable-http"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=clean_env(tmp_path),
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "bastion-balance mcp: --transport streamable-http needs BASTION_MCP_TOKEN"
    )
