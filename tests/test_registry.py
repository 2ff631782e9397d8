"""The venue registry: its credential headers are complete and what logs and cassettes use, and
every list of venues elsewhere (exports, type-checking imports, demo, typing tests, docs,
cassettes) agrees with it."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

import bastion_balance as bb
from bastion_balance import providers, testing
from bastion_balance._logging import MASK, redact
from bastion_balance.providers import (
    ALL_CREDENTIAL_HEADERS,
    CLASS_NAMES,
    CREDENTIAL_HEADERS,
    PROVIDERS,
    VENUES,
    provider_class,
)
from bastion_balance.testing import demo_setup
from bastion_balance.testing._demo import DEMO_MODULES

from ._vcr import CREDENTIAL_HEADERS as SCRUBBED_IN_CASSETTES

#: Headers that carry nothing secret: transport, content, and the signed timestamps and windows.
PUBLIC = {
    "accept",
    "host",
    "user-agent",
    "content-length",
    "content-type",
    "x-auth-epoch",
    "x-pm-timestamp",
    "x-bapi-timestamp",
    "x-bapi-recv-window",
}


def test_every_venue_is_listed() -> None:
    assert set(CREDENTIAL_HEADERS) == set(PROVIDERS)


def sent_headers(provider: object) -> set[str]:
    simulator, _ = demo_setup()
    seen: set[str] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(name.lower() for name in request.headers)
        return simulator(request)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    bb.fetch_balance(provider, client=http)  # type: ignore[arg-type]
    http.close()
    return seen


@pytest.mark.parametrize("index", range(len(PROVIDERS)))
def test_every_header_a_provider_sends_is_public_or_listed(index: int) -> None:
    """A header that is neither public nor in the venue's list would reach logs and cassettes
    in clear; a listed header the venue never sends is a stale entry."""
    provider = demo_setup()[1][index]
    listed = {name.lower() for name in CREDENTIAL_HEADERS[provider.venue]}
    sent = sent_headers(provider)
    assert sent - PUBLIC == listed, provider.venue


@pytest.mark.parametrize("name", ALL_CREDENTIAL_HEADERS)
def test_logs_mask_and_cassettes_scrub_every_listed_header(name: str) -> None:
    for line in (f"{name}: s3cr3t", f"'{name.lower()}': 's3cr3t'", f"{name.upper()}=s3cr3t"):
        masked = redact(line)
        assert "s3cr3t" not in masked and MASK in masked
    assert name in SCRUBBED_IN_CASSETTES


# -- every list of venues agrees with the registry ------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "bastion_balance"


def _type_checking_imports(path: Path) -> dict[str, str]:
    """``Class -> module`` of the ``from .<module> import <Class>`` lines under TYPE_CHECKING."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.level == 1 and stmt.module:
                    for alias in stmt.names:
                        found[alias.name] = stmt.module
    return found


def test_package_exports_every_venue() -> None:
    """``bb.__all__`` lists each registry class once, and each resolves to the registry's class."""
    assert sorted(name for name in bb.__all__ if name in CLASS_NAMES) == sorted(CLASS_NAMES)
    assert len(bb.__all__) == len(set(bb.__all__))
    for name in CLASS_NAMES:
        assert getattr(bb, name) is provider_class(CLASS_NAMES[name])
        assert getattr(providers, name) is provider_class(CLASS_NAMES[name])


def test_type_checkers_see_the_registry() -> None:
    """The registry file's literal ``__all__`` and type-checking imports name exactly its classes.

    Type checkers read only literal lists, so these two sit beside the registry (the package
    re-exports them with a star import under TYPE_CHECKING); this test keeps all three in step.
    """
    registry = PACKAGE / "providers" / "__init__.py"
    imports = _type_checking_imports(registry)
    assert imports == {venue.class_name: venue.module for venue in VENUES.values()}
    assert sorted(providers.__all__) == sorted(CLASS_NAMES)
    assert not _type_checking_imports(PACKAGE / "__init__.py").keys() & set(CLASS_NAMES)


