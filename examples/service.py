"""A small web service: one shared AsyncBalanceClient, the portfolio as JSON with exact numbers.

Needs the ``examples`` extra (Starlette): ``pip install 'bastion-balance[examples]'``. Serve it
with any ASGI server, e.g. ``uvicorn examples.service:app``; run as a script it answers one
request in-process against the built-in simulated venues (no keys, no network).

- One ``AsyncBalanceClient`` is made at start-up and closed at shutdown: every request reuses
  its connections, tokens, nonces and rate limiters (never a client per request).
- ``GET /portfolio`` answers ``Portfolio.to_dict()`` written by ``bb.dumps``: every figure a JSON
  number with all its digits (never a float). A partial answer is still 200, with ``complete``
  false and the failed labels under ``errors``; when no account answered it is 503.
- ``GET /summary`` answers the one-line summary as text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import bastion_balance as bb
from bastion_balance.testing import demo_setup


def make_app(
    providers: Sequence[Any],
    *,
    http_client: Callable[[], httpx.AsyncClient] | None = None,
    rates: Any = None,  # what aggregate's rates= takes
    timeout: float = 10.0,
) -> Starlette:
    """The service over ``providers``; ``http_client`` makes the httpx client to send through."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        http = http_client() if http_client is not None else None
        async with bb.AsyncBalanceClient(http_client=http) as client:
            app.state.client = client
            try:
                yield
            finally:
                if http is not None:
                    await http.aclose()

    async def portfolio(request: Request) -> Response:
        client: bb.AsyncBalanceClient = request.app.state.client
        pf = await client.aggregate(providers, rates=rates, timeout=timeout)
        nothing = bool(providers) and len(pf.errors) == len(providers) and not pf.balances
        return Response(
            bb.dumps(pf.to_dict()), status_code=503 if nothing else 200, media_type="application/json"
        )

    async def summary(request: Request) -> Response:
        client: bb.AsyncBalanceClient = request.app.state.client
        pf = await client.aggregate(providers, rates=rates, timeout=timeout)
        return PlainTextResponse(pf.summary())

    return Starlette(routes=[Route("/portfolio", portfolio), Route("/summary", summary)], lifespan=lifespan)


_simulator, _providers = demo_setup()
#: The demo service: every built-in venue, simulated (``uvicorn examples.service:app``).
app = make_app(_providers, http_client=_simulator.async_client)


def main() -> None:
    from starlette.testclient import TestClient  # noqa: PLC0415  # in-process: no server, no port

    with TestClient(app) as http:
        answer = http.get("/portfolio")
        print(answer.status_code, answer.headers["content-type"])
        print(answer.text[:200], "...")
        print(http.get("/summary").text, "(USD)")


if __name__ == "__main__":
    main()
