"""A JSON object that names a key twice is refused, at any depth, by every venue's parser.

Python's json module keeps the last value of a repeated key, other decoders the first: an answer
such as Kraken's ``{"error": ["EGeneral:Internal error"], "error": [], "result": {"e": "1", "e":
"999999"}}`` has no single reading, so it is an ``UnexpectedResponseError`` naming the key, where
it is, and the venue, never a balance of 999999.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

import bastion_balance as bb
from bastion_balance._decimal import loads
from bastion_balance.testing import (
    BINANCE_RECORDED_ACCOUNT,
    BINANCE_TEST_KEY,
    BINANCE_TEST_SECRET,
    BYBIT_RECORDED_WALLET,
    BYBIT_TEST_KEY,
    BYBIT_TEST_SECRET,
    COINSWITCH_DOCUMENTED_DATA,
    COINSWITCH_TEST_KEY,
    COINSWITCH_TEST_SECRET,
    KRAKEN_DOCUMENTED_RESULT,
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    POLYMARKET_RETAIL_DOCUMENTED_BALANCES,
    POLYMARKET_RETAIL_TEST_KEY_ID,
    POLYMARKET_RETAIL_TEST_SECRET,
    POLYMARKET_US_SYNTHETIC_BALANCE,
    POLYMARKET_US_TEST_ACCOUNT,
    POLYMARKET_US_TEST_CLIENT_ID,
    POLYMARKET_US_TEST_PARTICIPANT_ID,
    RAILS_DOCUMENTED_BALANCES,
    RAILS_TEST_API_KEY,
    RAILS_TEST_API_SECRET,
    polymarket_us_test_private_key_pem,
)

KRAKEN = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET)


def text(payload: Any) -> str:  # noqa: ANN401  # JSON
    return bb.dumps(payload)


def respond(provider: Any, body: str | bytes, status: int = 200) -> bb.Balance:  # noqa: ANN401
    content = body.encode() if isinstance(body, str) else body
    result: bb.Balance = provider.parse_response(httpx.Response(status, content=content))
    return result


def refused(provider: Any, body: str, *, key: str, field: str) -> bb.UnexpectedResponseError:  # noqa: ANN401
    with pytest.raises(bb.UnexpectedResponseError) as caught:
        respond(provider, body)
    error = caught.value
    assert error.venue == provider.venue
    assert error.field == field
    assert repr(key) in str(error)
    assert "duplicate key" in str(error)
    return error


class TestKraken:
    def test_the_issue_example(self) -> None:
        """A real error hidden by an empty one, and two equities: refused, not 999999."""
        body = '{"error":["EGeneral:Internal error"],"error":[],"result":{"e":"1","e":"999999","mf":"1"}}'
        refused(KRAKEN, body, key="e", field="$.result.e")

    def test_duplicate_error_member(self) -> None:
        """Only the error member repeats: still refused (not read as success, nor as the error)."""
        good = text({"error": [], "result": KRAKEN_DOCUMENTED_RESULT})
        assert respond(KRAKEN, good).total == Decimal("382.2032")
        body = good.replace('"error": []', '"error": ["EGeneral:Internal error"], "error": []', 1)
        assert body != good
        refused(KRAKEN, body, key="error", field="$.error")

    def test_same_value_twice_is_refused_too(self) -> None:
        """Equal values do not make a repeated key acceptable: the rule is about the document."""
        body = '{"error":[],"result":{"e":"1","e":"1","mf":"1"}}'
        refused(KRAKEN, body, key="e", field="$.result.e")


def _inject(good: str, anchor: str, repeated: str) -> str:
    """``good`` with ``repeated`` written just after ``anchor`` (its first occurrence)."""
    assert anchor in good, anchor
    return good.replace(anchor, anchor + repeated, 1)


def _providers() -> dict[str, Any]:
    now = time.time_ns
    return {
        "coinswitch": bb.CoinSwitch(
            api_key=COINSWITCH_TEST_KEY, api_secret=COINSWITCH_TEST_SECRET, clock=now
        ),
        "binance": bb.BinanceFutures(api_key=BINANCE_TEST_KEY, api_secret=BINANCE_TEST_SECRET),
        "bybit": bb.Bybit(api_key=BYBIT_TEST_KEY, api_secret=BYBIT_TEST_SECRET),
        "polymarket_us": bb.PolymarketUS(
            client_id=POLYMARKET_US_TEST_CLIENT_ID,
            private_key=polymarket_us_test_private_key_pem(),
            participant_id=POLYMARKET_US_TEST_PARTICIPANT_ID,
            account=POLYMARKET_US_TEST_ACCOUNT,
        ),
        "polymarket_us_retail": bb.PolymarketUSRetail(
            key_id=POLYMARKET_RETAIL_TEST_KEY_ID, secret_key=POLYMARKET_RETAIL_TEST_SECRET
        ),
        "rails": bb.Rails(api_key=RAILS_TEST_API_KEY, api_secret=RAILS_TEST_API_SECRET),
    }


#: venue -> (the simulator's answer, where to repeat a key, what to repeat, key, field, total).
CASES: dict[str, tuple[str, str, str, str, str, str]] = {
    "kraken": (
        text({"error": [], "result": KRAKEN_DOCUMENTED_RESULT}),
        '"result": {',
        '"mf": "999999", ',
        "mf",
        "$.result.mf",
        "382.2032",
    ),
    "coinswitch": (
        text({"data": COINSWITCH_DOCUMENTED_DATA}),
        '"balances": {',
        '"total_balance": "999999", ',
        "total_balance",
        "$.data.base_asset_balances[0].balances.total_balance",
        "60960.82599588",
    ),
    "binance": (
        text(BINANCE_RECORDED_ACCOUNT),
        "{",
        '"totalMarginBalance": "999999", ',
        "totalMarginBalance",
        "$.totalMarginBalance",
        "31.02261200",
    ),
    "bybit": (
        text(BYBIT_RECORDED_WALLET),
        '"list": [{',
        '"totalEquity": "999999", ',
        "totalEquity",
        "$.result.list[0].totalEquity",
        "92255.96988644",
    ),
    "polymarket_us": (
        text(POLYMARKET_US_SYNTHETIC_BALANCE),
        '"tec-nfl-2026-11-29-kc-lv": {',
        '"marketValue": "999999", ',
        "marketValue",
        "$.securities.tec-nfl-2026-11-29-kc-lv.marketValue",
        "1650.5050",
    ),
    "polymarket_us_retail": (
        text({"balances": list(POLYMARKET_RETAIL_DOCUMENTED_BALANCES)}),
        '"balances": [{',
        '"currentBalance": 999999, ',
        "currentBalance",
        "$.balances[0].currentBalance",
        "1312.75",
    ),
    "rails": (
        text(RAILS_DOCUMENTED_BALANCES),
        '"ETH-USD": {',
        '"margin": "999999", ',
        "margin",
        "$.marketBalancesMap.ETH-USD.margin",
        "99996952.15429778",
    ),
}


@pytest.mark.parametrize("venue", sorted(CASES))
def test_every_venue_refuses_a_repeated_figure(venue: str) -> None:
    """The same answer parses; with one figure sent twice, the venue's parser refuses it."""
    provider = KRAKEN if venue == "kraken" else _providers()[venue]
    good, anchor, repeated, key, field, total = CASES[venue]
    assert respond(provider, good).total == Decimal(total)
    refused(provider, _inject(good, anchor, repeated), key=key, field=field)


