"""The simulated venues' switchboard: an ``httpx.MockTransport`` handler routed by host.

Each simulated venue verifies credentials the way the real venue does and answers with the
venue's documented response; the real pipeline (signing, httpx, parsing, aggregation) runs
unchanged against it. No network is used.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import httpx

__all__ = ["ScriptedVenue", "SimulatedVenue", "Simulator", "json_response"]

AnswerT = TypeVar("AnswerT")


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


class ScriptedVenue(Generic[AnswerT]):
    """The plumbing every built-in simulated venue shares: its hosts, a lock, ``fail_next``, ``calls``.

    ``fail_next(*answers)`` queues answers to give instead of the real ones to the next calls of
    the venue's balance endpoint, in order, then normal answers resume; what an answer may be
    (an HTTP status, a venue error code, a whole ``httpx.Response`` ...) is each venue's own,
    written in its ``fail_next`` docs. ``calls`` counts the calls to the balance endpoint
    (scripted ones included).

    A venue of your own subclasses it with the type of its answers, passes its host names to
    ``__init__`` and implements :meth:`respond`; :meth:`handle` calls it with the venue's lock
    held, so counters and the script need no lock of their own::

        class Echo(ScriptedVenue[int]):
            def __init__(self) -> None:
                super().__init__(("echo.test",))

            def respond(self, request: httpx.Request) -> httpx.Response:
                self.calls += 1
                answer = self.next_scripted()
                if answer is not None:
                    return self.scripted_response(answer)  # an HTML page with that status
                return json_response(200, {"ok": True})
    """

    def __init__(self, hosts: Iterable[str]) -> None:
        self._hosts = tuple(hosts)
        self._lock = threading.Lock()
        self._script: deque[AnswerT] = deque()
        self.calls = 0

    @property
    def hosts(self) -> tuple[str, ...]:
        """Host names this venue answers for."""
        return self._hosts

    def fail_next(self, *answers: AnswerT) -> None:
        """Give these answers to the next balance calls instead of the real ones."""
        with self._lock:
            self._script.extend(answers)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request the way the venue would (:meth:`respond`, under the venue's lock)."""
        with self._lock:
            return self.respond(request)

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Answer one request; called by :meth:`handle` with the lock held (subclasses implement it)."""
        raise NotImplementedError

    def next_scripted(self) -> AnswerT | None:
        """The next answer queued by ``fail_next``, taken off the queue; ``None`` when there is none."""
        return self._script.popleft() if self._script else None

    @staticmethod
    def scripted_response(
        answer: int | httpx.Response,
        *,
        headers: Mapping[str, str] | None = None,
        text: str = "<html>error</html>",
    ) -> httpx.Response:
        """The answers every venue scripts alike: a response as is, a status as an HTML error page."""
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(answer, text=text, headers=headers)


class Simulator:
    """Routes each request to the simulated venue that owns its host (and path).

    A venue with a ``paths`` attribute (a tuple of URL paths) answers only those paths of its
    hosts, beside the venue that owns the rest of the host: Kraken's public ticker and its
    private TradeBalance share ``api.kraken.com``.

    >>> sim = Simulator(SimulatedKraken())                       # doctest: +SKIP
    >>> client = BalanceClient(http_client=sim.client())          # doctest: +SKIP
    """

    def __init__(self, *venues: SimulatedVenue) -> None:
        self._by_host: dict[str, SimulatedVenue] = {}
        self._by_path: dict[tuple[str, str], SimulatedVenue] = {}
        self._lock = threading.Lock()
        self.requests: list[httpx.Request] = []
        for venue in venues:
            self.add(venue)

    def add(self, venue: SimulatedVenue) -> None:
        """Serve ``venue`` on each of its hosts, or only its ``paths`` there (replacing an earlier one)."""
        paths: tuple[str, ...] = getattr(venue, "paths", ())
        for host in venue.hosts:
            if paths:
                self._by_path.update(dict.fromkeys(((host, path) for path in paths), venue))
            else:
                self._by_host[host] = venue

    @property
    def venues(self) -> Iterable[SimulatedVenue]:
        """The distinct simulated venues."""
        return list(dict.fromkeys([*self._by_host.values(), *self._by_path.values()]))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request``; an unknown host fails like an unreachable one."""
        with self._lock:
            self.requests.append(request)
        venue = self._by_path.get((request.url.host, request.url.path)) or self._by_host.get(request.url.host)
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


def deprecated_alias(name: str) -> Any:  # noqa: ANN401  # a property of the simulator class
    """A property that reads and writes attribute ``name``: an old name kept working (no warning)."""
    return property(
        lambda self: getattr(self, name),
        lambda self, value: setattr(self, name, value),
        doc=f"Deprecated alias of ``{name}`` (still works, also for setting).",
    )
