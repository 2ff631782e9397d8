"""The built-in venues: one registry (:data:`VENUES`), provider classes imported on first use.

``PROVIDERS`` maps a venue name to ``"module:Class"``; :func:`provider_class` imports it.
Third-party providers need no registration: any object that fits ``BalanceProvider`` works
(see ``bastion_balance.provider_kit``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import attrs

from ..exceptions import ConfigurationError

if TYPE_CHECKING:  # for type checkers; at run time each class is imported on first use
    from .binance import BinanceFutures
    from .bybit import Bybit
    from .coinswitch import CoinSwitch
    from .kraken import Kraken
    from .polymarket_retail import PolymarketUSRetail
    from .polymarket_us import PolymarketUS
    from .rails import Rails

#: The venue classes (``bastion_balance`` re-exports exactly these): a registry entry's class
#: name, listed here and imported above for type checkers, which read only literal lists.
#: The registry's own names (``VENUES``, ``PROVIDERS`` ...) are imported by name.
__all__ = [
    "BinanceFutures",
    "Bybit",
    "CoinSwitch",
    "Kraken",
    "PolymarketUS",
    "PolymarketUSRetail",
    "Rails",
]


@attrs.frozen
class Venue:
    """One built-in venue: everything other parts of the project need to know about it.

    ``target`` is the provider class (``"module:Class"`` in this package); ``credential_headers``
    the request headers that carry a credential, a signature, a token or an account id (masked in
    logs, scrubbed from cassettes); ``simulator`` the simulated venue (``"module:Class"`` in
    ``bastion_balance.testing``, whose module has ``demo_pair()`` for ``bastion-balance demo``);
    ``title`` its name for people; ``docs`` its page under ``docs/``.
    """

    target: str
    credential_headers: tuple[str, ...]
    simulator: str
    title: str
    docs: str

    @property
    def module(self) -> str:
        """The provider's module in this package, e.g. ``"kraken"``."""
        return self.target.split(":")[0]

    @property
    def class_name(self) -> str:
        """The provider's class, e.g. ``"Kraken"`` (``bb.Kraken``)."""
        return self.target.split(":")[1]


#: The one list of built-in venues. Everything else is derived from it (the lists below, the log
#: filter, the cassette scrubber, the demo, the CLI), or checked against it by tests/test_registry.py
#: where a tool needs a literal list (``__all__``, type-checking imports, the docs index).
VENUES: Final[Mapping[str, Venue]] = MappingProxyType(
    {
        "kraken": Venue(
            "kraken:Kraken", ("API-Key", "API-Sign"), "_kraken:SimulatedKraken", "Kraken", "venues/kraken.md"
        ),
        "rails": Venue(
            "rails:Rails",
            ("X-Api-Key", "X-Api-Secret", "Authorization"),
            "_rails:SimulatedRails",
            "Rails",
            "venues/rails.md",
        ),
        "coinswitch": Venue(
            "coinswitch:CoinSwitch",
            ("X-AUTH-APIKEY", "X-AUTH-SIGNATURE"),
            "_coinswitch:SimulatedCoinSwitch",
            "CoinSwitch PRO futures",
            "venues/coinswitch.md",
        ),
        "polymarket_us_retail": Venue(
            "polymarket_retail:PolymarketUSRetail",
            ("X-PM-Access-Key", "X-PM-Signature"),
            "_polymarket_retail:SimulatedPolymarketRetail",
            "Polymarket US retail",
            "venues/polymarket-us-retail.md",
        ),
        "polymarket_us": Venue(
            "polymarket_us:PolymarketUS",
            ("Authorization", "x-participant-id"),
            "_polymarket_us:SimulatedPolymarketUS",
            "Polymarket US",
            "venues/polymarket-us.md",
        ),
        "binance": Venue(
            "binance:BinanceFutures",
            ("X-MBX-APIKEY",),
            "_binance:SimulatedBinance",
            "Binance USD-M",
            "venues/binance.md",
        ),
        "bybit": Venue(
            "bybit:Bybit",
            ("X-BAPI-API-KEY", "X-BAPI-SIGN"),
            "_bybit:SimulatedBybit",
            "Bybit",
            "venues/bybit.md",
        ),
    }
)

#: Venue name -> ``"module:Class"`` of its provider.
PROVIDERS: Final[Mapping[str, str]] = MappingProxyType({name: venue.target for name, venue in VENUES.items()})

#: Venue name -> the request headers that carry a credential (tests/test_registry.py checks that
#: every header a provider sends is either listed here or public).
CREDENTIAL_HEADERS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {name: venue.credential_headers for name, venue in VENUES.items()}
)

#: Every credential header of every venue, once each, in a stable order.
ALL_CREDENTIAL_HEADERS: Final[tuple[str, ...]] = tuple(
    dict.fromkeys(name for names in CREDENTIAL_HEADERS.values() for name in names)
)

#: Public class name -> venue name, for lazy attribute access on the package.
CLASS_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {venue.class_name: name for name, venue in VENUES.items()}
)


def provider_class(name: str) -> type[Any]:
    """The provider class of venue ``name`` (e.g. ``"kraken"``), imported now."""
    target = PROVIDERS.get(name)
    if target is None:
        msg = f"unknown venue {name!r}; known venues: {', '.join(PROVIDERS)}"
        raise ConfigurationError(msg)
    module_name, class_name = target.split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    cls: type[Any] = getattr(module, class_name)
    return cls


def provider_from_name(name: str, **settings: Any) -> Any:  # noqa: ANN401  # one of the venue classes
    """Build the provider of venue ``name`` from keyword settings (credentials, label ...)."""
    return provider_class(name)(**settings)


def __getattr__(name: str) -> Any:  # noqa: ANN401  # a venue class, imported on first use
    venue = CLASS_NAMES.get(name)
    if venue is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    cls = provider_class(venue)
    globals()[name] = cls
    return cls