@pytest.mark.parametrize("venue", sorted(CASES))
def test_every_venue_refuses_a_repeated_top_level_member(venue: str) -> None:
    """A repeated top-level member (an empty object after the real one) is refused as well."""
    provider = KRAKEN if venue == "kraken" else _providers()[venue]
    good = CASES[venue][0]
    first = next(iter(json.loads(good)))
    body = good[:-1] + f", {json.dumps(first)}: {{}}}}"
    refused(provider, body, key=first, field=f"$.{first}")


class TestLoads:
    def test_deep_in_lists(self) -> None:
        """The path names list positions and object keys down to the repeated key."""
        with pytest.raises(bb.UnexpectedResponseError) as caught:
            loads('[{"a":[1,{"b":{"c":1,"c":2}}]}]', venue="v")
        assert caught.value.field == "$[0].a[1].b.c"
        assert caught.value.value == "c"

    def test_innermost_first(self) -> None:
        """With several, the one the decoder meets first (the innermost object to close) is named."""
        with pytest.raises(bb.UnexpectedResponseError) as caught:
            loads('{"x":1,"x":2,"y":{"z":1,"z":1}}', venue="v")
        assert caught.value.field == "$.y.z"

    def test_path_unknown_when_the_rest_is_broken(self) -> None:
        """A repeated key in a body that is also truncated: still named, the place as $..key."""
        with pytest.raises(bb.UnexpectedResponseError) as caught:
            loads(b'{"a":{"b":1,"b":2},', venue="v")
        assert caught.value.field == "$..b"
        assert "duplicate key 'b'" in str(caught.value)

    def test_escaped_spellings_are_the_same_key(self) -> None:
        """``"e"`` and ``"\\u0065"`` are one key once decoded: repeated."""
        with pytest.raises(bb.UnexpectedResponseError):
            loads('{"e":"1","\\u0065":"2"}', venue="v")

    def test_distinct_keys_and_empty_objects_pass(self) -> None:
        """No false alarms: case differs, nesting repeats a name at another level, {} is fine."""
        assert loads('{"e":"1","E":"2","x":{"e":"3"},"y":{},"z":[{},{}]}', venue="v") == {
            "e": "1",
            "E": "2",
            "x": {"e": "3"},
            "y": {},
            "z": [{}, {}],
        }

    def test_numbers_still_decimal(self) -> None:
        """The hook keeps numbers exact."""
        assert loads('{"a":0.1,"b":[1]}', venue="v") == {"a": Decimal("0.1"), "b": [Decimal(1)]}
