"""Test helpers for bastion_balance users: simulated venues and switches for tests.

>>> from bastion_balance.testing import Simulator, SimulatedKraken, KRAKEN_TEST_KEY, KRAKEN_TEST_SECRET
>>> sim = Simulator(SimulatedKraken())
>>> client = bb.BalanceClient(http_client=sim.client())                # doctest: +SKIP
>>> kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET)
>>> client.fetch(kraken).total                                          # doctest: +SKIP
Decimal('382.2032')

``rate_limits_disabled()`` switches off the client-side rate limiters (so a test can send
hundreds of calls at once) and ``reset_shared_state()`` forgets nonces, tokens and limiters.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

from .. import _state
from ..providers import VENUES
from ._binance import *  # noqa: F403  # each venue's simulator and test data: that module's __all__
from ._bybit import *  # noqa: F403
from ._coinswitch import *  # noqa: F403
from ._demo import demo_setup
from ._fake import FakeProvider
from ._kraken import *  # noqa: F403
from ._kraken_ticker import KRAKEN_TICKER_PRICES, SimulatedKrakenTicker
from ._loopback import Fault, LoopbackServer, RecordedRequest
from ._polymarket_retail import *  # noqa: F403
from ._polymarket_us import *  # noqa: F403
from ._rails import *  # noqa: F403
from ._simulator import ScriptedVenue, SimulatedVenue, Simulator, json_response


def _module_all(simulator: str) -> list[str]:
    module = importlib.import_module(f"{__name__}.{simulator.split(':', maxsplit=1)[0]}")
    names: list[str] = module.__all__
    return names


__all__ = [
    "KRAKEN_TICKER_PRICES",
    "FakeProvider",
    "Fault",
    "LoopbackServer",
    "RecordedRequest",
    "ScriptedVenue",
    "SimulatedKrakenTicker",
    "SimulatedVenue",
    "Simulator",
    "demo_setup",
    "json_response",
    "rate_limits_disabled",
    "reset_shared_state",
]
#: Each built-in venue's simulator, test keys and documented answers, from the registry's list of
#: simulators (a new venue's module is star-imported above; tests/test_registry.py checks both).
__all__ += [name for venue in VENUES.values() for name in _module_all(venue.simulator)]


@contextlib.contextmanager
def rate_limits_disabled() -> Iterator[None]:
    """Switch off every client-side rate limiter inside the ``with`` block."""
    _state.set_rate_limits(enabled=False)
    try:
        yield
    finally:
        _state.set_rate_limits(enabled=True)


def reset_shared_state() -> None:
    """Forget every nonce counter, token, rate limiter and clock offset of this process."""
    _state.reset()
