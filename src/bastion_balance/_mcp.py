"""``bastion-balance mcp``: the accounts' balances as read-only MCP tools, served on this machine.

An assistant (Claude Desktop, an IDE, any MCP client) starts ``bastion-balance mcp`` and calls
``bastion_get_balance`` and ``bastion_get_exchanges``. The accounts are the ones the command line
would fetch (``BASTION_<VENUE>_<FIELD>`` variables or ``--config``), or the simulated venues with
``--demo``; tools name accounts by label and never take a credential, so keys never enter a
conversation (docs/decisions.md §23, docs/mcp.md).

Built on the official ``mcp`` SDK's low-level ``Server`` (extra ``mcp``): the results are built
here, field by field, so the text block is exactly ``dumps(portfolio.to_bastion())``.
One :class:`~bastion_balance.AsyncBalanceClient` serves every call for the life of the server
(connections, tokens, nonces and rate limits are shared) and is closed when it stops.

Over stdio nothing but protocol reaches stdout: this module writes to ``err`` only, and the SDK
points file descriptor 1 at stderr while it serves. ``--transport streamable-http`` binds
127.0.0.1 by default and answers only requests carrying ``Authorization: Bearer
$BASTION_MCP_TOKEN``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import ipaddress
import math
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

import anyio
import attrs
import httpx
from anyio.abc import TaskStatus

try:  # the extra ``mcp``; without it main() says how to install it
    import mcp_types as types
    import uvicorn
    from mcp.server import Server, ServerRequestContext
    from mcp.server.stdio import stdio_server
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError as _exc:
    _MISSING: str | None = _exc.name
else:
    _MISSING = None

from ._client import AsyncBalanceClient
from ._logging import redact
from ._models import Portfolio, decimal_text, dumps
from ._retry import DEFAULT_RETRY, RetryPolicy
from ._version import __version__
from .cli import DEFAULT_CONFIG, accounts_from_env, build_providers, config_rates, read_config
from .exceptions import ConfigurationError, HistoryError

if TYPE_CHECKING:
    from ._history import History
    from ._rates import Rates

__all__ = [
    "TOOL_BALANCE",
    "TOOL_DRAWDOWN",
    "TOOL_EXCHANGES",
    "BalanceService",
    "create_server",
    "http_app",
    "main",
    "serve_http",
    "serve_stdio",
    "tools",
]

TOOL_BALANCE: Final = "bastion_get_balance"
TOOL_EXCHANGES: Final = "bastion_get_exchanges"
TOOL_DRAWDOWN: Final = "bastion_get_drawdown"
TOKEN_VARIABLE: Final = "BASTION_MCP_TOKEN"
MIN_TOKEN_CHARS: Final = 16
DEFAULT_PORT: Final = 8765
DEFAULT_TIMEOUT: Final = 10.0
MAX_TIMEOUT: Final = 86_400.0
MCP_PATH: Final = "/mcp"
EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
_MAX_REASON_CHARS: Final = 300
_MIN_SECRET_CHARS: Final = 4  # shorter values would mask ordinary words
_MASK: Final = "***"
_BACKLOG: Final = 128

Status = Literal["ok", "error", "unknown"]

# A JSON number, as Decimal's str() writes one: the structured content carries money as these strings.
_DECIMAL_STRING: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$",
    "description": "an exact decimal number, every digit kept (a string: JSON floats would round it)",
}
_READ_ONLY: Final = {"read_only_hint": True, "destructive_hint": False, "idempotent_hint": True}


def tools(*, drawdown: bool = False) -> list[types.Tool]:
    """The tools this server lists: read-only, none taking a credential."""
    return [_balance_tool(), _exchanges_tool(), *([_drawdown_tool()] if drawdown else [])]


def _drawdown_tool() -> types.Tool:
    figure = {"anyOf": [_DECIMAL_STRING, {"type": "null"}]}
    money = ["baseline_usd", "current_usd", "current_total_usd", "change_usd", "peak_usd", "drawdown_usd"]
    money += ["max_drawdown_usd", "flows_usd"]
    ratios = ("change_ratio", "drawdown_ratio", "max_drawdown_ratio")
    times = ("baseline_at", "current_at", "peak_at")
    properties: dict[str, Any] = {name: _DECIMAL_STRING for name in money}
    properties.update({name: figure for name in ratios})
    properties.update({name: {"type": "string", "format": "date-time"} for name in times})
    properties.update({"snapshots": {"type": "integer"}, "left_out": {"type": "integer"}})
    return types.Tool(
        name=TOOL_DRAWDOWN,
        title="Drawdown",
        description=(
            "How the portfolio stands against its baseline and its high-water mark, from the recorded "
            "balance history, net of deposits and withdrawals: change_usd/change_ratio against the "
            "baseline, drawdown_usd/drawdown_ratio from the peak, max_drawdown_*. The baseline is the "
            "first complete snapshot at or after `since` (ISO 8601 with a timezone), or `baseline_usd` "
            "(the starting capital; a string keeps every digit). Fetches nothing."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "since": {
                    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}],
                    "default": None,
                    "description": "start of the period, e.g. 2026-01-01T00:00:00Z; omit for all history",
                },
                "baseline_usd": {
                    "anyOf": [_DECIMAL_STRING, {"type": "number"}, {"type": "null"}],
                    "default": None,
                    "description": "starting capital in USD; omit to use the first snapshot",
                },
            },
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": properties,
            "required": sorted(properties),
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(title="Drawdown", open_world_hint=False, **_READ_ONLY),
    )


def _balance_tool() -> types.Tool:
    return types.Tool(
        name=TOOL_BALANCE,
        title="Portfolio balance",
        description=(
            "Total portfolio value and available margin in USD, with each account's total and available "
            "figures, fetched now from the venues. The first text block is the JSON object "
            '{"total_usd", "available_margin_usd", "exchanges": {label: {"total", "available"}}} with '
            "exact numbers; accounts that failed are left out of it and named, with the reason, in a "
            "second text block. `exchanges` limits the fetch to these account labels (see "
            f"{TOOL_EXCHANGES}); omit it for every account."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "exchanges": {
                    "anyOf": [
                        {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        {"type": "null"},
                    ],
                    "default": None,
                    "description": "account labels to fetch; omit (or null) for every configured account",
                }
            },
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "total_usd": _DECIMAL_STRING,
                "available_margin_usd": _DECIMAL_STRING,
                "exchanges": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"total": _DECIMAL_STRING, "available": _DECIMAL_STRING},
                        "required": ["total", "available"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["total_usd", "available_margin_usd", "exchanges"],
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(title="Portfolio balance", open_world_hint=True, **_READ_ONLY),
    )


def _exchanges_tool() -> types.Tool:
    return types.Tool(
        name=TOOL_EXCHANGES,
        title="Configured accounts",
        description=(
            "The accounts this server can fetch, by label, with their venue and how this server's last "
            'fetch of each went: status "ok", "error" (with the reason) or "unknown" (not fetched yet), '
            "and last_sync, when it last answered (ISO 8601 UTC, null if never). Fetches nothing."
        ),
        input_schema={"type": "object", "properties": {}, "additionalProperties": False},
        output_schema={
            "type": "object",
            "properties": {
                "exchanges": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "label": {"type": "string"},
                            "venue": {"type": "string"},
                            "status": {"enum": ["ok", "error", "unknown"]},
                            "error": {"type": ["string", "null"]},
                            "last_sync": {"type": ["string", "null"], "format": "date-time"},
                        },
                        "required": ["label", "venue", "status", "error", "last_sync"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["exchanges"],
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(title="Configured accounts", open_world_hint=False, **_READ_ONLY),
    )


class ToolError(Exception):
    """A call the tool refuses; its message goes back to the model as an ``is_error`` result."""


@attrs.define
class _Account:
    """One configured account and how this server's last fetch of it went."""

    provider: Any
    status: Status = "unknown"
    error: str | None = None
    last_sync: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.provider.label,
            "venue": self.provider.venue,
            "status": self.status,
            "error": self.error,
            "last_sync": self.last_sync,
        }


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[_text(message)], is_error=True)


