"""The benchmarks still run (tiny sizes; ratios are printed, never asserted: machines are noisy)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(("script", "size"), [("import_time.py", "1"), ("loop_client.py", "3")])
def test_benchmark_runs(script: str, size: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), size],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ratio" in result.stdout


def test_suite_runs(tmp_path: Path) -> None:
    """``suite.py --quick``: every row of the table is there, measured or skipped for want of ccxt."""
    figures = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "suite.py"), "--quick", "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ratio" in result.stdout
    rows = json.loads(figures.read_text())["rows"]
    names = " | ".join(row["name"] for row in rows)
    for row in ("import ccxt", "/ the floor + one bare httpx POST", "ccxt privatePostTradeBalance"):
        assert row in names
    for row in ("parse bytes -> Balance", "warm sync fetch", "warm async fetch", "without client="):
        assert row in names
    for row in ("in one aaggregate", "sync aggregate / bare httpx", "peak RSS", "fan-out over 7 venues"):
        assert row in names
    skipped = {row["name"] for row in rows if row["mark"] == "skip"}
    has_ccxt = importlib.util.find_spec("ccxt") is not None
    assert skipped == (set() if has_ccxt else {row["name"] for row in rows if "ccxt" in row["name"]})


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib: the bench extra")
def test_plot_runs(tmp_path: Path) -> None:
    out = tmp_path / "performance.png"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "plot.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
