"""vcrpy set-up shared by the cassette tests: replay-only unless BASTION_RECORD=1.

Recording runs the real pipeline against the in-package simulators (no venue is reachable from
here), so a cassette holds the venue's real URL and our real request, with every credential
header, signature and nonce scrubbed before it is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import vcr

from bastion_balance.providers import ALL_CREDENTIAL_HEADERS

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"
RECORDING = os.environ.get("BASTION_RECORD") == "1"

#: Every credential header any venue uses (the registry's list: scrubbed in cassettes, masked in logs).
CREDENTIAL_HEADERS = ALL_CREDENTIAL_HEADERS
#: Request timestamps: not secret, but they date a recording and make requests unique.
TIMESTAMP_HEADERS = ("X-AUTH-EPOCH", "X-PM-Timestamp", "X-BAPI-TIMESTAMP")
SCRUBBED = "<scrubbed>"
_SECRET_PARAMS = re.compile(r"((?:^|[?&])(?:nonce|otp|signature|client_assertion|timestamp)=)[^&]*")
_SECRET_JSON = re.compile(r'("(?:access_token|client_assertion|token)"\s*:\s*")[^"]*(")')


def _scrub_text(text: str) -> str:
    text = _SECRET_PARAMS.sub(lambda m: m.group(1) + SCRUBBED, text)
    return _SECRET_JSON.sub(lambda m: m.group(1) + SCRUBBED + m.group(2), text)


def _scrub_request(request: Any) -> Any:
    for name in list(request.headers):
        if name.lower() in {h.lower() for h in (*CREDENTIAL_HEADERS, *TIMESTAMP_HEADERS)}:
            request.headers[name] = SCRUBBED
    if request.body:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        request.body = _scrub_text(body).encode()
    request.uri = _scrub_text(request.uri)
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    body = response.get("body", {}).get("string")
    if isinstance(body, bytes):
        response["body"]["string"] = _scrub_text(body.decode()).encode()
    return response


def cassette_vcr() -> vcr.VCR:
    """A VCR that replays only (records with BASTION_RECORD=1), matching method+host+path."""
    return vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="all" if RECORDING else "none",
        match_on=["method", "scheme", "host", "path"],
        before_record_request=_scrub_request,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
    )
