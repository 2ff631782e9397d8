"""The venue registry's credential headers: complete for every venue, and what logs and
cassettes use."""

from __future__ import annotations

import httpx
import pytest

import bastion_balance as bb
from bastion_balance._logging import MASK, redact
from bastion_balance.providers import ALL_CREDENTIAL_HEADERS, CREDENTIAL_HEADERS, PROVIDERS
from bastion_balance.testing import demo_setup

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
