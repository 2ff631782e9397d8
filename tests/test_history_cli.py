"""bastion-balance --record and bastion-balance history (docs/history.md, 'Command line')."""

from __future__ import annotations

import decimal
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import bastion_balance as bb
from bastion_balance import _history_cli, cli
from bastion_balance.testing import KRAKEN_TEST_SECRET
from tests.test_history import BIG, make_portfolio

NOW = datetime.now(UTC).replace(microsecond=0)


def plus(left: Decimal, right: int) -> Decimal:
    """An exact sum (the default context would round a 40-digit one)."""
    with decimal.localcontext(prec=100):
        return left + right


def run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(list(argv), environ=environ or {}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'h.sqlite3'}"


@pytest.fixture
def recorded(url: str) -> str:
    """A history: 10,000 -> 11,000 -> (venue down) -> deposit 5,000 -> 15,900, 40-digit extra account."""
    with bb.History(url) as history:
        history.record(make_portfolio(NOW - timedelta(days=10), {"a": 10000, "big": BIG}))
        history.record(make_portfolio(NOW - timedelta(days=3), {"a": 11000, "big": BIG}))
        history.record(make_portfolio(NOW - timedelta(days=2), {"a": 1}, failed=("big",)))
        history.record_flow(Decimal(5000), NOW - timedelta(days=1), "top-up")
        history.record(make_portfolio(NOW - timedelta(hours=1), {"a": 15900, "big": BIG}))
    return url


class TestRecord:
    def test_demo_refuses_the_real_history(self, tmp_path: Path) -> None:
        """demo --record without --history URL exits 2 and writes nothing."""
        code, _, err = run("demo", "--plain", "--record", environ={"XDG_DATA_HOME": str(tmp_path)})
        assert code == 2
        assert "--record with demo needs --history URL" in err and "Traceback" not in err
        assert not (tmp_path / "bastion-balance").exists()

    def test_demo_into_a_given_history(self, url: str) -> None:
        """demo --history URL records the demo there (--history implies --record)."""
        code, out, err = run("demo", "--json", "--history", url)
        assert code == 0
        printed = json.loads(out, parse_float=Decimal)
        with bb.History(url) as history:
            (snapshot,) = history.snapshots()
        assert snapshot.complete and snapshot.total_usd == printed["total_usd"]
        assert set(snapshot.balances) == set(printed["balances"])
        assert f"recorded snapshot {snapshot.id} (complete) in sqlite" in err

    def test_fetch_records_into_the_default_file(self, tmp_path: Path) -> None:
        """--record after a fetch writes to $XDG_DATA_HOME/...; a venue down is an incomplete snapshot."""
        config = tmp_path / "c.toml"
        config.write_text(
            f'[[account]]\nvenue = "kraken"\napi_key = "k"\napi_secret = "{KRAKEN_TEST_SECRET}"\n'
            'base_url = "http://127.0.0.1:9"\n'
        )
        environ = {"XDG_DATA_HOME": str(tmp_path / "data")}
        code, _, err = run("--config", str(config), "--plain", "--timeout", "2", "--record", environ=environ)
        assert code == 3  # the fetch's own exit code is kept
        assert "(incomplete: kraken failed)" in err
        with bb.History(tmp_path / "data/bastion-balance/history.sqlite3") as history:
            assert [s.failed for s in history.snapshots()] == [("kraken",)]
        code, _, err = run("history", environ=environ)
        assert code == 2 and "no complete snapshot" in err

    def test_record_errors_are_one_line(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        code, _, err = run("demo", "--plain", "--history", "nosuchdb://x")
        assert code == 2 and err.splitlines()[-1].startswith(
            "bastion-balance: --record: History: no SQLAlchemy"
        )
        code, _, err = run("demo", "--plain", "--history", f"sqlite:///{tmp_path}/no/such/dir.db")
        assert code == 2 and "unable to open database file" in err.splitlines()[-1]
        monkeypatch.setitem(sys.modules, "bastion_balance._history", None)
        code, _, err = run("demo", "--plain", "--history", "sqlite://")
        assert code == 2 and err.splitlines()[-1] == (
            "bastion-balance: --record: the history extra is not installed: pip install 'bastion-balance[history]'"
        )

    def test_environment_url(self, url: str) -> None:
        """$BASTION_HISTORY_URL is the real history too: demo still needs --history."""
        code, _, _ = run("demo", "--plain", "--record", environ={"BASTION_HISTORY_URL": url})
        assert code == 2


class TestHistory:
    def test_plain(self, recorded: str) -> None:
        """Snapshots, the drawdown and a chart; every figure whole."""
        code, out, err = run("history", "--url", recorded, "--plain")
        assert (code, err) == (0, "")
        big_total = f"{plus(BIG, 15900):,f}"
        assert big_total in out and f"{plus(BIG, 10000):,f} at" in out
        assert "missing: big" in out and "snapshots (4)" in out
        assert "change        +900.000 (" in out  # 15,900 + BIG - 5,000 deposited against 10,000 + BIG
        assert "1 incomplete left out" in out and "+5,000 at" in out and "top-up" in out
        assert "equity (flow-adjusted, USD)" in out and "|#" in out

    def test_rich_prints_figures_whole(self, recorded: str) -> None:
        """On a terminal: rich tables, figures never cut."""
        pytest.importorskip("rich")

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        out = Terminal()
        code = cli.run(["history", "--url", recorded], environ={}, out=out, err=io.StringIO())
        assert code == 0
        assert f"{plus(BIG, 15900):,f}" in out.getvalue() and "…" not in out.getvalue()
        assert "█" in out.getvalue() and "max drawdown" in out.getvalue()

    def test_not_a_terminal_is_plain(self, recorded: str) -> None:
        """Piped (not a terminal), the history is plain text even without --plain."""
        code, out, _ = run("history", "--url", recorded)
        assert code == 0
        assert "█" not in out and "|#" in out and f"{plus(BIG, 15900):,f}" in out

    def test_json_is_the_api(self, recorded: str) -> None:
        code, out, _ = run(
            "history", "--url", recorded, "--json", "--baseline", "1,000", "--include-incomplete"
        )
        assert code == 0
        data = json.loads(out, parse_float=Decimal)
        with bb.History(recorded) as history:
            expected = history.drawdown(baseline=Decimal(1000), include_incomplete=True)
            assert len(data["snapshots"]) == len(history.snapshots())
        assert data["drawdown"] == json.loads(bb.dumps(expected.to_dict()), parse_float=Decimal)
        assert data["drawdown"]["baseline_usd"] == 1000 and data["flows"][0]["note"] == "top-up"
        assert data["url"] == recorded

    def test_since_limit_and_environment(self, recorded: str) -> None:
        """--since 7d leaves out the first snapshot; --limit lists the last N; $BASTION_HISTORY_URL."""
        environ = {"BASTION_HISTORY_URL": recorded}
        code, out, _ = run("history", "--since", "7d", "--plain", "--limit", "1", environ=environ)
        assert code == 0
        assert "snapshots (last 1 of 3; --limit 0 lists all)" in out
        assert f"{plus(BIG, 11000):,f} at" in out  # the baseline is the first complete one since then
        code, out, _ = run("history", "--until", "2d", "--plain", "--limit", "0", environ=environ)
        assert code == 0 and "snapshots (3)" in out

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--since", "soon"], "'soon' is not a time"),
            (["--baseline", "lots"], "--baseline 'lots' is not an amount"),
            (["--limit", "-1"], "--limit is a count"),
            (["--since", "2099-01-01"], "nothing recorded yet since 2099-01-01T00:00:00+00:00"),
        ],
    )
    def test_bad_arguments(self, recorded: str, argv: list[str], message: str) -> None:
        code, out, err = run("history", "--url", recorded, *argv)
        assert code == 2 and out == ""
        assert message in err and len(err.splitlines()) == 1

    def test_nothing_recorded_yet(self, tmp_path: Path, url: str) -> None:
        """No default file: one line, exit 2, and no file made; an empty database likewise."""
        environ = {"XDG_DATA_HOME": str(tmp_path / "data")}
        code, _, err = run("history", environ=environ)
        assert code == 2 and err.startswith("bastion-balance history: nothing recorded yet: no history at ")
        assert not (tmp_path / "data").exists()
        code, _, err = run("history", "--url", url)
        assert code == 2 and "nothing recorded yet in sqlite" in err and len(err.splitlines()) == 1

    def test_default_file(self, tmp_path: Path) -> None:
        environ = {"XDG_DATA_HOME": str(tmp_path)}
        (tmp_path / "bastion-balance").mkdir()
        with bb.History(tmp_path / "bastion-balance" / "history.sqlite3") as history:
            history.record(make_portfolio(NOW, {"a": 5}))
        code, out, _ = run("history", "--plain", environ=environ)
        assert code == 0 and "baseline" in out

    def test_usage_and_help(self) -> None:
        code, out, err = run("history", "--nope")
        assert code == 2 and out == "" and "unrecognized arguments: --nope" in err and "usage:" in err
        code, out, err = run("history", "--help")
        assert code == 0 and "--include-incomplete" in out and err == ""

    def test_without_the_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "bastion_balance._history", None)
        code, _, err = run("history")
        assert code == 2 and "pip install 'bastion-balance[history]'" in err


