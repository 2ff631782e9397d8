"""How the API reference of the docs site reads ``bastion_balance`` (a griffe extension, see mkdocs.yml).

mkdocstrings reads the package statically with griffe. What in the source would read badly or not
at all is fixed here, at load time, without touching the source:

- **Computed ``__all__``.** ``bastion_balance``, ``testing`` and ``providers`` extend ``__all__``
  at run time (``__all__ += ...``) and import some of its names only on first use (the only
  import griffe sees is under ``if TYPE_CHECKING``). Their ``__all__`` is read from the module
  itself, a name griffe did not find becomes an alias of the object, and every exported alias
  counts as available at run time (it is, through the module's ``__getattr__``).
- **attrs classes.** attrs writes ``__init__`` at run time, so griffe sees none and a class
  would show no signature. An ``__init__`` is built from the fields, as attrs builds it:
  annotated attributes in source order (parents' first), ``kw_only``, ``init=False``,
  ``default=`` / ``factory=`` and ``alias=`` (a private field's parameter has no underscore),
  typed as its converter's input where that says more than ``object`` (``str | bytes`` for a
  key it parses); each field shows its default, not the ``attrs.field(...)`` call.
- **Private names.** A default or a value that names a private object (``_EMPTY``) shows as
  ``...``, a private type alias as what it stands for, and an attribute computed in a method
  (``self.x = ...``) or holding a long document shows no value.
- **Attribute comments.** ``#:`` comments above an attribute are its documentation (the Sphinx
  convention the code uses), so they become its docstring.
- **reStructuredText in docstrings.** The docstrings are plain prose rendered as Markdown, with a
  few Sphinx habits: roles (``:class:`~a.b.C```) become code (``C``), a paragraph ending in
  ``::`` introduces a code block, and ``>>>`` examples become ``pycon`` blocks without their
  ``# doctest:`` directives.
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from collections.abc import Iterator
from typing import Any

import griffe

PACKAGE = "bastion_balance"
ATTRS_DECORATORS = frozenset(
    {"attrs.frozen", "attrs.define", "attrs.mutable", "attr.s", "attr.attrs", "attr.frozen", "attr.define"}
)
ATTRS_FIELDS = frozenset({"attrs.field", "attr.ib", "attr.attrib", "attr.field"})

#: ``:class:`~bastion_balance.Rate```, ``:meth:`start```, ``:py:func:`x <y>```.
ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`<]+?)(?:\s*<[^`>]+>)?`")
DOCTEST_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")
FENCE = "```"
#: Modules whose ``__all__`` is partly computed (``__all__ += ...``): read from the module itself.
RUNTIME_EXPORTS = frozenset({PACKAGE, f"{PACKAGE}.testing", f"{PACKAGE}.providers"})
#: Longer values (the simulators' documented answers) are left out of an attribute's signature.
MAX_VALUE_CHARS = 120


# -- docstrings ---------------------------------------------------------------------------------


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    text = target.rsplit(".", 1)[-1] if tilde else target
    return f"``{text}``"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _language(code: str) -> str:
    try:
        ast.parse(code)
    except SyntaxError:
        return "text"
    return "python"


def _literal_block(lines: list[str], start: int, out: list[str]) -> int:
    """``Text::`` then an indented block: ``Text:`` and a fenced block. Returns the next index."""
    head = lines[start]
    base = _indent(head)
    stripped = head.rstrip()[:-2].rstrip()
    if stripped.strip():
        out.append(stripped + ":")
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > base):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # trailing blank lines belong to what follows
    body = textwrap.dedent("\n".join(lines[start + 1 : end])).strip("\n")
    pad = " " * base
    out.extend(["", pad + FENCE + _language(body)])
    out.extend(pad + line if line else "" for line in body.split("\n"))
    out.append(pad + FENCE)
    return end


def _doctest_block(lines: list[str], start: int, out: list[str]) -> int:
    """Consecutive ``>>>`` lines with their output, up to a blank line: a ``pycon`` block."""
    pad = " " * _indent(lines[start])
    end = start
    while end < len(lines) and lines[end].strip():
        end += 1
    if out and out[-1].strip():
        out.append("")
    out.append(pad + FENCE + "pycon")
    out.extend(pad + DOCTEST_DIRECTIVE.sub("", line[len(pad) :]).rstrip() for line in lines[start:end])
    out.append(pad + FENCE)
    return end


def markdown_docstring(text: str) -> str:
    """A docstring of the package as the Markdown mkdocstrings renders (see the module docstring)."""
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    fenced = False
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith(FENCE):
            fenced = not fenced
        if not fenced and line.lstrip().startswith(">>>"):
            index = _doctest_block(lines, index, out)
            continue
        if not fenced and line.rstrip().endswith("::") and not line.rstrip().endswith(":::"):
            index = _literal_block(lines, index, out)
            continue
        out.append(line if fenced else ROLE.sub(_role, line))
        index += 1
    return "\n".join(out)


def _comment_docstring(attribute: griffe.Attribute) -> None:
    """The ``#:`` lines right above an attribute, as its docstring when it has none."""
    if attribute.docstring is not None or not attribute.lineno:
        return
    lines = attribute.lines_collection[attribute.filepath]  # type: ignore[index]
    first = attribute.lineno - 1
    while first > 0 and lines[first - 1].strip().startswith("#:"):
        first -= 1
    comment = [line.strip()[2:].strip() for line in lines[first : attribute.lineno - 1]]
    if comment:
        attribute.docstring = griffe.Docstring(
            "\n".join(comment), lineno=first + 1, endlineno=attribute.lineno - 1, parent=attribute
        )


