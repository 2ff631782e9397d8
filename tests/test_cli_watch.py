"""``bastion-balance --watch``: a portfolio each round until Ctrl-C, with ages and stale marks.

The watch's clock and sleep are faked (cli.WATCH_TIME): rounds follow each other at once, and
the fake sleep is where a test changes the venue between rounds or presses Ctrl-C.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from bastion_balance import cli
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    LoopbackServer,
    SimulatedKraken,
    Simulator,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def rounds(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[float]]:
    """``rounds(n, between=...)``: a fake clock, and a fake sleep that advances it, calls
    ``between(i)`` after round i and presses Ctrl-C after round n. Returns the sleeps asked."""

    def install(count: int, between: Callable[[int], object] = lambda _: None) -> list[float]:
        now = [1000.0]
        asked: list[float] = []

        def sleep(seconds: float) -> None:
            asked.append(seconds)
            if len(asked) >= count:
                raise KeyboardInterrupt
            between(len(asked))
            now[0] += seconds

        monkeypatch.setitem(cli.WATCH_TIME, "clock", lambda: now[0])
        monkeypatch.setitem(cli.WATCH_TIME, "sleep", sleep)
        return asked

    return install


def run(
    *argv: str, out: io.StringIO | None = None, environ: dict[str, str] | None = None
) -> tuple[int, str, str]:
    out, err = out or io.StringIO(), io.StringIO()
    code = cli.run(list(argv), environ=environ or {}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_plain_rounds_until_ctrl_c(rounds: Callable[..., list[float]]) -> None:
    """Not a terminal: each round printed in turn (heading, table with ages, summary); Ctrl-C
    ends the watch with exit 130 and one line."""
    asked = rounds(3)
    code, out, err = run("demo", "--watch", "2s", "--account", "kraken")
    assert code == 130
    assert err.splitlines()[-1] == "bastion-balance: interrupted"
    assert asked == [2.0, 2.0, 2.0]
    headings = [line for line in out.splitlines() if line.startswith("round ")]
    assert [line.split()[:2] for line in headings] == [["round", "1"], ["round", "2"], ["round", "3"]]
    assert all(line.endswith("every 2s; Ctrl-C to stop") for line in headings)
    tables = out.split("\n\n")
    assert tables[0].splitlines()[1].split()[-1] == "age"
    assert all("1 account, complete" in table for table in tables[:3])


def test_json_lines(rounds: Callable[..., list[float]]) -> None:
    """--json: one JSON document per line, a line per round."""
    rounds(2)
    code, out, _ = run("demo", "--watch", "500ms", "--json", "--account", "bybit")
    assert code == 130
    documents = [json.loads(line, parse_float=Decimal) for line in out.splitlines()]
    assert len(documents) == 2 and all(doc["complete"] for doc in documents)
    rounds(2)
    _, out, _ = run("demo", "--watch", "1m", "--bastion", "--account", "bybit")
    assert [set(json.loads(line)) for line in out.splitlines()] == [
        {"total_usd", "available_margin_usd", "exchanges"}
    ] * 2


def test_redrawn_in_place_on_a_terminal(
    rounds: Callable[..., list[float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A terminal: rich Live redraws one table; the cursor goes back up between rounds."""
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "150")
    rounds(3)
    code, out, _ = run("demo", "--watch", "1h", out=FakeTTY())
    assert code == 130
    screen = ANSI.sub("", out)
    assert "round 3 at" in screen and "┃ account" in screen and "┃ age" in screen
    assert "\x1b[1A" in out or "\x1b[2K" in out  # rich moves up and clears to redraw


@pytest.fixture
def kraken() -> Iterator[tuple[LoopbackServer, SimulatedKraken]]:
    venue = SimulatedKraken(host="127.0.0.1")
    with LoopbackServer(Simulator(venue)) as server:
        yield server, venue


def test_a_failed_account_stays_stale(
    kraken: tuple[LoopbackServer, SimulatedKraken], tmp_path: Path, rounds: Callable[..., list[float]]
) -> None:
    """The venue starts refusing the key after round 1: the account keeps its last good balance,
    marked stale with its age, and the reason is printed each round on stderr."""
    server, venue = kraken
    config = tmp_path / "config.toml"
    config.write_text(
        f'[[account]]\nvenue = "kraken"\nlabel = "main"\napi_key = "{KRAKEN_TEST_KEY}"\n'
        f'api_secret = "{KRAKEN_TEST_SECRET}"\nbase_url = "{server.url}"\n'
    )
    config.chmod(0o600)
    rounds(3, between=lambda _: venue.keys.clear())
    code, out, err = run("--config", str(config), "--watch", "30s", "--plain")
    assert code == 130
    tables = out.split("\n\n")
    first, last = tables[0].splitlines(), tables[2].splitlines()
    assert first[3].split()[-1] == "0s" and "stale" not in tables[0]
    row = next(line for line in last if line.startswith("main"))
    assert row.endswith("stale 1m00s")  # two rounds of 30 s since the last good answer
    assert "382.2032" in row  # the last good figures, still shown
    assert last[-1] == "partial: 1 of 1 accounts counted, 1 with errors"
    assert "; 1 stale: main" in last[-2]
    assert err.count("bastion-balance: main failed: AuthenticationError") == 2
    assert KRAKEN_TEST_SECRET not in out + err


def test_the_real_watcher_is_made_with_the_cli_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without fakes, ``_watcher`` builds a bb.Watcher with the command's interval and timeout."""
    from bastion_balance.testing import FakeProvider

    made = cli._watcher([FakeProvider(label="a")], every=5.0, rates=None, timeout=3.0, client=None)
    with made as watcher:
        assert watcher.paces == {"a": 5.0}


def test_a_watch_that_ends_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the watcher stop by itself, the command ends with exit 0 and nothing more."""
    import contextlib

    monkeypatch.setattr(cli, "_watcher", lambda *args, **kwargs: contextlib.nullcontext(iter([])))
    assert run("demo", "--watch", "1s") == (
        0,
        "",
        "demo: simulated venues (signatures verified as each venue does); no keys, no network\n",
    )
