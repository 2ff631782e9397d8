"""The built-in venues, listed explicitly and imported on first use.

``PROVIDERS`` maps a venue name to ``"module:Class"``; :func:`provider_class` imports it.
Third-party providers need no registration: any object that fits ``BalanceProvider`` works.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from ..exceptions import ConfigurationError

__all__ = [
    "ALL_CREDENTIAL_HEADERS",
    "CLASS_NAMES",
    "CREDENTIAL_HEADERS",
    "PROVIDERS",
    "provider_class",
    "provider_from_name",
]

PROVIDERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "kraken": "kraken:Kraken",
        "rails": "rails:Rails",
        "coinswitch": "coinswitch:CoinSwitch",
        "polymarket_us_retail": "polymarket_retail:PolymarketUSRetail",
        "polymarket_us": "polymarket_us:PolymarketUS",
        "binance": "binance:BinanceFutures",
        "bybit": "bybit:Bybit",
    }
)

#: The request headers of each venue that carry a credential, a signature, a token or an account
#: id: masked in logs, scrubbed from cassettes. One list, so a venue added here is covered by both
#: (tests/test_registry.py checks that every header a provider sends is either here or public).
CREDENTIAL_HEADERS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "kraken": ("API-Key", "API-Sign"),
        "rails": ("X-Api-Key", "X-Api-Secret", "Authorization"),
        "coinswitch": ("X-AUTH-APIKEY", "X-AUTH-SIGNATURE"),
        "polymarket_us_retail": ("X-PM-Access-Key", "X-PM-Signature"),
        "polymarket_us": ("Authorization", "x-participant-id"),
        "binance": ("X-MBX-APIKEY",),
        "bybit": ("X-BAPI-API-KEY", "X-BAPI-SIGN"),
    }
)

#: Every credential header of every venue, once each, in a stable order.
ALL_CREDENTIAL_HEADERS: Final[tuple[str, ...]] = tuple(
    dict.fromkeys(name for names in CREDENTIAL_HEADERS.values() for name in names)
)

#: Public class name -> venue name, for lazy attribute access on the package.
CLASS_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {target.split(":")[1]: venue for venue, target in PROVIDERS.items()}
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
