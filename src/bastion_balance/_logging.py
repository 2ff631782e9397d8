"""Log redaction (docs/decisions.md §17): httpx logs request URLs, and Binance signs the query string.

``install_redaction()`` attaches one filter to the ``httpx`` and ``httpcore`` loggers that masks
``signature=...`` query values and the values of credential headers in every record.
"""

from __future__ import annotations

import logging
import re
from typing import Final

from .providers import ALL_CREDENTIAL_HEADERS

__all__ = ["RedactingFilter", "install_redaction", "redact"]

_HEADER_NAMES: Final = "|".join(re.escape(name.lower()) for name in ALL_CREDENTIAL_HEADERS)
_PATTERNS: Final = (
    re.compile(r"(?i)(signature=)[^&\s'\"]+"),
    re.compile(rf"(?i)((?:{_HEADER_NAMES})['\"]?\s*[:=,]\s*['\"]?(?:bearer\s+)?)[^'\"\s,)]+"),
)
MASK: Final = "***"
_LOGGERS: Final = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "bastion_balance",
)


def redact(text: str) -> str:
    """``text`` with signatures and credential header values masked."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with :func:`redact` before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER: Final = RedactingFilter()


def install_redaction() -> None:
    """Attach the filter to the ``httpx`` and ``httpcore`` loggers (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
