"""The demo set: every built-in venue simulated side by side (``bastion-balance demo``)."""

from __future__ import annotations

import importlib
from typing import Any, Final

from ..providers import VENUES
from ._kraken_ticker import SimulatedKrakenTicker
from ._simulator import Simulator

__all__ = ["DEMO_MODULES", "demo_setup"]

#: Simulator modules, one per built-in venue in the registry's order; each has ``demo_pair()``.
DEMO_MODULES: Final = tuple(venue.simulator.split(":")[0] for venue in VENUES.values())


def demo_setup() -> tuple[Simulator, list[Any]]:
    """A simulator serving every built-in venue and one provider per venue with test keys; it also
    serves Kraken's public ticker, so ``rates=bb.KrakenRates()`` works against it."""
    simulator = Simulator(SimulatedKrakenTicker())
    providers: list[Any] = []
    for name in DEMO_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        venue, provider = module.demo_pair()
        simulator.add(venue)
        providers.append(provider)
    return simulator, providers
