"""The command in a real terminal (tmux, its screen captured): every figure whole at 60, 80, 100
and 120 columns, a spinner per account while fetching, plain text when piped, the watch redrawn
in place, and Ctrl-C exiting at once with one line.

The slow venue is a loopback Kraken that sits on every request (it never answers in time).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from bastion_balance.testing import KRAKEN_TEST_KEY, KRAKEN_TEST_SECRET, SimulatedKraken, Simulator
from bastion_balance.testing._loopback import Fault, LoopbackServer

TMUX = shutil.which("tmux")
SCRIPT = Path(sys.executable).with_name("bastion-balance")
# CI installs tmux (.ci/run): there a missing terminal is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    (TMUX is None or not SCRIPT.exists()) and not os.environ.get("CI"),
    reason="needs tmux and the console script",
)


@pytest.fixture
def silent_kraken() -> Iterator[LoopbackServer]:
    with LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1"))) as server:
        server.script(*[Fault.delay(60)] * 10)
        yield server


def tmux(*args: str) -> str:
    assert TMUX is not None
    done = subprocess.run([TMUX, *args], capture_output=True, text=True, timeout=10, check=False)
    return done.stdout


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class Terminal:
    """One tmux session running ``command`` in a ``width`` x ``height`` terminal."""

    def __init__(self, command: str, width: int = 160, height: int = 40) -> None:
        self.name = f"bb-{uuid.uuid4().hex[:8]}"
        # the tmux server may hand down COLUMNS/LINES from whoever started it: the terminal's size rules
        shell = f"unset COLUMNS LINES; {command}; echo EXIT=$?; sleep 60"
        tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), shell)

    def screen(self, *, history: bool = False) -> str:
        """What the terminal shows (``history``: with the lines scrolled off, wrapped lines joined)."""
        extra = ["-S", "-", "-J"] if history else []
        return tmux("capture-pane", "-p", *extra, "-t", self.name)

    def press(self, key: str) -> None:
        tmux("send-keys", "-t", self.name, key)

    def ended(self, timeout: float = 20) -> bool:
        return wait_for(lambda: "EXIT=" in self.screen(history=True), timeout)

    def close(self) -> None:
        tmux("kill-session", "-t", self.name)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_(command: str, width: int = 160, height: int = 40) -> Terminal:
        opened.append(Terminal(command, width, height))
        return opened[-1]

    yield open_
    for session in opened:
        session.close()


def write_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        "[[account]]\n"
        'venue = "kraken"\n'
        'label = "main"\n'
        f'api_key = "{KRAKEN_TEST_KEY}"\n'
        f'api_secret = "{KRAKEN_TEST_SECRET}"\n'
        f'base_url = "{url}"\n'
    )
    config.chmod(0o600)
    return config


def demo_figures() -> list[str]:
    """Every money figure of the demo, as the table writes it: from the demo's own JSON."""
    done = subprocess.run(
        [str(SCRIPT), "demo", "--json"], capture_output=True, text=True, check=True, timeout=60
    )
    data = json.loads(done.stdout, parse_float=Decimal)
    found = [data["total_usd"], data["available_margin_usd"]]
    for balance in data["balances"].values():
        found += [balance["total"], balance["available"]]
    return [f"{Decimal(figure):,f}" for figure in found]


def whole(figure: str, text: str) -> bool:
    return re.search(rf"(?<![\d,.]){re.escape(figure)}(?![\d,.])", text) is not None


@pytest.mark.parametrize("width", [60, 80, 100, 120])
def test_demo_every_figure_whole_on_screen(terminal: Callable[..., Terminal], width: int) -> None:
    """`bastion-balance demo` in a 60-, 80-, 100- and 120-column terminal: every figure of the
    portfolio on the screen whole, no '…', exit 0; the table where it fits, blocks where not."""
    figures = demo_figures()
    session = terminal(str(SCRIPT) + " demo", width=width, height=60)
    assert session.ended()
    screen = session.screen(history=True)
    assert "EXIT=0" in screen and "…" not in screen
    missing = [figure for figure in figures if not whole(figure, screen)]
    assert not missing, screen
    assert ("┃ account" in screen) is (width >= 100), screen


def test_piped_output_is_plain(terminal: Callable[..., Terminal]) -> None:
    """Piped (even from a terminal): plain text, every digit, no box drawing or colour."""
    session = terminal(f"{SCRIPT} demo | cat", width=80)
    assert session.ended()
    screen = session.screen(history=True)
    assert "┃" not in screen and "100,153,545.43099210" in screen
    assert re.search(r"^account\s+venue\s+currency\s+total\s+available\s+share\s+free$", screen, re.MULTILINE)


