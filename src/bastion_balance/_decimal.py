"""The one way venue numbers become :class:`~decimal.Decimal`, and exact sums.

The money rules: a numeric string matches
``[+-]?(\\d+(\\.\\d*)?|\\.\\d+)([eE][+-]?\\d{1,4})?`` with ASCII digits and nothing else; at most
100 significant digits; an adjusted exponent within -100..100. JSON is decoded with
``parse_float=Decimal`` and ``parse_int=Decimal``; ``NaN`` and ``Infinity`` are refused.
An object that names the same key twice, at any depth, is refused too: the JSON standard leaves
its meaning open (Python keeps the last value, other parsers the first), so a money answer that
says ``"total": "1"`` and ``"total": "999999"``, or an empty ``"error"`` after a real one, has
no single reading. Floats and booleans are never money.
"""

from __future__ import annotations

import decimal
import functools
import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final, NoReturn

from .exceptions import UnexpectedResponseError

__all__ = ["SUM_PRECISION", "exact_context", "exact_sum", "loads", "parse_amount"]

_NUMBER: Final = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?")
#: The common case of ``_NUMBER``: no exponent. Such a string of at most MAX_DIGITS characters is
#: within every limit by its length alone (at most 100 digits; an adjusted exponent, or a zero's
#: exponent, between -99 and 99), so it needs no range check.
_PLAIN: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
MAX_DIGITS: Final = 100
MAX_ADJUSTED_EXPONENT: Final = 100
SUM_PRECISION: Final = 1000


