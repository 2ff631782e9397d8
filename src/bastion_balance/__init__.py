"""bastion_balance: exact, typed account balances from many venues, aggregated.

>>> import bastion_balance as bb
>>> kraken = bb.Kraken(api_key="...", api_secret="...")          # doctest: +SKIP
>>> pf = bb.aggregate([kraken])                                   # doctest: +SKIP
>>> pf.total_usd, pf.available_margin_usd                         # doctest: +SKIP

Venue classes (and the signing libraries they need) are imported on first use, so
``import bastion_balance`` stays cheap.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from . import providers as _providers
from ._client import (
    AsyncBalanceClient,
    BalanceClient,
    aaggregate,
    afetch_balance,
    aggregate,
    fetch_balance,
)
from ._models import Balance, Holding, Portfolio, dumps
from ._protocol import BalanceProvider
from ._rates import Rate, RateSource
from ._retry import NO_RETRY, RetryPolicy
from ._version import __version__
from .exceptions import (
    AggregateError,
    AuthenticationError,
    BastionBalanceError,
    ConfigurationError,
    DeadlineExceededError,
    ExchangeAPIError,
    HistoryError,
    MissingRateError,
    RateLimitedError,
    ResponseTooLargeError,
    ServiceUnavailableError,
    TransportError,
    UnexpectedResponseError,
)
from .providers import CLASS_NAMES as _CLASS_NAMES
from .providers import provider_class as _provider_class

if _TYPE_CHECKING:
    from ._history import Drawdown, Flow, History, Snapshot
    from ._kraken_rates import KrakenRates
    from ._watch import (
        AsyncWatcher,
        BreakerClosed,
        BreakerOpened,
        FetchFailed,
        FetchRetried,
        FetchSucceeded,
        RecordFailed,
        Watcher,
        WatchEvent,
        watch,
    )
    from .providers import *  # noqa: F403  # the venue classes, listed once in the registry

__all__ = [
    # models and functions
    "AsyncBalanceClient",
    "Balance",
    "BalanceClient",
    "BalanceProvider",
    "Drawdown",
    "Flow",
    "History",
    "Holding",
    "KrakenRates",
    "NO_RETRY",
    "Portfolio",
    "Rate",
    "RateSource",
    "RetryPolicy",
    "Snapshot",
    "__version__",
    "aaggregate",
    "afetch_balance",
    "aggregate",
    "dumps",
    "fetch_balance",
    # watching (docs/watch.md)
    "AsyncWatcher",
    "BreakerClosed",
    "BreakerOpened",
    "FetchFailed",
    "FetchRetried",
    "FetchSucceeded",
    "RecordFailed",
    "WatchEvent",
    "Watcher",
    "watch",
    # exceptions
    "AggregateError",
    "AuthenticationError",
    "BastionBalanceError",
    "ConfigurationError",
    "DeadlineExceededError",
    "ExchangeAPIError",
    "HistoryError",
    "MissingRateError",
    "RateLimitedError",
    "ResponseTooLargeError",
    "ServiceUnavailableError",
    "TransportError",
    "UnexpectedResponseError",
]

__all__ += _providers.__all__  # the venue classes, from the registry (imported on first use)

#: Public names whose modules (and their optional extras) load on first use: name -> module.
_LAZY_NAMES: dict[str, str] = {
    "Drawdown": "._history",
    "Flow": "._history",
    "History": "._history",
    "KrakenRates": "._kraken_rates",
    **dict.fromkeys(
        [
            "AsyncWatcher",
            "BreakerClosed",
            "BreakerOpened",
            "FetchFailed",
            "FetchRetried",
            "FetchSucceeded",
            "RecordFailed",
            "WatchEvent",
            "Watcher",
            "watch",
        ],
        "._watch",
    ),
    "Snapshot": "._history",
}


def __getattr__(name: str) -> _Any:  # noqa: ANN401  # a venue class or a lazy name, imported on first use
    if name in _LAZY_NAMES:
        import importlib  # noqa: PLC0415

        value = getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
    elif name in _CLASS_NAMES:
        value = _provider_class(_CLASS_NAMES[name])
    else:
        msg = f"module 'bastion_balance' has no attribute {name!r}"
        raise AttributeError(msg)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
