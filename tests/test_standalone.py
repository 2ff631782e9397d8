"""The project stands alone (docs/decisions.md §20): nothing in it reads or cites a file outside the checkout.

A user who clones the repository has nothing beside it, so no test may read a sibling directory and no
comment, docstring or page may send the reader to a document the repository does not contain. Reasons
the code cites live in docs/decisions.md (cited as "docs/decisions.md §9") and on the venue pages (cited
as "docs/venues/binance.md, 'Signing and the clock'"); every such citation must name a section or
heading that exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DECISIONS = DOCS / "decisions.md"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: What is walked: everything a user gets with the repository, except the CI and git machinery.
WALKED_DIRS = ("src", "tests", "docs", "examples", "benchmarks", "typing_tests", "cassettes")
WALKED_FILES = ("README.md", "pyproject.toml")
SKIPPED_DIRS = frozenset(
    {".venv", "venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
    | {"build", "dist", "site", "htmlcov"}
)

# The patterns are assembled from pieces so that this file does not match them itself.
_SHARED = "sha" + "red"
_SECTION = "\u00a7"
FORBIDDEN: dict[str, re.Pattern[str]] = {
    "the sibling shared directory": re.compile(r"\.\./" + _SHARED + r"\b"),
    "an absolute path to the shared directory": re.compile(r"/work/" + _SHARED + r"\b"),
    "the shared fixtures": re.compile(_SHARED + r"/fix" + r"tures"),
    "the shared spec": re.compile(_SHARED + r"/sp" + r"ec"),
    "the product spec": re.compile(r"\bPRODUCT" + r"\.md\b"),
    "the exchange research spec": re.compile(r"\bexchanges" + r"\.md\b"),
    "the style guide": re.compile(r"\bSTYLE" + r"\.md\b"),
    "a numbered decision of the product spec": re.compile(r"\bDecisions?" + r" \d+"),
}

#: "docs/decisions.md §8", "docs/decisions.md §8 and §19", "docs/decisions.md §8, §9 or §19".
DECISION_CITATION = re.compile(
    r"docs/decisions\.md " + _SECTION + r"(\d+)((?:(?:,| and| or) " + _SECTION + r"\d+)*)"
)
SECTION_NUMBER = re.compile(_SECTION + r"(\d+)")
DECISION_LINK = re.compile(r"decisions\.md#decision-(\d+)")
#: "docs/venues/kraken.md" or "docs/venues/kraken.md, 'Signing'" (a page, optionally a heading of it).
DOC_CITATION = re.compile(r"\bdocs/([\w/.-]+?\.md)(?:,\s+'([^'\n]+)')?")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)


def _walk(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for child in sorted(path.iterdir()):
        if child.is_dir():
            if child.name in SKIPPED_DIRS or child.name.endswith(".egg-info"):
                continue
            yield from _walk(child)
        else:
            yield child


def project_texts() -> dict[str, str]:
    """Relative path -> text of every walked text file (binary and non-UTF-8 files are skipped)."""
    texts: dict[str, str] = {}
    for top in (*WALKED_DIRS, *WALKED_FILES):
        if not (ROOT / top).exists():
            continue
        for path in _walk(ROOT / top):
            data = path.read_bytes()
            if b"\0" in data:
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            texts[path.relative_to(ROOT).as_posix()] = text
    return texts


def decision_numbers() -> set[int]:
    """The numbered sections of docs/decisions.md ("## 9. Shared state per credential")."""
    return {int(n) for n in re.findall(r"^## (\d+)\. \S", DECISIONS.read_text(), re.MULTILINE)}


def decision_anchors() -> set[int]:
    return {int(n) for n in re.findall(r'<a id="decision-(\d+)"></a>', DECISIONS.read_text())}


def headings(page: Path) -> set[str]:
    return {match.strip("`* ") for match in HEADING.findall(page.read_text())}


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def forbidden_mentions(texts: dict[str, str]) -> list[str]:
    found = []
    for name, text in texts.items():
        for what, pattern in FORBIDDEN.items():
            for match in pattern.finditer(text):
                found.append(f"{name}:{line_of(text, match.start())}: {what}: {match.group(0)!r}")
    return sorted(found)


def test_the_walk_sees_the_project() -> None:
    """The walk reads the files it is meant to read (so an empty walk cannot pass)."""
    texts = project_texts()
    assert "pyproject.toml" in texts
    assert "README.md" in texts
    assert "tests/test_standalone.py" in texts
    assert "docs/decisions.md" in texts
    assert "src/bastion_balance/__init__.py" in texts
    assert any(name.startswith("cassettes/") for name in texts)
    assert not any(name.startswith(".venv/") or "/__pycache__/" in name for name in texts)


@pytest.mark.parametrize(
    "offender",
    [
        "../" + _SHARED + "/fixtures/recorded/x.json",
        "/work/" + _SHARED,
        "the " + _SHARED + "/spec directory",
        "(PRODUCT" + ".md mapping)",
        "exchanges" + ".md " + _SECTION + "4.2",
        "see STYLE" + ".md",
        "(Decisions" + " 9)",
        "Decision" + " 8 says",
    ],
)
def test_forbidden_patterns_catch_citations(offender: str) -> None:
    """Each kind of outside reference is caught (the check below can fail)."""
    assert forbidden_mentions({"example.py": offender})


def test_no_file_refers_outside_the_checkout() -> None:
    """No walked file mentions the shared directory, the outside specs or their numbered decisions."""
    offenders = forbidden_mentions(project_texts())
    assert not offenders, "references to files outside the repository:\n" + "\n".join(offenders)


def test_decisions_page_numbers_its_sections() -> None:
    """docs/decisions.md has numbered sections, each with its stable anchor, and is linked from the index."""
    numbers = decision_numbers()
    assert numbers >= set(range(1, 21))
    assert decision_anchors() == numbers
    assert "(decisions.md)" in (DOCS / "index.md").read_text()


def test_decision_citations_name_existing_sections() -> None:
    """Every section a "docs/decisions.md" citation or link names exists; no section sign dangles."""
    numbers = decision_numbers()
    problems = []
    for name, text in project_texts().items():
        if name == "docs/decisions.md":
            cited = [(m.start(), int(m.group(1))) for m in SECTION_NUMBER.finditer(text)]
            stray = [
                i for i, char in enumerate(text) if char == _SECTION and not text[i + 1 : i + 2].isdigit()
            ]
        else:
            cited, covered = [], set()
            for match in DECISION_CITATION.finditer(text):
                cited.extend((match.start(), int(n)) for n in SECTION_NUMBER.findall(match.group(0)))
                covered.update(range(match.start(), match.end()))
            stray = [i for i, char in enumerate(text) if char == _SECTION and i not in covered]
        cited.extend((m.start(), int(m.group(1))) for m in DECISION_LINK.finditer(text))
        problems += [
            f"{name}:{line_of(text, i)}: no section {n} in docs/decisions.md"
            for i, n in cited
            if n not in numbers
        ]
        problems += [
            f"{name}:{line_of(text, i)}: a section sign that is not a docs/decisions.md citation"
            for i in stray
        ]
    assert not problems, "\n".join(problems)


def test_doc_citations_name_existing_pages_and_headings() -> None:
    """Every "docs/<page>.md" names a page that exists, and "docs/<page>.md, 'Heading'" one of its headings."""
    problems = []
    for name, text in project_texts().items():
        for match in DOC_CITATION.finditer(text):
            page, heading = DOCS / match.group(1), match.group(2)
            where = f"{name}:{line_of(text, match.start())}"
            if not page.is_file():
                problems.append(f"{where}: no page docs/{match.group(1)}")
            elif heading is not None and heading not in headings(page):
                problems.append(f"{where}: no heading {heading!r} in docs/{match.group(1)}")
    assert not problems, "\n".join(problems)


def test_fixtures_are_in_the_repository_with_their_provenance() -> None:
    """Every recorded fixture is a local file with its source block, and its README names it."""
    recordings = sorted(FIXTURES.glob("*.json"))
    assert {path.name for path in recordings} >= {
        "binance_usdm_fapi_v2_account.json",
        "bybit_v5_wallet_balance_unified.json",
    }
    readme = (FIXTURES / "README.md").read_text()
    for path in recordings:
        data = json.loads(path.read_text())
        assert {"_source", "httpResponse"} <= data.keys(), path.name
        assert data["_source"]["repo"] in readme, path.name
        assert f"`{path.name}`" in readme, path.name
