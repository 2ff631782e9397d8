"""Every cassette is scrubbed, replay-only and has its provenance written beside it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ._vcr import CASSETTES, CREDENTIAL_HEADERS, SCRUBBED

CASSETTE_FILES = sorted(CASSETTES.rglob("*.yaml"))
SENSITIVE_BODY_KEYS = ("access_token", "client_assertion")


def test_there_are_cassettes() -> None:
    """At least the Kraken cassette exists (an empty glob would make the checks below vacuous)."""
    assert any(path.parent.name == "kraken" for path in CASSETTE_FILES)


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=lambda p: str(p.relative_to(CASSETTES)))
def test_credentials_scrubbed(path: Path) -> None:
    """No credential header, signature, nonce or token survives in a cassette."""
    data = yaml.safe_load(path.read_text())
    names = {h.lower() for h in CREDENTIAL_HEADERS}
    for interaction in data["interactions"]:
        request = interaction["request"]
        for name, values in request["headers"].items():
            if name.lower() in names:
                assert values == [SCRUBBED], f"{path}: header {name} not scrubbed"
        uri = request["uri"]
        for param in ("signature=", "nonce="):
            if param in uri:
                assert f"{param}{SCRUBBED}" in uri
        body = request.get("body") or ""
        body = body.decode() if isinstance(body, bytes) else str(body)
        for param in ("nonce=", "signature=", "client_assertion="):
            if param in body:
                assert f"{param}{SCRUBBED}" in body
        response_body = interaction["response"]["body"].get("string", "")
        response_text = response_body.decode() if isinstance(response_body, bytes) else str(response_body)
        for key in SENSITIVE_BODY_KEYS:
            if f'"{key}"' in response_text or f'"{key}"' in body:
                assert SCRUBBED in response_text + body, f"{path}: {key} not scrubbed"


@pytest.mark.parametrize("directory", sorted({p.parent for p in CASSETTE_FILES}), ids=lambda p: p.name)
def test_provenance_written(directory: Path) -> None:
    """Each cassette directory says how its cassettes were recorded."""
    readme = directory / "README.md"
    assert readme.is_file()
    assert "Recorded" in readme.read_text() or "recorded" in readme.read_text()
