"""Shared fixtures: clean process-wide state, hypothesis profiles, simulator clients."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from bastion_balance.testing import reset_shared_state

settings.register_profile(
    "default", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fast", deadline=None, max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


@pytest.fixture(autouse=True)
def _clean_shared_state() -> Iterator[None]:
    """Every test starts with no nonce, token, limiter or clock offset from another test."""
    reset_shared_state()
    yield
    reset_shared_state()
