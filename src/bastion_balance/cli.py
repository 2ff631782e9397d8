"""The ``bastion-balance`` command.

``bastion-balance`` (or ``bastion-balance fetch``) reads accounts from a TOML config file or from
``BASTION_<VENUE>_<FIELD>`` environment variables and fetches them; ``bastion-balance demo`` runs
the same pipeline (signing, httpx, parsing, aggregation) against the built-in simulated venues,
with no keys and no network; ``bastion-balance venues`` lists what can be configured and what is.
``history`` and ``mcp`` live in their own modules, imported only when asked for.

stdout carries the result and nothing else: a table, ``--json`` (``Portfolio.to_dict()``) or
``--bastion`` (``Portfolio.to_bastion()``). Figures are never cut: plain text (not a terminal,
or ``--plain``) has every digit, aligned on the decimal point; on a terminal rich draws the table
when the figures fit and one block per account when they do not (docs/decisions.md §32).
stderr carries the rest: progress (a spinner per account on a terminal), one line per failed
account, warnings.

Exit codes: 0 complete, 1 partial, 2 usage or configuration error, 3 no account answered,
130 interrupted, 141 stdout closed early.
"""

from __future__ import annotations

import argparse
import decimal
import difflib
import importlib
import os
import re
import stat
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO

import attrs

from . import _client, _views
from ._logging import redact
from ._models import Portfolio, dumps
from ._protocol import Flow
from ._version import __version__
from .exceptions import ConfigurationError, MissingRateError
from .providers import PROVIDERS, VENUES, provider_class

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


__all__ = ["main"]

EXIT_COMPLETE: Final = 0
EXIT_PARTIAL: Final = 1
EXIT_USAGE: Final = 2
EXIT_NONE: Final = 3
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_PIPE: Final = 141  # 128 + SIGPIPE: the reader of stdout went away (``| head``)
DEFAULT_CONFIG: Final = Path("~/.config/bastion-balance/config.toml")
_NOT_SETTINGS: Final = frozenset({"clock"})

#: Subcommands with parsers of their own: name -> "module:function" inside this package, imported
#: only when asked for. Each function takes ``(argv, *, environ, out, err)`` and returns the exit
#: code, like :func:`run`.
SUBCOMMANDS: Final[Mapping[str, str]] = {"mcp": "._mcp:main", "history": "._history_cli:main"}

#: The commands this module parses itself; ``fetch`` is the default.
COMMANDS: Final = ("fetch", "demo", "venues")

#: ``BASTION_*`` variables read by other parts of the project (the history, the MCP server, the
#: test suite's switches in tests/ and .ci/run): never warned about as unknown.
OTHER_VARIABLES: Final = frozenset(
    {
        "BASTION_HISTORY_URL",
        "BASTION_MCP_TOKEN",
        "BASTION_TEST_POSTGRES_URL",
        "BASTION_REQUIRE_POSTGRES",
        "BASTION_HOSTILE_EXAMPLES",
        "BASTION_RECORD",
    }
)

#: The top-level tables of a config file.
CONFIG_TABLES: Final = ("account", "rates")
#: What ``[rates] source = ...`` accepts: the rate sources ``--live-rates`` can use.
RATE_SOURCES: Final = ("kraken",)

_OPEN_BITS: Final = 0o077  # group and others: ssh refuses keys with any of these set
_TEXT_MIN: Final = 8  # the narrowest a text column of the rich table may fold to
_MIN_SECRET_CHARS: Final = 4  # shorter values would mask ordinary words
_MAX_REASON_CHARS: Final = 400
_MASK: Final = "***"


# --------------------------------------------------------------------------- argument parsing


