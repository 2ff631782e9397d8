"""The public surface: __all__ is exact, venues load lazily, import stays cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from decimal import Decimal
from types import ModuleType

import attrs
import pytest

import bastion_balance as bb
from bastion_balance import exceptions
from bastion_balance._convert import structure, unstructure


def test_all_names_resolve() -> None:
    """Every name in __all__ exists, and __all__ has no duplicates."""
    assert len(set(bb.__all__)) == len(bb.__all__)
    for name in bb.__all__:
        assert getattr(bb, name) is not None


def test_public_names_are_in_all() -> None:
    """Every public attribute of the package is listed in __all__ (submodules aside).

    Submodules are told apart by type, not by a list: which of them are attributes depends on
    which tests imported them first, so a list made the test depend on the order tests ran in.
    """
    public = {n for n, v in vars(bb).items() if not n.startswith("_") and not isinstance(v, ModuleType)}
    assert public <= set(bb.__all__)
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            "import bastion_balance as bb, types; print(sorted(n for n, v in vars(bb).items() "
            "if not n.startswith('_') and not isinstance(v, types.ModuleType)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert set(ast.literal_eval(fresh.stdout)) <= set(bb.__all__)


def test_exceptions_module_exports_tree() -> None:
    """bastion_balance.exceptions exports exactly the exception tree, re-exported at the top."""
    for name in exceptions.__all__:
        assert getattr(bb, name) is getattr(exceptions, name)


def test_unknown_attribute() -> None:
    """Unknown names raise AttributeError, not a venue import error."""
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        bb.Nope  # noqa: B018
    assert "Kraken" in dir(bb)


def test_import_is_cheap() -> None:
    """import bastion_balance loads no venue module and no signing library (docs/decisions.md §16).

    What ``import httpx`` loads itself is left aside: httpx imports its command line (click,
    rich, pygments) whenever those happen to be installed, as they are with the ``mcp`` extra.
    """
    code = (
        "import sys, httpx\n"
        "floor = set(sys.modules)\n"
        "import bastion_balance\n"
        "heavy = [m for m in ('cryptography', 'jwt', 'rich', 'sqlalchemy', 'mcp', 'bastion_balance.providers.kraken',"
        " 'bastion_balance.testing') if m in sys.modules and m not in floor]\n"
        "print(heavy)\n"
        "bastion_balance.Kraken\n"
        "print('bastion_balance.providers.kraken' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True"]


def test_provider_from_name() -> None:
    """Venues can be built by name; unknown names are ConfigurationError."""
    from bastion_balance.providers import provider_from_name
    from bastion_balance.testing import KRAKEN_TEST_KEY, KRAKEN_TEST_SECRET

    provider = provider_from_name("kraken", api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET)
    assert isinstance(provider, bb.Kraken)
    with pytest.raises(bb.ConfigurationError, match="unknown venue"):
        provider_from_name("mtgox")


@attrs.frozen
class Row:
    amount: Decimal


@attrs.frozen
class Wire:
    rows: list[Row]
    name: str


@attrs.frozen
class Checked:
    """A wire class whose constructor refuses a value (an attrs validator)."""

    side: str = attrs.field(validator=attrs.validators.in_(("buy", "sell")))


@attrs.frozen
class Order:
    checked: Checked


class TestConverter:
    """The private cattrs converter's error reporting, through a small wire class."""

    def test_a_refusing_constructor_is_an_unexpected_response(self) -> None:
        """A class that refuses its fields once structured (cattrs reports no attribute for
        that) is still an ``UnexpectedResponseError`` at the class's own path."""
        with pytest.raises(bb.UnexpectedResponseError, match="unexpected shape") as info:
            structure({"side": "hold"}, Checked, venue="v")
        assert info.value.venue == "v"
        assert info.value.field == "$"
        assert info.value.value == {"side": "hold"}
        with pytest.raises(bb.UnexpectedResponseError, match="unexpected shape") as nested:
            structure({"checked": {"side": "hold"}}, Order, venue="v")
        assert nested.value.field == "$.checked"
        assert nested.value.value == {"side": "hold"}
        assert structure({"checked": {"side": "buy"}}, Order, venue="v") == Order(Checked("buy"))

    def test_nested_list_path(self) -> None:
        """A bad number inside a list names its index in the path."""
        with pytest.raises(bb.UnexpectedResponseError) as info:
            structure({"rows": [{"amount": "1"}, {"amount": "NaN"}], "name": "x"}, Wire, venue="v")
        assert info.value.field == "$.rows[1].amount"
        assert info.value.value == "NaN"
        with pytest.raises(bb.UnexpectedResponseError, match="expected a string"):
            structure({"rows": [], "name": 5}, Wire, venue="v")
        with pytest.raises(bb.UnexpectedResponseError, match="missing"):
            structure({"rows": []}, Wire, venue="v")
        assert unstructure(structure({"rows": [{"amount": "2"}], "name": "n"}, Wire, venue="v")) == {
            "rows": [{"amount": Decimal(2)}],
            "name": "n",
        }


def test_version_is_the_installed_distributions() -> None:
    """``bb.__version__`` is a literal that the build writes into the distribution's metadata."""
    from importlib.metadata import version

    assert bb.__version__ == version("bastion-balance")
    assert bb.__version__.count(".") == 2
