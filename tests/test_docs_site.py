"""The docs site: ``mkdocs build --strict`` of mkdocs.yml passes offline, and the site holds what it should.

The build runs once per module, through ``sys.executable -m mkdocs`` (the venv the tests run in), into
a temporary directory, with every proxy variable pointing at a closed port: anything that fetched at
build time (social cards, web fonts, external inventories) would fail it.
"""

from __future__ import annotations

import html
import importlib
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml

import bastion_balance as bb
from bastion_balance import provider_kit, providers, testing
from bastion_balance.testing import demo_setup, rate_limits_disabled, reset_shared_state

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Nothing is reachable through this: a fetch at build time fails the build.
CLOSED_PROXY = "http://127.0.0.1:9"
#: A private name: ``_client``, ``_rails`` in ``testing._rails.X``, ``__x`` is not (dunders are public).
PRIVATE = re.compile(r"(?<![\w])_(?!_)[A-Za-z]\w*")
SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|exc|mod|obj|const):`")


def _require_docs_extra() -> None:
    """The docs extra (in dev) is installed; CI fails without it, elsewhere the module is skipped."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        try:
            importlib.import_module(module)
        except ImportError:
            if os.environ.get("CI"):
                pytest.fail(f"{module} is not installed: pip install -e '.[docs]' (dev includes it)")
            pytest.skip(f"{module} is not installed: pip install -e '.[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built with ``mkdocs build --strict`` (any warning fails it)."""
    _require_docs_extra()
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_PROXY": "", "no_proxy": ""}
    env |= {name: CLOSED_PROXY for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    env |= {name.lower(): CLOSED_PROXY for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", "mkdocs.yml"]
    built = subprocess.run(  # noqa: S603  # our own interpreter and arguments
        [*command, "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def _nav_pages(nav: object) -> Iterator[str]:
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from _nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _nav_pages(value)


def _built_page(site: Path, page: str) -> Path:
    """Where mkdocs writes ``page`` (directory URLs): ``faq.md`` -> ``faq/index.html``."""
    stem = page.removesuffix(".md")
    if stem == "index" or stem.endswith("/index"):
        return site / f"{stem}.html"
    return site / stem / "index.html"


def _nav() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return list(_nav_pages(config["nav"]))


class _Headings(HTMLParser):
    """The text of every h1-h6 and every ``id`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.ids: set[str] = set()
        self._open: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if re.fullmatch(r"h[1-6]", tag):
            self._open = []
        elif self._open is not None and tag == "a" and "headerlink" in (found.get("class") or ""):
            self._skip += 1  # the permalink sign

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._skip:
            self._skip -= 1
        if re.fullmatch(r"h[1-6]", tag) and self._open is not None:
            self.headings.append(" ".join("".join(self._open).split()))
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None and not self._skip:
            self._open.append(data)


def _parse(path: Path) -> _Headings:
    parser = _Headings()
    parser.feed(path.read_text())
    return parser


def _text(path: Path) -> str:
    """A page's text, without tags (code included)."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_every_nav_page_is_built(site: Path) -> None:
    """Each page of the nav exists in docs/ and in the built site, with its own title."""
    pages = _nav()
    assert {"index.md", "quickstart.md", "faq.md", "cassettes.md", "reference/index.md"} <= set(pages)
    assert len(pages) == len(set(pages))
    for page in pages:
        assert (DOCS / page).is_file(), page
        built = _built_page(site, page)
        assert built.is_file(), page
        assert _parse(built).headings, f"{page} has no heading"


def test_every_docs_page_is_in_the_nav() -> None:
    """No Markdown page of docs/ is left out of the nav (strict mode also refuses one)."""
    on_disk = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert sorted(on_disk - set(_nav())) == [], "add these pages to the nav of mkdocs.yml"


def test_reference_documents_every_public_name(site: Path) -> None:
    """Every name of ``bastion_balance.__all__``, of ``testing`` and of ``provider_kit`` has its entry."""
    reference = site / "reference"
    main = _parse(reference / "index.html").ids
    venues = _parse(reference / "venues" / "index.html").ids
    for name in ("aggregate", "Portfolio", "KrakenRates", "AggregateError"):
        assert f"bastion_balance.{name}" in main, name
    venue_classes = set(providers.__all__)
    for name in bb.__all__:
        if name in venue_classes:
            assert f"bastion_balance.providers.{name}" in venues, name
        else:
            assert f"bastion_balance.{name}" in main, name
    for module, page in ((testing, "testing"), (provider_kit, "provider-kit")):
        ids = _parse(reference / page / "index.html").ids
        missing = [name for name in module.__all__ if f"{module.__name__}.{name}" not in ids]
        assert missing == [], page


def test_attrs_classes_show_their_constructor(site: Path) -> None:
    """An attrs class's signature is the ``__init__`` attrs writes: every parameter, keyword-only."""
    import inspect

    text = _text(site / "reference" / "venues" / "index.html")
    for name in providers.__all__:
        cls = getattr(bb, name)
        signature = re.search(rf"^{name}\(\s*\*,(.*?)^\)", text, re.DOTALL | re.MULTILINE)
        assert signature is not None, name
        shown = re.findall(r"^\s*(\w+):", signature.group(1), re.MULTILINE)
        assert shown == list(inspect.signature(cls).parameters), name
    # A field typed as what its converter takes: Polymarket US parses a PEM key, given as text or bytes.
    assert re.search(r"^\s*private_key: str \| bytes,$", text, re.MULTILINE)
    balance = re.search(
        r"^Balance\(\s*\*,(.*?)^\)", _text(site / "reference" / "index.html"), re.DOTALL | re.MULTILINE
    )
    assert balance is not None
    shown = re.findall(r"^\s*(\w+):", balance.group(1), re.MULTILINE)
    assert shown == list(inspect.signature(bb.Balance).parameters)


