"""What the shared venue suite (``test_every_venue.py``) needs to know about one venue.

Each ``tests/providers/test_<module>.py`` (``<module>`` as in the registry's ``"module:Class"``)
declares ``CASES = VenueCases(...)``; the shared suite runs every test of its own for each venue
of ``bastion_balance.providers.PROVIDERS`` and fails for a venue whose module declares none.

Expected figures are mappings of *paths* to exact values: a path is attribute names or mapping
keys joined by dots (``"total"``, ``"extra.eb"``, ``"breakdown.USDT.total"``), or ``len(path)``
for a length (``"len(breakdown)"``); see :func:`figure`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sized
from typing import Any

import attrs
import httpx

import bastion_balance as bb
from bastion_balance.providers import PROVIDERS

__all__ = ["VenueCases", "assert_figures", "figure", "load_cases", "cases_module"]


@attrs.frozen(kw_only=True)
class VenueCases:
    """One venue's data for the shared suite."""

    #: The provider with the test credentials; keyword settings override (``make(label="x")``).
    make: Callable[..., Any]
    #: A fresh simulated venue that accepts ``make()``'s requests at the provider's default URLs.
    venue: Callable[[], Any]
    #: The venue's ``demo_pair()`` (its simulator module's): a simulated venue and a provider.
    demo: Callable[[], tuple[Any, Any]]
    #: Hands one response to a ``make()`` provider as the answer to its request: the Balance.
    respond: Callable[[httpx.Response], bb.Balance]

    #: Strings that never appear in ``repr()`` / ``str()`` of ``make(**repr_settings)``.
    secrets: tuple[str, ...]
    repr_settings: Mapping[str, object] = attrs.field(factory=dict)
    #: Overrides that ``make(**overrides)`` refuses with ConfigurationError ...
    bad_settings: tuple[Mapping[str, object], ...]
    #: ... in an error that echoes none of these.
    error_secrets: tuple[str, ...]

    #: The demo provider's defaults beyond label and venue (which are the registry name).
    defaults: Mapping[str, object]
    #: The URL settings (``base_url``, and ``auth_url`` for the token venues).
    url_settings: tuple[str, ...] = ("base_url",)

    #: One fetch of ``make()`` from ``venue()``: the hosts it asks, in order ...
    fetch_hosts: tuple[str, ...]
    #: ... the Balance's figures ...
    fetched: Mapping[str, object]
    #: ... and the simulated venue's counters after it.
    venue_after_fetch: Mapping[str, object]
    #: The figures of a fetch of the demo pair.
    demo_fetched: Mapping[str, object]

    #: The cassette (under cassettes/), the vcrpy hooks its recording used, what it replays to.
    cassette: str
    cassette_hooks: Mapping[str, Any] = attrs.field(factory=dict)
    cassette_uris: tuple[str, ...]
    cassette_fetched: Mapping[str, object]
    #: Timestamp headers the venue sends, scrubbed in the cassette like its credential headers.
    timestamp_headers: tuple[str, ...] = ()


def cases_module(venue: str) -> str:
    """The test module that holds ``venue``'s cases: ``tests.providers.test_<module>``."""
    return f"{__package__}.test_{PROVIDERS[venue].split(':')[0]}"


def load_cases(venue: str) -> VenueCases | None:
    """``venue``'s ``CASES``; ``None`` when its test module, or the object in it, is missing."""
    name = cases_module(venue)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the module exists but imports something missing: show that
            raise
        return None
    cases = getattr(module, "CASES", None)
    return cases if isinstance(cases, VenueCases) else None


def figure(obj: object, path: str) -> object:
    """The value at ``path`` in ``obj`` (dotted attributes or mapping keys; ``len(...)`` a length)."""
    if path.startswith("len(") and path.endswith(")"):
        sized = figure(obj, path[4:-1])
        assert isinstance(sized, Sized), f"{path}: {sized!r} has no length"
        return len(sized)
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, Mapping) else getattr(obj, part)
    return obj


def assert_figures(obj: object, expected: Mapping[str, object]) -> None:
    """Every path of ``expected`` reads its exact value in ``obj`` (one assert, showing all)."""
    assert expected, "no figures to check"
    assert {path: figure(obj, path) for path in expected} == dict(expected)