# -- attrs --------------------------------------------------------------------------------------


def _call_arguments(expr: object) -> dict[str, Any]:
    if not isinstance(expr, griffe.ExprCall):
        return {}
    return {arg.name: arg.value for arg in expr.arguments if isinstance(arg, griffe.ExprKeyword)}


def _attrs_decorator(cls: griffe.Class) -> griffe.Expr | None:
    for decorator in cls.decorators:
        value = decorator.value
        if isinstance(value, griffe.Expr) and value.canonical_path in ATTRS_DECORATORS:
            return value
    return None


def _is_true(value: object) -> bool:
    return str(value) == "True"


def _names_private(expr: object) -> bool:
    names = expr.iterate(flat=True) if isinstance(expr, griffe.Expr) else ()
    return any(isinstance(n, griffe.ExprName) and n.name.startswith("_") for n in names)


def _public_default(default: str | griffe.Expr | None) -> str | griffe.Expr | None:
    """A default that names a private object (``_EMPTY``) is shown as ``...``."""
    return "..." if _names_private(default) else default


def _public_annotation(annotation: str | griffe.Expr | None, pkg: griffe.Module) -> str | griffe.Expr | None:
    """A private type alias (``_Matcher``) is shown as what it stands for."""
    if isinstance(annotation, griffe.ExprName) and annotation.name.startswith("_"):
        try:
            target = pkg.modules_collection.get_member(annotation.canonical_path)
        except (KeyError, ValueError):
            return annotation
        if isinstance(target, griffe.Attribute) and target.value is not None:
            return target.value
    return annotation


def _public_signature(function: griffe.Function, pkg: griffe.Module) -> None:
    for parameter in function.parameters:
        parameter.default = _public_default(parameter.default)
        parameter.annotation = _public_annotation(parameter.annotation, pkg)
    function.returns = _public_annotation(function.returns, pkg)


def _public_value(attribute: griffe.Attribute, pkg: griffe.Module) -> None:
    """An attribute's value is shown unless it is computed in a method (``self.x = ...``), names
    private objects or is long (the simulators' documents)."""
    attribute.annotation = _public_annotation(attribute.annotation, pkg)
    value = attribute.value
    if value is None:
        return
    assigned_in_method = (
        attribute.parent is not None
        and attribute.parent.is_class
        and ("class-attribute" not in attribute.labels and not attribute.extra[PACKAGE].get("attrs_field"))
    )
    if assigned_in_method or _names_private(value) or len(str(value)) > MAX_VALUE_CHARS:
        attribute.value = None


def _converter_input(converter: object, cls: griffe.Class) -> str | griffe.Expr | None:
    """What a field's converter takes (``str | bytes`` for a key it parses), when it says more
    than ``object`` or ``Any``: that is what the constructor accepts."""
    if not isinstance(converter, griffe.ExprName):
        return None
    try:
        target = cls.modules_collection.get_member(converter.canonical_path)
    except (KeyError, ValueError):
        return None
    if not isinstance(target, griffe.Function) or not target.parameters:
        return None
    annotation: str | griffe.Expr | None = next(iter(target.parameters)).annotation
    if annotation is None or {"object", "Any"} & set(re.findall(r"\w+", str(annotation))):
        return None
    return annotation


