"""The compiled reader of wire classes (``_convert._plan``) against the cattrs converter.

The reader is a fast path: whatever it reads must be what cattrs reads, and whatever it cannot
read must be refused (or read) by cattrs exactly as before. ``figures`` refuses what
``structure`` refuses. ``Balance`` and ``Holding`` check their figures and time in
``__attrs_post_init__`` and raise what attrs' validators raise.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal, get_args, get_origin
from unittest import mock

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from bastion_balance import Balance, Holding, UnexpectedResponseError, _convert
from bastion_balance._convert import figures, structure, unstructure
from bastion_balance._decimal import AmountError, to_decimal
from bastion_balance.providers import (
    binance,
    bybit,
    coinswitch,
    kraken,
    polymarket_retail,
    polymarket_us,
    rails,
)

WIRE_CLASSES: list[type[Any]] = [
    kraken._TradeBalance,
    binance._Account,
    bybit._Wallet,
    coinswitch._WalletBalance,
    polymarket_retail._Balances,
    polymarket_us._AccountBalance,
    rails._Balances,
    rails._Market,
]
NESTED_WIRE_CLASSES: list[type[Any]] = [
    binance._Asset,
    bybit._Coin,
    coinswitch._Totals,
    coinswitch._SettlementAsset,
    coinswitch._SymbolRow,
    polymarket_retail._UserBalance,
    polymarket_us._Security,
]


class _Text(str):
    """A str subclass: never a JSON value, but both paths must treat it alike."""

    __slots__ = ()


class _Figure(Decimal):
    """A Decimal subclass: accepted as an amount (``isinstance``) and kept as it is."""

    __slots__ = ()


# --- what a wire value may be -----------------------------------------------------------------

_DIGITS = st.text("0123456789", min_size=1, max_size=25)
_PLAIN_TEXT = st.builds(  # what venues send: sign, digits, a fraction (``"1."`` and ``".5"`` too)
    lambda sign, whole, fraction: f"{sign}{whole}{fraction}",
    st.sampled_from(["", "-", "+"]),
    st.one_of(_DIGITS, st.just("")),
    st.one_of(st.just(""), st.just("."), _DIGITS.map(lambda d: "." + d)),
).filter(lambda text: any(c.isdigit() for c in text))
#: Finite Decimals of any exponent, within the limits or not, in ``str()`` form (``1E+5``, ``0E-120``):
#: built from digits and an exponent, which costs a third of ``st.decimals()``.
_FINITE_DECIMALS = st.builds(
    lambda sign, digits, exponent: Decimal(f"{sign}{digits}E{exponent}"),
    st.sampled_from(["", "-"]),
    _DIGITS,
    st.integers(-150, 150),
)
_DECIMAL_TEXT = _FINITE_DECIMALS.map(str)
_EXPONENT_TEXT = st.one_of(
    st.sampled_from(["1e5", "1E+400", "2.5e-3", "1e-101", "-1E+100", "1E+101", "0e-200", "1e99999", "1E-7"]),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-999, 999), st.integers(-150, 150)),
)
_JUNK_TEXT = st.sampled_from(
    [
        "abc",
        " 1",
        "1 ",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "1_000",
        "0x10",
        "\u0661\u0662",  # Arabic-Indic digits: not ASCII
        "1e",
        "e5",
        ".",
        "+",
        "1" * 101,  # 101 significant digits
        "9" * 250,  # longer than any number the pattern reads
        "0." + "0" * 120 + "1",  # long text, exponent out of range
        "USD",
        "2024-01-01T00:00:00Z",
    ]
)
_LONG_GOOD_TEXT = st.just("1." + "0" * 150)  # longer than MAX_DIGITS, yet one significant digit
_SPECIAL_DECIMALS = st.sampled_from(
    [
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("-Infinity"),
        Decimal("1E+99999999999"),
        Decimal("0E-200"),
        Decimal("1" * 150),
        Decimal("-0"),
        Decimal("1E+100"),
        Decimal("1E+101"),
        Decimal("1E-7"),
        _Figure("2.5"),
        _Figure("NaN"),
    ]
)
_TEXT_SUBCLASS = st.sampled_from([_Text("1.5"), _Text("abc"), _Text("1e5"), _Text("1" * 120)])
_CONTAINERS = st.sampled_from([[], ["1"], {}, {"a": "1"}, ("1",), b"1"])
_SCALARS = st.one_of(
    st.none(),
    st.just(""),
    st.booleans(),
    st.floats(),
    st.integers(-(10**102), 10**102),
    st.sampled_from([10**101, -(10**101), 10**100]),
)

#: Any amount a venue (or a broken venue) might send, good or bad.
_AMOUNT: SearchStrategy[object] = st.one_of(
    _PLAIN_TEXT,
    _DECIMAL_TEXT,
    _EXPONENT_TEXT,
    _JUNK_TEXT,
    _LONG_GOOD_TEXT,
    _TEXT_SUBCLASS,
    _FINITE_DECIMALS,
    _SPECIAL_DECIMALS,  # NaN, Infinity, huge exponents, subclasses
    _SCALARS,
    _CONTAINERS,
)
#: Amounts every money rule accepts.
_GOOD_AMOUNT: SearchStrategy[object] = st.one_of(
    _PLAIN_TEXT,
    st.integers(-(10**30), 10**30),
    _PLAIN_TEXT.map(Decimal),
    _LONG_GOOD_TEXT,
)
_TEXT: SearchStrategy[object] = st.one_of(
    st.text(max_size=6), _TEXT_SUBCLASS, _SCALARS, _CONTAINERS, st.just(Decimal(1))
)
_ANYTHING: SearchStrategy[object] = st.one_of(_AMOUNT, st.text(max_size=6))
_EXTRA_KEYS = st.sampled_from(["extra", "time", "ZUSD", "unknown", "currency"])
_NOT_AN_OBJECT = st.sampled_from([[], "x", None, [{}], 5, ("a",)])


#: How wrong a payload may be: every value good, one in eight wrong (mostly one fault in an
#: otherwise good payload: the case where the reader must not read what cattrs refuses), or any.
Mode = Literal["clean", "sparse", "noisy"]


def _rarely(good: SearchStrategy[object], bad: SearchStrategy[object]) -> SearchStrategy[object]:
    return st.integers(0, 7).flatmap(lambda n: bad if n == 0 else good)


def _values(kind: object, mode: Mode) -> SearchStrategy[object]:
    """Values for a field of type ``kind``: good ones, good ones with a rare fault, or anything."""
    if mode == "sparse":
        if get_origin(kind) in (list, dict) or attrs.has(kind):  # the fault may be deeper down
            return _rarely(_container(kind, "sparse"), _values(kind, "noisy"))
        return _rarely(_values(kind, "clean"), _values(kind, "noisy"))
    clean = mode == "clean"
    if kind is Decimal:
        return _GOOD_AMOUNT if clean else _AMOUNT
    if kind == (Decimal | None):
        if clean:
            return st.one_of(st.sampled_from([None, ""]), _GOOD_AMOUNT)
        return st.one_of(_AMOUNT, st.just(_Text("")))  # an empty str subclass is not ""
    if kind is str:
        return st.text(max_size=6) if clean else _TEXT
    if kind == (str | None):
        return st.one_of(st.none(), st.text(max_size=6)) if clean else _TEXT
    if clean:
        return _container(kind, "clean")
    junk = st.one_of(_SCALARS, _NOT_AN_OBJECT, st.text(max_size=2))
    origin, args = get_origin(kind), get_args(kind)
    if origin is list:
        items = st.lists(_values(args[0], "noisy"), max_size=3)
        return st.one_of(items, items.map(tuple), junk)
    if origin is dict:
        entries = st.dictionaries(
            st.one_of(st.text(max_size=2), st.integers(0, 3)), _values(args[1], "noisy")
        )
        return st.one_of(entries, entries.map(lambda d: list(d.values())), junk)
    return st.one_of(_shaped(kind, "noisy"), junk)


def _container(kind: object, mode: Mode) -> SearchStrategy[object]:
    """A list, str-keyed dict or object of ``kind`` whose entries are of ``mode``."""
    origin, args = get_origin(kind), get_args(kind)
    if origin is list:
        return st.lists(_values(args[0], mode), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=4), _values(args[1], mode), max_size=3)
    assert attrs.has(kind), kind
    return _shaped(kind, mode)


@functools.cache
def _shaped(cls: type[Any], mode: Mode) -> SearchStrategy[dict[Any, Any]]:
    """Objects shaped like ``cls`` with unknown keys along. Any key may be absent; a required
    one only in ``noisy`` objects (in ``sparse`` ones its absence is the one fault)."""
    fields = attrs.fields(attrs.resolve_types(cls))
    values = {f.name: _values(f.type, mode) for f in fields}
    required = [f.name for f in fields if f.default is attrs.NOTHING and mode != "noisy"]
    known = st.fixed_dictionaries(
        {n: values[n] for n in required}, optional={n: v for n, v in values.items() if n not in required}
    )
    if mode == "sparse" and required:
        known = _rarely(known, st.builds(_without, known, st.sampled_from(required)))
    extras = st.dictionaries(_EXTRA_KEYS, _ANYTHING, max_size=2)
    return st.builds(lambda extra, own: {**extra, **own}, extras, known)


def _without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != key}


@functools.cache
def _wire_payloads(cls: type[Any]) -> SearchStrategy[object]:
    return st.one_of(_shaped(cls, "clean"), _shaped(cls, "sparse"), _shaped(cls, "noisy"), _NOT_AN_OBJECT)


@functools.cache
def _flat_payloads(cls: type[Any]) -> SearchStrategy[dict[str, object]]:
    """Top-level objects for ``figures``: the class's figures and other keys, any values."""
    names = [f.name for f in attrs.fields(cls)]
    required = [f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING]
    known = st.fixed_dictionaries({}, optional=dict.fromkeys(names, _AMOUNT))
    good = st.fixed_dictionaries(
        dict.fromkeys(required, _GOOD_AMOUNT),
        optional=dict.fromkeys(
            [n for n in names if n not in required], st.one_of(_GOOD_AMOUNT, st.sampled_from([None, ""]))
        ),
    )
    extras = st.dictionaries(st.one_of(_EXTRA_KEYS, st.text(max_size=3)), _ANYTHING, max_size=4)
    return st.builds(lambda extra, own: {**extra, **own}, extras, st.one_of(known, good))