class _Exit(Exception):  # control flow out of argparse (help, version, usage errors), not an error
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse writing to the injected streams and returning instead of exiting."""

    def __init__(
        self,
        *,
        out: TextIO,
        err: TextIO,
        epilog: Callable[[], str],
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        self.out, self.err = out, err
        self._epilog = epilog  # made when help is asked for: it imports every venue's module
        self.add_argument("--version", action="version", version=f"bastion-balance {__version__}")

    def format_help(self) -> str:
        self.epilog = self._epilog()
        return super().format_help()

    def _print_message(self, message: str, file: Any = None) -> None:  # noqa: ANN401  # argparse's signature
        # argparse names sys.stdout for help and version, and sys.stderr for errors
        (self.out if file is None or file is sys.stdout else self.err).write(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self.err.write(message)
        raise _Exit(status)

    def error(self, message: str) -> NoReturn:
        self.print_usage(self.err)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


_EXIT_CODES: Final = (
    "exit codes:\n"
    "  0 complete, 1 partial (some accounts failed or could not be valued), 2 usage or\n"
    "  configuration error, 3 no account answered, 130 interrupted (Ctrl-C), 141 stdout closed"
)
_OUTPUT: Final = (
    "output:\n"
    "  stdout: the table, or --json / --bastion. Every figure whole: plain text (when stdout is\n"
    "  not a terminal, or --plain) has every digit aligned on the decimal point; on a terminal the\n"
    "  rich table (extra 'cli') switches to one block per account when the figures do not fit.\n"
    "  stderr: progress, one line per failed account, warnings (also with --json / --bastion)."
)
_RATES_HELP: Final = (
    "rates:\n"
    "  USD counts at 1 and USDT, USDC at par (an assumption, labelled so under the table).\n"
    "  --rate CUR=X (USD for one CUR) adds or replaces one rate, on top of the config's [rates];\n"
    '  --live-rates (or [rates] source = "kraken") quotes every currency but USD from Kraken\'s\n'
    "  public ticker instead. --rate and --live-rates do not combine: a usage error."
)
_COMMANDS_HELP: Final = (
    "commands:\n"
    "  bastion-balance [fetch]   the configured accounts (this help)\n"
    "  bastion-balance demo      the built-in simulated venues: no keys, no network\n"
    "  bastion-balance venues    the venues, their settings and variables, and what is configured\n"
    "  bastion-balance history   the recorded balance history and drawdown (extra 'history')\n"
    "  bastion-balance mcp       the balances as MCP tools for an assistant (extra 'mcp')\n"
    "  Each has its own --help."
)


def _variables_help() -> str:
    lines = [
        "environment variables (read only when there is no config file):",
        "  BASTION_<VENUE>_<FIELD>: the venue's constructor settings upper-cased; any of them may",
        "  end in _FILE instead, naming a file that holds the value (chmod 600 it). Required:",
    ]
    for venue in PROVIDERS:
        names = _variable_names(venue)
        required = [names[field] for field, needed in _settings_of(provider_class(venue)).items() if needed]
        lines.append(f"    {venue:<21} {', '.join(required)}")
    lines += [
        "  Optional: BASTION_<VENUE>_LABEL, _BASE_URL and the rest: see 'bastion-balance venues'.",
        "  A BASTION_* variable with an unknown name draws a warning (its value is never shown).",
    ]
    return "\n".join(lines)


_CONFIG_HELP: Final = (
    "config file (TOML; --config PATH, default ~/.config/bastion-balance/config.toml):\n"
    "  [[account]]                            # one table per account\n"
    '  venue = "kraken"                       # see: bastion-balance venues\n'
    '  label = "main"                         # its name in the table (default: the venue)\n'
    '  api_key_env = "KRAKEN_KEY"             # <field>_env: from this environment variable\n'
    '  api_secret_file = "~/.secrets/kraken"  # <field>_file: from this file (or inline: api_secret)\n'
    "\n"
    '  [rates]                                # USD for one unit; or: source = "kraken"\n'
    '  EUR = "1.0842"\n'
    "\n"
    "  When the config file exists it wins: the BASTION_* account variables are ignored (and a\n"
    "  note says so). A config or secret file readable by other users draws a warning."
)


def _fetch_parser(out: TextIO, err: TextIO) -> _Parser:
    parser = _Parser(
        prog="bastion-balance",
        description=(
            "Fetch the configured accounts' balances and add them up in USD, every digit exact.\n\n"
            + _COMMANDS_HELP
        ),
        epilog=lambda: "\n\n".join([_variables_help(), _CONFIG_HELP, _RATES_HELP, _OUTPUT, _EXIT_CODES]),
        out=out,
        err=err,
    )
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help=f"TOML accounts file (default {DEFAULT_CONFIG})"
    )
    _common_options(parser)
    return parser


def _demo_parser(out: TextIO, err: TextIO) -> _Parser:
    parser = _Parser(
        prog="bastion-balance demo",
        description=(
            "The whole pipeline (signing, HTTP through httpx, parsing, aggregation) against the\n"
            "built-in simulated venues, which verify each signature the way the venue does.\n"
            "No keys, no network. --live-rates asks a simulated Kraken ticker."
        ),
        epilog=lambda: "\n\n".join([_RATES_HELP, _OUTPUT, _EXIT_CODES]),
        out=out,
        err=err,
    )
    _common_options(parser)
    return parser


def _common_options(parser: _Parser) -> None:
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print Portfolio.to_dict() as JSON")
    shape.add_argument("--bastion", action="store_true", help="print the bastion_get_balance shape as JSON")
    parser.add_argument(
        "--account",
        action="append",
        metavar="LABEL",
        help="fetch only this account (repeat for several; default: every account)",
    )
    valuation = parser.add_mutually_exclusive_group()
    valuation.add_argument(
        "--rate",
        action="append",
        type=_rate_option,
        metavar="CUR=X",
        help="one CUR is worth X USD, e.g. --rate EUR=1.0842 (repeat for several currencies)",
    )
    valuation.add_argument(
        "--live-rates", action="store_true", help="quote every currency but USD from Kraken's public ticker"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="deadline of the whole fetch (default 10)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain text, no colour or spinner, even on a terminal"
    )
    parser.add_argument(
        "--watch",
        type=_interval,
        metavar="INTERVAL",
        help="fetch again every INTERVAL (5s, 500ms, 2m) and redraw the table in place, until Ctrl-C",
    )
    parser.add_argument("--record", action="store_true", help="record the portfolio in the balance history")
    parser.add_argument("--history", metavar="URL", help="where --record writes (needed with demo)")


def _venues_parser(out: TextIO, err: TextIO) -> _Parser:
    parser = _Parser(
        prog="bastion-balance venues",
        description=(
            "Every supported venue: its settings (the constructor's fields), their environment\n"
            "variables, and which venues are configured here (names only: no value is printed)."
        ),
        epilog=lambda: "\n\n".join([_variables_help(), _CONFIG_HELP]),
        out=out,
        err=err,
    )
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help=f"TOML accounts file (default {DEFAULT_CONFIG})"
    )
    return parser


def _rate_option(text: str) -> tuple[str, str]:
    """``--rate EUR=1.0842`` -> ``("EUR", "1.0842")``; the value is checked with the rest of the rates."""
    currency, equals, value = text.partition("=")
    currency, value = currency.strip(), value.strip()
    if not equals or not currency or not value:
        msg = f"{text!r} is not CUR=X: write e.g. --rate EUR=1.0842 (USD for one EUR)"
        raise argparse.ArgumentTypeError(msg)
    return currency.upper(), value


# --------------------------------------------------------------------------- accounts and config


def _settings_of(cls: type[Any]) -> dict[str, bool]:
    """Constructor settings of a provider class -> whether each is required."""
    return {
        field.name: field.default is attrs.NOTHING
        for field in attrs.fields(cls)
        if field.name not in _NOT_SETTINGS and field.init
    }


def _secret_settings(cls: type[Any]) -> frozenset[str]:
    """The settings of a provider class that are credentials (kept out of its repr)."""
    return frozenset(
        field.name for field in attrs.fields(cls) if not field.repr and field.name not in _NOT_SETTINGS
    )


def _variable_names(venue: str) -> dict[str, str]:
    """Setting -> its environment variable, e.g. ``api_key`` -> ``BASTION_KRAKEN_API_KEY``."""
    return {
        field: f"BASTION_{venue.upper()}_{field.upper()}" for field in _settings_of(provider_class(venue))
    }


def _warn_if_open(path: Path, mode: int, what: str, warn: TextIO) -> None:
    if mode & _OPEN_BITS:
        print(
            f"bastion-balance: warning: {what} {path} is readable or writable by other users "
            f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it",
            file=warn,
        )


def _read_file(path: str, what: str, warn: TextIO) -> str:
    file = Path(path).expanduser()
    try:
        mode = file.stat().st_mode
        text = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        msg = f"cannot read {what} from {path}: {exc.strerror}"
        raise ConfigurationError(msg) from None
    _warn_if_open(file, mode, f"{what}: the secret file", warn)
    return text


def known_variables() -> frozenset[str]:
    """Every ``BASTION_*`` variable the project reads: the account variables, their ``_FILE``
    forms, and :data:`OTHER_VARIABLES`."""
    names = {name for venue in PROVIDERS for name in _variable_names(venue).values()}
    return frozenset(names | {name + "_FILE" for name in names} | OTHER_VARIABLES)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``BASTION_*`` variables of ``environ`` that nothing reads (a typo, most likely)."""
    known = known_variables()
    return sorted(name for name in environ if name.startswith("BASTION_") and name not in known)