def _attrs_fields(cls: griffe.Class) -> list[griffe.Parameter]:
    class_kw_only = _is_true(_call_arguments(_attrs_decorator(cls)).get("kw_only"))
    fields: list[griffe.Parameter] = []
    for member in cls.members.values():
        if member.is_alias or not isinstance(member, griffe.Attribute) or member.annotation is None:
            continue
        if "property" in member.labels or "instance-attribute" not in member.labels:
            continue  # a property, or a ClassVar (griffe unwraps the annotation, drops the label)
        value = member.value
        is_field = isinstance(value, griffe.ExprCall) and value.canonical_path in ATTRS_FIELDS
        arguments = _call_arguments(value) if is_field else {}
        if "factory" in arguments:
            default: str | griffe.Expr | None = griffe.ExprCall(function=arguments["factory"], arguments=[])
        elif is_field:
            default = arguments.get("default")
        else:
            default = value
        name = str(arguments["alias"]).strip("'\"") if "alias" in arguments else member.name.lstrip("_")
        kind = (
            griffe.ParameterKind.keyword_only
            if class_kw_only or _is_true(arguments.get("kw_only"))
            else griffe.ParameterKind.positional_or_keyword
        )
        default = _public_default(default)
        # The field reads as what it is: its type and default, not the attrs.field(...) call.
        member.value = default
        member.labels.discard("class-attribute")
        member.extra[PACKAGE]["attrs_field"] = True
        if not _is_true(arguments.get("init", "True")):
            continue
        fields.append(
            griffe.Parameter(
                name,
                annotation=_converter_input(arguments.get("converter"), cls) or member.annotation,
                kind=kind,
                default=default,
                docstring=member.docstring,
            )
        )
    return fields


def _attrs_init(cls: griffe.Class) -> None:
    """Give an attrs class without an ``__init__`` of its own the one attrs writes."""
    if "__init__" in cls.members or _attrs_decorator(cls) is None:
        return
    try:
        parents = [parent for parent in reversed(cls.mro()) if _attrs_decorator(parent) is not None]
    except ValueError:
        parents = []
    by_name: dict[str, griffe.Parameter] = {}
    for owner in (*parents, cls):
        for parameter in _attrs_fields(owner):
            by_name.pop(parameter.name, None)
            by_name[parameter.name] = parameter
    kinds = griffe.ParameterKind
    ordered = [p for p in by_name.values() if p.kind is not kinds.keyword_only]
    ordered += [p for p in by_name.values() if p.kind is kinds.keyword_only]
    self_parameter = griffe.Parameter("self", kind=kinds.positional_or_keyword)
    init = griffe.Function(
        "__init__",
        lineno=cls.lineno,
        endlineno=cls.lineno,
        parent=cls,
        parameters=griffe.Parameters(self_parameter, *ordered),
        returns="None",
    )
    cls.set_member("__init__", init)


# -- exports ------------------------------------------------------------------------------------


def _runtime_exports(module: griffe.Module) -> None:
    """``__all__`` as the module has it at run time, each name an alias griffe renders."""
    if module.path not in RUNTIME_EXPORTS:
        return
    try:
        live = importlib.import_module(module.path)
    except ImportError:  # an optional extra is missing: keep what griffe read
        return
    names: list[str] = [str(name) for name in getattr(live, "__all__", ())]
    module.exports = list(names)
    for name in names:
        member = module.members.get(name)
        if member is None:
            value = getattr(live, name)
            target = f"{value.__module__}.{value.__qualname__}"
            module.set_member(name, griffe.Alias(name, target, parent=module))
        elif isinstance(member, griffe.Alias):
            member.runtime = True  # imported under TYPE_CHECKING, loaded on first use


def _objects(obj: griffe.Object, seen: set[str]) -> Iterator[griffe.Object]:
    if obj.path in seen:
        return
    seen.add(obj.path)
    yield obj
    for member in list(obj.members.values()):
        if not member.is_alias:
            yield from _objects(member, seen)  # type: ignore[arg-type]


class BastionDocs(griffe.Extension):
    """The fixes of this module, applied once the package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:  # noqa: ANN401
        if pkg.name != PACKAGE:
            return
        for obj in list(_objects(pkg, set())):
            if isinstance(obj, griffe.Module):
                _runtime_exports(obj)
            if isinstance(obj, griffe.Class):
                _attrs_init(obj)
                if "__slots__" in obj.members:  # an implementation detail, not API
                    obj.del_member("__slots__")
            if isinstance(obj, griffe.Function):
                _public_signature(obj, pkg)
            if isinstance(obj, griffe.Attribute):
                _comment_docstring(obj)
                _public_value(obj, pkg)
            if obj.docstring is not None:
                obj.docstring.value = markdown_docstring(obj.docstring.value)