class TestParseWhen:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("7d", NOW - timedelta(days=7)),
            ("12h", NOW - timedelta(hours=12)),
            ("30m", NOW - timedelta(minutes=30)),
            ("45s", NOW - timedelta(seconds=45)),
            ("2w", NOW - timedelta(weeks=2)),
            ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
            ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
            ("2024-05-01T12:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ],
    )
    def test_forms(self, text: str, expected: datetime) -> None:
        parsed = _history_cli.parse_when(text, NOW)
        assert parsed == expected and parsed.tzinfo is UTC

    def test_garbage(self) -> None:
        with pytest.raises(bb.ConfigurationError, match=r"pass e\.g\. 7d"):
            _history_cli.parse_when("7 days", NOW)


class TestChart:
    def test_one_point_and_flat(self) -> None:
        lines = _history_cli.chart([(NOW, Decimal(5))])
        assert lines[0] == "5 |#" and lines[-3] == "5 |#"  # flat: full height
        assert lines[-1].strip() == f"{NOW.isoformat(sep=' ')} .. {NOW.isoformat(sep=' ')}"

    def test_buckets_and_scale(self) -> None:
        points = [(NOW + timedelta(minutes=i), Decimal(i)) for i in range(120)]
        lines = _history_cli.chart(points)
        assert lines[0].startswith("119 |") and lines[7].startswith("  1 |")  # the last point of each bucket
        assert lines[8] == "    +" + "-" * 60
        bars = [line[5:].ljust(60) for line in lines[:8]]
        heights = [sum(row[c] == "#" for row in bars) for c in range(60)]
        assert heights == sorted(heights) and heights[0] == 1 and heights[-1] == 8
