"""``bastion-balance history`` and ``bastion-balance --record`` (extra ``history``).

``history`` prints the recorded snapshots, the flow-adjusted drawdown and a small chart of equity
over time; ``--record`` stores the fetched portfolio. See docs/history.md, 'Command line'.
"""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TextIO

from ._decimal import AmountError, to_decimal
from ._models import Portfolio, dumps
from .exceptions import ConfigurationError, HistoryError

__all__ = ["main", "parse_when", "record"]

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
URL_VARIABLE: Final = "BASTION_HISTORY_URL"
CHART_WIDTH: Final = 60
CHART_HEIGHT: Final = 8
_RELATIVE: Final = re.compile(r"(\d+)([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_EXTRA: Final = "the history extra is not installed: pip install 'bastion-balance[history]'"


def parse_when(text: str, now: datetime) -> datetime:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` before ``now``, or an ISO date or datetime.

    A date is midnight UTC; a datetime without an offset is taken as UTC.
    """
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"{text!r} is not a time: pass e.g. 7d, 12h, 30m, 2024-05-01 or 2024-05-01T12:00:00+00:00"
        raise ConfigurationError(msg) from None
    if len(text.strip()) == 10:  # a bare date (fromisoformat gives midnight)
        parsed = datetime.combine(date.fromisoformat(text.strip()), datetime.min.time())
    if parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _url(given: str | None, environ: Mapping[str, str]) -> tuple[str, Path | None]:
    """The database to use and, when it is the default SQLite file, its path."""
    if given:
        return given, None
    if environ.get(URL_VARIABLE):
        return environ[URL_VARIABLE], None
    from ._history import default_path  # noqa: PLC0415  # extra "history"

    path = default_path(environ)
    return str(path), path


def _open(url: str, path: Path | None) -> Any:  # noqa: ANN401  # a History (extra "history")
    from ._history import History  # noqa: PLC0415  # extra "history"

    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return History(path)
    return History(url)


def record(
    portfolio: Portfolio, url: str | None, *, demo: bool, environ: Mapping[str, str], err: TextIO
) -> int:
    """``--record``: store ``portfolio``; 0 when stored, 2 (with one line on ``err``) otherwise.

    The demo's simulated balances go only where ``--history URL`` says, never into the real
    history (the default file or ``$BASTION_HISTORY_URL``).
    """
    if demo and not url:
        print(
            "bastion-balance: --record with demo needs --history URL: the demo's simulated balances "
            "are not recorded into your real history",
            file=err,
        )
        return EXIT_USAGE
    try:
        target, path = _url(url, environ)
        with _open(target, path) as history:
            snapshot = history.record(portfolio)
            where = history.url
    except ImportError:
        print(f"bastion-balance: --record: {_EXTRA}", file=err)
        return EXIT_USAGE
    except (ConfigurationError, HistoryError) as exc:
        print(f"bastion-balance: --record: {exc}", file=err)
        return EXIT_USAGE
    state = "complete" if snapshot.complete else f"incomplete: {', '.join(snapshot.failed)} failed"
    print(f"recorded snapshot {snapshot.id} ({state}) in {where}", file=err)
    return EXIT_OK


def _parser(out: TextIO, err: TextIO) -> argparse.ArgumentParser:
    from .cli import _Parser  # noqa: PLC0415  # the command line's parser (cli loads this module lazily)

    parser = _Parser(
        out=out,
        err=err,
        prog="bastion-balance history",
        description="Recorded snapshots, flow-adjusted drawdown and a chart of equity over time.",
        epilog=lambda: "Exit codes: 0 shown, 2 usage or configuration error or nothing recorded yet.",
    )
    parser.add_argument("--since", help="7d, 12h, 30m, 2024-05-01 or an ISO datetime (default: all)")
    parser.add_argument("--until", help="the same forms; only for the snapshots listed")
    parser.add_argument("--baseline", help="starting capital in USD (default: the first complete snapshot)")
    parser.add_argument("--include-incomplete", action="store_true", help="use snapshots with a venue down")
    parser.add_argument("--url", help=f"database URL (default ${URL_VARIABLE}, else the SQLite file)")
    parser.add_argument("--json", action="store_true", help="snapshots, flows and drawdown as JSON")
    parser.add_argument("--plain", action="store_true", help="plain text even when rich is installed")
    parser.add_argument("--limit", type=int, default=20, help="snapshots listed (default 20, 0 = all)")
    return parser


def main(argv: Sequence[str], *, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """The ``history`` subcommand."""
    from .cli import _Exit  # noqa: PLC0415

    try:
        args = _parser(out, err).parse_args(list(argv))
    except _Exit as stop:
        return stop.code
    try:
        return _show(args, environ, out, err)
    except ImportError:
        print(f"bastion-balance history: {_EXTRA}", file=err)
    except (ConfigurationError, HistoryError) as exc:
        print(f"bastion-balance history: {exc}", file=err)
    return EXIT_USAGE


def _show(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    since = None if args.since is None else parse_when(args.since, now)
    until = None if args.until is None else parse_when(args.until, now)
    baseline = None
    if args.baseline is not None:
        try:
            baseline = to_decimal(args.baseline.replace(",", "").replace("_", ""))
        except AmountError:
            msg = f"--baseline {args.baseline!r} is not an amount: pass USD such as 10000 or 10000.50"
            raise ConfigurationError(msg) from None
    if args.limit < 0:
        msg = "--limit is a count of snapshots >= 0 (0 lists all)"
        raise ConfigurationError(msg)
    target, path = _url(args.url, environ)
    if path is not None and not path.exists():
        msg = f"nothing recorded yet: no history at {path}; record with 'bastion-balance --record'"
        raise HistoryError(msg)
    with _open(target, path) as history:
        snapshots = history.snapshots(since, until)
        if not snapshots:
            where = "" if since is None else f" since {since.isoformat()}"
            msg = f"nothing recorded yet{where} in {history.url}; record with 'bastion-balance --record'"
            raise HistoryError(msg)
        flows = history.flows(since, until)
        drawdown = history.drawdown(since, baseline, args.include_incomplete)
        where = history.url
    if args.json:
        data = {
            "url": where,
            "snapshots": [s.to_dict() for s in snapshots],
            "flows": [f.to_dict() for f in flows],
            "drawdown": drawdown.to_dict(),
        }
        print(dumps(data, indent=2), file=out)
        return EXIT_OK
    from .cli import _rich_available  # noqa: PLC0415  # cli imports this module lazily

    shown = snapshots if args.limit == 0 else snapshots[-args.limit :]
    if not args.plain and out.isatty() and _rich_available():  # not a terminal: plain, every digit
        _render_rich(shown, len(snapshots), flows, drawdown, out)
    else:
        _render_plain(shown, len(snapshots), flows, drawdown, out)
    return EXIT_OK


# --- rendering ---------------------------------------------------------------------------------


def _usd(value: Decimal) -> str:
    return f"{value:,f}"


def _signed(value: Decimal) -> str:
    return f"{value:+,f}"


def _pct(ratio: Decimal | None) -> str:
    return "n/a" if ratio is None else f"{ratio.scaleb(2):f}%"


def _when(at: datetime) -> str:
    return at.isoformat(sep=" ", timespec="seconds")


def _snapshot_rows(snapshots: Sequence[Any]) -> list[tuple[str, str, str, str]]:
    return [
        (
            _when(s.taken_at),
            _usd(s.total_usd),
            _usd(s.available_margin_usd),
            "complete" if s.complete else "missing: " + ", ".join(s.failed),
        )
        for s in snapshots
    ]


def _summary(drawdown: Any, flows: Sequence[Any]) -> list[tuple[str, str]]:  # noqa: ANN401
    d = drawdown
    lines = [
        ("baseline", f"{_usd(d.baseline_usd)} at {_when(d.baseline_at)}"),
        (
            "current",
            f"{_usd(d.current_usd)} at {_when(d.current_at)} "
            f"(balance {_usd(d.current_total_usd)}, net flows {_signed(d.flows_usd)})",
        ),
        ("change", f"{_signed(d.change_usd)} ({_pct(d.change_ratio)})"),
        ("peak", f"{_usd(d.peak_usd)} at {_when(d.peak_at)}"),
        ("from peak", f"{_signed(-d.drawdown_usd)} ({_pct(d.drawdown_ratio)})"),
        ("max drawdown", f"{_usd(d.max_drawdown_usd)} ({_pct(d.max_drawdown_ratio)})"),
        ("snapshots", f"{d.snapshots} used" + (f", {d.left_out} incomplete left out" if d.left_out else "")),
    ]
    lines += [("flow", f"{_signed(f.amount_usd)} at {_when(f.at)} {f.note}".rstrip()) for f in flows]
    return lines


def chart(equity: Sequence[tuple[datetime, Decimal]], *, blocks: bool = False) -> list[str]:
    """Equity over time as text: one column per point (the last of each bucket when there are
    more points than columns), a bar per column, the top and bottom figures printed whole."""
    count = len(equity)
    width = min(count, CHART_WIDTH)
    columns = [equity[((c + 1) * count) // width - 1][1] for c in range(width)]
    low, high = min(columns), max(columns)
    span = high - low
    levels = [
        CHART_HEIGHT if not span else 1 + int((value - low) * (CHART_HEIGHT - 1) // span) for value in columns
    ]
    top, bottom = _usd(high), _usd(low)
    pad = max(len(top), len(bottom))
    full, empty = ("█", " ") if blocks else ("#", " ")
    lines = []
    for row in range(CHART_HEIGHT, 0, -1):
        label = top if row == CHART_HEIGHT else bottom if row == 1 else ""
        bars = "".join(full if level >= row else empty for level in levels)
        lines.append(f"{label.rjust(pad)} |{bars}".rstrip())
    lines.append(" " * pad + " +" + "-" * width)
    lines.append(" " * pad + f"  {_when(equity[0][0])} .. {_when(equity[-1][0])}")
    return lines


def _render_plain(
    snapshots: Sequence[Any],
    total: int,
    flows: Sequence[Any],
    drawdown: Any,  # noqa: ANN401
    out: TextIO,
) -> None:
    header = ("taken at (UTC)", "total (USD)", "available (USD)", "status")
    rows = _snapshot_rows(snapshots)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def line(row: Sequence[str]) -> str:
        cells = [row[i].rjust(widths[i]) if i in (1, 2) else row[i].ljust(widths[i]) for i in range(4)]
        return "  ".join(cells).rstrip()

    print(f"snapshots ({_listed(len(snapshots), total)})", file=out)
    print(line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows), sep="\n", file=out)
    print("\ndrawdown (flow-adjusted, USD)", file=out)
    summary = _summary(drawdown, flows)
    pad = max(len(name) for name, _ in summary)
    for name, text in summary:
        print(f"  {name.ljust(pad)}  {text}", file=out)
    print("\nequity (flow-adjusted, USD)", file=out)
    print(*chart(drawdown.equity), sep="\n", file=out)


def _listed(shown: int, total: int) -> str:
    if shown == total:
        return f"{total}"
    return f"last {shown} of {total}; --limit 0 lists all"


def _render_rich(
    snapshots: Sequence[Any],
    total: int,
    flows: Sequence[Any],
    drawdown: Any,  # noqa: ANN401
    out: TextIO,
) -> None:
    from rich.console import Console, RenderableType  # noqa: PLC0415  # extra "cli"
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    table = Table(title=f"snapshots ({_listed(len(snapshots), total)})")
    table.add_column("taken at (UTC)", no_wrap=True)
    table.add_column("total (USD)", justify="right", no_wrap=True)
    table.add_column("available (USD)", justify="right", no_wrap=True)
    table.add_column("status")
    for row in _snapshot_rows(snapshots):
        table.add_row(*row, style=None if row[3] == "complete" else "yellow")
    summary = Table(title="drawdown (flow-adjusted, USD)", show_header=False)
    summary.add_column("", style="bold", no_wrap=True)
    summary.add_column("", no_wrap=True)
    for name, text in _summary(drawdown, flows):
        summary.add_row(name, text)
    colour = "green" if drawdown.change_usd >= 0 else "red"
    tables: list[RenderableType] = [table, summary]
    # Wide enough for the widest table, and lines never wrapped: a figure is never cut to fit.
    natural = Console(file=io.StringIO(), width=100_000)  # measures without the terminal's limit
    needed = max(natural.measure(r).maximum for r in tables)
    console = Console(file=out, width=max(Console(file=out).width, needed))
    for renderable in tables:
        console.print(renderable)
    console.print(Text("equity (flow-adjusted, USD)", style="bold"))
    for text in chart(drawdown.equity, blocks=True):
        console.print(Text(text, style=colour), soft_wrap=True)
