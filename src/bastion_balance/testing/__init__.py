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
from collections.abc import Iterator

from .. import _state
from ._binance import BINANCE_RECORDED_ACCOUNT, BINANCE_TEST_KEY, BINANCE_TEST_SECRET, SimulatedBinance
from ._bybit import BYBIT_RECORDED_WALLET, BYBIT_TEST_KEY, BYBIT_TEST_SECRET, SimulatedBybit
from ._coinswitch import (
    COINSWITCH_DOCUMENTED_DATA,
    COINSWITCH_TEST_KEY,
    COINSWITCH_TEST_SECRET,
    SimulatedCoinSwitch,
)
from ._demo import demo_setup
from ._fake import FakeProvider
from ._kraken import (
    KRAKEN_DOCUMENTED_RESULT,
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    SimulatedKraken,
)
from ._loopback import Fault, LoopbackServer, RecordedRequest
from ._polymarket_retail import (
    POLYMARKET_RETAIL_DOCUMENTED_BALANCES,
    POLYMARKET_RETAIL_TEST_KEY_ID,
    POLYMARKET_RETAIL_TEST_PUBLIC_KEY,
    POLYMARKET_RETAIL_TEST_SECRET,
    POLYMARKET_RETAIL_TEST_SEED,
    SimulatedPolymarketRetail,
)
from ._polymarket_us import (
    POLYMARKET_US_SYNTHETIC_BALANCE,
    POLYMARKET_US_TEST_ACCOUNT,
    POLYMARKET_US_TEST_CLIENT_ID,
    POLYMARKET_US_TEST_PARTICIPANT_ID,
    SimulatedPolymarketUS,
    polymarket_us_test_private_key_pem,
    polymarket_us_test_public_key_pem,
)
from ._rails import RAILS_DOCUMENTED_BALANCES, RAILS_TEST_API_KEY, RAILS_TEST_API_SECRET, SimulatedRails
from ._simulator import SimulatedVenue, Simulator, json_response

__all__ = [
    "BINANCE_RECORDED_ACCOUNT",
    "BINANCE_TEST_KEY",
    "BINANCE_TEST_SECRET",
    "BYBIT_RECORDED_WALLET",
    "BYBIT_TEST_KEY",
    "BYBIT_TEST_SECRET",
    "COINSWITCH_DOCUMENTED_DATA",
    "COINSWITCH_TEST_KEY",
    "COINSWITCH_TEST_SECRET",
    "FakeProvider",
    "Fault",
    "KRAKEN_DOCUMENTED_RESULT",
    "KRAKEN_TEST_KEY",
    "KRAKEN_TEST_SECRET",
    "LoopbackServer",
    "POLYMARKET_RETAIL_DOCUMENTED_BALANCES",
    "POLYMARKET_RETAIL_TEST_KEY_ID",
    "POLYMARKET_RETAIL_TEST_PUBLIC_KEY",
    "POLYMARKET_RETAIL_TEST_SECRET",
    "POLYMARKET_RETAIL_TEST_SEED",
    "POLYMARKET_US_SYNTHETIC_BALANCE",
    "POLYMARKET_US_TEST_ACCOUNT",
    "POLYMARKET_US_TEST_CLIENT_ID",
    "POLYMARKET_US_TEST_PARTICIPANT_ID",
    "RAILS_DOCUMENTED_BALANCES",
    "RAILS_TEST_API_KEY",
    "RAILS_TEST_API_SECRET",
    "RecordedRequest",
    "SimulatedBinance",
    "SimulatedBybit",
    "SimulatedCoinSwitch",
    "SimulatedKraken",
    "SimulatedPolymarketRetail",
    "SimulatedPolymarketUS",
    "SimulatedRails",
    "SimulatedVenue",
    "Simulator",
    "demo_setup",
    "json_response",
    "polymarket_us_test_private_key_pem",
    "polymarket_us_test_public_key_pem",
    "rate_limits_disabled",
    "reset_shared_state",
]


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
