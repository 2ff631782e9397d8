"""Credentials are typed ``str`` in the constructors' hints, and non-strings are still refused."""

from __future__ import annotations

import typing

import attrs
import pytest

import bastion_balance as bb
from bastion_balance.providers import VENUES
from bastion_balance.testing import demo_setup, polymarket_us_test_private_key_pem

#: class -> credential parameter -> its type hint in ``__init__``.
CREDENTIALS: dict[str, dict[str, object]] = {
    "Kraken": {"api_key": str, "api_secret": str, "otp": str | None},
    "Rails": {"api_key": str, "api_secret": str},
    "CoinSwitch": {"api_key": str, "api_secret": str},
    "PolymarketUSRetail": {"key_id": str, "secret_key": str},
    "PolymarketUS": {"client_id": str, "private_key": str | bytes, "participant_id": str, "account": str},
    "BinanceFutures": {"api_key": str, "api_secret": str},
    "Bybit": {"api_key": str, "api_secret": str},
}


def test_every_venue_is_listed() -> None:
    assert set(CREDENTIALS) == {venue.class_name for venue in VENUES.values()}


@pytest.mark.parametrize("name", sorted(CREDENTIALS))
def test_credential_hints_are_strings(name: str) -> None:
    cls = getattr(bb, name)
    hints = typing.get_type_hints(cls.__init__)
    assert {field: hints[field] for field in CREDENTIALS[name]} == CREDENTIALS[name]
    hidden = {f.name for f in attrs.fields(cls) if not f.repr and f.name != "clock"}
    assert hidden <= set(CREDENTIALS[name])  # every secret a repr hides is typed here


def _settings(provider: object) -> dict[str, object]:
    """The required settings of a working demo provider, as a user passes them (text)."""
    settings: dict[str, object] = {}
    for field in attrs.fields(type(provider)):
        if field.init and field.default is attrs.NOTHING:
            value = getattr(provider, field.name)
            settings[field.name] = value if isinstance(value, str) else polymarket_us_test_private_key_pem()
    return settings


@pytest.mark.parametrize(
    ("name", "field"), [(n, f) for n, fields in sorted(CREDENTIALS.items()) for f in fields]
)
@pytest.mark.parametrize("wrong", [12345, 1.5, ["k"]])
def test_non_strings_are_still_refused(name: str, field: str, wrong: object) -> None:
    samples = {type(p).__name__: p for p in demo_setup()[1]}
    settings = _settings(samples[name])
    cls = getattr(bb, name)
    cls(**settings)  # the sample settings work
    with pytest.raises(bb.ConfigurationError, match=field) as caught:
        cls(**{**settings, field: wrong})
    assert str(wrong) not in str(caught.value)
