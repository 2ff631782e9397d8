"""The runnable examples in the docs run as written (docs that match the code)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bastion_balance.testing import rate_limits_disabled

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
#: Pages whose python blocks need no real keys and run top to bottom in one namespace.
RUNNABLE = ["testing.md"]


@pytest.mark.parametrize("page", RUNNABLE)
def test_page_examples_run(page: str) -> None:
    """Every python block of the page runs, in order, sharing one namespace."""
    blocks = BLOCK.findall((DOCS / page).read_text())
    assert blocks
    namespace: dict[str, object] = {"__name__": "docs_example"}
    with rate_limits_disabled():
        for block in blocks:
            exec(compile(block, f"{page}", "exec"), namespace)  # noqa: S102  # our own docs