# --- outcomes ---------------------------------------------------------------------------------


def _exact(data: object) -> object:
    """Plain data with every Decimal as (its class, its text): equal values may differ in digits."""
    if isinstance(data, Decimal):
        return (type(data).__name__, str(data))
    if isinstance(data, dict):
        return {key: _exact(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_exact(value) for value in data]
    return (type(data).__name__, data)


def _refusal(exc: UnexpectedResponseError) -> tuple[object, ...]:
    return ("refused", str(exc), exc.field, repr(exc.value))  # repr: NaN != NaN


def _outcome(payload: object, cls: type[Any], *, fast: bool) -> tuple[object, ...]:
    """What ``structure`` does with ``payload``: with its reader, or with cattrs alone."""
    try:
        if fast:
            result = structure(payload, cls, venue="v", path="$")
        else:
            with mock.patch.object(_convert, "_plan", return_value=None):
                result = structure(payload, cls, venue="v", path="$")
    except UnexpectedResponseError as exc:
        return _refusal(exc)
    return ("read", result, _exact(unstructure(result)))


def _assert_same_outcome(payload: object, cls: type[Any]) -> tuple[object, ...]:
    fast = _outcome(payload, cls, fast=True)
    assert fast == _outcome(payload, cls, fast=False)
    return fast


@pytest.fixture
def no_cattrs() -> Iterator[mock.MagicMock]:
    """``_converter`` that fails the test if called: the reader alone must answer."""
    with mock.patch.object(_convert, "_converter", side_effect=AssertionError("cattrs was used")) as spy:
        yield spy


# --- 1. the reader and cattrs agree on the built-in wire classes --------------------------------


@pytest.mark.parametrize("cls", WIRE_CLASSES + NESTED_WIRE_CLASSES, ids=lambda c: c.__qualname__)
def test_every_builtin_wire_class_has_a_reader(cls: type[Any]) -> None:
    """The venues' wire classes take the fast path (else the property below tests nothing)."""
    assert _convert._plan(cls) is not None


@pytest.mark.parametrize("cls", WIRE_CLASSES, ids=lambda c: c.__qualname__)
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_reader_and_cattrs_agree(cls: type[Any], data: st.DataObject) -> None:
    """Any payload, good or bad, has one outcome: the same instance with the same digits, or the
    same ``UnexpectedResponseError`` (message, field and value)."""
    payload = data.draw(_wire_payloads(cls), label="payload")
    outcome = _assert_same_outcome(payload, cls)
    event(str(outcome[0]))


def test_a_good_payload_never_builds_the_converter(no_cattrs: mock.MagicMock) -> None:
    """The reader answers a payload it can read on its own: cattrs is not asked."""
    payload = {"e": "382.2032", "mf": Decimal("375.1678"), "eb": "", "tb": None, "ml": 7, "time": "x"}
    result = structure(payload, kraken._TradeBalance, venue="kraken")
    assert result == kraken._TradeBalance(
        e=Decimal("382.2032"), mf=Decimal("375.1678"), eb=None, tb=None, ml=Decimal(7)
    )
    nested = {"balance": "1.50", "buyingPower": "2", "securities": {"X": {"marketValue": "3.000"}}}
    account = structure(nested, polymarket_us._AccountBalance, venue="v")
    assert str(account.securities["X"].marketValue) == "3.000"
    no_cattrs.assert_not_called()


def test_a_bad_payload_is_refused_by_cattrs(no_cattrs: mock.MagicMock) -> None:
    """A payload the reader cannot read is handed to the converter."""
    with pytest.raises(AssertionError, match="cattrs was used"):
        structure({"e": "NaN", "mf": "1"}, kraken._TradeBalance, venue="kraken")
    no_cattrs.assert_called_once()


# --- 2. figures refuses what structure refuses ------------------------------------------------


@pytest.mark.parametrize("cls", [kraken._TradeBalance, rails._Balances], ids=lambda c: c.__qualname__)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_figures_agrees_with_structure(cls: type[Any], data: st.DataObject) -> None:
    """``figures`` raises what ``structure`` raises; otherwise it is every top-level value
    ``to_decimal`` accepts, each with the digits ``to_decimal`` gives."""
    payload = data.draw(_flat_payloads(cls), label="payload")
    try:
        structure(payload, cls, venue="v", path="$")
    except UnexpectedResponseError as exc:
        refused = _refusal(exc)
    else:
        refused = None
    if refused is not None:
        with pytest.raises(UnexpectedResponseError) as info:
            figures(payload, cls, venue="v", path="$")
        assert _refusal(info.value) == refused
        event("refused")
        return
    expected: dict[str, Decimal] = {}
    for key, value in payload.items():
        if isinstance(value, dict | list | bool) or value is None or (isinstance(value, str) and value == ""):
            continue
        try:
            expected[key] = to_decimal(value)
        except AmountError:
            continue
    found = figures(payload, cls, venue="v", path="$")
    assert found == expected
    assert {k: (type(v), str(v)) for k, v in found.items()} == {
        k: (type(v), str(v)) for k, v in expected.items()
    }
    event("read")


def test_figures_keeps_other_figures_and_drops_the_rest() -> None:
    """A worked example: names, dates, flags, objects and ``null`` are left out."""
    payload = {
        "e": "1.10",
        "mf": Decimal("2.0"),
        "eb": "",
        "tb": None,
        "currency": "USD",
        "time": "2024-01-01",
        "flag": True,
        "rows": [],
        "obj": {},
        "count": 3,
        "big": "1E+400",
    }
    assert _exact(figures(payload, kraken._TradeBalance, venue="v")) == {
        "e": ("Decimal", "1.10"),
        "mf": ("Decimal", "2.0"),
        "count": ("Decimal", "3"),
    }
    with pytest.raises(UnexpectedResponseError, match=r"field \$\.mf") as info:
        figures({"e": "1", "mf": "abc"}, kraken._TradeBalance, venue="v")
    assert info.value.value == "abc"
    with pytest.raises(UnexpectedResponseError, match="required field is missing"):
        figures({"e": "1"}, kraken._TradeBalance, venue="v")
    with pytest.raises(UnexpectedResponseError, match=r"field \$\.margin"):
        figures({"totalBalance": "1", "availableBalance": "1", "margin": False}, rails._Balances, venue="v")


# --- 3. which classes get a reader ------------------------------------------------------------


@attrs.frozen
class Row:
    amount: Decimal
    label: str | None = None


@attrs.frozen
class Validated:
    side: str = attrs.field(validator=attrs.validators.in_(("buy", "sell")))


@attrs.frozen
class Converted:
    name: str = attrs.field(converter=str.upper)


@attrs.frozen
class NotInit:
    name: str
    tag: str = attrs.field(init=False, default="t")


@attrs.frozen
class Aliased:
    name: str = attrs.field(alias="label")


@attrs.frozen
class PostInit:
    name: str

    def __attrs_post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")


@attrs.frozen
class PreInit:
    name: str

    def __attrs_pre_init__(self) -> None:
        pass


@attrs.frozen
class TakesSelf:
    name: str
    copy: str = attrs.Factory(lambda self: self.name, takes_self=True)


@attrs.frozen
class Counted:
    count: int


@attrs.frozen
class Tupled:
    tags: tuple[str, ...]


@attrs.frozen
class IntKeyed:
    rows: dict[int, Row]


@attrs.frozen
class IntList:
    counts: list[int]


@attrs.frozen
class IntValues:
    counts: dict[str, int]


@attrs.frozen
class Node:
    name: str
    children: list[Node] = attrs.Factory(list)


@attrs.frozen
class Unresolved:
    name: str
    later: NoSuchName | None = None  # type: ignore[name-defined]  # noqa: F821  # never defined


INELIGIBLE: list[tuple[type[Any], dict[str, Any], object, dict[str, Any]]] = [
    # (class, good payload, its instance, bad payload)
    (Validated, {"side": "buy"}, Validated("buy"), {"side": "hold"}),
    (Converted, {"name": "ab"}, Converted("AB"), {"name": 5}),
    (NotInit, {"name": "n", "tag": "ignored"}, NotInit("n"), {"name": 5}),
    (Aliased, {"name": "a"}, Aliased(label="a"), {"label": "a"}),
    (PostInit, {"name": "n"}, PostInit("n"), {"name": ""}),
    (PreInit, {"name": "n"}, PreInit("n"), {"name": None}),
    (TakesSelf, {"name": "n"}, TakesSelf("n", "n"), {"copy": "c"}),
    (Counted, {"count": 5}, Counted(5), {"count": "x"}),
    (Tupled, {"tags": ["a", "b"]}, Tupled(("a", "b")), {"tags": [5]}),
    (IntKeyed, {"rows": {"1": {"amount": "1"}}}, IntKeyed({1: Row(Decimal(1))}), {"rows": {"x": {}}}),
    (IntList, {"counts": [1, "2"]}, IntList([1, 2]), {"counts": ["x"]}),
    (IntValues, {"counts": {"a": 1}}, IntValues({"a": 1}), {"counts": {"a": "x"}}),
    (
        Node,
        {"name": "a", "children": [{"name": "b"}]},
        Node("a", [Node("b")]),
        {"name": "a", "children": [{"name": 5}]},
    ),
]


@pytest.mark.parametrize(
    ("cls", "good", "instance", "bad"), INELIGIBLE, ids=lambda c: getattr(c, "__name__", "")
)
def test_ineligible_classes_go_to_cattrs(
    cls: type[Any], good: dict[str, Any], instance: object, bad: dict[str, Any]
) -> None:
    """A class the reader cannot fill as attrs' ``__init__`` would has no reader, and
    ``structure`` reads it through cattrs: the instance for a good payload, an
    ``UnexpectedResponseError`` for a bad one."""
    assert _convert._plan(cls) is None
    result = structure(good, cls, venue="v")
    assert result == instance
    assert _exact(attrs.asdict(result)) == _exact(attrs.asdict(instance))  # type: ignore[arg-type]
    with pytest.raises(UnexpectedResponseError) as info:
        structure(bad, cls, venue="v")
    assert info.value.venue == "v"
    assert info.value.field is not None
    assert info.value.field.startswith("$")


def test_a_converter_and_a_validator_still_run() -> None:
    """Through cattrs, ``__init__`` runs: a converter converts, a post-init check refuses."""
    assert structure({"name": "ab"}, Converted, venue="v").name == "AB"
    with pytest.raises(UnexpectedResponseError, match="unexpected shape: While structuring PostInit") as info:
        structure({"name": ""}, PostInit, venue="v")
    assert info.value.field == "$"
    assert info.value.value == {"name": ""}
    with pytest.raises(
        UnexpectedResponseError, match="unexpected shape: While structuring Validated"
    ) as refused:
        structure({"side": "hold"}, Validated, venue="v")
    assert refused.value.field == "$"


def test_an_unresolvable_forward_reference_has_no_reader() -> None:
    """A name the module never defines: no reader, and cattrs cannot read the class either (it
    raises the ``NameError`` of ``attrs.resolve_types``, as it did before the reader)."""
    with pytest.raises(NameError):
        attrs.resolve_types(Unresolved)
    assert _convert._plan(Unresolved) is None
    with pytest.raises(NameError, match="NoSuchName"):
        structure({"name": "a"}, Unresolved, venue="v")


@attrs.frozen
class Sheet:
    name: str
    note: str | None = None
    rows: list[Row] = attrs.Factory(list)
    by_key: dict[str, Row] = attrs.field(factory=dict)
    kind: str = "sheet"


@attrs.frozen
class Holder:
    row: Row


@attrs.frozen
class Lists:
    amounts: list[Decimal]
    maybe: list[Decimal | None] = attrs.Factory(list)
    names: list[str] = attrs.Factory(list)
    notes: dict[str, str | None] = attrs.Factory(dict)


@pytest.mark.parametrize("cls", [Row, Sheet, Holder, Lists], ids=lambda c: c.__name__)
def test_eligible_classes_have_a_reader(cls: type[Any]) -> None:
    """Factory and plain defaults, nested classes, lists and str-keyed dicts of the known shapes."""
    assert _convert._plan(cls) is not None


def test_eligible_classes_are_read_without_cattrs(no_cattrs: mock.MagicMock) -> None:
    """The reader fills every shape it knows, defaults included."""
    sheet = structure(
        {"name": "n", "rows": [{"amount": "1.0"}], "by_key": {"a": {"amount": 2, "label": "x"}}, "more": 1},
        Sheet,
        venue="v",
    )
    assert sheet == Sheet("n", None, [Row(Decimal("1.0"))], {"a": Row(Decimal(2), "x")}, "sheet")
    assert str(sheet.rows[0].amount) == "1.0"
    lists = structure(
        {
            "amounts": ["1", Decimal("2.50")],
            "maybe": [None, "", "3"],
            "names": ["a"],
            "notes": {"k": None, "j": "v"},
        },
        Lists,
        venue="v",
    )
    assert lists == Lists(
        [Decimal(1), Decimal("2.50")], [None, None, Decimal(3)], ["a"], {"k": None, "j": "v"}
    )
    assert structure({"row": {"amount": "5"}}, Holder, venue="v") == Holder(Row(Decimal(5)))
    no_cattrs.assert_not_called()


# --- 4. the reader's edge cases ---------------------------------------------------------------

EDGES: list[tuple[type[Any], object, str]] = [
    # (class, payload, what both paths do: "read" or the refused field)
    (Sheet, ["name"], "$.name"),
    (Sheet, "name", "$.name"),
    (Holder, {"row": ["amount", "1"]}, "$.row.amount"),
    (Holder, {"row": "1"}, "$.row.amount"),
    (Holder, {"row": None}, "$.row"),
    (Sheet, {"name": "n", "rows": [["amount"]]}, "$.rows[0].amount"),
    (Sheet, {"name": "n", "rows": ["x"]}, "$.rows[0].amount"),
    (Sheet, {"name": "n", "rows": ({"amount": "1"},)}, "read"),  # cattrs reads any iterable
    (Sheet, {"name": "n", "rows": {"amount": "1"}}, "$.rows[0].amount"),
    (Sheet, {"name": "n", "rows": "ab"}, "$.rows[0].amount"),
    (Sheet, {"name": "n", "rows": None}, "$.rows"),
    (Sheet, {"name": "n", "by_key": [{"amount": "1"}]}, "$.by_key"),
    (Sheet, {"name": "n", "by_key": "ab"}, "$.by_key"),
    (Sheet, {"name": "n", "by_key": {1: {"amount": "1"}}}, "$.by_key[1]"),
    (Sheet, {"name": "n", "by_key": {"a": {"amount": "1"}, 2: {"amount": "2"}}}, "$.by_key[2]"),
    (Sheet, {"name": 5}, "$.name"),
    (Sheet, {"name": "n", "note": None}, "read"),
    (Sheet, {"name": "n", "note": 5}, "$.note"),
    (Sheet, {"name": "n", "kind": None}, "$.kind"),
    (Sheet, {"name": _Text("n")}, "read"),
    (Sheet, {}, "$.name"),
    (Holder, {"row": {"amount": "1", "label": 3}}, "$.row.label"),
    (Holder, {"row": {"label": "x"}}, "$.row.amount"),
    (Lists, {"amounts": ["1", "x"]}, "$.amounts[1]"),
    (Lists, {"amounts": [], "maybe": ["", "NaN"]}, "$.maybe[1]"),
    (Lists, {"amounts": [], "names": ["a", 5]}, "$.names[1]"),
    (Lists, {"amounts": [], "notes": {"k": 5}}, "$.notes.k"),
    (Lists, {"amounts": [], "notes": {"k": None}}, "read"),
]


@pytest.mark.parametrize(("cls", "payload", "expected"), EDGES)
def test_reader_edge_cases_match_cattrs(cls: type[Any], payload: object, expected: str) -> None:
    """Shapes the reader does not expect: the outcome is cattrs', and it is the one expected."""
    outcome = _assert_same_outcome(payload, cls)
    if expected == "read":
        assert outcome[0] == "read"
    else:
        assert outcome[0] == "refused"
        assert outcome[2] == expected


def test_the_tuple_is_read_as_a_list() -> None:
    """cattrs reads a tuple for a ``list`` field; the reader leaves that to it."""
    sheet = structure({"name": "n", "rows": ({"amount": "1"},)}, Sheet, venue="v")
    assert sheet.rows == [Row(Decimal(1))]
    assert type(sheet.rows) is list


def test_a_required_field_missing_is_named() -> None:
    """A missing required field is cattrs' refusal, naming it."""
    with pytest.raises(UnexpectedResponseError, match="required field is missing") as info:
        structure({"note": "x"}, Sheet, venue="v")
    assert info.value.field == "$.name"
    with pytest.raises(UnexpectedResponseError, match="required field is missing") as nested:
        structure({"row": {}}, Holder, venue="v")
    assert nested.value.field == "$.row.amount"


def test_a_factory_default_is_fresh_each_time(no_cattrs: mock.MagicMock) -> None:
    """An absent key with ``Factory(list)`` gets a new list per instance, not a shared one."""
    first = structure({"name": "a"}, Sheet, venue="v")
    second = structure({"name": "b"}, Sheet, venue="v")
    assert first.rows == second.rows == []
    assert first.rows is not second.rows
    assert first.by_key is not second.by_key
    assert first.note is None
    assert first.kind == "sheet"
    no_cattrs.assert_not_called()


# --- 5. Balance and Holding check their own fields ---------------------------------------------

_NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def _balance(**changes: Any) -> Balance:
    fields: dict[str, Any] = {
        "label": "k",
        "exchange": "kraken",
        "currency": "USD",
        "total": Decimal("1.0"),
        "available": Decimal("0.5"),
        "fetched_at": _NOW,
    }
    fields.update(changes)
    return Balance(**fields)


def _validator_error(cls: type[Any], name: str, value: object) -> TypeError:
    """What attrs' ``instance_of(Decimal)`` raises for ``value`` in field ``name``."""
    with pytest.raises(TypeError) as info:
        attrs.validators.instance_of(Decimal)(None, attrs.fields_dict(cls)[name], value)
    return info.value


@pytest.mark.parametrize("name", ["total", "available", "wallet", "margin_used", "unrealized_pnl"])
@pytest.mark.parametrize("value", ["1", 1, 1.5, True], ids=repr)
def test_a_balance_figure_of_another_type_is_refused(name: str, value: object) -> None:
    """A figure that is not a Decimal raises attrs' ``instance_of`` error, naming the field."""
    with pytest.raises(TypeError) as info:
        _balance(**{name: value})
    assert info.value.args == _validator_error(Balance, name, value).args
    assert f"'{name}' must be <class 'decimal.Decimal'>" in str(info.value)


def test_a_missing_figure_is_refused_where_none_is_not_allowed() -> None:
    """``None`` is refused for ``total`` and ``available``, accepted for the optional figures."""
    for name in ("total", "available"):
        with pytest.raises(TypeError, match=f"'{name}' must be"):
            _balance(**{name: None})
    balance = _balance(wallet=None, margin_used=None, unrealized_pnl=None)
    assert balance.wallet is balance.margin_used is balance.unrealized_pnl is None


@pytest.mark.parametrize("name", ["total", "available", "wallet", "margin_used", "unrealized_pnl"])
def test_a_decimal_subclass_is_kept(name: str) -> None:
    """A Decimal subclass passes the check and is kept as given."""
    figure = _Figure("2.50")
    assert getattr(_balance(**{name: figure}), name) is figure


@pytest.mark.parametrize(
    "when",
    [
        datetime(2024, 1, 2),  # noqa: DTZ001  # naive on purpose
        datetime(2024, 1, 2, tzinfo=timezone(timedelta(hours=1))),
        datetime(2024, 1, 2, tzinfo=timezone(timedelta(minutes=-30))),
        "2024-01-02T00:00:00Z",
        None,
    ],
    ids=repr,
)
def test_fetched_at_must_be_aware_utc(when: object) -> None:
    """A naive time, another offset or not a datetime at all: ``ValueError`` naming fetched_at."""
    with pytest.raises(ValueError, match="fetched_at must be an aware UTC datetime") as info:
        _balance(fetched_at=when)
    assert repr(when) in str(info.value)


class _Moment(datetime):
    """A datetime subclass (pandas' Timestamp is one)."""


@pytest.mark.parametrize(
    "when",
    [
        datetime(2024, 1, 2, tzinfo=timezone.utc),  # noqa: UP017  # the same object as UTC
        datetime(2024, 1, 2, tzinfo=timezone(timedelta(0), "Z")),  # another object, offset zero
        _Moment(2024, 1, 2, tzinfo=UTC),
    ],
    ids=repr,
)
def test_every_utc_is_accepted(when: datetime) -> None:
    """UTC by any tzinfo object is UTC."""
    assert UTC is timezone.utc  # noqa: UP017  # Python 3.11: one object
    assert _balance(fetched_at=when).fetched_at is when


def test_evolve_checks_too() -> None:
    """``attrs.evolve`` builds through ``__init__``: the checks run again."""
    balance = _balance()
    with pytest.raises(TypeError, match=re.escape("'total' must be <class 'decimal.Decimal'>")):
        attrs.evolve(balance, total="x")
    with pytest.raises(ValueError, match="fetched_at"):
        attrs.evolve(balance, fetched_at=datetime(2024, 1, 2))  # noqa: DTZ001
    assert attrs.evolve(balance, wallet=Decimal(3)).wallet == Decimal(3)


def test_the_first_bad_field_is_named() -> None:
    """Several bad fields: the checks run in field order, as attrs' validators did."""
    with pytest.raises(TypeError, match="'total'"):
        _balance(total="x", available="y", fetched_at=None)
    with pytest.raises(ValueError, match="fetched_at"):
        _balance(total=_Figure(1), fetched_at=None)


@pytest.mark.parametrize("name", ["total", "available"])
@pytest.mark.parametrize("value", ["1", 1, 1.5], ids=repr)
def test_a_holding_figure_of_another_type_is_refused(name: str, value: object) -> None:
    """A Holding figure that is not a Decimal (or None) raises attrs' error, naming the field."""
    with pytest.raises(TypeError) as info:
        Holding(currency="BTC", **{name: value})
    assert info.value.args == _validator_error(Holding, name, value).args
    assert f"'{name}' must be <class 'decimal.Decimal'>" in str(info.value)


def test_a_holding_takes_none_decimals_and_subclasses() -> None:
    """None, a Decimal and a Decimal subclass are all kept as given."""
    figure = _Figure("1.5")
    assert Holding(currency=None) == Holding(currency=None, total=None, available=None)
    holding = Holding(currency="BTC", total=Decimal("2.0"), available=figure)
    assert str(holding.total) == "2.0"
    assert holding.available is figure
    with pytest.raises(TypeError, match="'available'"):
        attrs.evolve(holding, available="1")