def _warn_unknown_variables(environ: Mapping[str, str], warn: TextIO) -> None:
    known = sorted(known_variables())
    for name in unknown_variables(environ):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"bastion-balance: warning: unknown variable {name} is ignored{hint}", file=warn)


def account_variables(environ: Mapping[str, str]) -> list[str]:
    """The account variables (``BASTION_<VENUE>_<FIELD>`` and ``..._FILE``) set in ``environ``."""
    names = {name for venue in PROVIDERS for name in _variable_names(venue).values()}
    return sorted(name for name in environ if name in names or name.removesuffix("_FILE") in names)


def accounts_from_env(environ: Mapping[str, str], warn: TextIO | None = None) -> list[dict[str, Any]]:
    """One account per venue whose ``BASTION_<VENUE>_<FIELD>`` variables are set.

    Warns on ``warn`` (default stderr) about ``BASTION_*`` variables nothing reads and secret
    files other users can read; a warning names the variable, never its value.
    """
    warn = sys.stderr if warn is None else warn
    _warn_unknown_variables(environ, warn)
    accounts: list[dict[str, Any]] = []
    for venue in PROVIDERS:
        settings: dict[str, Any] = {}
        for field, name in _variable_names(venue).items():
            if name in environ:
                settings[field] = environ[name]
            elif name + "_FILE" in environ:
                settings[field] = _read_file(environ[name + "_FILE"], name + "_FILE", warn)
        if settings:
            accounts.append({"venue": venue, **settings})
    return accounts


@attrs.frozen
class Config:
    """A config file, read: its accounts (credentials resolved) and its ``[rates]``."""

    path: Path
    accounts: list[dict[str, Any]]
    rates: dict[str, object] = attrs.field(factory=dict)  # currency (upper-cased) -> rate, as written
    rate_source: str | None = None  # [rates] source = "kraken"


def _load_toml(path: Path) -> tuple[dict[str, Any], int]:
    try:
        mode = path.stat().st_mode
        data = tomllib.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        msg = f"cannot read config {path}: {exc.strerror}"
        raise ConfigurationError(msg) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"config {path} is not valid TOML: {exc}"
        raise ConfigurationError(msg) from None
    return data, mode


def _warn_unknown_tables(path: Path, data: Mapping[str, Any], warn: TextIO) -> None:
    for key in data:
        if key in CONFIG_TABLES:
            continue
        close = difflib.get_close_matches(key, CONFIG_TABLES, n=1, cutoff=0.6)
        hint = {"account": " (did you mean [[account]]?)", "rates": " (did you mean [rates]?)"}
        print(
            f"bastion-balance: warning: config {path}: unknown table {key!r} is ignored"
            f"{hint[close[0]] if close else ''}; the tables are [[account]] and [rates]",
            file=warn,
        )


