"""The simulated venues' switchboard: an ``httpx.MockTransport`` handler routed by host.

Each simulated venue verifies credentials the way the real venue does and answers with the
venue's documented response; the real pipeline (signing, httpx, parsing, aggregation) runs
unchanged against it. No network is used.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any, Protocol

import httpx

__all__ = ["SimulatedVenue", "Simulator", "json_response"]


class SimulatedVenue(Protocol):
    """One simulated venue: the hosts it answers for and how it answers."""

    @property
    def hosts(self) -> tuple[str, ...]:
        """Host names this venue answers for."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request the way the venue would."""


def json_response(status_code: int, payload: Any, **headers: str) -> httpx.Response:  # noqa: ANN401
    """A JSON answer; Decimals are written as numbers with every digit."""
    from .._models import dumps  # noqa: PLC0415  # avoid a cycle at import time

    body = dumps(payload) if not isinstance(payload, str) else payload
    all_headers = {"Content-Type": "application/json", **headers}
    return httpx.Response(status_code, content=body.encode(), headers=all_headers)


class Simulator:
    """Routes each request to the simulated venue that owns its host.

    >>> sim = Simulator(SimulatedKraken())                       # doctest: +SKIP
    >>> client = BalanceClient(http_client=sim.client())          # doctest: +SKIP
    """

    def __init__(self, *venues: SimulatedVenue) -> None:
        self._by_host: dict[str, SimulatedVenue] = {}
        self._lock = threading.Lock()
        self.requests: list[httpx.Request] = []
        for venue in venues:
            self.add(venue)

    def add(self, venue: SimulatedVenue) -> None:
        """Serve ``venue`` on each of its hosts (replacing an earlier one)."""
        for host in venue.hosts:
            self._by_host[host] = venue

    @property
    def venues(self) -> Iterable[SimulatedVenue]:
        """The distinct simulated venues."""
        return list(dict.fromkeys(self._by_host.values()))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request``; an unknown host fails like an unreachable one."""
        with self._lock:
            self.requests.append(request)
        venue = self._by_host.get(request.url.host)
        if venue is None:
            msg = f"simulator: no venue at {request.url.host}"
            raise httpx.ConnectError(msg, request=request)
        return venue.handle(request)

    def transport(self) -> httpx.MockTransport:
        """An httpx transport that answers from the simulator."""
        return httpx.MockTransport(self)

    def client(self, **kwargs: Any) -> httpx.Client:  # noqa: ANN401
        """An ``httpx.Client`` wired to the simulator."""
        return httpx.Client(transport=self.transport(), **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:  # noqa: ANN401
        """An ``httpx.AsyncClient`` wired to the simulator."""
        return httpx.AsyncClient(transport=self.transport(), **kwargs)


def loads_body(request: httpx.Request) -> Any:  # noqa: ANN401
    """A JSON request body as Python data (simulators only)."""
    return json.loads(request.content or b"null")
