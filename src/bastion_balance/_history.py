"""Balance history: portfolios recorded as snapshots, deposits and withdrawals as flows, and
flow-adjusted drawdown (extra ``history``: SQLAlchemy 2; PostgreSQL through psycopg 3).

Amounts are stored as decimal text in every backend, so every digit survives (SQLite's NUMERIC
would round to a float); times as fixed-width ISO-8601 UTC text, which sorts as time does. The
definitions of baseline, peak and drawdown, the schema and the reasons are in docs/history.md.
"""

from __future__ import annotations

import decimal
import importlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from ._decimal import AmountError, exact_context, to_decimal
from ._models import Portfolio, _aware_utc, _frozen_mapping
from .exceptions import ConfigurationError, HistoryError

try:
    import sqlalchemy as sa
    from sqlalchemy import event
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import Connection, Engine
except ImportError as exc:
    msg = (
        "bastion_balance.History needs the 'history' extra (SQLAlchemy 2): "
        "pip install 'bastion-balance[history]'"
    )
    raise ImportError(msg) from exc

__all__ = ["SCHEMA_VERSION", "Drawdown", "Flow", "History", "Snapshot", "default_path"]

#: The schema this code writes. A database with a lower version is migrated on first use
#: (``_MIGRATIONS``); one with a higher version is refused (made by a newer bastion_balance).
SCHEMA_VERSION: Final = 1
#: Seconds a SQLite writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_S: Final = 30.0
#: Seconds a transaction SQLite refused as locked at once (a new file switching to write-ahead
#: logging, a reader's lock upgrade) is tried again for; each try rolled back, so none is applied twice.
RETRY_S: Final = 60.0
#: Ratios are not money: they are divided in this many significant digits.
RATIO_PRECISION: Final = 28
_RATIO_CONTEXT: Final = decimal.Context(
    prec=RATIO_PRECISION,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
_EXACT: Final = exact_context()
_ZERO: Final = Decimal(0)
_T = TypeVar("_T")
_LOCK_KEY: Final = 0x6262_6869_7374  # "bbhist": PostgreSQL advisory lock for schema changes

# --- schema ------------------------------------------------------------------------------------

#: Fixed-width ISO-8601 UTC text ("2024-05-01T12:00:00.000000+00:00"): sorts as time does. On
#: PostgreSQL compared bytewise ("C" collation) so no locale can reorder it.
_TIME = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")
#: Decimal text: every digit of a 100-digit amount with its exponent fits.
_AMOUNT = sa.String(160)

_metadata = sa.MetaData()
_META = sa.Table(
    "bastion_history_meta",
    _metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)
_SNAPSHOTS = sa.Table(
    "bastion_snapshots",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("taken_at", _TIME, nullable=False, index=True),
    sa.Column("total_usd", _AMOUNT, nullable=False),
    sa.Column("available_margin_usd", _AMOUNT, nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False),
    sa.Column("failed", sa.Text, nullable=False),  # JSON list of the labels that failed
)
_BALANCES = sa.Table(
    "bastion_snapshot_balances",
    _metadata,
    sa.Column(
        "snapshot_id", sa.Integer, sa.ForeignKey("bastion_snapshots.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("label", sa.String(256), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("total_usd", _AMOUNT, nullable=False),
    sa.Column("available_usd", _AMOUNT, nullable=False),
)
_FLOWS = sa.Table(
    "bastion_flows",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", _TIME, nullable=False, index=True),
    sa.Column("amount_usd", _AMOUNT, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)
#: version -> the step that brings a database from it to version + 1, run inside the schema
#: transaction. Empty while there has been one schema.
_MIGRATIONS: dict[int, Any] = {}


# --- values ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Snapshot:
    """One recorded portfolio: its USD totals, each counted account's ``(total_usd,
    available_usd)`` by label, and the labels that failed (``complete`` is ``not failed``)."""

    id: int
    taken_at: datetime = attrs.field(validator=_aware_utc)
    total_usd: Decimal
    available_margin_usd: Decimal
    complete: bool
    balances: Mapping[str, tuple[Decimal, Decimal]] = attrs.field(converter=_frozen_mapping)
    failed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``bb.dumps`` (Decimals kept, time as ISO-8601)."""
        return {
            "id": self.id,
            "taken_at": self.taken_at.isoformat(),
            "total_usd": self.total_usd,
            "available_margin_usd": self.available_margin_usd,
            "complete": self.complete,
            "balances": {
                label: {"total_usd": total, "available_usd": available}
                for label, (total, available) in self.balances.items()
            },
            "failed": list(self.failed),
        }


@attrs.frozen(kw_only=True)
class Flow:
    """Money moved in (``amount_usd > 0``, a deposit) or out (``< 0``, a withdrawal) at ``at``."""

    id: int
    at: datetime = attrs.field(validator=_aware_utc)
    amount_usd: Decimal
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``bb.dumps``."""
        return {"id": self.id, "at": self.at.isoformat(), "amount_usd": self.amount_usd, "note": self.note}


@attrs.frozen(kw_only=True)
class Drawdown:
    """Where the book stands against its baseline and its high-water mark, net of flows.

    Every ``*_usd`` figure except ``current_total_usd`` is flow-adjusted: a snapshot's equity is
    its ``total_usd`` minus the net flows after the baseline up to it (docs/history.md,
    'Definitions'). Differences are exact; ratios are divided in 28 digits and are ``None`` when
    their denominator is not positive. ``equity`` is the adjusted series, baseline first.
    """

    baseline_usd: Decimal
    baseline_at: datetime
    current_usd: Decimal
    current_at: datetime
    current_total_usd: Decimal
    change_usd: Decimal
    change_ratio: Decimal | None
    peak_usd: Decimal
    peak_at: datetime
    drawdown_usd: Decimal
    drawdown_ratio: Decimal | None
    max_drawdown_usd: Decimal
    max_drawdown_ratio: Decimal | None
    flows_usd: Decimal
    snapshots: int
    left_out: int
    equity: tuple[tuple[datetime, Decimal], ...] = attrs.field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``bb.dumps`` (times as ISO-8601, the equity series as pairs)."""
        data: dict[str, Any] = {}
        for field in attrs.fields(Drawdown):
            value = getattr(self, field.name)
            data[field.name] = value.isoformat() if isinstance(value, datetime) else value
        data["equity"] = [[at.isoformat(), usd] for at, usd in self.equity]
        return data


# --- arguments ---------------------------------------------------------------------------------


def _utc(value: object, name: str) -> datetime:
    """An aware datetime as UTC; naive ones and other types are refused (no single meaning)."""
    if not isinstance(value, datetime):
        msg = f"{name} must be a timezone-aware datetime (e.g. datetime.now(UTC)), got {value!r}"
        raise ConfigurationError(msg)
    if value.utcoffset() is None:
        msg = (
            f"{name}={value!r} is a naive datetime, which has no single meaning: "
            "pass an aware one, e.g. datetime(2024, 5, 1, tzinfo=UTC)"
        )
        raise ConfigurationError(msg)
    return value.astimezone(UTC)


def _money(value: object, name: str) -> Decimal:
    """An exact USD amount from a Decimal, an int or a decimal string; floats are refused."""
    if isinstance(value, float):
        msg = f"{name} is the float {value!r}; a float cannot hold money exactly: pass Decimal('{value!r}')"
        raise ConfigurationError(msg)
    try:
        return to_decimal(value)
    except AmountError as exc:
        msg = f"{name}={value!r} is not an amount ({exc.reason}): pass a Decimal such as Decimal('1000')"
        raise ConfigurationError(msg) from None


def _time_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _time_of(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _amount_of(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except decimal.InvalidOperation:
        msg = f"the history database holds {text!r} where an amount should be"
        raise HistoryError(msg) from None
    if not value.is_finite():
        msg = f"the history database holds {text!r} where an amount should be"
        raise HistoryError(msg)
    return value


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/bastion-balance/history.sqlite3`` (``~/.local/share/...`` when unset or
    relative, as the XDG spec says)."""
    env = os.environ if environ is None else environ
    data_home = env.get("XDG_DATA_HOME", "")
    if not data_home or not Path(data_home).is_absolute():
        home = env.get("HOME") or str(Path.home())
        data_home = str(Path(home) / ".local" / "share")
    return Path(data_home) / "bastion-balance" / "history.sqlite3"


def _url_of(url: str | os.PathLike[str] | sa.URL | None) -> sa.URL:
    if url is None:
        path = default_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return sa.URL.create("sqlite+pysqlite", database=str(path))
    if isinstance(url, os.PathLike):
        return sa.URL.create("sqlite+pysqlite", database=os.fspath(url))
    if not isinstance(url, str | sa.URL):
        msg = f"History(url=...) takes a SQLAlchemy URL, a path or None, got {type(url).__name__}"
        raise ConfigurationError(msg)
    try:
        parsed = sa.make_url(url)
    except sa_exc.ArgumentError:
        msg = (
            f"History(url={url!r}) is not a database URL: pass e.g. 'sqlite:////path/history.sqlite3' "
            "or 'postgresql+psycopg://user@host/db'"
        )
        raise ConfigurationError(msg) from None
    if parsed.drivername == "postgresql":  # SQLAlchemy's default driver is psycopg2; the extra has 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


# --- engines -----------------------------------------------------------------------------------


def _sqlite_connect(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401  # a DBAPI connection
    # sqlite3 would BEGIN on its own (deferred, so two writers could deadlock on the upgrade);
    # _sqlite_begin emits BEGIN IMMEDIATE for writes instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")  # persistent; readers then never block writers
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get("bastion_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _engine(url: sa.URL) -> Engine:
    try:
        if url.get_backend_name() == "sqlite":
            engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return sa.create_engine(url, pool_pre_ping=True)
    except sa_exc.NoSuchModuleError:
        msg = f"History: no SQLAlchemy dialect for {url.drivername!r}; use sqlite or postgresql+psycopg"
        raise ConfigurationError(msg) from None
    except ImportError as exc:
        msg = (
            f"History: the driver for {url.drivername!r} is not installed ({exc}): "
            "pip install 'bastion-balance[history]' (psycopg 3 for PostgreSQL)"
        )
        raise ImportError(msg) from exc


def _describe(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return f"{type(original).__name__}: {text[0] if text else ''}"


# --- the history -------------------------------------------------------------------------------


class History:
    """Recorded portfolios and flows in SQLite (default) or any SQLAlchemy 2 database.

    ``url=None`` is the SQLite file ``$XDG_DATA_HOME/bastion-balance/history.sqlite3`` (its
    directory made); a path is a SQLite file; a string is a SQLAlchemy URL
    (``postgresql+psycopg://user@host/db``; plain ``postgresql://`` means the same). The schema is
    made on first use. Several processes may record into one database at once. Close it with
    ``close()`` or use it as a context manager; open one per process.
    """

    def __init__(self, url: str | os.PathLike[str] | sa.URL | None = None) -> None:
        self._url = _url_of(url)
        self._engine: Engine | None = _engine(self._url)
        self._lock = threading.Lock()
        self._ready = False

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"History(url={self.url!r})"

    def __enter__(self) -> History:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connections (idempotent)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    # -- plumbing --

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        engine = self._engine
        if engine is None:
            msg = f"{self!r} is closed"
            raise HistoryError(msg)
        try:
            with self._lock:  # once per object; other processes wait in _prepare's transaction
                if not self._ready:
                    self._prepare(engine)
                    self._ready = True
            with engine.connect() as connection:
                if write:
                    connection.execution_options(bastion_write=True)
                with connection.begin():
                    yield connection
        except sa_exc.SQLAlchemyError as exc:
            msg = f"history database {self.url}: {_describe(exc)}"
            raise HistoryError(msg) from exc

    def _run(self, work: Callable[[Connection], _T], *, write: bool) -> _T:
        """``work`` in one transaction; tried again while SQLite says the file is locked."""
        deadline = time.monotonic() + RETRY_S
        while True:
            try:
                with self._connect(write=write) as connection:
                    return work(connection)
            except HistoryError as exc:
                cause = exc.__cause__
                busy = isinstance(cause, sa_exc.OperationalError) and "locked" in str(cause.orig)
                if not busy or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def _prepare(self, engine: Engine) -> None:
        """Make or migrate the schema in one transaction, serialised across processes (SQLite's
        write lock, a PostgreSQL advisory lock), so concurrent first uses make it once."""
        with engine.connect() as connection:
            connection.execution_options(bastion_write=True)
            with connection.begin():
                if connection.dialect.name == "postgresql":  # pragma: no cover  # run by CI's PostgreSQL only
                    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
                _metadata.create_all(connection, checkfirst=True)
                _migrate(connection)

    # -- writing --

    def record(self, portfolio: Portfolio) -> Snapshot:
        """Store ``portfolio`` as a snapshot taken at its ``fetched_at``, and return it.

        Each counted account is kept as ``(total_usd, available_usd)``; the labels in
        ``portfolio.errors`` as ``failed`` (such a snapshot is incomplete).
        """
        if not isinstance(portfolio, Portfolio):
            msg = f"History.record() takes a bb.Portfolio (from bb.aggregate), got {type(portfolio).__name__}"
            raise ConfigurationError(msg)
        shape = portfolio.to_bastion()
        balances = {label: (v["total"], v["available"]) for label, v in shape["exchanges"].items()}
        failed = tuple(portfolio.errors)
        taken_at = portfolio.fetched_at.astimezone(UTC)

        def insert(connection: Connection) -> int:
            result = connection.execute(
                _SNAPSHOTS.insert().values(
                    taken_at=_time_text(taken_at),
                    total_usd=str(shape["total_usd"]),
                    available_margin_usd=str(shape["available_margin_usd"]),
                    complete=not failed,
                    failed=json.dumps(list(failed)),
                )
            )
            snapshot_id = _new_id(result)
            if balances:
                connection.execute(
                    _BALANCES.insert(),
                    [
                        {
                            "snapshot_id": snapshot_id,
                            "label": label,
                            "position": position,
                            "total_usd": str(total),
                            "available_usd": str(available),
                        }
                        for position, (label, (total, available)) in enumerate(balances.items())
                    ],
                )
            return snapshot_id

        snapshot_id = self._run(insert, write=True)
        return Snapshot(
            id=snapshot_id,
            taken_at=taken_at,
            total_usd=shape["total_usd"],
            available_margin_usd=shape["available_margin_usd"],
            complete=not failed,
            balances=balances,
            failed=failed,
        )

    def record_flow(
        self, amount_usd: Decimal | int | str, at: datetime | None = None, note: str = ""
    ) -> Flow:
        """Record a deposit (``amount_usd > 0``) or withdrawal (``< 0``) at ``at`` (default now).

        ``amount_usd`` is a Decimal, an int or a decimal string; a float is refused. A flow at
        ``at`` is taken to be in every snapshot taken at ``at`` or later.
        """
        amount = _money(amount_usd, "amount_usd")
        when = datetime.now(UTC) if at is None else _utc(at, "at")
        if not isinstance(note, str):
            msg = f"note must be a str, got {type(note).__name__}"
            raise ConfigurationError(msg)

        def insert(connection: Connection) -> int:
            row = _FLOWS.insert().values(at=_time_text(when), amount_usd=str(amount), note=note)
            return _new_id(connection.execute(row))

        flow_id = self._run(insert, write=True)
        return Flow(id=flow_id, at=when, amount_usd=amount, note=note)

    # -- reading --

    def snapshots(self, since: datetime | None = None, until: datetime | None = None) -> list[Snapshot]:
        """The snapshots taken in ``[since, until]``, oldest first (ties in recording order)."""
        where = _window(_SNAPSHOTS.c.taken_at, since, until)

        def read(connection: Connection) -> tuple[Sequence[Any], Sequence[Any]]:
            rows = connection.execute(
                sa.select(_SNAPSHOTS).where(*where).order_by(_SNAPSHOTS.c.taken_at, _SNAPSHOTS.c.id)
            ).all()
            balance_rows = connection.execute(
                sa.select(
                    _BALANCES.c.snapshot_id,
                    _BALANCES.c.label,
                    _BALANCES.c.total_usd,
                    _BALANCES.c.available_usd,
                )
                .join(_SNAPSHOTS, _SNAPSHOTS.c.id == _BALANCES.c.snapshot_id)
                .where(*where)
                .order_by(_BALANCES.c.snapshot_id, _BALANCES.c.position)
            ).all()
            return rows, balance_rows

        rows, balance_rows = self._run(read, write=False)
        balances: dict[int, dict[str, tuple[Decimal, Decimal]]] = {}
        for snapshot_id, label, total, available in balance_rows:
            balances.setdefault(snapshot_id, {})[label] = (_amount_of(total), _amount_of(available))
        return [
            Snapshot(
                id=row.id,
                taken_at=_time_of(row.taken_at),
                total_usd=_amount_of(row.total_usd),
                available_margin_usd=_amount_of(row.available_margin_usd),
                complete=bool(row.complete),
                balances=balances.get(row.id, {}),
                failed=tuple(json.loads(row.failed)),
            )
            for row in rows
        ]

    def flows(self, since: datetime | None = None, until: datetime | None = None) -> list[Flow]:
        """The flows recorded in ``[since, until]``, oldest first."""
        where = _window(_FLOWS.c.at, since, until)

        def read(connection: Connection) -> Sequence[sa.Row[Any]]:
            return connection.execute(
                sa.select(_FLOWS).where(*where).order_by(_FLOWS.c.at, _FLOWS.c.id)
            ).all()

        rows = self._run(read, write=False)
        return [
            Flow(id=row.id, at=_time_of(row.at), amount_usd=_amount_of(row.amount_usd), note=row.note)
            for row in rows
        ]

    def drawdown(
        self,
        since: datetime | None = None,
        baseline: Decimal | int | str | None = None,
        include_incomplete: bool = False,
    ) -> Drawdown:
        """Change against the baseline and drawdown from the high-water mark, net of flows.

        The baseline is the first complete snapshot taken at or after ``since``, unless
        ``baseline=`` (starting capital, USD) is given: then it stands at ``since`` (or at the
        first snapshot). Incomplete snapshots are left out unless ``include_incomplete``.
        Nothing to compare is a :class:`~bastion_balance.HistoryError`.
        """
        start = None if since is None else _utc(since, "since")
        capital = None if baseline is None else _money(baseline, "baseline")
        snapshots = self.snapshots(start)
        flows = self.flows(start)
        return compute_drawdown(
            snapshots, flows, since=start, baseline=capital, include_incomplete=include_incomplete
        )

    def to_dataframe(self, since: datetime | None = None, until: datetime | None = None) -> Any:  # noqa: ANN401  # pandas is optional
        """The snapshots as a pandas DataFrame, one row each (extra ``pandas``).

        Columns ``id``, ``taken_at`` (aware UTC), ``total_usd`` and ``available_margin_usd``
        (object dtype: exact Decimals), ``complete``, ``failed``.
        """
        try:
            pandas = importlib.import_module("pandas")
        except ImportError as exc:
            msg = "History.to_dataframe() needs pandas: pip install 'bastion-balance[pandas]'"
            raise ImportError(msg) from exc
        rows = self.snapshots(since, until)
        return pandas.DataFrame(
            {
                "id": pandas.Series([s.id for s in rows], dtype="int64"),
                "taken_at": pandas.to_datetime([s.taken_at for s in rows], utc=True),
                "total_usd": pandas.Series([s.total_usd for s in rows], dtype=object),
                "available_margin_usd": pandas.Series([s.available_margin_usd for s in rows], dtype=object),
                "complete": pandas.Series([s.complete for s in rows], dtype=bool),
                "failed": pandas.Series([s.failed for s in rows], dtype=object),
            }
        )


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None  # noqa: S101  # an INSERT of one row always reports its key
    return int(key[0])


def _window(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:  # noqa: ANN401
    where = []
    if since is not None:
        where.append(column >= _time_text(_utc(since, "since")))
    if until is not None:
        where.append(column <= _time_text(_utc(until, "until")))
    return where


def _migrate(connection: Connection) -> None:
    row = connection.execute(sa.select(_META.c.value).where(_META.c.key == "schema_version")).first()
    if row is None:
        connection.execute(_META.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        return
    found = int(row.value)
    if found > SCHEMA_VERSION:
        msg = (
            f"the history database has schema version {found}, newer than this bastion_balance "
            f"understands ({SCHEMA_VERSION}): upgrade bastion-balance"
        )
        raise HistoryError(msg)
    for version in range(found, SCHEMA_VERSION):
        _MIGRATIONS[version](connection)
    if found != SCHEMA_VERSION:
        connection.execute(
            _META.update().where(_META.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
        )


# --- the arithmetic ----------------------------------------------------------------------------


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    if denominator <= 0:
        return None
    return _RATIO_CONTEXT.divide(numerator, denominator) if numerator else _ZERO


def compute_drawdown(
    snapshots: Sequence[Snapshot],
    flows: Sequence[Flow],
    *,
    since: datetime | None = None,
    baseline: Decimal | None = None,
    include_incomplete: bool = False,
) -> Drawdown:
    """The drawdown of ``snapshots`` (oldest first, all taken at or after ``since``).

    Definitions (docs/history.md, 'Definitions'): the baseline is ``baseline`` at ``since`` (or
    at the first used snapshot), else the first complete snapshot. A flow counts when
    ``start < flow.at <= snapshot.taken_at``; a snapshot's equity is its total minus the flows
    that count for it. The peak is the highest equity, baseline included, reached first; the
    drawdown at a point is the peak so far minus its equity.
    """
    used = [s for s in snapshots if include_incomplete or s.complete]
    if baseline is None:
        first = next((i for i, s in enumerate(snapshots) if s.complete), None)
        if first is None:
            where = "" if since is None else f" since {since.isoformat()}"
            what = "snapshot" if not snapshots else "complete snapshot (every venue answered)"
            msg = f"nothing recorded yet: no {what}{where} to be the baseline"
            if snapshots:
                msg += "; pass baseline= (starting capital)"
            raise HistoryError(msg)
        anchor = snapshots[first]
        start, base = anchor.taken_at, anchor.total_usd
        series = [s for s in snapshots[first + 1 :] if include_incomplete or s.complete]
        counted = 1 + len(series)
        left_out = sum(1 for s in snapshots[first + 1 :] if not s.complete) if not include_incomplete else 0
    else:
        if not used:
            where = "" if since is None else f" since {since.isoformat()}"
            what = "snapshot" if not snapshots else "complete snapshot (every venue answered)"
            msg = f"nothing recorded yet: no {what}{where} to compare with the baseline"
            raise HistoryError(msg)
        start = since if since is not None else used[0].taken_at
        base = baseline
        series = used
        counted = len(series)
        left_out = len(snapshots) - len(used)
    pending = sorted((f for f in flows if f.at > start), key=lambda f: f.at)
    net, index = _ZERO, 0
    equity: list[tuple[datetime, Decimal]] = [(start, base)]
    for snapshot in series:
        while index < len(pending) and pending[index].at <= snapshot.taken_at:
            net = _EXACT.add(net, pending[index].amount_usd)
            index += 1
        equity.append((snapshot.taken_at, _EXACT.subtract(snapshot.total_usd, net)))
    peak_at, peak = equity[0]
    max_usd, max_ratio = _ZERO, _ratio(_ZERO, peak)
    for at, value in equity[1:]:
        if value > peak:
            peak_at, peak = at, value
        fall = _EXACT.subtract(peak, value)
        max_usd = max(max_usd, fall)
        ratio = _ratio(fall, peak)
        if ratio is not None and (max_ratio is None or ratio > max_ratio):
            max_ratio = ratio
    current_at, current = equity[-1]
    change = _EXACT.subtract(current, base)
    fall = _EXACT.subtract(peak, current)
    return Drawdown(
        baseline_usd=base,
        baseline_at=start,
        current_usd=current,
        current_at=current_at,
        current_total_usd=series[-1].total_usd if series else base,
        change_usd=change,
        change_ratio=_ratio(change, base),
        peak_usd=peak,
        peak_at=peak_at,
        drawdown_usd=fall,
        drawdown_ratio=_ratio(fall, peak),
        max_drawdown_usd=max_usd,
        max_drawdown_ratio=max_ratio,
        flows_usd=net,
        snapshots=counted,
        left_out=left_out,
        equity=tuple(equity),
    )
