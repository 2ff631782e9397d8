"""The drawdown arithmetic against a plain reference written from docs/history.md, 'Definitions'.

The reference recomputes every figure from scratch for every point (no running state), in a
2,000-digit context, and divides ratios in 28 digits; the library is driven through its public
API (recording into SQLite), so storage, ordering and the arithmetic are checked together.
"""

from __future__ import annotations

import decimal
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import bastion_balance as bb
from tests.test_history import make_portfolio

T0 = datetime(2024, 5, 1, tzinfo=UTC)


class Snap(NamedTuple):
    at: datetime
    seq: int
    total: Decimal
    complete: bool


class Move(NamedTuple):
    at: datetime
    amount: Decimal


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    if denominator <= 0:
        return None
    with decimal.localcontext(decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)):
        return numerator / denominator


def reference(
    snaps: list[Snap], moves: list[Move], since: datetime | None, baseline: Decimal | None, incomplete: bool
) -> dict[str, Any] | None:
    """Every figure of the Drawdown, or None where the library must raise HistoryError."""
    with decimal.localcontext(decimal.Context(prec=2000, traps=[decimal.Inexact])):
        window = sorted((s for s in snaps if since is None or s.at >= since), key=lambda s: (s.at, s.seq))
        if baseline is None:
            complete = [s for s in window if s.complete]
            if not complete:
                return None
            anchor = complete[0]
            start, base = anchor.at, anchor.total
            after = window[window.index(anchor) + 1 :]
            points = [s for s in after if incomplete or s.complete]
            used = len(points) + 1
            left_out = 0 if incomplete else len([s for s in after if not s.complete])
        else:
            points = [s for s in window if incomplete or s.complete]
            if not points:
                return None
            start = since if since is not None else points[0].at
            base = baseline
            used = len(points)
            left_out = len(window) - len(points)

        def flows_until(at: datetime) -> Decimal:
            return sum((m.amount for m in moves if start < m.at <= at), Decimal(0))

        equity = [(start, base)] + [(s.at, s.total - flows_until(s.at)) for s in points]
        values = [v for _, v in equity]
        peak = max(values)
        peak_at = next(at for at, v in equity if v == peak)
        falls = [max(values[: i + 1]) - values[i] for i in range(len(values))]
        ratios = [ratio(falls[i], max(values[: i + 1])) for i in range(len(values))]
        known = [r for r in ratios if r is not None]
        current_at, current = equity[-1]
        return {
            "baseline_usd": base,
            "baseline_at": start,
            "current_usd": current,
            "current_at": current_at,
            "current_total_usd": points[-1].total if points else base,
            "change_usd": current - base,
            "change_ratio": ratio(current - base, base),
            "peak_usd": peak,
            "peak_at": peak_at,
            "drawdown_usd": peak - current,
            "drawdown_ratio": ratio(peak - current, peak),
            "max_drawdown_usd": max(falls),
            "max_drawdown_ratio": max(known) if known else None,
            "flows_usd": flows_until(current_at) if points else Decimal(0),
            "snapshots": used,
            "left_out": left_out,
            "equity": tuple(equity),
        }


def _amount(big: bool) -> st.SearchStrategy[Decimal]:
    whole = st.integers(-(10**40), 10**40) if big else st.integers(-50, 200)
    return st.builds(
        lambda n, places: Decimal(n).scaleb(-places), whole, st.integers(0, 3 if not big else 12)
    )


#: Few distinct values, often: equal peaks and equal falls are common, as in a quiet market.
ties = st.sampled_from([Decimal(0), Decimal(100), Decimal("100.00"), Decimal("99.5"), Decimal(120)])
amounts = st.one_of(ties, ties, _amount(False), _amount(True))
minutes = st.integers(0, 12)
snapshots_strategy = st.lists(st.tuples(minutes, amounts, st.booleans()), max_size=12)
flows_strategy = st.lists(st.tuples(minutes, amounts), max_size=6)


@example(  # two equal peaks: the first is the peak
    [(0, Decimal(100), True), (1, Decimal(90), True), (2, Decimal(100), True)], [], None, None, False
)
@example(  # a flow at the baseline's instant is in the baseline; one at a snapshot's instant is in it
    [(0, Decimal(100), True), (1, Decimal(150), True)], [(0, Decimal(7)), (1, Decimal(50))], None, None, False
)
@example(  # given capital at since, an incomplete snapshot left out, then used when asked
    [(1, Decimal(80), False), (2, Decimal(90), True)], [(1, Decimal(-5))], 0, Decimal(100), False
)
@given(
    snapshots_strategy,
    flows_strategy,
    st.one_of(st.none(), minutes),
    st.one_of(st.none(), amounts),
    st.booleans(),
)
def test_drawdown_matches_reference(
    raw_snaps: list[tuple[int, Decimal, bool]],
    raw_flows: list[tuple[int, Decimal]],
    since_minute: int | None,
    baseline: Decimal | None,
    incomplete: bool,
) -> None:
    """Flows, incomplete snapshots, equal peaks, ties in time: every figure equals the reference."""
    snaps = [Snap(T0 + timedelta(minutes=m), i, total, ok) for i, (m, total, ok) in enumerate(raw_snaps)]
    moves = [Move(T0 + timedelta(minutes=m), amount) for m, amount in raw_flows]
    since = None if since_minute is None else T0 + timedelta(minutes=since_minute)
    expected = reference(snaps, moves, since, baseline, incomplete)
    with bb.History("sqlite://") as history:
        for snap in snaps:
            failed = () if snap.complete else ("down",)
            history.record(make_portfolio(snap.at, {"a": snap.total}, failed=failed))
        for move in moves:
            history.record_flow(move.amount, move.at)
        if expected is None:
            with pytest.raises(bb.HistoryError, match="nothing recorded yet"):
                history.drawdown(since, baseline, incomplete)
            return
        result = history.drawdown(since, baseline, incomplete)
    for name, value in expected.items():
        assert getattr(result, name) == value, name


def test_reference_equal_peaks_and_flows() -> None:
    """The reference itself, on a case worked by hand: the first of two equal peaks is the peak,
    a deposit is not a gain, and a flow at the baseline's instant is in the baseline."""
    snaps = [
        Snap(T0, 0, Decimal(100), True),
        Snap(T0 + timedelta(minutes=1), 1, Decimal(120), True),
        Snap(T0 + timedelta(minutes=2), 2, Decimal(170), True),  # +50 deposited at minute 2
        Snap(T0 + timedelta(minutes=3), 3, Decimal(140), True),
    ]
    moves = [Move(T0, Decimal(1000)), Move(T0 + timedelta(minutes=2), Decimal(50))]
    got = reference(snaps, moves, None, None, False)
    assert got is not None
    assert [v for _, v in got["equity"]] == [100, 120, 120, 90]
    assert (got["peak_usd"], got["peak_at"]) == (120, T0 + timedelta(minutes=1))
    assert (got["max_drawdown_usd"], got["max_drawdown_ratio"]) == (30, Decimal("0.25"))
    assert (got["change_usd"], got["flows_usd"]) == (-10, 50)
