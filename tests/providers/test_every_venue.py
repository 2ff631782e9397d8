"""The tests every venue shares, written once and run for each venue of the registry.

The venue data comes from ``CASES`` in ``tests/providers/test_<module>.py`` (see
``_venue_cases.py``); a registry venue without it fails here. What only one venue does stays
in its own test module.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Mapping

import attrs
import httpx
import pytest

import bastion_balance as bb
from bastion_balance.providers import CREDENTIAL_HEADERS, PROVIDERS
from bastion_balance.testing import Simulator

from .._harness import MODES, fetch
from .._vcr import RECORDING, SCRUBBED, cassette_vcr
from ._venue_cases import VenueCases, assert_figures, cases_module, load_cases

VENUES = tuple(PROVIDERS)


@pytest.fixture
def cases(venue: str) -> VenueCases:
    """``venue``'s cases; the test fails (never skips) when its module declares none."""
    found = load_cases(venue)
    if found is None:
        pytest.fail(f"{cases_module(venue)} declares no CASES = VenueCases(...) for {venue!r}")
    return found


def _bad_settings() -> list[object]:
    params: list[object] = []
    for venue in VENUES:
        found = load_cases(venue)
        seen: dict[str, int] = {}
        for overrides in found.bad_settings if found is not None else ():
            keys = "+".join(overrides)
            seen[keys] = seen.get(keys, -1) + 1
            params.append(pytest.param(venue, overrides, id=f"{venue}-{keys}-{seen[keys]}"))
    return params


@pytest.mark.parametrize("venue", VENUES)
def test_every_venue_has_cases(venue: str) -> None:
    """Each venue of the registry has its data for this suite, so none goes untested."""
    found = load_cases(venue)
    assert found is not None, f"{cases_module(venue)} declares no CASES = VenueCases(...)"


@pytest.mark.parametrize("venue", VENUES)
def test_repr_hides_secrets(cases: VenueCases) -> None:
    """No key, secret, key id or account id appears in repr or str."""
    provider = cases.make(**cases.repr_settings)
    for text in (repr(provider), str(provider)):
        for secret in cases.secrets:
            assert secret not in text


@pytest.mark.parametrize("venue", VENUES)
def test_refuses_pickle(cases: VenueCases) -> None:
    """Providers hold secrets and refuse to be pickled or copied."""
    with pytest.raises(TypeError, match="credentials"):
        pickle.dumps(cases.make())
    with pytest.raises(TypeError, match="credentials"):
        copy.copy(cases.make())
    with pytest.raises(TypeError, match="credentials"):
        copy.deepcopy(cases.make())


@pytest.mark.parametrize(("venue", "overrides"), _bad_settings())
def test_bad_settings(cases: VenueCases, overrides: Mapping[str, object]) -> None:
    """Bad settings raise ConfigurationError at construction, never leaking the secret."""
    with pytest.raises(bb.ConfigurationError) as info:
        cases.make(**overrides)
    for secret in cases.error_secrets:
        assert secret not in str(info.value)


@pytest.mark.parametrize("venue", VENUES)
def test_defaults(venue: str, cases: VenueCases) -> None:
    """Label and venue are the registry name; URLs and the rest default to the venue's own."""
    _, provider = cases.demo()
    assert (provider.label, provider.venue) == (venue, venue)
    assert_figures(provider, cases.defaults)


@pytest.mark.parametrize("venue", VENUES)
def test_loopback_http_allowed(cases: VenueCases) -> None:
    """Plain http is accepted for loopback hosts (tests, simulators); a trailing slash is dropped."""
    urls = {name: f"http://127.0.0.1:{8080 + i}/" for i, name in enumerate(cases.url_settings)}
    provider = cases.make(**urls)
    assert {name: getattr(provider, name) for name in urls} == {k: v[:-1] for k, v in urls.items()}


@pytest.mark.parametrize("venue", VENUES)
def test_is_a_balance_provider(cases: VenueCases) -> None:
    """The provider fits the public protocol and is frozen."""
    provider = cases.make()
    assert isinstance(provider, bb.BalanceProvider)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        provider.label = "x"


@pytest.mark.parametrize("venue", VENUES)
def test_html_with_200(cases: VenueCases) -> None:
    """An HTML page where JSON belongs is an UnexpectedResponseError."""
    with pytest.raises(bb.UnexpectedResponseError, match="not JSON"):
        cases.respond(httpx.Response(200, text="<html>cloudflare</html>"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("venue", VENUES)
def test_fetch(cases: VenueCases, mode: str) -> None:
    """A fetch through the simulator (sync and async) is verified end to end, with exact figures."""
    venue = cases.venue()
    sim = Simulator(venue)
    balance = fetch(mode, cases.make(), sim, retry=bb.NO_RETRY)
    assert_figures(balance, cases.fetched)
    assert [request.url.host for request in sim.requests] == list(cases.fetch_hosts)
    assert_figures(venue, cases.venue_after_fetch)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("venue", VENUES)
def test_demo_pair(cases: VenueCases, mode: str) -> None:
    """demo_pair() gives a venue and a provider at the production URL that work together."""
    venue, provider = cases.demo()
    assert provider.base_url == cases.defaults["base_url"]
    assert_figures(fetch(mode, provider, Simulator(venue), retry=bb.NO_RETRY), cases.demo_fetched)


@pytest.mark.parametrize("venue", VENUES)
def test_cassette_replay(venue: str, cases: VenueCases) -> None:
    """A recorded call replays through the whole pipeline (record_mode none), credentials scrubbed."""
    demo_venue, provider = cases.demo()
    with cassette_vcr().use_cassette(cases.cassette, **cases.cassette_hooks) as cassette:
        http = Simulator(demo_venue).client() if RECORDING else httpx.Client()
        with bb.BalanceClient(http_client=http, retry=bb.NO_RETRY) as client:
            balance = client.fetch(provider)
    assert_figures(balance, cases.cassette_fetched)
    assert [str(request.uri) for request in cassette.requests] == list(cases.cassette_uris)
    sent = [{name.lower(): value for name, value in r.headers.items()} for r in cassette.requests]
    for header in (*CREDENTIAL_HEADERS[venue], *cases.timestamp_headers):
        values = [headers[header.lower()] for headers in sent if header.lower() in headers]
        assert values, f"{header} was not recorded"
        assert all(value in (SCRUBBED, [SCRUBBED]) for value in values), header