@pytest.mark.parametrize("style", ["--plain", "--rich"])
def test_ctrl_c_exits_130_with_one_line(
    silent_kraken: LoopbackServer, tmp_path: Path, style: str, terminal: Callable[..., Terminal]
) -> None:
    """Ctrl-C mid-fetch: gone within a few seconds, exit 130, one line, no traceback. With rich,
    the spinner line of the account is on screen while it is fetched, and gone after."""
    config = write_config(tmp_path, silent_kraken.url)
    flags = "--plain" if style == "--plain" else ""  # without --plain: rich's spinners on the terminal
    session = terminal(f"{SCRIPT} --config {config} --timeout 20 {flags}")
    assert wait_for(lambda: len(silent_kraken.requests) >= 1, 20), "the request never arrived"
    if style == "--rich":
        assert wait_for(lambda: re.search(r"main\s+kraken\s+fetching", session.screen()) is not None, 5), (
            session.screen()
        )
    time.sleep(0.3)
    pressed = time.monotonic()
    session.press("C-c")
    assert session.ended(10)
    took = time.monotonic() - pressed
    screen = session.screen()
    assert "EXIT=130" in screen
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen
    lines = [line for line in screen.splitlines() if line.strip()]
    if style == "--plain":
        assert lines[0] == "fetching 1 account..."
        lines = lines[1:]
    # the terminal echoes ^C on the same line; then our one line and the shell's exit status
    assert [line.removeprefix("^C") for line in lines] == ["bastion-balance: interrupted", "EXIT=130"], screen
    assert took < 3, f"took {took:.2f}s to exit after Ctrl-C"


def test_a_spinner_per_account(
    silent_kraken: LoopbackServer, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    """Two accounts, one answering and one silent: while the silent one is fetched its spinner
    line says so and the other's is done; past the deadline the spinners are cleared, one line
    says why the silent one failed, and the exit code is 1 (partial: one account answered)."""
    fast = Simulator(SimulatedKraken(host="127.0.0.1", keys={"fast-key": KRAKEN_TEST_SECRET}))
    with LoopbackServer(fast) as answering:
        config = tmp_path / "config.toml"
        config.write_text(
            write_config(tmp_path, silent_kraken.url).read_text()
            + f'\n[[account]]\nvenue = "kraken"\nlabel = "fast"\napi_key = "fast-key"\n'
            f'api_secret = "{KRAKEN_TEST_SECRET}"\nbase_url = "{answering.url}"\n'
        )
        session = terminal(f"{SCRIPT} --config {config} --timeout 4")
        spinning = wait_for(
            lambda: (
                re.search(r"✓ fast\s+kraken\s+done", session.screen()) is not None
                and re.search(r"main\s+kraken\s+fetching", session.screen()) is not None
            ),
            10,
        )
        assert spinning, session.screen()
        assert session.ended()
    screen = session.screen(history=True)
    assert "EXIT=1" in screen
    assert "fetching" not in screen  # the spinners are cleared once the fetch is over
    assert re.search(r"^bastion-balance: main failed: DeadlineExceededError", screen, re.MULTILINE), screen
    assert "partial: 1 of 2 accounts counted, 1 with errors" in screen


def test_watch_redraws_in_place(terminal: Callable[..., Terminal]) -> None:
    """--watch on a terminal: one table on the screen, redrawn each round; Ctrl-C exits at once."""
    session = terminal(f"{SCRIPT} demo --watch 1s --account kraken --account bybit", width=120)

    def round_number() -> int:
        found = re.findall(r"^round (\d+) at ", session.screen(), re.MULTILINE)
        return int(found[-1]) if found else 0

    assert wait_for(lambda: round_number() >= 2, 20), session.screen()
    first = round_number()
    assert wait_for(lambda: round_number() > first, 10), session.screen()
    screen = session.screen(history=True)
    titles = re.findall(r"^\s*bastion-balance\s*$", screen, re.MULTILINE)
    assert len(titles) == 1 and screen.count("┃ account") == 1, screen
    assert len(re.findall(r"^round \d+ at ", screen, re.MULTILINE)) == 1  # redrawn, not appended
    pressed = time.monotonic()
    session.press("C-c")
    assert session.ended(10)
    assert time.monotonic() - pressed < 3
    assert "EXIT=130" in session.screen() and "Traceback" not in session.screen(history=True)