def test_demo_serves_every_venue_in_registry_order() -> None:
    """The demo has one provider per registry venue, in order, each served by its listed simulator."""
    simulator, providers = demo_setup()
    assert [p.venue for p in providers] == list(VENUES)
    served = [type(v) for v in simulator.venues]
    for name, venue in VENUES.items():
        module, cls = venue.simulator.split(":")
        simulated = getattr(importlib.import_module(f"bastion_balance.testing.{module}"), cls)
        assert simulated in served, name
        assert cls in testing.__all__, f"{cls} is not exported by bastion_balance.testing"
        assert type(providers[list(VENUES).index(name)]) is provider_class(name)


def test_typing_checks_cover_every_venue(tmp_path: Path) -> None:
    """The generated typing checks (run by .ci/run under mypy --strict) build every venue class."""
    target = tmp_path / "venues.py"
    subprocess.run(
        [sys.executable, str(ROOT / "typing_tests" / "make_venue_checks.py"), str(target)], check=True
    )
    tree = ast.parse(target.read_text())
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and ast.unparse(node.func.value) == "bb"
    }
    assert set(CLASS_NAMES) <= called
    namespace: dict[str, object] = {}
    exec(compile(target.read_text(), str(target), "exec"), namespace)  # noqa: S102  # our generated file
    built = namespace["every_venue_is_a_provider"]()  # type: ignore[operator]
    assert [p.venue for p in built] == list(VENUES)


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_docs_link_every_venue_page(page: str) -> None:
    """The README and the docs index link each venue's page; every venue page belongs to a venue."""
    text = (ROOT / page).read_text()
    prefix = "docs/" if page == "README.md" else ""
    for name, venue in VENUES.items():
        link = f"[{venue.title}]({prefix}{venue.docs})"
        assert link in " ".join(text.split()), f"{page} has no link {link} ({name})"
    pages = {f"venues/{path.name}" for path in (ROOT / "docs" / "venues").glob("*.md")}
    assert pages == {venue.docs for venue in VENUES.values()}


def test_every_venue_has_a_cassette_folder() -> None:
    """cassettes/<venue>/ exists for each venue (with its provenance), and only for venues."""
    folders = {path.name for path in (ROOT / "cassettes").iterdir() if path.is_dir()}
    assert folders == set(VENUES)
    for name in VENUES:
        assert any((ROOT / "cassettes" / name).glob("*.md")), f"cassettes/{name} has no provenance file"


def test_derived_lists_follow_the_registry() -> None:
    """PROVIDERS, CREDENTIAL_HEADERS and CLASS_NAMES are views of VENUES; the provider's venue is its key."""
    assert dict(PROVIDERS) == {name: venue.target for name, venue in VENUES.items()}
    assert dict(CREDENTIAL_HEADERS) == {name: venue.credential_headers for name, venue in VENUES.items()}
    assert dict(CLASS_NAMES) == {venue.class_name: name for name, venue in VENUES.items()}
    for _, provider in (module.demo_pair() for module in _demo_modules()):
        assert provider.venue in VENUES


def _demo_modules() -> list[ModuleType]:
    return [importlib.import_module(f"bastion_balance.testing.{name}") for name in DEMO_MODULES]


def test_registry_module_attributes() -> None:
    """The registry module gives its classes lazily by name, and refuses unknown names."""
    assert providers.Bybit is provider_class("bybit")
    with pytest.raises(AttributeError, match="has no attribute 'Mtgox'"):
        providers.Mtgox  # noqa: B018


def test_testing_exports_every_simulator_module() -> None:
    """``bastion_balance.testing`` star-imports exactly the registry's simulator modules (type checkers
    see their names), and its ``__all__`` holds each module's ``__all__``."""
    tree = ast.parse((PACKAGE / "testing" / "__init__.py").read_text())
    starred = {
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.level == 1 and [a.name for a in node.names] == ["*"]
    }
    modules = {venue.simulator.split(":")[0] for venue in VENUES.values()}
    assert starred == modules
    for module in modules:
        names = importlib.import_module(f"bastion_balance.testing.{module}").__all__
        assert set(names) <= set(testing.__all__), module
        assert "demo_pair" not in names  # every module has one: the demo finds it by name
    assert len(testing.__all__) == len(set(testing.__all__))
