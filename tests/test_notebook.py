"""examples/portfolio.ipynb runs in a fresh kernel (this venv's Python) and shows exact figures."""

from __future__ import annotations

import html.parser
import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import bastion_balance as bb
from bastion_balance.testing import KRAKEN_TEST_SECRET, demo_setup

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("pandas")  # the notebook shows to_dataframe()

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "portfolio.ipynb"
KERNEL = "bastion-balance-test"


class Cells(html.parser.HTMLParser):
    """The text of every table cell, row by row."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def same_portfolio() -> bb.Portfolio:
    """What the notebook's first cell builds, built here (the demo venues answer the same)."""
    simulator, providers = demo_setup()
    providers.append(bb.Kraken(api_key="revoked-key", api_secret=KRAKEN_TEST_SECRET, label="kraken-old"))
    with simulator.client() as http:
        return bb.aggregate(providers, client=http, rates={"EUR": Decimal("1.08")})


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """The notebook's code cells after a run in a kernel of this interpreter (no user config)."""
    home = tmp_path_factory.mktemp("jupyter")
    spec = home / "data" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(home / "data"))
        mp.setenv("JUPYTER_CONFIG_DIR", str(home / "config"))
        mp.setenv("JUPYTER_RUNTIME_DIR", str(home / "runtime"))
        mp.setenv("JUPYTER_PLATFORM_DIRS", "1")
        mp.setenv("IPYTHONDIR", str(home / "ipython"))
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(
            notebook, kernel_name=KERNEL, timeout=60, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        )
        client.execute()
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _output(cell: dict[str, object], mime: str) -> str:
    outputs = cell["outputs"]
    assert isinstance(outputs, list)
    for output in outputs:
        assert output["output_type"] != "error", output
        data = output.get("data", {})
        if mime in data:
            return str(data[mime])
        if mime == "stdout" and output.get("name") == "stdout":
            return str(output["text"])
    raise AssertionError(f"no {mime} output in {outputs}")


def test_committed_notebook_is_clean() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == []
        assert cell.execution_count is None


def test_notebook_table_shows_every_figure_whole(executed: list[dict[str, object]]) -> None:
    expected = same_portfolio()
    rows = Cells(_output(executed[1], "text/html")).rows
    header, *body = rows
    by_label = {row[0]: dict(zip(header, row, strict=True)) for row in body}
    assert set(by_label) == set(expected.balances) | set(expected.errors)
    for label, balance in expected.balances.items():
        row = by_label[label]
        assert row["total"] == format(balance.total, "f")
        assert row["available"] == format(balance.available, "f")
        assert Decimal(row["total USD"]) == expected.usd(balance)[0]
        assert row["status"] == "ok"
    assert by_label["kraken-old"]["status"].startswith("AuthenticationError: ")


def test_notebook_summary_and_free_ratio(executed: list[dict[str, object]]) -> None:
    expected = same_portfolio()
    assert _output(executed[2], "stdout") == expected.summary() + "\n"
    assert _output(executed[2], "text/plain") == repr(expected.free_ratio)


def test_notebook_dataframe_keeps_decimals(executed: list[dict[str, object]]) -> None:
    expected = same_portfolio()
    frame_html = Cells(_output(executed[3], "text/html")).rows
    shown = {row[0] for row in frame_html[1:] if row}
    assert set(expected.balances) | set(expected.errors) <= shown
    dtypes = dict(line.split() for line in _output(executed[4], "text/plain").splitlines()[:-1])
    for column in ("total", "available", "total_usd", "available_usd", "share"):
        assert dtypes[column] == "object"
    assert _output(executed[5], "text/plain") == f"(decimal.Decimal, {expected.balances['rails'].total!r})"