def test_no_private_name_in_a_heading(site: Path) -> None:
    """No heading and no anchor of the site names a private object (``_client``, ``testing._rails``)."""
    for path in sorted(site.rglob("*.html")):
        page = _parse(path)
        for heading in page.headings:
            assert not PRIVATE.search(heading), f"{path.relative_to(site)}: {heading!r}"
        private_ids = sorted(i for i in page.ids if i.startswith("bastion_balance") and PRIVATE.search(i))
        assert private_ids == [], path.relative_to(site)


def test_docstrings_render_as_markdown(site: Path) -> None:
    """Sphinx roles become code, doctests code blocks: none is left as raw text or a blockquote."""
    for path in sorted((site / "reference").rglob("*.html")):
        source = path.read_text()
        assert not SPHINX_ROLE.search(_text(path)), path
        assert "<blockquote>" not in source, path  # a ">>>" line read as Markdown quotes
        assert "doctest:" not in source, path
    # The package docstring's example, highlighted as a console session (its prompts).
    assert '<span class="gp">&gt;&gt;&gt; </span>' in (site / "reference" / "index.html").read_text()


def test_site_fetches_nothing_from_elsewhere(site: Path) -> None:
    """Fonts, scripts and stylesheets are the site's own: it reads the same offline."""
    for path in sorted(site.rglob("*.html")):
        source = path.read_text()
        assert "fonts.googleapis.com" not in source, path
        assert "fonts.gstatic.com" not in source, path
        for url in re.findall(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"', source):
            assert not re.match(r"(?:https?:)?//", url), f"{path.relative_to(site)}: {url}"


def test_readme_says_how_to_build_the_docs() -> None:
    """The README's docs commands name the extra the project declares, and dev installs it."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    docs = [block for block in blocks if "mkdocs" in block]
    assert docs, "README.md has no bash block with the mkdocs commands"
    assert "pip install -e '.[docs]'" in docs[0]
    assert "mkdocs serve" in docs[0]
    assert "mkdocs build --strict" in docs[0]
    assert not any("mkdocs" in block for block in blocks[:1])  # CI reads the first block's two commands
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[\[<>=]", requirement)[0] for requirement in extras["docs"]}
    assert {"mkdocs-material", "mkdocstrings"} <= names
    assert any(req.startswith("bastion-balance[") and "docs" in req for req in extras["dev"])


def _recipe() -> dict[str, object]:
    """The first python block of docs/cassettes.md (the scrubbing vcrpy set-up), run."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "cassettes.md").read_text(), re.DOTALL)
    namespace: dict[str, object] = {"__name__": "docs_cassettes"}
    exec(compile(blocks[0], "docs/cassettes.md", "exec"), namespace)  # noqa: S102  # our own docs
    return namespace


def test_cassette_recipe_records_no_secret_and_replays(tmp_path: Path) -> None:
    """docs/cassettes.md's recorder, run against every simulated venue: the cassette holds no key,
    secret, signature, nonce or token, and replays to the same figures without the simulators."""
    pytest.importorskip("vcr")
    balance_vcr = cast("Callable[..., Any]", _recipe()["balance_vcr"])
    simulator, accounts = demo_setup()
    with rate_limits_disabled():
        with balance_vcr(tmp_path, "once").use_cassette("demo.yaml"):
            with bb.BalanceClient(http_client=simulator.client(), retry=bb.NO_RETRY) as client:
                recorded = {p.label: client.fetch(p).total for p in accounts}
        reset_shared_state()  # no cached token: the replay asks for it again, as recorded
        with balance_vcr(tmp_path, "none").use_cassette("demo.yaml"):
            with bb.BalanceClient(http_client=httpx.Client(), retry=bb.NO_RETRY) as client:
                replayed = {p.label: client.fetch(p).total for p in accounts}
    assert replayed == recorded
    assert len(recorded) == len(providers.__all__)
    cassette = (tmp_path / "demo.yaml").read_text()
    # The account and OAuth client ids are identifiers the venue's request names, not credentials.
    identifiers = ("_ACCOUNT", "_CLIENT_ID")
    secrets = {
        name: value
        for name in testing.__all__
        if "_TEST_" in name
        and not name.endswith(identifiers)
        and isinstance(value := getattr(testing, name), str)
    }
    assert len(secrets) >= 2 * len(recorded)  # every venue has a key and a secret
    leaked = [name for name, value in secrets.items() if value in cassette]
    assert leaked == []
    data = yaml.safe_load(cassette)
    hidden = {h.lower() for h in providers.ALL_CREDENTIAL_HEADERS}
    for interaction in data["interactions"]:
        request = interaction["request"]
        for header, values in request["headers"].items():
            if header.lower() in hidden:
                assert values == ["<scrubbed>"], header
        for param in ("nonce=", "signature=", "timestamp="):
            for text in (request["uri"], str(request.get("body") or "")):
                assert re.findall(rf"{param}(?!<scrubbed>)", text) == [], (param, text)
        assert '"access_token": "<scrubbed>"' in str(interaction["response"]) or (
            "access_token" not in str(interaction["response"])
        )