def _exact_strings(value: Any) -> Any:  # noqa: ANN401  # plain data: to_bastion(), Drawdown.to_dict()
    """``value`` with every Decimal written as the string ``dumps`` writes for it."""
    if isinstance(value, dict):
        return {key: _exact_strings(item) for key, item in value.items()}
    return decimal_text(value) if isinstance(value, Decimal) else value


def _secrets_of(provider: Any) -> list[str]:  # noqa: ANN401  # any BalanceProvider
    """The credential values of a provider: its attrs fields kept out of its repr."""
    fields = attrs.fields(type(provider)) if attrs.has(type(provider)) else ()
    values = (getattr(provider, field.name, None) for field in fields if not field.repr)
    return [value for value in values if isinstance(value, str) and len(value) >= _MIN_SECRET_CHARS]


class BalanceService:
    """What the tools share for the life of a server: the accounts, one client, the last statuses."""

    def __init__(
        self,
        providers: Sequence[Any],
        client: AsyncBalanceClient,
        *,
        timeout: float,
        history: History | None = None,
        rates: Rates | None = None,
    ) -> None:
        self._accounts = {provider.label: _Account(provider) for provider in providers}
        self._client = client
        self._timeout = timeout
        self._rates = rates
        self.history = history

    @property
    def labels(self) -> list[str]:
        """The account labels, in configuration order."""
        return list(self._accounts)

    def _selected(self, exchanges: object) -> list[str]:
        if exchanges is None:
            return self.labels
        if not isinstance(exchanges, list) or not exchanges or not all(isinstance(x, str) for x in exchanges):
            msg = (
                f"exchanges must be a non-empty list of account labels, got {exchanges!r}; "
                f"omit it for every account (labels: {', '.join(self.labels)})"
            )
            raise ToolError(msg)
        unknown = [label for label in exchanges if label not in self._accounts]
        if unknown:
            msg = f"unknown exchanges {', '.join(unknown)}; the known labels are: {', '.join(self.labels)}"
            raise ToolError(msg)
        return list(dict.fromkeys(exchanges))

    def _reason(self, label: str, exc: Exception) -> str:
        """One line saying why ``label`` failed, with any credential masked."""
        text = str(exc)
        for secret in _secrets_of(self._accounts[label].provider):
            text = text.replace(secret, _MASK)
        text = " ".join(redact(text).split()).removeprefix(f"{label}: ")
        reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return reason if len(reason) <= _MAX_REASON_CHARS else reason[: _MAX_REASON_CHARS - 3] + "..."

    async def balance(self, arguments: Mapping[str, Any]) -> types.CallToolResult:
        """``bastion_get_balance``: fetch the selected accounts and answer the seed-000 object."""
        _check_arguments(TOOL_BALANCE, arguments, {"exchanges"})
        labels = self._selected(arguments.get("exchanges"))
        providers = [self._accounts[label].provider for label in labels]
        portfolio = await self._client.aggregate(providers, rates=self._rates, timeout=self._timeout)
        failures = self._record(labels, portfolio)
        bastion = portfolio.to_bastion()
        content: list[types.ContentBlock] = [_text(dumps(bastion))]
        if failures:
            lines = [f"{label}: {reason}" for label, reason in failures.items()]
            head = f"{len(failures)} of {len(labels)} accounts failed and are not in the figures above:"
            content.append(_text("\n".join([head, *lines])))
        return types.CallToolResult(content=content, structured_content=_exact_strings(bastion))

    def _record(self, labels: Sequence[str], portfolio: Portfolio) -> dict[str, str]:
        """Remember how each fetched account went; returns label -> reason for the failed ones."""
        failures: dict[str, str] = {}
        for label in labels:
            account = self._accounts[label]
            exc = portfolio.errors.get(label)
            if exc is None:
                account.status, account.error = "ok", None
                account.last_sync = portfolio.balances[label].fetched_at.isoformat()
            else:
                failures[label] = account.error = self._reason(label, exc)
                account.status = "error"
        return failures

    def exchanges(self, arguments: Mapping[str, Any]) -> types.CallToolResult:
        """``bastion_get_exchanges``: every account's label, venue and last status; fetches nothing."""
        _check_arguments(TOOL_EXCHANGES, arguments, set())
        answer = {"exchanges": [account.as_dict() for account in self._accounts.values()]}
        return types.CallToolResult(content=[_text(dumps(answer))], structured_content=answer)

    async def drawdown(self, arguments: Mapping[str, Any]) -> types.CallToolResult:
        """``bastion_get_drawdown``: the drawdown from the history (read in a worker thread)."""
        _check_arguments(TOOL_DRAWDOWN, arguments, {"since", "baseline_usd"})
        history = self.history
        assert history is not None  # noqa: S101  # the tool is only listed and routed with a history
        since = _since(arguments.get("since"))
        baseline = _baseline(arguments.get("baseline_usd"))
        try:
            drawdown = await anyio.to_thread.run_sync(
                lambda: history.drawdown(since=since, baseline=baseline)
            )
        except (ConfigurationError, HistoryError) as exc:
            raise ToolError(str(exc)) from None
        answer = drawdown.to_dict()
        del answer["equity"]  # the whole series would swamp a conversation
        return types.CallToolResult(content=[_text(dumps(answer))], structured_content=_exact_strings(answer))


