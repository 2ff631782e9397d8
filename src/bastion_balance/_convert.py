"""The private cattrs converter: wire payloads -> private attrs wire classes, Decimal-safe.

``Decimal`` fields are required and strict; ``Decimal | None`` fields read ``""``, ``null`` or
absence as ``None`` (never zero). Every structuring failure becomes an
``UnexpectedResponseError`` naming the venue, the field path and the offending value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, TypeVar

import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError

from ._decimal import AmountError, to_decimal
from .exceptions import UnexpectedResponseError

__all__ = ["structure"]

T = TypeVar("T")

_converter: Final = cattrs.Converter(forbid_extra_keys=False, detailed_validation=True)


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


_converter.register_structure_hook(Decimal, _amount)
_converter.register_structure_hook_func(lambda t: t == (Decimal | None), _optional_amount)
_converter.register_structure_hook(str, _text)


def _leaf(exc: BaseException, path: str, payload: object) -> tuple[str, BaseException, object]:
    """The first underlying failure of a cattrs error, with its path and the value there."""
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
    try:
        return _converter.structure(payload, cls)
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


def unstructure(obj: Any) -> Any:  # noqa: ANN401  # mirrors cattrs
    """Plain data from an attrs wire object (tests and fixtures)."""
    return _converter.unstructure(obj)
