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


def _signature_line(cls: type) -> str:
    """``bb.Kraken(*, api_key, api_secret, label=None, ...)``: the class's real constructor."""
    import inspect
    import json

    parts: list[str] = []
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind is parameter.KEYWORD_ONLY and "*" not in parts:
            parts.append("*")
        default = parameter.default
        if default is parameter.empty:
            parts.append(parameter.name)
        elif callable(default):
            parts.append(f"{parameter.name}={default.__module__}.{default.__qualname__}")
        else:
            text = json.dumps(default) if isinstance(default, str) else repr(default)
            parts.append(f"{parameter.name}={text}")
    return f"bb.{cls.__name__}({', '.join(parts)})"


def test_venue_pages_show_the_real_constructor() -> None:
    """Each venue page has one constructor line, equal to ``inspect.signature`` of its class
    (keyword-only, every parameter and default), and no positional-looking one."""
    import bastion_balance as bb
    from bastion_balance.providers import VENUES

    for venue in VENUES.values():
        cls = getattr(bb, venue.class_name)
        page = (DOCS / venue.docs).read_text()
        lines = re.findall(rf"^`(bb\.{cls.__name__}\(\*.*\))`$", page, re.MULTILINE)
        assert lines == [_signature_line(cls)], venue.docs
        positional = re.findall(rf"`(?:bb\.)?{cls.__name__}\(\s*[a-z_]+\s*[,)]", page)
        assert positional == [], venue.docs
