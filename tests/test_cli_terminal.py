"""The command in a real terminal (tmux): Ctrl-C during a fetch exits at once, with one line.

The venue is a loopback Kraken that sits on every request (it never answers in time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
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


def wait_for(predicate: object, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("style", ["--plain", "--rich"])
def test_ctrl_c_exits_130_with_one_line(silent_kraken: LoopbackServer, tmp_path: Path, style: str) -> None:
    """Ctrl-C mid-fetch: gone within a few seconds, exit 130, one line, no traceback."""
    config = tmp_path / "config.toml"
    config.write_text(
        "[[account]]\n"
        'venue = "kraken"\n'
        'label = "main"\n'
        f'api_key = "{KRAKEN_TEST_KEY}"\n'
        f'api_secret = "{KRAKEN_TEST_SECRET}"\n'
        f'base_url = "{silent_kraken.url}"\n'
    )
    config.chmod(0o600)
    session = f"bb-{uuid.uuid4().hex[:8]}"
    flags = "--plain" if style == "--plain" else ""  # without --plain: rich's spinner on the terminal
    command = f"{SCRIPT} --config {config} --timeout 20 {flags}; echo EXIT=$?; sleep 60"
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40", command)
    try:
        assert wait_for(lambda: len(silent_kraken.requests) >= 1, 20), "the request never arrived"
        time.sleep(0.3)
        pressed = time.monotonic()
        tmux("send-keys", "-t", session, "C-c")
        assert wait_for(lambda: "EXIT=" in tmux("capture-pane", "-p", "-t", session), 10)
        took = time.monotonic() - pressed
        screen = tmux("capture-pane", "-p", "-t", session)
    finally:
        tmux("kill-session", "-t", session)
    assert "EXIT=130" in screen
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen
    lines = [line for line in screen.splitlines() if line.strip()]
    if style == "--plain":
        assert lines[0] == "fetching 1 account..."
        lines = lines[1:]
    # the terminal echoes ^C on the same line; then our one line and the shell's exit status
    assert [line.removeprefix("^C") for line in lines] == ["bastion-balance: interrupted", "EXIT=130"], screen
    assert took < 3, f"took {took:.2f}s to exit after Ctrl-C"