class AmountError(ValueError):
    """A value that is not an acceptable amount; the caller adds venue and field."""

    def __init__(self, reason: str, value: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.value = value


def _check_range(number: Decimal, original: object, *, short: bool = False) -> Decimal:
    """``number`` if finite and within the digit and exponent limits.

    ``short`` says the text it came from had at most MAX_DIGITS characters, so it cannot hold
    more significant digits than that (the common case, checked without building a tuple).
    """
    if not number.is_finite():
        raise AmountError("not a finite number", original)
    if short and number:
        scale = number.adjusted()
    else:
        _, digits, exponent = number.as_tuple()
        assert isinstance(exponent, int)  # noqa: S101  # finite, checked above
        significant = "".join(map(str, digits)).strip("0")
        if len(significant) > MAX_DIGITS:
            raise AmountError(f"more than {MAX_DIGITS} significant digits", original)
        scale = number.adjusted() if significant else exponent
    if not -MAX_ADJUSTED_EXPONENT <= scale <= MAX_ADJUSTED_EXPONENT:
        raise AmountError("exponent out of range", original)
    return number


@functools.lru_cache(maxsize=4096)
def plain_decimal(text: str) -> Decimal | None:
    """The Decimal of a plain numeric string (no exponent, at most MAX_DIGITS characters), or
    ``None`` when it is not one. Cached: a venue's answers repeat their figures (a poll's
    ``"0.00000000"``s, a balance that did not move), and a Decimal is immutable."""
    return Decimal(text) if _PLAIN.fullmatch(text) else None


@functools.lru_cache(maxsize=4096)
def figure_of_text(text: str) -> Decimal | None:
    """The Decimal of ``text`` (at most MAX_DIGITS characters) if it is an amount by the money
    rules, else ``None``: what a top-level figure that may be a name or a date (``"USD"``,
    ``"UNIFIED"``) needs, with the answer cached either way so a name costs no exception."""
    number = plain_decimal(text)
    if number is not None:
        return number
    try:
        return to_decimal(text)
    except AmountError:
        return None


def checked_decimal(value: Decimal) -> Decimal:
    """A Decimal within the limits. One that ``str`` writes plainly in at most MAX_DIGITS
    characters is (``str`` switches to an exponent below 1E-6 and for positive exponents),
    which saves the digit count of the general check."""
    if value.is_finite():
        text = str(value)
        if len(text) <= MAX_DIGITS and "E" not in text:
            return value
    return _check_range(value, value)


def to_decimal(value: object) -> Decimal:
    """Convert a wire value to Decimal or raise :class:`AmountError` (no venue context)."""
    if value.__class__ is str and len(value) <= MAX_DIGITS:  # exactly a str: a subclass takes the full checks
        number = plain_decimal(value)
        if number is not None:
            return number
    if isinstance(value, bool):
        raise AmountError("a boolean is not an amount", value)
    if isinstance(value, Decimal):
        return checked_decimal(value)
    if isinstance(value, int):
        if abs(value) >= 10 ** (MAX_ADJUSTED_EXPONENT + 1):
            raise AmountError("exponent out of range", value)
        return _check_range(Decimal(value), value)
    if isinstance(value, str):
        if len(value) > MAX_DIGITS * 2 + 10 or not _NUMBER.fullmatch(value):
            if value == "":
                raise AmountError("empty string", value)
            raise AmountError("not a plain decimal number", value)
        return _check_range(Decimal(value), value, short=len(value) <= MAX_DIGITS)
    if isinstance(value, float):
        raise AmountError("a binary float is not an exact amount", value)
    if value is None:
        raise AmountError("missing (null)", value)
    raise AmountError(f"a {type(value).__name__} is not an amount", value)


def parse_amount(value: object, *, venue: str, field: str) -> Decimal:
    """Return ``value`` as an exact Decimal, or raise :class:`UnexpectedResponseError`.

    The error names the venue, the field and the offending value.

    >>> parse_amount("60960.82599588", venue="coinswitch", field="total_balance")
    Decimal('60960.82599588')
    """
    try:
        return to_decimal(value)
    except AmountError as exc:
        raise UnexpectedResponseError(
            f"bad number: {exc.reason}", venue=venue, field=field, value=value
        ) from exc


def _refuse_constant(name: str) -> NoReturn:
    raise AmountError("not a finite number", name)


class _DuplicateKeyError(ValueError):
    """A JSON object names ``key`` twice (raised inside the decoder, translated by ``loads``)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The object as a dict; a key sent twice raises :class:`_DuplicateKeyError`."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:  # pragma: no branch  # a duplicate is there: len() said so
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


class _Pairs(list[tuple[str, Any]]):
    """A JSON object kept as its key-value pairs, duplicates and all (error paths only)."""


def _duplicate_path(body: bytes | str, key: str) -> str:
    """Where the first object to repeat a key is, e.g. ``$.result.ZUSD``.

    The decoder finishes objects innermost first, so the one it refused is the first object, in
    post-order, that repeats a key. Falls back to ``$..key`` (anywhere) if the body cannot be
    read again (it is also truncated, say, or nested too deep).
    """
    try:
        tree = json.loads(body, object_pairs_hook=_Pairs, parse_float=str, parse_int=str, parse_constant=str)
    except (ValueError, RecursionError):
        return f"$..{key}"
    stack: list[tuple[object, str, bool]] = [(tree, "$", False)]
    while stack:
        node, path, done = stack.pop()
        if isinstance(node, _Pairs):
            if done:
                seen: set[str] = set()
                for name, _ in node:
                    if name in seen:
                        return f"{path}.{name}"
                    seen.add(name)
                continue
            stack.append((node, path, True))
            stack.extend((value, f"{path}.{name}", False) for name, value in reversed(node))
        elif isinstance(node, list):
            stack.extend(
                (value, f"{path}[{index}]", False) for index, value in reversed(list(enumerate(node)))
            )
    return f"$..{key}"  # pragma: no cover  # the first decode found one


#: One decoder for every answer (``json.loads`` with hooks builds a new one per call).
_DECODER: Final = json.JSONDecoder(
    parse_float=Decimal,  # the type itself: no Python call per number
    parse_int=Decimal,
    parse_constant=_refuse_constant,
    object_pairs_hook=_unique_object,
)


def loads(body: bytes | str, *, venue: str) -> Any:  # noqa: ANN401  # JSON is untyped until structured
    """Decode JSON with every number as Decimal; anything else is an UnexpectedResponseError.

    That includes an object with a duplicate key, at any depth: the error names the key and
    where it is (``field``), since a venue's answer that says two things is not a balance.
    """
    try:
        text = body if isinstance(body, str) else body.decode(json.detect_encoding(body), "surrogatepass")
        return _DECODER.decode(text)  # what json.loads does, without building a decoder per call
    except _DuplicateKeyError as exc:
        raise UnexpectedResponseError(
            f"duplicate key {exc.key!r} in a JSON object: the answer is ambiguous",
            venue=venue,
            field=_duplicate_path(body, exc.key),
            value=exc.key,
        ) from exc
    except AmountError as exc:
        raise UnexpectedResponseError(
            "response holds NaN or Infinity", venue=venue, field="$", value=exc.value
        ) from exc
    except (ValueError, RecursionError) as exc:
        snippet = body[:80] if isinstance(body, str) else body[:80].decode("utf-8", "replace")
        raise UnexpectedResponseError(f"response is not JSON: {snippet!r}", venue=venue) from exc


def exact_context() -> decimal.Context:
    """A context of 1,000 digits that raises instead of rounding."""
    return decimal.Context(
        prec=SUM_PRECISION,
        rounding=decimal.ROUND_HALF_EVEN,
        Emax=decimal.MAX_EMAX,
        Emin=decimal.MIN_EMIN,
        traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
    )


#: The template of the sums and products: ``localcontext`` works on a copy of it (flags and all),
#: which costs a fifth of building a context with its traps each time.
_EXACT: Final = exact_context()


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """Sum Decimals exactly; raise ``decimal.Inexact`` rather than round."""
    total = Decimal(0)
    with decimal.localcontext(_EXACT):
        for value in values:
            total = total + value
    return total


def exact_mul(left: Decimal, right: Decimal) -> Decimal:
    """Multiply exactly; raise ``decimal.Inexact`` rather than round."""
    with decimal.localcontext(_EXACT):
        return left * right
