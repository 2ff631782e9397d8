"""A provider for tests that answers without any venue: a fixed balance or a fixed error."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import attrs
import httpx

from .._models import Balance, Holding
from .._protocol import Flow
from ..providers._common import now_utc, send, status_error

__all__ = ["FakeProvider"]


@attrs.frozen(kw_only=True)
class FakeProvider:
    """Returns ``Balance(total, available, currency)`` or raises ``error``; sends nothing.

    With ``url`` set it first sends one GET there (to exercise transports and faults) and
    ignores the answer unless it is not 2xx, which raises the library's error for that status
    (so 5xx and 429 are retried like a real venue's).
    """

    label: str
    total: Decimal = Decimal(0)
    available: Decimal = Decimal(0)
    currency: str = "USD"
    error: Exception | None = None
    url: str | None = None
    venue: str = "fake"
    breakdown: Mapping[str, Holding] = attrs.field(factory=dict)
    uncounted: tuple[str, ...] = ()

    def balance_flow(self) -> Flow:
        """Optionally send one GET, then raise ``error`` or return the fixed balance."""
        if self.url is not None:
            response = yield from send(httpx.Request("GET", self.url))
            if not response.is_success:
                raise status_error(response, venue=self.venue, message="fake venue refused")
        if self.error is not None:
            raise self.error
        return Balance(
            label=self.label,
            exchange=self.venue,
            currency=self.currency,
            total=self.total,
            available=self.available,
            breakdown=self.breakdown,
            uncounted=self.uncounted,
            fetched_at=now_utc(),
        )
