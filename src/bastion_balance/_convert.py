"""The private structurer: wire payloads -> private attrs wire classes, Decimal-safe.

``Decimal`` fields are required and strict; ``Decimal | None`` fields read ``""``, ``null`` or
absence as ``None`` (never zero). Every structuring failure becomes an
``UnexpectedResponseError`` naming the venue, the field path and the offending value.

Two paths, one meaning. A wire class whose fields are all of the few shapes venues send
(``Decimal``, ``Decimal | None``, ``str``, ``str | None``, another such class, a ``list`` or a
``str``-keyed ``dict`` of one) is read by a plan built once from its fields: each value is
checked and converted once, and the instance is filled in without a second pass. Anything the
plan does not expect (a missing field, a bad number, another container, a class with validators
or converters) is handed to a cattrs converter, which structures the payload again from the
start and so raises exactly the error it always did: a payload either has one reading or is
refused the same way. Other classes (a custom provider's) go to cattrs directly, and cattrs is
imported only when something needs it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar, get_args, get_origin

import attrs

from ._decimal import MAX_DIGITS, AmountError, checked_decimal, figure_of_text, plain_decimal, to_decimal
from .exceptions import UnexpectedResponseError

# The class of ``attrs.Factory(...)``: ``attrs.Factory`` itself is typed as an overloaded function.
_FACTORY: Final[type[Any]] = type(attrs.Factory(list))

if TYPE_CHECKING:
    import cattrs

__all__ = ["figures", "structure"]

T = TypeVar("T")


def _amount(value: object, _type: object) -> Decimal:
    return to_decimal(value)


def _optional_amount(value: object, _type: object) -> Decimal | None:
    if value is None or (value.__class__ is str and not value):  # a Decimal is never compared to ""
        return None
    return to_decimal(value)


def _text(value: object, _type: object) -> str:
    if not isinstance(value, str):
        msg = f"expected a string, got {type(value).__name__}"
        raise TypeError(msg)
    return value


@functools.cache
def _converter() -> cattrs.Converter:
    """The cattrs converter (built on first use: the happy path of the built-in wire classes never
    needs it)."""
    import cattrs  # noqa: PLC0415  # an import a fetch of a built-in venue does not need

    converter = cattrs.Converter(forbid_extra_keys=False, detailed_validation=True)
    converter.register_structure_hook(Decimal, _amount)
    converter.register_structure_hook_func(lambda t: t == (Decimal | None), _optional_amount)
    converter.register_structure_hook(str, _text)
    return converter


class _Miss(Exception):  # not an error: "let cattrs say what is wrong"
    """The plan met something it does not expect; cattrs reads the payload instead."""


_MISSING: Final = object()
_Read = Callable[[object], object]


def _read_amount(value: object) -> Decimal:
    return to_decimal(value)


def _read_optional_amount(value: object) -> Decimal | None:
    if value is None or (value.__class__ is str and not value):
        return None
    return to_decimal(value)


def _read_text(value: object) -> str:
    if not isinstance(value, str):
        raise _Miss
    return value


def _read_optional_text(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Miss
    return value


def _reader(kind: object) -> _Read | None:
    """How the plan reads one value of type ``kind``, or None if it does not know the type."""
    if kind is Decimal:
        return _read_amount
    if kind == (Decimal | None):
        return _read_optional_amount
    if kind is str:
        return _read_text
    if kind == (str | None):
        return _read_optional_text
    origin, args = get_origin(kind), get_args(kind)
    if origin is list and len(args) == 1:
        item = _reader(args[0])
        if item is None:
            return None

        def read_list(value: object) -> list[object]:
            if value.__class__ is not list:
                raise _Miss
            return [item(entry) for entry in value]

        return read_list
    if origin is dict and len(args) == 2 and args[0] is str:  # key and value
        entry_reader = _reader(args[1])
        if entry_reader is None:
            return None

        def read_dict(value: object) -> dict[str, object]:
            if value.__class__ is not dict:
                raise _Miss
            out = {}
            for key, entry in value.items():
                if key.__class__ is not str:
                    raise _Miss
                out[key] = entry_reader(entry)
            return out

        return read_dict
    if isinstance(kind, type) and attrs.has(kind):
        return _plan(kind)
    return None


_AMOUNTS: Final = (_read_amount, _read_optional_amount)
_BUILDING: Final[set[type[Any]]] = set()


@functools.cache
def _plan(cls: type[Any]) -> _Read | None:
    """The reader of attrs class ``cls``, or None when cattrs must read it (see the module doc)."""
    if cls in _BUILDING:  # a class that holds itself: left to cattrs
        return None
    _BUILDING.add(cls)
    try:
        return _build_plan(cls)
    finally:
        _BUILDING.discard(cls)


def _build_plan(cls: type[Any]) -> _Read | None:
    if getattr(cls, "__attrs_post_init__", None) or getattr(cls, "__attrs_pre_init__", None):
        return None
    try:
        fields = attrs.fields(attrs.resolve_types(cls))
    except (NameError, TypeError):  # a forward reference the module cannot resolve
        return None
    namespace: dict[str, Any] = {
        "cls": cls,
        "new": object.__new__,
        "assign": object.__setattr__,
        "plain": plain_decimal,
        "checked": checked_decimal,
        "to_decimal": to_decimal,
        "Decimal": Decimal,
        "str": str,
        "dict": dict,
        "isinstance": isinstance,
        "M": _MISSING,
        "Miss": _Miss,
    }
    lines = ["def read(o):", "    if not isinstance(o, dict):", "        raise Miss"]
    lines += ["    g = o.get", "    i = new(cls)"]
    for index, field in enumerate(fields):
        if field.validator or field.converter or not field.init or field.alias != field.name:
            return None
        read = _reader(field.type)
        if read is None:
            return None
        lines += [f"    v = g({field.name!r}, M)", "    if v is M:"]
        default = field.default
        if default is attrs.NOTHING:
            lines.append("        raise Miss  # required: cattrs names it")
        elif isinstance(default, _FACTORY):
            if default.takes_self:
                return None
            namespace[f"f{index}"] = default.factory
            lines.append(f"        v = f{index}()")
        else:
            namespace[f"d{index}"] = default
            lines.append(f"        v = d{index}")
        if read in _AMOUNTS:  # what _read_amount / _read_optional_amount do, without calls
            lines += [
                f"    elif v.__class__ is str and v and len(v) <= {MAX_DIGITS}:",
                "        n = plain(v)",
                "        v = to_decimal(v) if n is None else n",
                "    elif v.__class__ is Decimal:",
                "        v = checked(v)",
            ]
            if read is _read_optional_amount:
                lines += ["    elif v is None or (v.__class__ is str and not v):", "        v = None"]
            lines += ["    else:", "        v = to_decimal(v)"]
        else:
            namespace[f"r{index}"] = read
            lines += ["    else:", f"        v = r{index}(v)"]
        lines.append(f"    assign(i, {field.name!r}, v)")
    lines.append("    return i")
    # Compiled once per class, as cattrs and attrs do: a loop over the fields costs twice as much.
    exec(compile("\n".join(lines), f"<bastion_balance reader {cls.__qualname__}>", "exec"), namespace)  # noqa: S102
    read_object: _Read = namespace["read"]
    return read_object


def _leaf(exc: BaseException, path: str, payload: object) -> tuple[str, BaseException, object]:
    """The first underlying failure of a cattrs error, with its path and the value there."""
    from cattrs.errors import ClassValidationError, IterableValidationError  # noqa: PLC0415

    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, _ = exc.group_exceptions()
        if with_notes:
            inner, note = with_notes[0]
            step = getattr(note, "name", None)
            if step is None:
                step = getattr(note, "index", None)
            value = payload.get(step) if isinstance(payload, dict) else None
            if isinstance(payload, list) and isinstance(step, int) and step < len(payload):
                value = payload[step]
            suffix = f"[{step}]" if isinstance(step, int) else f".{step}"
            return _leaf(inner, path + suffix, value)
    return path, exc, payload


def structure(payload: object, cls: type[T], *, venue: str, path: str = "$") -> T:
    """Structure ``payload`` into ``cls`` or raise :class:`UnexpectedResponseError`."""
    read = _plan(cls) if attrs.has(cls) else None
    if read is not None:
        try:
            return read(payload)  # type: ignore[return-value]
        except (_Miss, AmountError):
            pass  # cattrs reads it again and says what is wrong (or, if nothing is, returns it)
    from cattrs.errors import ClassValidationError, IterableValidationError  # noqa: PLC0415

    try:
        return _converter().structure(payload, cls)
    except (ClassValidationError, IterableValidationError, AmountError, TypeError) as exc:
        where, cause, value = _leaf(exc, path, payload)
        if isinstance(cause, KeyError):
            reason = "required field is missing"
        elif isinstance(cause, AmountError):
            reason = f"bad number: {cause.reason}"
            value = cause.value
        else:
            reason = f"unexpected shape: {cause}"
        raise UnexpectedResponseError(reason, venue=venue, field=where, value=value) from exc


_NOT_FIGURES: Final = frozenset({dict, list, bool, type(None)})


def all_figures(payload: Mapping[str, Any]) -> dict[str, Decimal]:
    """Every numeric top-level value of ``payload`` as a Decimal, by its key; the rest left out
    (objects, lists, booleans, ``null``, ``""``, text that is not a number, numbers outside the
    money rules). Each value is looked at once; short text through a cache, as venues repeat
    their figures and their names."""
    found: dict[str, Decimal] = {}
    of_text, checked = figure_of_text, checked_decimal
    for name, value in payload.items():
        kind = value.__class__
        try:
            if kind is str:
                if len(value) <= MAX_DIGITS:
                    number = of_text(value)
                    if number is not None:
                        found[name] = number
                else:  # long text: the full checks, uncached
                    found[name] = to_decimal(value)
            elif kind is Decimal:  # a JSON number
                found[name] = checked(value)
            elif kind not in _NOT_FIGURES:
                found[name] = to_decimal(value)
        except AmountError:
            continue
    return found


@functools.cache
def _figure_fields(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """``(required, optional)``: the names of the ``Decimal`` and ``Decimal | None`` fields of
    ``cls`` (its other fields are the caller's to read)."""
    required, optional = [], []
    for field in attrs.fields(attrs.resolve_types(cls)):
        if field.type is Decimal:
            required.append(field.name)
        elif field.type == (Decimal | None):
            optional.append(field.name)
    return frozenset(required), frozenset(optional)


def figures(payload: dict[str, Any], cls: type, *, venue: str, path: str = "$") -> dict[str, Decimal]:
    """Every numeric top-level figure of ``payload`` as a Decimal, each converted once, checked
    against the figures of wire class ``cls``.

    A required (``Decimal``) field of ``cls`` must be there; an optional one (``Decimal | None``)
    may be absent, ``""`` or ``null`` (then it is not in the result). Anything else, and any
    value that is not a number, is refused exactly as :func:`structure` refuses it. Other
    top-level values are left out: objects, lists, booleans, ``null``, ``""`` and text that is
    not a number (timestamps, flags, names), as ``extra_figures`` leaves them out. Fields of
    ``cls`` that are not figures (lists, nested objects) are not looked at.
    """
    required, optional = _figure_fields(cls)
    found = all_figures(payload)
    if not required <= found.keys():
        _refuse(payload, cls, venue=venue, path=path)
    for name in optional - found.keys():  # absent, "" or null, or else refused
        value = payload.get(name)
        if value is not None and not (value.__class__ is str and not value):
            _refuse(payload, cls, venue=venue, path=path)
    return found


def _refuse(payload: object, cls: type[Any], *, venue: str, path: str) -> NoReturn:
    """Raise what :func:`structure` says of a payload :func:`figures` could not read."""
    structure(payload, cls, venue=venue, path=path)
    msg = "the payload does not fit its wire class"  # pragma: no cover  # structure() raised above
    raise UnexpectedResponseError(msg, venue=venue, field=path, value=None)  # pragma: no cover


def unstructure(obj: Any) -> Any:  # noqa: ANN401  # mirrors cattrs
    """Plain data from an attrs wire object (tests and fixtures)."""
    return _converter().unstructure(obj)