def _account_tables(path: Path, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    tables = data.get("account", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        msg = f"config {path}: accounts are [[account]] tables"
        raise ConfigurationError(msg)
    return tables


def _config_rates(path: Path, table: object) -> tuple[dict[str, object], str | None]:
    if not isinstance(table, dict):
        msg = f'config {path}: [rates] is a table of CUR = "X" (USD for one CUR), or source = "kraken"'
        raise ConfigurationError(msg)
    source = table.get("source")
    fixed: dict[str, object] = {}
    for key, value in table.items():
        if key == "source":
            continue
        if key.upper() in fixed:
            msg = f"config {path}: [rates] names {key.upper()} twice"
            raise ConfigurationError(msg)
        fixed[key.upper()] = value
    if source is None:
        return fixed, None
    if source not in RATE_SOURCES:
        known = ", ".join(RATE_SOURCES)
        msg = f"config {path}: [rates] source = {source!r} is not a rate source; known: {known}"
        raise ConfigurationError(msg)
    if fixed:
        msg = (
            f"config {path}: [rates] has source = {source!r} and fixed rates ({', '.join(fixed)}): "
            "the source quotes every currency; keep one of them"
        )
        raise ConfigurationError(msg)
    return fixed, source


def read_config(path: Path, environ: Mapping[str, str], warn: TextIO) -> Config:
    """A config file: its ``[[account]]`` tables with ``<field>_env``/``<field>_file`` resolved,
    and its ``[rates]``. Warns on ``warn`` about unknown tables and files other users can read."""
    data, mode = _load_toml(path)
    _warn_if_open(path, mode, "config", warn)
    _warn_unknown_tables(path, data, warn)
    accounts = []
    for table in _account_tables(path, data):
        account: dict[str, Any] = {}
        for key, value in table.items():
            if key.endswith("_env"):
                if value not in environ:
                    msg = f"config {path}: environment variable {value} is not set"
                    raise ConfigurationError(msg)
                account[key.removesuffix("_env")] = environ[value]
            elif key.endswith("_file"):
                account[key.removesuffix("_file")] = _read_file(str(value), key, warn)
            else:
                account[key] = value
        accounts.append(account)
    rates, source = _config_rates(path, data.get("rates", {}))
    return Config(path, accounts, rates, source)


def config_rates(config: Config) -> Any:  # noqa: ANN401  # rates= of aggregate: a mapping or a source
    """``rates=`` for a config's ``[rates]``: ``bb.KrakenRates()`` for ``source = "kraken"``, its
    fixed rates otherwise, ``None`` when it has none (the MCP server uses it as the CLI does)."""
    if config.rate_source:
        return _live_rates()
    return dict(config.rates) or None


def accounts_from_toml(path: Path, environ: Mapping[str, str], warn: TextIO) -> list[dict[str, Any]]:
    """The ``[[account]]`` tables of a config file, with ``<field>_env``/``<field>_file`` resolved."""
    return read_config(path, environ, warn).accounts


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


def _secrets(accounts: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The credential values of the accounts, to mask in anything printed."""
    found: set[str] = set()
    for account in accounts:
        venue = account.get("venue")
        for name in _secret_settings(provider_class(str(venue))):
            value = account.get(name)
            if isinstance(value, str) and len(value.strip()) >= _MIN_SECRET_CHARS:
                found.add(value)
                found.update(
                    line.strip() for line in value.splitlines() if len(line.strip()) >= _MIN_SECRET_CHARS
                )
    return tuple(sorted(found, key=len, reverse=True))  # longest first: a PEM before its lines


def _config_path(given: Path | None) -> Path | None:
    if given is not None:
        return given
    default = DEFAULT_CONFIG.expanduser()
    return default if default.exists() else None


# --------------------------------------------------------------------------- figures as text


def _printable(text: str) -> str:
    """A label or code fit for one line of a terminal: as is when printable, else its repr."""
    return text if text.isprintable() else repr(text)


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,f}"


def _percent(ratio: Decimal | None) -> str:
    return "-" if ratio is None else _views.percent_display(ratio)


def _free(total: Decimal | None, available: Decimal | None) -> Decimal | None:
    """One account's free share, ``available / total``, a ratio in 28 digits (docs/decisions.md §21)."""
    if total is None or available is None or not total:
        return None
    with decimal.localcontext(_views.ratio_context()):
        return available / total


def _mark(row: _views.Row) -> str | None:
    """How a row stands out: ``stale`` (a watch kept its last good balance), ``no rate`` or
    ``failed`` (left out of the totals); ``None`` for a counted, fresh row."""
    if row.error is None:
        return None
    if row.age is not None:
        return "stale"
    return "no rate" if isinstance(row.error, MissingRateError) else "failed"


def _age(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``: how old a balance is."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


HEADER: Final = ("account", "venue", "currency", "total", "available", "share", "free")
_NUMERIC: Final = frozenset({3, 4, 5, 6})  # the columns aligned on the decimal point


@attrs.frozen
class Table:
    """A portfolio as text cells: a row per label, the USD totals, and how each row stands out."""

    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    marks: list[str | None]  # per row: None, "stale", "no rate" or "failed"
    footer: tuple[str, ...]

    def aligned(self) -> Table:
        """The same cells with each number column padded so that its decimal points line up."""
        columns = [list(column) for column in zip(*self.rows, self.footer, strict=True)]
        for index in _NUMERIC:
            columns[index] = align_decimals(columns[index])
        cells = list(zip(*columns, strict=True))
        return attrs.evolve(self, rows=cells[:-1], footer=cells[-1])

    def widths(self) -> list[int]:
        """Each column's width: its widest cell or its header."""
        lines = [self.header, *self.rows, self.footer]
        return [max(len(cells[i]) for cells in lines) for i in range(len(self.header))]


def portfolio_table(portfolio: Portfolio, *, ages: bool = False) -> Table:
    """The cells of the table: every label once (the failed ones too), then the totals in USD.

    A failed label's share says ``failed`` (``no rate`` when its balance has no USD rate).
    ``ages`` adds how old each balance is, ``stale ...`` for a watch's last good one.
    """
    rows: list[tuple[str, ...]] = []
    marks: list[str | None] = []
    for row in _views.rows(portfolio):
        mark = _mark(row)
        cells: tuple[str, ...] = (
            _printable(row.label),
            _printable(row.exchange or "-"),
            _printable(row.currency or "-"),
            _money(row.total),
            _money(row.available),
            mark if mark in {"failed", "no rate"} else _percent(row.share),
            _percent(_free(row.total, row.available)),
        )
        if ages:
            cells += (_age_cell(portfolio, row),)
        rows.append(cells)
        marks.append(mark)
    footer = (
        "TOTAL",
        "",
        "USD",
        _money(portfolio.total_usd),
        _money(portfolio.available_margin_usd),
        "",
        _percent(portfolio.free_ratio),
        *([""] if ages else []),
    )
    return Table(header=HEADER + (("age",) if ages else ()), rows=rows, marks=marks, footer=footer)


def _age_cell(portfolio: Portfolio, row: _views.Row) -> str:
    if row.age is not None:
        return f"stale {_age(row.age)}"
    balance = portfolio.balances.get(row.label)
    if balance is None:
        return "-"
    return _age(max(0.0, (portfolio.fetched_at - balance.fetched_at).total_seconds()))


def align_decimals(cells: Sequence[str]) -> list[str]:
    """``cells`` padded with spaces so that their decimal points line up, every digit kept.

    A cell without a point (``100``, ``-``, ``failed``) ends where the others' integer parts end.
    Blank cells stay blank (padded to the width).
    """
    parts = [cell.partition(".") for cell in cells]
    whole = max((len(head) for head, _, _ in parts), default=0)
    tail = max((len(dot + rest) for _, dot, rest in parts), default=0)
    return [
        "".ljust(whole + tail) if not cell else head.rjust(whole) + (dot + rest).ljust(tail)
        for cell, (head, dot, rest) in zip(cells, parts, strict=True)
    ]


def rates_line(portfolio: Portfolio) -> str | None:
    """``rates: USDT 1 (par, assumed); EUR 1.0842 (kraken ZEURZUSD last trade, 12:00:01Z)``:
    every rate the totals used but USD's own, or ``None`` when there is none."""
    parts = _views.rate_notes(portfolio)
    return "rates: " + "; ".join(parts) if parts else None


def outcome(portfolio: Portfolio, asked: int) -> tuple[int, str]:
    """The exit code and the status line that says the same: complete, partial or none answered."""
    failed = len(portfolio.errors)
    if portfolio.complete:
        count = len(portfolio.balances)
        return EXIT_COMPLETE, f"{count} account{'' if count == 1 else 's'}, complete"
    if asked and not portfolio.balances:
        return EXIT_NONE, f"no account answered: {failed} failed"
    labels = set(portfolio.balances) | set(portfolio.errors)
    counted = len(labels) - failed + len(portfolio.stale)
    return EXIT_PARTIAL, f"partial: {counted} of {len(labels)} accounts counted, {failed} with errors"


# --------------------------------------------------------------------------- rendering


def render_plain(portfolio: Portfolio, out: TextIO, *, status: str | None = None, ages: bool = False) -> None:
    """The portfolio as a plain-text table: every digit, numbers aligned on the decimal point,
    then the rates used, the summary line and ``status``."""
    table = portfolio_table(portfolio, ages=ages).aligned()
    widths = table.widths()

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if i in _NUMERIC else cell.ljust(widths[i]) for i, cell in enumerate(cells)
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    body = [line(row) for row in table.rows]
    print(line(table.header), rule, *body, rule, line(table.footer), sep="\n", file=out)
    for text in _tail(portfolio, status):
        print(text, file=out)


def _tail(portfolio: Portfolio, status: str | None) -> list[str]:
    rates = rates_line(portfolio)
    return [*([rates] if rates else []), portfolio.summary(), *([status] if status else [])]


def table_width(table: Table) -> int:
    """The narrowest console the rich table fits in without folding a figure: the number columns
    whole, the text columns folded down to a few characters, borders and padding (3 a column, 1)."""
    widths = table.widths()
    text = sum(min(width, _TEXT_MIN) for i, width in enumerate(widths) if i not in _NUMERIC)
    return sum(widths[i] for i in _NUMERIC) + text + 3 * len(widths) + 1


def rich_view(
    portfolio: Portfolio, width: int, *, status: str | None = None, ages: bool = False
) -> RenderableType:
    """The portfolio for a rich console ``width`` columns wide: the table when its figures fit,
    one block per account when they do not; then the rates, the summary and ``status``."""
    from rich.console import Group  # noqa: PLC0415  # optional extra
    from rich.text import Text  # noqa: PLC0415

    table = portfolio_table(portfolio, ages=ages)
    aligned = table.aligned()
    body = _rich_table(aligned) if table_width(aligned) <= width else _rich_blocks(table)
    tail = [Text(text, no_wrap=True, overflow="ignore") for text in _tail(portfolio, status)]
    return Group(body, *tail)


_STYLES: Final = {None: "", "stale": "yellow", "no rate": "red", "failed": "red"}


def _rich_table(table: Table) -> RenderableType:
    from rich.table import Table as RichTable  # noqa: PLC0415  # optional extra
    from rich.text import Text  # noqa: PLC0415

    grid = RichTable(title="bastion-balance", show_footer=True, footer_style="bold")
    for index, name in enumerate(table.header):
        if index in _NUMERIC:
            # pre-aligned cells, left-justified: rich keeps leading spaces (trailing ones it trims)
            grid.add_column(
                Text(name, justify="right"),
                footer=Text(table.footer[index]),
                justify="left",
                no_wrap=True,
                min_width=max(len(table.footer[index]), len(name)),
            )
        else:
            grid.add_column(name, footer=Text(table.footer[index]), overflow="fold")
    for cells, mark in zip(table.rows, table.marks, strict=True):
        grid.add_row(*(Text(cell) for cell in cells), style=_STYLES[mark])
    return grid


def _rich_blocks(table: Table) -> RenderableType:
    """One block per account (then the totals): the layout for consoles too narrow for the table.
    Every value of every block is aligned on one decimal point."""
    from rich.console import Group  # noqa: PLC0415  # optional extra
    from rich.text import Text  # noqa: PLC0415

    names = table.header[3:]
    blocks = [*zip(table.rows, table.marks, strict=True), (table.footer, None)]
    values = iter(align_decimals([cell for cells, _ in blocks for cell in cells[3:]]))
    lines: list[Text] = []
    for cells, mark in blocks:
        head = Text(cells[0], style=f"bold {_STYLES[mark]}".strip())
        venue = f"{cells[1]} · " if cells[1] and cells[1] != cells[0] else ""
        head.append(f"  {venue}{cells[2]}")
        lines.append(head)
        for name in names:
            value = next(values)
            if value.strip():
                lines.append(Text(f"  {name:<9}  {value}".rstrip(), style=_STYLES[mark]))
    for line in lines:
        line.no_wrap, line.overflow = True, "ignore"
    return Group(*lines)


def render_rich(portfolio: Portfolio, console: Console, *, status: str | None = None) -> None:
    """The portfolio on a rich console (extra ``cli``): see :func:`rich_view`."""
    console.print(rich_view(portfolio, console.width, status=status), crop=False)


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- progress


class Board:
    """What each account's fetch is doing, for the spinners (one line per account)."""

    def __init__(self, providers: Sequence[Any], clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._venues = {provider.label: provider.venue for provider in providers}
        self._attempts = dict.fromkeys(self._venues, 0)
        self._started: dict[str, float] = {}
        self._ended: dict[str, tuple[float, str | None]] = {}  # label -> (seconds, error type)
        self._spinners: dict[str, Any] = {}  # label -> its rich Spinner, made on first render

    def started(self, label: str) -> None:
        """An attempt of ``label``'s fetch began."""
        with self._lock:
            self._attempts[label] += 1
            if label not in self._started:  # times run from the first attempt
                self._started[label] = self._clock()
            self._ended.pop(label, None)

    def ended(self, label: str, error: BaseException | None) -> None:
        """An attempt of ``label``'s fetch ended (with ``error``, when it failed)."""
        with self._lock:
            took = self._clock() - self._started[label]
            self._ended[label] = (took, None if error is None else type(error).__name__)

    def lines(self) -> list[tuple[str, str, str, bool | None]]:
        """``(label, venue, state, ok)`` per account; ``ok`` is ``None`` while it runs."""
        with self._lock:
            found: list[tuple[str, str, str, bool | None]] = []
            for label, venue in self._venues.items():
                attempts = self._attempts[label]
                if label in self._ended:
                    took, error = self._ended[label]
                    state = f"{'done' if error is None else error} in {took:.1f}s"
                    found.append((label, venue, state, error is None))
                elif attempts:
                    found.append((label, venue, "fetching" if attempts == 1 else f"attempt {attempts}", None))
                else:
                    found.append((label, venue, "waiting", None))
            return found

    def render(self) -> RenderableType:
        """The spinners as a rich grid (extra ``cli``)."""
        from rich.spinner import Spinner  # noqa: PLC0415  # optional extra
        from rich.table import Table as RichTable  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        grid = RichTable.grid(padding=(0, 1))
        for label, venue, state, ok in self.lines():
            mark: RenderableType
            if ok is None:
                mark = self._spinners.setdefault(label, Spinner("dots"))
            else:
                mark = Text("✓" if ok else "✗", style="green" if ok else "red")
            grid.add_row(mark, Text(_printable(label), style="bold"), Text(_printable(venue)), Text(state))
        return grid


class Tracked:
    """A provider whose fetch attempts are reported to a :class:`Board` (for the spinners)."""

    def __init__(self, provider: Any, board: Board) -> None:  # noqa: ANN401  # any BalanceProvider
        self._provider = provider
        self._board = board

    @property
    def label(self) -> str:
        """The provider's label."""
        label: str = self._provider.label
        return label

    @property
    def venue(self) -> str:
        """The provider's venue."""
        venue: str = self._provider.venue
        return venue

    def balance_flow(self) -> Flow:
        """The provider's flow, reporting when it starts and how it ends."""
        self._board.started(self.label)
        try:
            balance = yield from self._provider.balance_flow()
        except Exception as exc:
            self._board.ended(self.label, exc)
            raise
        self._board.ended(self.label, None)
        return balance  # type: ignore[no-any-return]


@contextmanager
def _progress(providers: list[Any], spinners: bool, err: TextIO) -> Iterator[list[Any]]:
    """Shows what is being fetched on ``err``: a spinner per account (rich, on a terminal) or one line."""
    if not spinners:
        count = len(providers)
        print(f"fetching {count} account{'' if count == 1 else 's'}...", file=err)
        yield providers
        return
    from rich.console import Console  # noqa: PLC0415  # optional extra
    from rich.live import Live  # noqa: PLC0415

    board = Board(providers)
    with Live(get_renderable=board.render, console=Console(file=err), transient=True, refresh_per_second=12):
        yield [Tracked(provider, board) for provider in providers]


# --------------------------------------------------------------------------- failures and warnings


def _masked(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _MASK)
    return redact(text)


def _one_line(text: str) -> str:
    """``text`` fit for one terminal line: whitespace runs are one space, control characters
    (a venue's text may hold escape sequences) are ``?``, and it is cut to a readable length."""
    text = "".join(char if char.isprintable() else "?" for char in " ".join(text.split()))
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 3] + "..."


def failure_lines(portfolio: Portfolio, secrets: Sequence[str] = (), *, live: bool = False) -> list[str]:
    """One readable line per failed label: no traceback, no credential, no newline."""
    lines = []
    for label, exc in portfolio.errors.items():
        text = _one_line(_masked(_reason(label, exc, live=live), secrets))
        verb = "not counted" if isinstance(exc, MissingRateError) else "failed"
        lines.append(f"bastion-balance: {_printable(label)} {verb}: {text}")
    return lines


def _reason(label: str, exc: Exception, *, live: bool) -> str:
    message = str(exc).removeprefix(f"{label}: ")
    if isinstance(exc, MissingRateError) and exc.__cause__ is None:
        currency = _printable(exc.currency)
        if live:
            message = (
                f"no USD rate for {currency}: the rate source does not quote it; value it with "
                f"--rate {currency}=X instead of --live-rates"
            )
        else:
            message = (
                f"no USD rate for {currency}: pass --rate {currency}=X (USD for one {currency}), "
                f"put {currency} in the config's [rates], or use --live-rates"
            )
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# --------------------------------------------------------------------------- the commands


@attrs.frozen
class Plan:
    """What to fetch and how: the providers, the rates, what to mask, the demo's simulator."""

    providers: list[Any]
    rates: Any = None  # rates= of the aggregate: None, a mapping or a rate source
    live: bool = False  # rates is a live rate source
    secrets: tuple[str, ...] = ()
    simulator: Any = None  # the demo's Simulator: its client answers every request


@attrs.frozen
class Fetched:
    """What a fetch gave: the portfolio, how many accounts were asked, what to mask in output."""

    portfolio: Portfolio
    asked: int
    secrets: tuple[str, ...] = ()
    live: bool = False


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
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "fetch"
    parsers = {"fetch": _fetch_parser, "demo": _demo_parser, "venues": _venues_parser}
    try:
        args = parsers[command](out, err).parse_args(argv)
    except _Exit as stop:
        return stop.code
    try:
        if command == "venues":
            return venues(args.config, environ, out, err)
        plan = _plan(command, args, environ, err)
        if args.watch is not None:
            return _watch(plan, args, out, err)
        fetched = _fetch_once(plan, args, err)
    except ConfigurationError as exc:
        print(f"bastion-balance: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bastion-balance: interrupted", file=err)
        return EXIT_INTERRUPTED
    return _report(fetched, args, command, environ=environ, out=out, err=err)


def _use_rich(args: argparse.Namespace, out: TextIO) -> bool:
    return not args.plain and out.isatty() and _rich_available()


def _report(
    fetched: Fetched,
    args: argparse.Namespace,
    command: str,
    *,
    environ: Mapping[str, str],
    out: TextIO,
    err: TextIO,
) -> int:
    portfolio = fetched.portfolio
    code, status = outcome(portfolio, fetched.asked)
    if args.json:
        print(dumps(_to_dict(fetched), indent=2), file=out)
    elif args.bastion:
        print(dumps(portfolio.to_bastion(), indent=2), file=out)
    elif code == EXIT_NONE:
        print(status, file=out)  # no table of nothing, no "$0.00": the reasons follow on stderr
    elif _use_rich(args, out):
        from rich.console import Console  # noqa: PLC0415  # optional extra

        render_rich(portfolio, Console(file=out), status=status)
    else:
        render_plain(portfolio, out, status=status)
    for line in _notes(fetched):
        print(line, file=err)
    if args.record or args.history:
        from ._history_cli import record  # noqa: PLC0415  # extra "history", loaded when asked for

        demo = command == "demo"
        if record(portfolio, args.history, demo=demo, environ=environ, err=err) != EXIT_COMPLETE:
            return EXIT_USAGE
    return code


def _to_dict(fetched: Fetched) -> dict[str, Any]:
    """``Portfolio.to_dict()`` with any credential in its error messages and warnings masked."""
    data = fetched.portfolio.to_dict()
    for error in data["errors"].values():
        error["message"] = _masked(error["message"], fetched.secrets)
    data["warnings"] = [_masked(warning, fetched.secrets) for warning in data["warnings"]]
    return data


def _notes(fetched: Fetched) -> list[str]:
    """The lines for stderr: one per failed account, then the portfolio's warnings."""
    failures = failure_lines(fetched.portfolio, fetched.secrets, live=fetched.live)
    warnings = [
        f"bastion-balance: warning: {_one_line(_masked(w, fetched.secrets))}"
        for w in fetched.portfolio.warnings
    ]
    return failures + warnings


def _subcommand(name: str) -> Callable[..., int]:
    module_name, function = SUBCOMMANDS[name].split(":")
    module = importlib.import_module(module_name, __package__)
    command: Callable[..., int] = getattr(module, function)
    return command


def _selected(providers: list[Any], labels: Sequence[str] | None) -> list[Any]:
    """The providers ``--account`` names (all of them without it), in configuration order."""
    if not labels:
        return providers
    known = [provider.label for provider in providers]
    unknown = [label for label in dict.fromkeys(labels) if label not in known]
    if unknown:
        msg = f"--account {', '.join(unknown)}: no such account; the accounts are {', '.join(known)}"
        raise ConfigurationError(msg)
    return [provider for provider in providers if provider.label in labels]


def _live_rates() -> Any:  # noqa: ANN401  # a rate source
    from ._kraken_rates import KrakenRates  # noqa: PLC0415  # loaded when asked for

    return KrakenRates()


def _valuation(args: argparse.Namespace, config: Config | None) -> tuple[Any, bool]:
    """``rates=`` for the aggregate, and whether it is a live source.

    ``--live-rates`` replaces whatever the config's ``[rates]`` says; ``--rate`` (which argparse
    keeps apart from it) replaces the config's source, or goes on top of the config's fixed rates,
    currency by currency.
    """
    given = dict(config.rates) if config else {}
    if args.live_rates or (config and config.rate_source and not args.rate):
        return _live_rates(), True
    seen: set[str] = set()
    for currency, value in args.rate or ():
        if currency in seen:
            msg = f"--rate {currency} is given twice: keep one"
            raise ConfigurationError(msg)
        seen.add(currency)
        given[currency] = value
    return (given or None), False


def _accounts(
    given: Path | None, environ: Mapping[str, str], err: TextIO
) -> tuple[list[dict[str, Any]], Config | None]:
    """The accounts and the config they came from: the config file when there is one, else the
    environment variables. When both exist, a note on ``err`` says the config file wins."""
    path = _config_path(given)
    if path is None:
        return accounts_from_env(environ, err), None
    config = read_config(path, environ, err)
    _warn_unknown_variables(environ, err)
    ignored = account_variables(environ)
    if ignored:
        print(
            f"bastion-balance: note: reading the accounts from {path}, which wins over BASTION_* "
            f"variables; ignoring {', '.join(ignored)}",
            file=err,
        )
    return config.accounts, config


def _plan(command: str, args: argparse.Namespace, environ: Mapping[str, str], err: TextIO) -> Plan:
    """The accounts to fetch (the demo's, or the configured ones) and how to value them."""
    if args.watch is not None and (args.record or args.history):
        msg = "--watch does not record: drop --record/--history, or record single fetches"
        raise ConfigurationError(msg)
    if command == "demo":
        from .testing import SimulatedKrakenTicker, demo_setup  # noqa: PLC0415  # loads every simulator

        simulator, providers = demo_setup()
        rates, live = _valuation(args, None)
        if live:
            simulator.add(SimulatedKrakenTicker())
        print(
            "demo: simulated venues (signatures verified as each venue does); no keys, no network", file=err
        )
        return Plan(_selected(providers, args.account), rates, live, simulator=simulator)
    accounts, config = _accounts(args.config, environ, err)
    if not accounts:
        msg = (
            "no accounts configured: set BASTION_<VENUE>_<FIELD> variables (e.g. BASTION_KRAKEN_API_KEY "
            "and BASTION_KRAKEN_API_SECRET) or write a config file; see 'bastion-balance venues' and "
            "'bastion-balance --help', or try 'bastion-balance demo'"
        )
        raise ConfigurationError(msg)
    providers = _selected(build_providers(accounts), args.account)  # every venue known from here on
    secrets = _secrets(accounts)
    rates, live = _valuation(args, config)
    return Plan(providers, rates, live, secrets)


@contextmanager
def _http(plan: Plan) -> Iterator[Any]:
    """The demo's simulator client (closed after), or ``None``: the library's own pool."""
    if plan.simulator is None:
        yield None
        return
    with plan.simulator.client() as http:
        yield http


def _fetch_once(plan: Plan, args: argparse.Namespace, err: TextIO) -> Fetched:
    spinners = not args.plain and err.isatty() and _rich_available()
    with _http(plan) as http, _progress(plan.providers, spinners, err) as tracked:
        portfolio = _client.aggregate(tracked, rates=plan.rates, client=http, timeout=args.timeout)
    return Fetched(portfolio, len(plan.providers), plan.secrets, plan.live)


# --------------------------------------------------------------------------- watching


def _interval(text: str) -> float:
    """``--watch 5s`` / ``500ms`` / ``2m`` / ``1h`` / ``5`` (seconds) -> seconds."""
    found = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?", text.strip())
    seconds = float(found[1]) * _UNITS[found[2] or "s"] if found else 0.0  # float-ok: seconds
    if not 0 < seconds <= _client.MAX_TIMEOUT:
        msg = f"{text!r} is not an interval: write e.g. 5s, 500ms, 2m or 1h (more than 0, at most a day)"
        raise argparse.ArgumentTypeError(msg)
    return seconds


_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


#: The watch's clock and sleep: tests put a fake pair here, to run rounds without waiting.
WATCH_TIME: Final[dict[str, Callable[..., Any]]] = {"clock": time.monotonic, "sleep": time.sleep}


def _watcher(providers: list[Any], *, every: float, rates: Any, timeout: float, client: Any) -> Any:  # noqa: ANN401
    """The ``bb.Watcher`` behind ``--watch``."""
    from ._watch import Watcher  # noqa: PLC0415  # loaded when asked for

    return Watcher(
        providers,
        every=every,
        rates=rates,
        timeout=timeout,
        client=client,
        clock=WATCH_TIME["clock"],
        sleep=WATCH_TIME["sleep"],
    )


def _watch(plan: Plan, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``--watch``: a portfolio every interval until Ctrl-C (which exits 130 at once).

    On a terminal the table is redrawn in place (rich), with each balance's age and a stale
    marker for a failed account's last good one; otherwise each round is printed in turn:
    a plain table, or one JSON document per line with ``--json`` / ``--bastion``.
    """
    live_view = not args.json and not args.bastion and _use_rich(args, out)
    with ExitStack() as stack:
        http = stack.enter_context(_http(plan))
        watcher = stack.enter_context(
            _watcher(plan.providers, every=args.watch, rates=plan.rates, timeout=args.timeout, client=http)
        )
        show = _live_view(stack, out) if live_view else None
        for number, portfolio in enumerate(watcher, 1):
            fetched = Fetched(portfolio, len(plan.providers), plan.secrets, plan.live)
            _, status = outcome(portfolio, fetched.asked)
            heading = (
                f"round {number} at {portfolio.fetched_at:%H:%M:%S}Z, every {args.watch:g}s; Ctrl-C to stop"
            )
            if show is not None:
                show(portfolio, heading, status, _notes(fetched))
                continue
            if args.json or args.bastion:
                print(dumps(_to_dict(fetched) if args.json else portfolio.to_bastion()), file=out)
            else:
                print(heading, file=out)
                render_plain(portfolio, out, status=status, ages=True)
                print(file=out)
            out.flush()
            for line in _notes(fetched):
                print(line, file=err)
    return EXIT_COMPLETE  # the watch ended by itself (it does not, unless its watcher stops)


def _live_view(stack: ExitStack, out: TextIO) -> Callable[[Portfolio, str, str, list[str]], None]:
    """A rich Live on ``out``, redrawn in place each round; returns the function that redraws it."""
    from rich.console import Console, Group  # noqa: PLC0415  # optional extra
    from rich.live import Live  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    console = Console(file=out)
    live = stack.enter_context(Live(console=console, auto_refresh=False, vertical_overflow="visible"))

    def show(portfolio: Portfolio, heading: str, status: str, notes: list[str]) -> None:
        view = rich_view(portfolio, console.width, status=status, ages=True)
        lines = [Text(note, style="red", no_wrap=True, overflow="ignore") for note in notes]
        live.update(Group(Text(heading, style="dim"), view, *lines), refresh=True)

    return show


# --------------------------------------------------------------------------- venues


def _configured_from_env(venue: str, environ: Mapping[str, str]) -> str:
    names = _variable_names(venue)
    required = [field for field, needed in _settings_of(provider_class(venue)).items() if needed]
    present = {field for field, name in names.items() if name in environ or name + "_FILE" in environ}
    if not present:
        return "no"
    missing = [names[field] for field in required if field not in present]
    if missing:
        return f"incomplete: set {', '.join(missing)}"
    label = environ.get(names["label"], venue) if "label" in names else venue
    return f"yes, from the environment (label {_printable(label)})"


def _configured_from_config(venue: str, tables: Sequence[Mapping[str, Any]]) -> str:
    labels = [str(table.get("label", venue)) for table in tables if table.get("venue") == venue]
    return f"yes, {', '.join(_printable(label) for label in labels)}" if labels else "no"


def venues(given: Path | None, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """``bastion-balance venues``: every venue, its settings and variables, what is configured here."""
    path = _config_path(given)
    tables: list[dict[str, Any]] = []
    if path is None:
        where = f"from BASTION_* environment variables (there is no config file at {DEFAULT_CONFIG})"
        _warn_unknown_variables(environ, err)
    else:
        data, mode = _load_toml(path)  # only venues and labels: no credential is resolved
        _warn_if_open(path, mode, "config", err)
        _warn_unknown_tables(path, data, err)
        _warn_unknown_variables(environ, err)
        tables = _account_tables(path, data)
        ignored = account_variables(environ)
        where = f"from the config file {path}" + (
            f" (the BASTION_* account variables set here are ignored: {', '.join(ignored)})"
            if ignored
            else ""
        )
    print(f"Accounts are read {where}.", file=out)
    print("Each variable may instead end in _FILE, naming a file that holds the value.", file=out)
    for venue, entry in VENUES.items():
        cls = provider_class(venue)
        configured = (
            _configured_from_env(venue, environ) if path is None else _configured_from_config(venue, tables)
        )
        print(f"\n{venue}  {entry.title} (bb.{entry.class_name}, docs/{entry.docs})", file=out)
        print(f"  configured: {configured}", file=out)
        secret = _secret_settings(cls)
        settings = _settings_of(cls)
        width = max(len(field) for field in settings)
        for field, required in settings.items():
            kind = ("required" if required else "optional") + (", secret" if field in secret else "")
            print(f"  {field:<{width}}  {kind:<16}  {_variable_names(venue)[field]}", file=out)
    return EXIT_COMPLETE


def main() -> None:
    """Console-script entry point."""
    try:
        code = run()
        sys.stdout.flush()
    except KeyboardInterrupt:  # before or after the fetch (argument parsing, printing)
        print("bastion-balance: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:  # `bastion-balance | head`: the reader left; no traceback at exit either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_PIPE
    sys.exit(code)
