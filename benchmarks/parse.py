"""Parse cost: bytes -> Balance against json.loads(bytes, parse_float=Decimal), side by side.

docs/decisions.md §18: the target is a ratio <= 2.0. Both sides run interleaved in one
process on the same bytes (each venue's demo answer, captured from the simulators), and the
best of several rounds is kept, so a noisy shared machine affects both alike.
``benchmarks/suite.py`` reuses :func:`captured_answers` and :func:`timings` (and keeps medians).

    python benchmarks/parse.py [--rounds 7] [--number 2000]
"""

from __future__ import annotations

import argparse
import json
import timeit
from decimal import Decimal

import httpx

from bastion_balance import NO_RETRY, BalanceClient
from bastion_balance.testing import demo_setup


def captured_answers() -> list[tuple[object, httpx.Response]]:
    """Each demo provider with the last answer its venue gave (the balance answer)."""
    simulator, providers = demo_setup()
    last: dict[str, httpx.Response] = {}

    def record(request: httpx.Request) -> httpx.Response:
        response = simulator(request)
        response.read()
        last[request.url.host] = response
        return response

    pairs = []
    http = httpx.Client(transport=httpx.MockTransport(record))
    with BalanceClient(http_client=http, retry=NO_RETRY) as client:
        for provider in providers:
            client.fetch(provider)
            host = httpx.URL(provider.base_url).host  # type: ignore[attr-defined]
            pairs.append((provider, last[host]))
    return pairs


def timings(
    provider: object, answer: httpx.Response, rounds: int, number: int
) -> tuple[list[float], list[float]]:
    """Seconds per call of ``provider.parse_response`` and of ``json.loads(body, parse_float=Decimal)``
    on the same bytes, one figure per round for each, interleaved (each round times both)."""
    body = answer.content
    response = httpx.Response(answer.status_code, content=body, headers=answer.headers)

    def ours() -> object:
        return provider.parse_response(response)  # type: ignore[attr-defined]

    def baseline() -> object:
        return json.loads(body, parse_float=Decimal)

    mine: list[float] = []
    base: list[float] = []
    for _ in range(rounds):
        mine.append(timeit.timeit(ours, number=number) / number)
        base.append(timeit.timeit(baseline, number=number) / number)
    return mine, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'venue':22} {'bytes':>6} {'parse us':>9} {'json us':>8} {'ratio':>6}  target <= 2.0")
    for provider, answer in captured_answers():
        mine, base = timings(provider, answer, args.rounds, args.number)
        size = len(answer.content)
        best_ours, best_base = min(mine), min(base)
        ratio = best_ours / best_base
        print(f"{provider.venue:22} {size:6} {best_ours * 1e6:9.1f} {best_base * 1e6:8.1f} {ratio:6.1f}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
