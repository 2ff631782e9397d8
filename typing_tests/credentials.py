"""Checked by mypy --strict in CI (never run): credentials are typed ``str`` in the constructors.

Each ``type: ignore[arg-type]`` below must be needed: mypy --strict reports an unused ignore, so
a credential typed ``object`` again (anything accepted) fails this file.
"""

from __future__ import annotations

import bastion_balance as bb


def strings_are_accepted(pem: str, pem_bytes: bytes) -> list[bb.BalanceProvider]:
    return [
        bb.Kraken(api_key="k", api_secret="s", otp=None),
        bb.Kraken(api_key="k", api_secret="s", otp="123456"),
        bb.Rails(api_key="k", api_secret="s"),
        bb.CoinSwitch(api_key="k", api_secret="s"),
        bb.PolymarketUSRetail(key_id="k", secret_key="s"),
        bb.PolymarketUS(client_id="c", private_key=pem, participant_id="p", account="a"),
        bb.PolymarketUS(client_id="c", private_key=pem_bytes, participant_id="p", account="a"),
        bb.BinanceFutures(api_key="k", api_secret="s"),
        bb.Bybit(api_key="k", api_secret="s"),
    ]


def other_types_are_refused(pem: str) -> None:
    bb.Kraken(api_key=1, api_secret="s")  # type: ignore[arg-type]
    bb.Kraken(api_key="k", api_secret=b"s")  # type: ignore[arg-type]
    bb.Kraken(api_key="k", api_secret="s", otp=123456)  # type: ignore[arg-type]
    bb.Rails(api_key=1, api_secret="s")  # type: ignore[arg-type]
    bb.Rails(api_key="k", api_secret=1)  # type: ignore[arg-type]
    bb.CoinSwitch(api_key=1, api_secret="s")  # type: ignore[arg-type]
    bb.CoinSwitch(api_key="k", api_secret=1)  # type: ignore[arg-type]
    bb.PolymarketUSRetail(key_id=1, secret_key="s")  # type: ignore[arg-type]
    bb.PolymarketUSRetail(key_id="k", secret_key=1)  # type: ignore[arg-type]
    bb.PolymarketUS(client_id=1, private_key=pem, participant_id="p", account="a")  # type: ignore[arg-type]
    bb.PolymarketUS(client_id="c", private_key=1, participant_id="p", account="a")  # type: ignore[arg-type]
    bb.PolymarketUS(client_id="c", private_key=pem, participant_id=1, account="a")  # type: ignore[arg-type]
    bb.PolymarketUS(client_id="c", private_key=pem, participant_id="p", account=1)  # type: ignore[arg-type]
    bb.BinanceFutures(api_key=1, api_secret="s")  # type: ignore[arg-type]
    bb.BinanceFutures(api_key="k", api_secret=1)  # type: ignore[arg-type]
    bb.Bybit(api_key=1, api_secret="s")  # type: ignore[arg-type]
    bb.Bybit(api_key="k", api_secret=1)  # type: ignore[arg-type]
