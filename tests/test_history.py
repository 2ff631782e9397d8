"""bb.History on SQLite and (with BASTION_TEST_POSTGRES_URL) PostgreSQL: storage, flows, drawdown,
schema, bad input, several processes at once (docs/history.md)."""

from __future__ import annotations

import importlib
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

import bastion_balance as bb
from bastion_balance import _history
from bastion_balance.testing import FakeProvider

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BIG = Decimal("1234567890123456789012345678901234567.891")  # 40 digits
POSTGRES_URL = os.environ.get("BASTION_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("BASTION_REQUIRE_POSTGRES") == "1"
TABLES = "bastion_snapshot_balances, bastion_snapshots, bastion_flows, bastion_history_meta"


def make_portfolio(
    at: datetime, totals: dict[str, Decimal | str | int], failed: tuple[str, ...] = (), available: str = "0"
) -> bb.Portfolio:
    """A USD portfolio of the given accounts, with ``failed`` labels down."""
    balances = {
        label: bb.Balance(
            label=label,
            exchange="fake",
            currency="USD",
            total=Decimal(total),
            available=Decimal(available),
            fetched_at=at,
        )
        for label, total in totals.items()
    }
    errors = {label: bb.TransportError(f"{label}: down") for label in failed}
    return bb.Portfolio(balances=balances, errors=errors, rates={"USD": Decimal(1)}, fetched_at=at)


def _reset_postgres(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLES} CASCADE")
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend: a SQLite file, or the PostgreSQL test server emptied."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.sqlite3'}"
        return
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("BASTION_REQUIRE_POSTGRES=1 but BASTION_TEST_POSTGRES_URL is not set")
        pytest.skip("BASTION_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
    _reset_postgres(POSTGRES_URL)
    yield POSTGRES_URL
    _reset_postgres(POSTGRES_URL)


@pytest.fixture
def history(url: str) -> Iterator[bb.History]:
    with bb.History(url) as opened:
        yield opened


class TestStorage:
    def test_round_trip_keeps_every_digit(self, history: bb.History) -> None:
        """40-digit amounts come back digit for digit, with their exponent, from every backend."""
        odd = Decimal("-0.0000000000000000000000000000000000000001")
        recorded = history.record(make_portfolio(T0, {"a": BIG, "b": odd}, available="12.3400"))
        (snapshot,) = history.snapshots()
        assert snapshot == recorded
        exact = Decimal("1234567890123456789012345678901234567.8909999999999999999999999999999999999999")
        assert str(snapshot.total_usd) == str(exact) == str(recorded.total_usd)  # 80 digits, none rounded
        assert snapshot.balances == {"a": (BIG, Decimal("12.3400")), "b": (odd, Decimal("12.3400"))}
        assert str(snapshot.balances["a"][1]) == "12.3400"
        assert str(snapshot.balances["b"][0]) == str(odd)
        assert snapshot.available_margin_usd == Decimal("24.6800")
        assert snapshot.taken_at == T0 and snapshot.taken_at.tzinfo is UTC
        assert snapshot.complete and snapshot.failed == ()
        assert list(snapshot.balances) == ["a", "b"]

    def test_incomplete_and_unvalued(self, history: bb.History) -> None:
        """Failed labels, and balances with no rate, are left out of the totals and listed as failed."""
        at = T0
        euro = bb.Balance(
            label="eu", exchange="x", currency="EUR", total=Decimal(5), available=Decimal(5), fetched_at=at
        )
        portfolio = bb.aggregate([FakeProvider(label="a", total=Decimal(7)), FakeProvider(label="eu")])
        assert portfolio.complete
        missing = make_portfolio(at, {"a": "7"}, failed=("down",))
        mixed = bb.Portfolio(
            balances={**missing.balances, "eu": euro},
            errors={**missing.errors, "eu": bb.MissingRateError("no EUR rate", currency="EUR")},
            rates={"USD": Decimal(1)},
            fetched_at=at,
        )
        snapshot = history.record(mixed)
        assert snapshot.complete is False
        assert snapshot.failed == ("down", "eu")
        assert snapshot.balances == {"a": (Decimal(7), Decimal(0))}
        assert history.snapshots() == [snapshot]
        nothing = history.record(make_portfolio(at, {}, failed=("x",)))  # every venue down
        assert (nothing.balances, nothing.total_usd, nothing.failed) == ({}, 0, ("x",))
        assert history.snapshots()[-1] == nothing
        assert history.record(portfolio).balances == {
            "a": (Decimal(7), Decimal(0)),
            "eu": (Decimal(0), Decimal(0)),
        }

    def test_order_window_and_ties(self, history: bb.History) -> None:
        """Oldest first whatever the recording order; ties in recording order; since/until inclusive."""
        later = history.record(make_portfolio(T0 + timedelta(hours=2), {"a": 3}))
        first = history.record(make_portfolio(T0, {"a": 1}))
        tie = history.record(make_portfolio(T0 + timedelta(hours=2), {"a": 4}))
        assert [s.id for s in history.snapshots()] == [first.id, later.id, tie.id]
        assert later.id < tie.id
        assert history.snapshots(since=T0 + timedelta(hours=2)) == [later, tie]
        assert history.snapshots(until=T0 + timedelta(hours=1)) == [first]
        assert history.snapshots(since=T0 + timedelta(hours=3)) == []
        # other offsets are converted to UTC
        plus_two = timezone(timedelta(hours=2))
        assert history.snapshots(since=datetime(2024, 5, 1, 16, 0, tzinfo=plus_two)) == [later, tie]

    def test_flows(self, history: bb.History) -> None:
        """Deposits and withdrawals: Decimal, int or decimal string; exact; oldest first."""
        out = history.record_flow(
            "-250.000000000000000000000000000000000001", T0 + timedelta(hours=1), "rent"
        )
        into = history.record_flow(Decimal(1000), T0, "funding")
        count = history.record_flow(5, T0 + timedelta(hours=1))
        assert history.flows() == [into, out, count]
        assert out.amount_usd == Decimal("-250.000000000000000000000000000000000001")
        assert out.note == "rent" and count.note == ""
        assert history.flows(since=T0 + timedelta(minutes=1)) == [out, count]
        assert history.flows(until=T0) == [into]
        before = datetime.now(UTC)
        now = history.record_flow(Decimal("1"))
        assert before <= now.at <= datetime.now(UTC) and now.at.tzinfo is UTC

    def test_reopen_keeps_data_and_version(self, url: str) -> None:
        """The schema is made once, with its version row; a second object reads what the first wrote."""
        import sqlalchemy as sa

        with bb.History(url) as first:
            first.record(make_portfolio(T0, {"a": 1}))
        with bb.History(url) as second:
            assert [s.total_usd for s in second.snapshots()] == [Decimal(1)]
            second.record(make_portfolio(T0, {"a": 2}))
        engine = sa.create_engine(url)
        try:
            with engine.connect() as connection:
                rows = connection.exec_driver_sql("SELECT key, value FROM bastion_history_meta").all()
                kinds = connection.exec_driver_sql("SELECT total_usd FROM bastion_snapshots").all()
        finally:
            engine.dispose()
        assert [tuple(r) for r in rows] == [("schema_version", "1")]
        assert sorted(r[0] for r in kinds) == ["1", "2"]  # decimal text, not a number type

    def test_pickle_and_dicts(self, history: bb.History) -> None:
        """Snapshots pickle; to_dict() output is exact JSON through bb.dumps."""
        snapshot = history.record(make_portfolio(T0, {"a": BIG}))
        assert pickle.loads(pickle.dumps(snapshot)) == snapshot
        data = json.loads(bb.dumps(snapshot.to_dict()), parse_float=Decimal)
        assert data["total_usd"] == BIG and data["balances"]["a"]["total_usd"] == BIG
        assert data["taken_at"] == "2024-05-01T12:00:00+00:00"
        flow = history.record_flow(Decimal("0.1"), T0, "x")
        assert json.loads(bb.dumps(flow.to_dict()), parse_float=Decimal)["amount_usd"] == Decimal("0.1")

    def test_threads_share_one_object(self, history: bb.History) -> None:
        """Threads recording through one History lose nothing."""

        def work(n: int) -> None:
            for i in range(10):
                history.record(make_portfolio(T0, {f"t{n}": i}))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        got = sorted((label, int(v[0])) for s in history.snapshots() for label, v in s.balances.items())
        assert got == sorted((f"t{n}", i) for n in range(4) for i in range(10))


class TestDrawdown:
    def test_worked_example(self, history: bb.History) -> None:
        """The example of docs/history.md, 'A worked example', figure for figure."""
        hour = timedelta(hours=1)
        history.record(make_portfolio(T0, {"kraken": 6000, "bybit": 4000}))  # 10,000
        history.record(make_portfolio(T0 + hour, {"kraken": 6500, "bybit": 4500}))  # 11,000
        history.record_flow(Decimal(5000), T0 + 2 * hour, "deposit")
        history.record(make_portfolio(T0 + 3 * hour, {"kraken": 6000}, failed=("bybit",)))  # venue down
        history.record(make_portfolio(T0 + 4 * hour, {"kraken": 10000, "bybit": 5900}))  # 15,900
        history.record_flow(Decimal(-2000), T0 + 5 * hour, "withdrawal")
        history.record(make_portfolio(T0 + 6 * hour, {"kraken": 9000, "bybit": 5000}))  # 14,000
        d = history.drawdown()
        assert (d.baseline_usd, d.baseline_at) == (Decimal(10000), T0)
        assert (d.current_usd, d.current_at, d.current_total_usd) == (
            Decimal(11000),
            T0 + 6 * hour,
            Decimal(14000),
        )
        assert d.flows_usd == Decimal(3000)
        assert (d.change_usd, d.change_ratio) == (Decimal(1000), Decimal("0.1"))
        assert (d.peak_usd, d.peak_at) == (Decimal(11000), T0 + hour)
        assert (d.drawdown_usd, d.drawdown_ratio) == (Decimal(0), Decimal(0))
        assert d.max_drawdown_usd == Decimal(100)
        assert d.max_drawdown_ratio == Decimal("0.009090909090909090909090909091")  # 100/11000, 28 digits
        assert (d.snapshots, d.left_out) == (4, 1)
        assert d.equity == (
            (T0, Decimal(10000)),
            (T0 + hour, Decimal(11000)),
            (T0 + 4 * hour, Decimal(10900)),
            (T0 + 6 * hour, Decimal(11000)),
        )
        # the incomplete snapshot, when asked for, is a (false) fall to 1,000 net of the deposit
        full = history.drawdown(include_incomplete=True)
        assert (full.snapshots, full.left_out) == (5, 0)
        assert full.max_drawdown_usd == Decimal(10000)
        # starting capital given: it stands at the first snapshot
        given = history.drawdown(baseline=Decimal(12000))
        assert (given.baseline_usd, given.baseline_at, given.change_usd) == (
            Decimal(12000),
            T0,
            Decimal(-1000),
        )
        assert given.peak_usd == Decimal(12000) and given.peak_at == T0
        assert given.max_drawdown_usd == Decimal(2000) and given.snapshots == 4
        assert given.change_ratio == Decimal("-0.08333333333333333333333333333")
        # since: the baseline is the first complete snapshot from then on, flows before it ignored
        late = history.drawdown(since=T0 + 2 * hour)
        assert (late.baseline_usd, late.baseline_at) == (Decimal(15900), T0 + 4 * hour)
        assert (late.current_usd, late.flows_usd, late.change_usd) == (
            Decimal(16000),
            Decimal(-2000),
            Decimal(100),
        )
        data = json.loads(bb.dumps(d.to_dict()), parse_float=Decimal)
        assert data["max_drawdown_ratio"] == d.max_drawdown_ratio
        assert data["equity"][1] == ["2024-05-01T13:00:00+00:00", Decimal(11000)]
        assert "equity" not in repr(d)

    def test_nothing_to_compare(self, history: bb.History) -> None:
        """No snapshot, or no complete one, is a HistoryError saying so."""
        with pytest.raises(bb.HistoryError, match="nothing recorded yet: no snapshot to be the baseline"):
            history.drawdown()
        with pytest.raises(bb.HistoryError, match="no snapshot to compare"):
            history.drawdown(baseline=Decimal(1))
        history.record(make_portfolio(T0, {"a": 1}, failed=("b",)))
        with pytest.raises(bb.HistoryError, match=r"no complete snapshot .*pass baseline="):
            history.drawdown(include_incomplete=True)
        with pytest.raises(bb.HistoryError, match="no complete snapshot"):
            history.drawdown(baseline="100")
        only = history.drawdown(baseline="100", include_incomplete=True)
        assert (only.change_usd, only.snapshots, only.baseline_at) == (Decimal(-99), 1, T0)
        with pytest.raises(bb.HistoryError, match="since 2024-05-02T00:00:00"):
            history.drawdown(since=datetime(2024, 5, 2, tzinfo=UTC))
        assert isinstance(bb.HistoryError("x"), bb.BastionBalanceError)

    def test_single_snapshot_and_ratios_without_denominator(self, history: bb.History) -> None:
        """One snapshot is its own baseline; ratios are None when the baseline or peak is not positive."""
        history.record(make_portfolio(T0, {"a": 0}))
        d = history.drawdown()
        assert (d.change_usd, d.change_ratio, d.drawdown_ratio, d.max_drawdown_ratio) == (0, None, None, None)
        assert d.current_total_usd == 0 and d.snapshots == 1
        history.record(make_portfolio(T0 + timedelta(hours=1), {"a": 50}))
        d = history.drawdown()
        assert (d.change_usd, d.change_ratio, d.peak_usd, d.max_drawdown_ratio) == (50, None, 50, 0)
        with_since = history.drawdown(since=T0 - timedelta(days=1), baseline=0)
        assert with_since.baseline_at == T0 - timedelta(days=1) and with_since.change_usd == 50


class TestBadInput:
    def test_money_refuses_floats_and_garbage(self, history: bb.History) -> None:
        """Floats are not money; NaN, booleans and text that is no number are refused too."""
        with pytest.raises(bb.ConfigurationError, match=r"float 1\.5.*Decimal\('1\.5'\)"):
            history.record_flow(1.5)  # type: ignore[arg-type]
        for bad in (True, Decimal("NaN"), "ten", None, [1]):
            with pytest.raises(bb.ConfigurationError, match="is not an amount"):
                history.record_flow(bad)  # type: ignore[arg-type]
        with pytest.raises(bb.ConfigurationError, match="float"):
            history.drawdown(baseline=1000.0)  # type: ignore[arg-type]
        assert history.flows() == []

    def test_times_must_be_aware(self, history: bb.History) -> None:
        """Naive datetimes and other types are refused, saying what to pass."""
        naive = datetime(2024, 5, 1)  # noqa: DTZ001
        with pytest.raises(bb.ConfigurationError, match="naive datetime"):
            history.record_flow(Decimal(1), naive)
        with pytest.raises(bb.ConfigurationError, match=r"since=.*naive"):
            history.snapshots(since=naive)
        with pytest.raises(bb.ConfigurationError, match="until must be a timezone-aware datetime"):
            history.flows(until="2024-05-01")  # type: ignore[arg-type]
        with pytest.raises(bb.ConfigurationError, match="naive"):
            history.drawdown(since=naive)

    def test_other_arguments(self, history: bb.History) -> None:
        with pytest.raises(bb.ConfigurationError, match=r"takes a bb\.Portfolio"):
            history.record({"total_usd": 1})  # type: ignore[arg-type]
        with pytest.raises(bb.ConfigurationError, match="note must be a str"):
            history.record_flow(Decimal(1), T0, note=5)  # type: ignore[arg-type]

    def test_closed(self, url: str) -> None:
        """close() is idempotent; a closed History says so; `with` closes it."""
        with bb.History(url) as history:
            history.record(make_portfolio(T0, {"a": 1}))
        with pytest.raises(bb.HistoryError, match="is closed"):
            history.snapshots()
        history.close()


class TestUrls:
    def test_default_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """XDG_DATA_HOME (absolute) or ~/.local/share; History() makes the directory."""
        assert _history.default_path({"XDG_DATA_HOME": "/x"}) == Path("/x/bastion-balance/history.sqlite3")
        assert _history.default_path({"XDG_DATA_HOME": "rel", "HOME": "/h"}) == Path(
            "/h/.local/share/bastion-balance/history.sqlite3"
        )
        assert _history.default_path({}) == Path.home() / ".local/share/bastion-balance/history.sqlite3"
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        assert _history.default_path() == tmp_path / "data/bastion-balance/history.sqlite3"
        with bb.History() as history:
            history.record(make_portfolio(T0, {"a": 1}))
            assert history.url == f"sqlite+pysqlite:///{tmp_path}/data/bastion-balance/history.sqlite3"
        assert (tmp_path / "data/bastion-balance/history.sqlite3").is_file()
        assert (tmp_path / "data/bastion-balance").stat().st_mode & 0o777 == 0o700

    def test_path_and_memory(self, tmp_path: Path) -> None:
        with bb.History(tmp_path / "h.db") as history:
            history.record(make_portfolio(T0, {"a": 1}))
        assert (tmp_path / "h.db").is_file()
        with bb.History("sqlite://") as memory:
            assert memory.snapshots() == []

    def test_bad_urls(self) -> None:
        with pytest.raises(bb.ConfigurationError, match="is not a database URL"):
            bb.History("not a url")
        with pytest.raises(bb.ConfigurationError, match="no SQLAlchemy dialect for 'nosuchdb'"):
            bb.History("nosuchdb://x/y")
        with pytest.raises(bb.ConfigurationError, match="takes a SQLAlchemy URL, a path or None"):
            bb.History(5)  # type: ignore[arg-type]

    def test_password_never_shown(self) -> None:
        """repr and url hide the password; plain postgresql:// means psycopg 3."""
        history = bb.History("postgresql://bot:s3cret@127.0.0.1:9/db")
        try:
            assert "s3cret" not in repr(history) and "***" in history.url
            assert history.url.startswith("postgresql+psycopg://")
            with pytest.raises(bb.HistoryError) as info:
                history.snapshots()
            assert "s3cret" not in str(info.value)
            assert str(info.value).startswith(
                "history database postgresql+psycopg://bot:***@127.0.0.1:9/db: "
            )
            assert "\n" not in str(info.value)
        finally:
            history.close()

    def test_unopenable_file(self, tmp_path: Path) -> None:
        with bb.History(tmp_path / "missing-dir" / "h.db") as history:
            with pytest.raises(bb.HistoryError, match="unable to open database file"):
                history.record(make_portfolio(T0, {"a": 1}))

    def test_missing_driver_names_the_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "psycopg", None)
        with pytest.raises(ImportError, match=r"bastion-balance\[history\]"):
            bb.History("postgresql+psycopg://u@localhost/db")

    def test_missing_sqlalchemy_names_the_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "sqlalchemy", None)
        monkeypatch.delitem(sys.modules, "bastion_balance._history")
        with pytest.raises(ImportError, match=r"pip install 'bastion-balance\[history\]'"):
            importlib.import_module("bastion_balance._history")

    def test_import_stays_cheap(self) -> None:
        """import bastion_balance does not import SQLAlchemy; bb.History does."""
        code = (
            "import sys, bastion_balance as bb\n"
            "print('sqlalchemy' in sys.modules)\n"
            "bb.History\n"
            "print('sqlalchemy' in sys.modules)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.split() == ["False", "True"]


class TestLocked:
    """A SQLite file locked by another writer longer than the busy timeout: tried again, then given up."""

    def _locked(self, path: Path) -> sqlite3.Connection:
        with bb.History(path) as history:
            history.record(make_portfolio(T0, {"a": 1}))
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        return holder

    def test_tried_again(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_history, "BUSY_TIMEOUT_S", 0.05)
        holder = self._locked(tmp_path / "h.db")
        release = threading.Timer(0.5, holder.execute, ["ROLLBACK"])
        release.start()
        try:
            with bb.History(tmp_path / "h.db") as history:
                began = time.monotonic()
                history.record(make_portfolio(T0, {"a": 2}))
                assert time.monotonic() - began >= 0.4
                assert [s.total_usd for s in history.snapshots()] == [1, 2]
        finally:
            release.join()
            holder.close()

    def test_given_up(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_history, "BUSY_TIMEOUT_S", 0.05)
        monkeypatch.setattr(_history, "RETRY_S", 0.2)
        with bb.History(tmp_path / "h.db") as history:
            history.record(make_portfolio(T0, {"a": 1}))  # schema made before the lock
            holder = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            try:
                assert len(history.snapshots()) == 1  # readers are not blocked (write-ahead log)
                with pytest.raises(bb.HistoryError, match="database is locked"):
                    history.record_flow(Decimal(1), T0)
            finally:
                holder.close()


class TestSchema:
    def test_newer_schema_is_refused(self, url: str) -> None:
        with bb.History(url) as history:
            history.record(make_portfolio(T0, {"a": 1}))
        _execute(url, "UPDATE bastion_history_meta SET value = '99' WHERE key = 'schema_version'")
        with bb.History(url) as history:
            with pytest.raises(bb.HistoryError, match=r"schema version 99, newer than .* understands \(1\)"):
                history.snapshots()

    def test_migrations_run_in_order(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """An older database is brought up to date on first use, step by step, and its row updated."""
        with bb.History(url) as history:
            history.record(make_portfolio(T0, {"a": 1}))
        ran: list[int] = []
        monkeypatch.setattr(_history, "SCHEMA_VERSION", 3)
        monkeypatch.setattr(_history, "_MIGRATIONS", {1: lambda c: ran.append(1), 2: lambda c: ran.append(2)})
        with bb.History(url) as history:
            assert len(history.snapshots()) == 1
            assert len(history.snapshots()) == 1  # once per object
        with bb.History(url) as history:
            history.snapshots()
        assert ran == [1, 2]
        assert _execute(url, "SELECT value FROM bastion_history_meta") == [("3",)]

    def test_corrupt_amount(self, url: str) -> None:
        with bb.History(url) as history:
            history.record(make_portfolio(T0, {"a": 1}))
            for text in ("abc", "NaN"):
                _execute(url, f"UPDATE bastion_snapshots SET total_usd = '{text}'")
                with pytest.raises(bb.HistoryError, match=f"holds '{text}' where an amount should be"):
                    history.snapshots()


def _execute(url: str, sql: str) -> list[tuple[object, ...]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.exec_driver_sql(sql)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


class TestDataFrame:
    def test_to_dataframe(self, history: bb.History) -> None:
        pandas = pytest.importorskip("pandas")
        history.record(make_portfolio(T0, {"a": BIG}))
        history.record(make_portfolio(T0 + timedelta(hours=1), {"a": 2}, failed=("b",)))
        frame = history.to_dataframe()
        assert list(frame.columns) == [
            "id",
            "taken_at",
            "total_usd",
            "available_margin_usd",
            "complete",
            "failed",
        ]
        assert frame["total_usd"].dtype == object and frame["available_margin_usd"].dtype == object
        assert frame["total_usd"].tolist() == [BIG, Decimal(2)]
        assert isinstance(frame["total_usd"][0], Decimal)
        assert frame["taken_at"][0] == pandas.Timestamp("2024-05-01T12:00:00Z")
        assert frame["complete"].tolist() == [True, False]
        assert frame["failed"].tolist() == [(), ("b",)]
        assert len(history.to_dataframe(since=T0 + timedelta(minutes=1))) == 1

    def test_without_pandas(self, history: bb.History, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "pandas", None)
        with pytest.raises(ImportError, match=r"pip install 'bastion-balance\[pandas\]'"):
            history.to_dataframe()


#: One recording process: waits for the start time, records ``count`` snapshots and one flow.
WRITER = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from decimal import Decimal
    import bastion_balance as bb

    url, name, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    while time.time() < start:
        time.sleep(0.001)
    with bb.History(url) as history:
        for i in range(count):
            at = datetime.now(UTC)
            balance = bb.Balance(label=name, exchange="fake", currency="USD", total=Decimal(i),
                                 available=Decimal(i), fetched_at=at)
            history.record(bb.Portfolio(balances={name: balance}, rates={"USD": Decimal(1)}, fetched_at=at))
        history.record_flow(Decimal(1), note=name)
    """
)


def test_four_processes_lose_nothing(url: str) -> None:
    """4 processes recording into one fresh database at once (schema made concurrently too)."""
    processes, count = 4, 50
    start = time.time() + 1.5  # all past their imports, then all at once
    began = time.monotonic()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, f"p{n}", str(count), str(start)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    errors = [child.communicate(timeout=120)[1] for child in children]
    elapsed = time.monotonic() - began
    assert [child.returncode for child in children] == [0] * processes, errors
    with bb.History(url) as history:
        snapshots = history.snapshots()
        flows = history.flows()
    got = sorted((label, int(total)) for s in snapshots for label, (total, _) in s.balances.items())
    assert got == sorted((f"p{n}", i) for n in range(processes) for i in range(count))
    assert len({s.id for s in snapshots}) == processes * count
    assert sorted(f.note for f in flows) == [f"p{n}" for n in range(processes)]
    print(
        f"{processes} processes x {count} records into {url.split(':', maxsplit=1)[0]}: {elapsed:.2f} s wall"
    )
