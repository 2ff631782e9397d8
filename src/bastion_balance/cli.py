"""The ``bastion-balance`` command.

``bastion-balance demo`` runs the real pipeline (signing, httpx, parsing, aggregation) against
the built-in simulated venues: no keys, no network. ``bastion-balance`` (or ``bastion-balance
fetch``) reads real accounts from ``BASTION_<VENUE>_<FIELD>`` environment variables or a TOML
config file and fetches them. Output: a table, or ``--json`` (``Portfolio.to_dict()``) or
``--bastion`` (``Portfolio.to_bastion()``).

Exit codes: 0 complete, 1 partial, 2 usage or configuration error, 3 no venue answered.
"""

from __future__ import annotations

import argparse
import importlib
import os
import stat
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TextIO

import attrs

from . import _client
from ._models import Portfolio, dumps
from .exceptions import ConfigurationError
from .providers import PROVIDERS, provider_class

__all__ = ["main"]

EXIT_COMPLETE: Final = 0
EXIT_PARTIAL: Final = 1
EXIT_USAGE: Final = 2
EXIT_NONE: Final = 3
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report Ctrl-C
DEFAULT_CONFIG: Final = Path("~/.config/bastion-balance/config.toml")
_NOT_SETTINGS: Final = frozenset({"clock"})

#: Subcommands with parsers of their own: name -> "module:function" inside this package, imported
#: only when asked for. Each function takes ``(argv, *, environ, out, err)`` and returns the exit
#: code, like :func:`run`.
SUBCOMMANDS: Final[Mapping[str, str]] = {"mcp": "._mcp:main", "history": "._history_cli:main"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bastion-balance",
        description="Exact balances from many venues, aggregated in USD.",
        epilog="Exit codes: 0 complete, 1 partial, 2 usage or configuration error, 3 no venue answered.",
    )
    parser.add_argument("command", nargs="?", choices=["demo", "fetch"], default="fetch")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print Portfolio.to_dict() as JSON")
    shape.add_argument("--bastion", action="store_true", help="print the bastion_get_balance shape")
    parser.add_argument("--config", type=Path, help=f"TOML accounts file (default {DEFAULT_CONFIG})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per venue (default 10)")
    parser.add_argument("--plain", action="store_true", help="plain text even when rich is installed")
    parser.add_argument("--record", action="store_true", help="record the portfolio in the balance history")
    parser.add_argument("--history", metavar="URL", help="where --record writes (needed with demo)")
    return parser


def _settings_of(cls: type[Any]) -> dict[str, bool]:
    """Constructor settings of a provider class -> whether each is required."""
    return {
        field.name: field.default is attrs.NOTHING
        for field in attrs.fields(cls)
        if field.name not in _NOT_SETTINGS and field.init
    }


