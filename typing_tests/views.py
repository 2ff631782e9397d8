"""Checked by mypy --strict in CI (never run): the Portfolio and Balance views as users see them."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import assert_type

import bastion_balance as bb


def views(portfolio: bb.Portfolio, balance: bb.Balance) -> None:
    assert_type(portfolio.free_ratio, Decimal | None)
    assert_type(portfolio.shares, Mapping[str, Decimal | None])
    assert_type(portfolio.summary(), str)
    assert_type(str(portfolio), str)
    assert_type(portfolio._repr_html_(), str)
    assert_type(balance._repr_html_(), str)