def _since(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        since = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        since = None
    if since is None or since.utcoffset() is None:
        msg = f"since must be an ISO 8601 time with a timezone, e.g. 2026-01-01T00:00:00Z; got {value!r}"
        raise ToolError(msg)
    return since


def _baseline(value: object) -> Decimal | str | int | None:
    """The starting capital; a JSON number the SDK parsed as a float is taken at its shortest repr."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        return value
    msg = f'baseline_usd must be a number or a decimal string such as "50000", got {value!r}'
    raise ToolError(msg)


def _check_arguments(tool: str, arguments: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(arguments) - known)
    if unknown:
        takes = f"takes only {', '.join(sorted(known))}" if known else "takes no arguments"
        msg = f"{tool} {takes}; got {', '.join(unknown)}"
        raise ToolError(msg)


async def _list_tools(
    ctx: ServerRequestContext[BalanceService], _params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=tools(drawdown=ctx.lifespan_context.history is not None))


async def _call_tool(
    ctx: ServerRequestContext[BalanceService], params: types.CallToolRequestParams
) -> types.CallToolResult:
    service = ctx.lifespan_context
    arguments = params.arguments or {}
    try:
        if params.name == TOOL_BALANCE:
            return await service.balance(arguments)
        if params.name == TOOL_EXCHANGES:
            return service.exchanges(arguments)
        if params.name == TOOL_DRAWDOWN and service.history is not None:
            return await service.drawdown(arguments)
    except ToolError as exc:
        return _error_result(str(exc))
    names = ", ".join(tool.name for tool in tools(drawdown=service.history is not None))
    return _error_result(f"unknown tool {params.name!r}; the tools are {names}")


def create_server(
    providers: Sequence[Any],
    *,
    http_client: Callable[[], httpx.AsyncClient] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retry: RetryPolicy = DEFAULT_RETRY,
    history: Callable[[], History] | None = None,
    rates: Rates | None = None,
) -> Server[BalanceService]:
    """An MCP server over ``providers``: the tools, and one ``AsyncBalanceClient`` for its life.

    ``http_client`` makes the ``httpx.AsyncClient`` the balance client sends through (the
    simulator's, for ``--demo``); it is closed with the server. ``timeout`` is each call's deadline.
    ``history`` opens the balance history behind ``bastion_get_drawdown`` (closed with the server);
    without it the tool is not listed. ``rates`` values the balances, as ``aggregate``'s (the
    config file's ``[rates]``: fixed rates, or ``source = "kraken"``).
    """

    @asynccontextmanager
    async def lifespan(_server: Server[BalanceService]) -> AsyncIterator[BalanceService]:
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(http_client()) if http_client is not None else None
            client = AsyncBalanceClient(http_client=http, retry=retry, timeout=timeout)
            await stack.enter_async_context(client)
            opened = stack.enter_context(history()) if history is not None else None
            yield BalanceService(providers, client, timeout=timeout, history=opened, rates=rates)

    return Server(
        "bastion-balance",
        version=__version__,
        title="Bastion balance",
        instructions=(
            f"Read-only balances of the user's own configured accounts. Call {TOOL_BALANCE} for the "
            f"portfolio's value in USD (exact numbers); {TOOL_EXCHANGES} lists the account labels."
        ),
        lifespan=lifespan,
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
    )


async def serve_stdio(
    server: Server[BalanceService],
    *,
    stdin: anyio.AsyncFile[str] | None = None,
    stdout: anyio.AsyncFile[str] | None = None,
) -> None:
    """Serve ``server`` over the process's stdin and stdout (or the given streams) until stdin ends."""
    async with stdio_server(stdin, stdout) as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


class BearerAuth:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``, else 401.

    The tokens are compared as SHA-256 digests with ``hmac.compare_digest``, in constant time,
    whatever their lengths.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._digest = hashlib.sha256(token.encode()).digest()

    def _authorized(self, scope: Scope) -> bool:
        given = b""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                given = value
        scheme, _, token = given.partition(b" ")
        match = hmac.compare_digest(hashlib.sha256(token.strip()).digest(), self._digest)
        return scheme.lower() == b"bearer" and match

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or self._authorized(scope):
            await self._app(scope, receive, send)
            return
        body = b'{"error": "unauthorized: send Authorization: Bearer <BASTION_MCP_TOKEN>"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="bastion-balance"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def http_app(server: Server[BalanceService], *, token: str, host: str) -> ASGIApp:
    """The streamable-HTTP ASGI app at ``/mcp`` behind :class:`BearerAuth`.

    On a loopback ``host`` the SDK also refuses requests whose ``Host`` or ``Origin`` is not
    loopback (DNS rebinding protection).
    """
    return BearerAuth(server.streamable_http_app(streamable_http_path=MCP_PATH, host=host), token)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(_BACKLOG)  # connections wait in the backlog until uvicorn accepts them
    except OSError as exc:
        sock.close()
        msg = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise ConfigurationError(msg) from None
    return sock


async def serve_http(
    server: Server[BalanceService],
    *,
    host: str,
    port: int,
    token: str,
    err: TextIO,
    stop: anyio.Event | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``server`` over streamable HTTP at ``http://host:port/mcp`` until stopped.

    Stops on SIGINT/SIGTERM (in the main thread) or when ``stop`` is set; the bound port (useful
    with ``port=0``) is reported through ``task_status``. Uvicorn's own logging is not set up, so
    nothing goes to stdout.
    """
    stop = stop or anyio.Event()
    sock = _bind(host, port)
    with contextlib.closing(sock):
        bound = sock.getsockname()[1]
        config = uvicorn.Config(
            http_app(server, token=token, host=host), log_config=None, access_log=False, lifespan="on"
        )
        runner = uvicorn.Server(config)
        shown = f"[{host}]" if ":" in host else host
        print(f"bastion-balance mcp: serving http://{shown}:{bound}{MCP_PATH}", file=err, flush=True)

        async def stop_when_asked() -> None:
            await stop.wait()
            runner.should_exit = True

        async with anyio.create_task_group() as group:
            group.start_soon(stop_when_asked)
            task_status.started(bound)
            await runner.serve(sockets=[sock])
            group.cancel_scope.cancel()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bastion-balance mcp",
        description="Serve the configured accounts' balances as read-only MCP tools (docs/mcp.md).",
        epilog=f"Exit codes: 0 stopped, 2 usage or configuration error, {EXIT_INTERRUPTED} interrupted.",
    )
    parser.add_argument(
        "--demo", action="store_true", help="serve the simulated venues (no keys, no network)"
    )
    parser.add_argument("--config", type=Path, help=f"TOML accounts file (default {DEFAULT_CONFIG})")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="deadline of each tool call, seconds (default 10)",
    )
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument(
        "--host", default="127.0.0.1", help="streamable-http: address to bind (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"streamable-http: port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="streamable-http: allow binding a non-loopback address"
    )
    parser.add_argument(
        "--history",
        nargs="?",
        const="",
        metavar="URL",
        help="serve bastion_get_drawdown from this balance history (a SQLAlchemy URL or a SQLite path; "
        "without URL the default history file)",
    )
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _http_settings(args: argparse.Namespace, environ: Mapping[str, str], err: TextIO) -> str:
    """The bearer token, after checking the HTTP options; warns on stderr about a remote bind."""
    token = environ.get(TOKEN_VARIABLE, "").strip()
    if len(token) < MIN_TOKEN_CHARS:
        msg = (
            f"--transport streamable-http needs {TOKEN_VARIABLE} set to a secret of at least "
            f"{MIN_TOKEN_CHARS} characters (e.g. the output of: python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
        raise ConfigurationError(msg)
    if not 0 <= args.port <= 65535:
        msg = f"--port {args.port}: a port is 0-65535"
        raise ConfigurationError(msg)
    if not _is_loopback(args.host):
        if not args.allow_remote:
            msg = (
                f"--host {args.host} is not a loopback address: other machines could reach the server; "
                "pass --allow-remote to mean it"
            )
            raise ConfigurationError(msg)
        print(
            f"warning: --allow-remote: serving on {args.host}, reachable from other machines; the bearer "
            "token is the only protection and HTTP is not encrypted (put TLS in front)",
            file=err,
        )
    return token


def _accounts(
    args: argparse.Namespace, environ: Mapping[str, str], err: TextIO
) -> tuple[list[Any], Rates | None]:
    """The providers the command line would fetch, from ``--config`` (or the default file) or
    variables, and the config's ``[rates]`` as ``rates=`` (fixed rates, or a live source)."""
    config = args.config
    if config is None and DEFAULT_CONFIG.expanduser().exists():
        config = DEFAULT_CONFIG.expanduser()
    rates: Rates | None = None
    if config:
        read = read_config(config, environ, err)
        accounts = read.accounts
        rates = config_rates(read)
    else:
        accounts = accounts_from_env(environ, err)
    if not accounts:
        msg = (
            "no accounts configured: set BASTION_<VENUE>_<FIELD> variables (e.g. BASTION_KRAKEN_API_KEY "
            "and BASTION_KRAKEN_API_SECRET) or write a config file; try 'bastion-balance mcp --demo'"
        )
        raise ConfigurationError(msg)
    providers = build_providers(accounts)
    labels = [provider.label for provider in providers]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        msg = f"two accounts are labelled {', '.join(twice)}: give each account its own label"
        raise ConfigurationError(msg)
    return providers, rates


def _setup(
    args: argparse.Namespace, environ: Mapping[str, str], err: TextIO
) -> tuple[Server[BalanceService], str | None]:
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT):
        msg = f"--timeout {args.timeout}: seconds, more than 0 and at most a day"
        raise ConfigurationError(msg)
    token = _http_settings(args, environ, err) if args.transport == "streamable-http" else None
    if args.demo:
        if args.config is not None:
            msg = "--demo serves the simulated venues; it takes no --config"
            raise ConfigurationError(msg)
        from .testing import demo_setup  # noqa: PLC0415  # loads every simulator

        simulator, providers = demo_setup()
        rates: Rates | None = None
        factory: Callable[[], httpx.AsyncClient] | None = simulator.async_client
        print(
            "demo: simulated venues (signatures verified as each venue does); no keys, no network", file=err
        )
    else:
        (providers, rates), factory = _accounts(args, environ, err), None
    labels = ", ".join(provider.label for provider in providers)
    print(f"bastion-balance mcp: {len(providers)} accounts ({labels}) over {args.transport}", file=err)
    history = _history(args.history)
    server = create_server(providers, http_client=factory, timeout=args.timeout, history=history, rates=rates)
    return server, token


def _history(url: str | None) -> Callable[[], History] | None:
    """What opens ``--history URL`` (checked now, opened by the server); None without the option."""
    if url is None:
        return None
    try:
        from ._history import History  # noqa: PLC0415  # the extra ``history`` (SQLAlchemy)
    except ImportError:
        msg = "--history needs the history extra: pip install 'bastion-balance[history]'"
        raise ConfigurationError(msg) from None
    target = (
        None if not url else url if "://" in url else Path(url).expanduser()
    )  # a URL, a file or the default
    History(target).close()  # a bad URL is a usage error now, not a failure of every call
    return lambda: History(target)


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``bastion-balance mcp [options]``; returns the exit code. ``out`` is only for ``--help``."""
    out = out or sys.stdout
    err = err or sys.stderr
    environ = os.environ if environ is None else environ
    if _MISSING is not None:
        print(
            f"bastion-balance mcp: the MCP SDK is not installed ({_MISSING} is missing): "
            "pip install 'bastion-balance[mcp]'",
            file=err,
        )
        return EXIT_USAGE
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = _parser().parse_args(sys.argv[2:] if argv is None else list(argv))
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        server, token = _setup(args, environ, err)
        if token is None:
            anyio.run(serve_stdio, server)
        else:
            anyio.run(_serve_http_until_signal, server, args.host, args.port, token, err)
    except ConfigurationError as exc:
        print(f"bastion-balance mcp: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bastion-balance mcp: interrupted", file=err)
        return EXIT_INTERRUPTED
    return EXIT_OK


async def _serve_http_until_signal(
    server: Server[BalanceService], host: str, port: int, token: str, err: TextIO
) -> None:
    await serve_http(server, host=host, port=port, token=token, err=err)