def _read_file(path: str, what: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        msg = f"cannot read {what} from {path}: {exc.strerror}"
        raise ConfigurationError(msg) from None


def accounts_from_env(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """One account per venue whose ``BASTION_<VENUE>_<FIELD>`` variables are set."""
    accounts: list[dict[str, Any]] = []
    for venue in PROVIDERS:
        prefix = f"BASTION_{venue.upper()}_"
        settings: dict[str, Any] = {}
        for field in _settings_of(provider_class(venue)):
            name = prefix + field.upper()
            if name in environ:
                settings[field] = environ[name]
            elif name + "_FILE" in environ:
                settings[field] = _read_file(environ[name + "_FILE"], name + "_FILE")
        if settings:
            accounts.append({"venue": venue, **settings})
    return accounts


def accounts_from_toml(path: Path, environ: Mapping[str, str], warn: TextIO) -> list[dict[str, Any]]:
    """The ``[[account]]`` tables of a config file, with ``<field>_env``/``<field>_file`` resolved."""
    try:
        mode = path.stat().st_mode
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"cannot read config {path}: {exc.strerror}"
        raise ConfigurationError(msg) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"config {path} is not valid TOML: {exc}"
        raise ConfigurationError(msg) from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"warning: {path} is readable by other users; chmod 600 it", file=warn)
    tables = data.get("account", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        msg = f"config {path}: accounts are [[account]] tables"
        raise ConfigurationError(msg)
    accounts = []
    for table in tables:
        account: dict[str, Any] = {}
        for key, value in table.items():
            if key.endswith("_env"):
                if value not in environ:
                    msg = f"config {path}: environment variable {value} is not set"
                    raise ConfigurationError(msg)
                account[key.removesuffix("_env")] = environ[value]
            elif key.endswith("_file"):
                account[key.removesuffix("_file")] = _read_file(str(value), key)
            else:
                account[key] = value
        accounts.append(account)
    return accounts


def build_providers(accounts: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Provider objects for account settings; unknown venues and settings are refused."""
    providers = []
    for account in accounts:
        settings = dict(account)
        venue = settings.pop("venue", None)
        if not isinstance(venue, str):
            msg = f"an account needs venue = one of {', '.join(PROVIDERS)}"
            raise ConfigurationError(msg)
        cls = provider_class(venue)
        known = _settings_of(cls)
        unknown = sorted(set(settings) - set(known))
        if unknown:
            msg = f"{venue}: unknown settings {', '.join(unknown)} (known: {', '.join(known)})"
            raise ConfigurationError(msg)
        missing = sorted(name for name, required in known.items() if required and name not in settings)
        if missing:
            msg = f"{venue}: missing {', '.join(missing)}"
            raise ConfigurationError(msg)
        providers.append(cls(**settings))
    return providers


def _fmt(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,f}"


def _rows(portfolio: Portfolio) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for label, balance in portfolio.balances.items():
        rows.append((label, balance.exchange, balance.currency, _fmt(balance.total), _fmt(balance.available)))
    return rows


def render_plain(portfolio: Portfolio, out: TextIO) -> None:
    """The portfolio as a plain-text table."""
    header = ("account", "venue", "currency", "total", "available")
    rows = _rows(portfolio)
    footer = ("TOTAL (USD)", "", "", _fmt(portfolio.total_usd), _fmt(portfolio.available_margin_usd))
    widths = [max(len(r[i]) for r in [header, *rows, footer]) for i in range(5)]

    def line(row: Sequence[str]) -> str:
        cells = [row[i].ljust(widths[i]) if i < 3 else row[i].rjust(widths[i]) for i in range(5)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    print(line(header), rule, *(line(r) for r in rows), rule, line(footer), sep="\n", file=out)
    _render_notes(portfolio, out)


def _render_notes(portfolio: Portfolio, out: TextIO) -> None:
    for label, exc in portfolio.errors.items():
        print(f"error  {label}: {type(exc).__name__}: {exc}", file=out)
    for warning in portfolio.warnings:
        print(f"warning  {warning}", file=out)
    state = "complete" if portfolio.complete else f"partial: {len(portfolio.errors)} failed"
    count = len(portfolio.balances)
    print(f"{count} account{'' if count == 1 else 's'}, {state}", file=out)


def render_rich(portfolio: Portfolio, out: TextIO) -> None:
    """The portfolio as a rich table (extra ``cli``)."""
    from rich.console import Console  # noqa: PLC0415  # optional extra
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="bastion-balance", show_footer=True)
    table.add_column("account", footer="TOTAL (USD)")
    table.add_column("venue")
    table.add_column("currency")
    table.add_column("total", justify="right", footer=_fmt(portfolio.total_usd))
    table.add_column("available", justify="right", footer=_fmt(portfolio.available_margin_usd))
    for row in _rows(portfolio):
        table.add_row(*row)
    Console(file=out).print(table)
    _render_notes(portfolio, out)


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


@contextmanager
def _progress(count: int, use_rich: bool, err: TextIO) -> Iterator[None]:
    message = f"fetching {count} account{'s' if count != 1 else ''}..."
    if use_rich and err.isatty():  # pragma: no cover  # spinners only on a terminal
        from rich.console import Console  # noqa: PLC0415

        with Console(file=err).status(message):
            yield
        return
    print(message, file=err)
    yield


def _exit_code(portfolio: Portfolio, asked: int) -> int:
    if portfolio.complete:
        return EXIT_COMPLETE
    return EXIT_NONE if asked and not portfolio.balances else EXIT_PARTIAL


def run(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The command, with its streams and environment injectable (tests)."""
    out = out or sys.stdout
    err = err or sys.stderr
    environ = os.environ if environ is None else environ
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return _subcommand(argv[0])(argv[1:], environ=environ, out=out, err=err)
    args = _parser().parse_args(argv)
    use_rich = not args.plain and not args.json and not args.bastion and _rich_available()
    try:
        if args.command == "demo":
            portfolio, asked = _demo(args.timeout, use_rich, err)
        else:
            portfolio, asked = _fetch(args, environ, use_rich, err)
    except ConfigurationError as exc:
        print(f"bastion-balance: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bastion-balance: interrupted", file=err)
        return EXIT_INTERRUPTED
    if args.json:
        print(dumps(portfolio.to_dict(), indent=2), file=out)
    elif args.bastion:
        print(dumps(portfolio.to_bastion(), indent=2), file=out)
    else:
        render: Callable[[Portfolio, TextIO], None] = render_rich if use_rich else render_plain
        render(portfolio, out)
    if args.record or args.history:
        from ._history_cli import record  # noqa: PLC0415  # extra "history", loaded when asked for

        demo = args.command == "demo"
        if record(portfolio, args.history, demo=demo, environ=environ, err=err) != EXIT_COMPLETE:
            return EXIT_USAGE
    return _exit_code(portfolio, asked)


def _subcommand(name: str) -> Callable[..., int]:
    module_name, function = SUBCOMMANDS[name].split(":")
    module = importlib.import_module(module_name, __package__)
    command: Callable[..., int] = getattr(module, function)
    return command


def _demo(timeout: float, use_rich: bool, err: TextIO) -> tuple[Portfolio, int]:
    from .testing import demo_setup  # noqa: PLC0415  # loads every simulator

    simulator, providers = demo_setup()
    print("demo: simulated venues (signatures verified as each venue does); no keys, no network", file=err)
    with _progress(len(providers), use_rich, err), simulator.client() as http:
        portfolio = _client.aggregate(providers, client=http, timeout=timeout)
    return portfolio, len(providers)


def _fetch(
    args: argparse.Namespace, environ: Mapping[str, str], use_rich: bool, err: TextIO
) -> tuple[Portfolio, int]:
    config = args.config
    if config is None and DEFAULT_CONFIG.expanduser().exists():
        config = DEFAULT_CONFIG.expanduser()
    accounts = accounts_from_toml(config, environ, err) if config else accounts_from_env(environ)
    if not accounts:
        msg = (
            "no accounts configured: set BASTION_<VENUE>_<FIELD> variables (e.g. BASTION_KRAKEN_API_KEY "
            "and BASTION_KRAKEN_API_SECRET) or write a config file; try 'bastion-balance demo'"
        )
        raise ConfigurationError(msg)
    providers = build_providers(accounts)
    with _progress(len(providers), use_rich, err):
        portfolio = _client.aggregate(providers, timeout=args.timeout)
    return portfolio, len(providers)


def main() -> None:
    """Console-script entry point."""
    try:
        code = run()
    except KeyboardInterrupt:  # before or after the fetch (argument parsing, printing)
        print("bastion-balance: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)
