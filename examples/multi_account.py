"""Many accounts from one TOML file: label them, keep secrets out of the file, aggregate.

The file lists one ``[[account]]`` table per account; a secret is read from the environment
variable the table names (``api_secret_env``), never written in the file::

    [[account]]
    venue = "kraken"
    label = "kraken-main"
    api_key = "..."
    api_secret_env = "KRAKEN_MAIN_SECRET"

    [rates]
    EUR = "1.0842"

``python examples/multi_account.py accounts.toml`` reads yours. Without an argument it writes a
sample file with the venues' published test keys and runs against the built-in simulated venues
(no network). The command line reads the same format: ``bastion-balance --config accounts.toml``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import bastion_balance as bb
from bastion_balance import testing

CLASSES: dict[str, type[Any]] = {"kraken": bb.Kraken, "bybit": bb.Bybit, "binance": bb.BinanceFutures}

SAMPLE = f"""
[[account]]
venue = "kraken"
label = "kraken-usd"
api_key = "{testing.KRAKEN_TEST_KEY}"
api_secret_env = "SAMPLE_KRAKEN_SECRET"

[[account]]
venue = "kraken"
label = "kraken-eur"
asset = "ZEUR"
api_key = "{testing.KRAKEN_TEST_KEY}"
api_secret_env = "SAMPLE_KRAKEN_SECRET"

[[account]]
venue = "bybit"
api_key = "{testing.BYBIT_TEST_KEY}"
api_secret_env = "SAMPLE_BYBIT_SECRET"

[rates]
EUR = "1.0842"
"""


def read_accounts(path: Path, environ: dict[str, str]) -> tuple[list[Any], dict[str, Decimal]]:
    """The providers of the file's ``[[account]]`` tables and its ``[rates]``."""
    data = tomllib.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)  # no float, ever
    providers = []
    for table in data.get("account", []):
        settings = dict(table)
        cls = CLASSES[settings.pop("venue")]
        for name in [key for key in settings if key.endswith("_env")]:
            settings[name.removesuffix("_env")] = environ[settings.pop(name)]
        providers.append(cls(**settings))  # labels must differ: bb.aggregate refuses duplicates
    rates = {currency: Decimal(str(rate)) for currency, rate in data.get("rates", {}).items()}
    return providers, rates


def main(argv: list[str]) -> None:
    environ = dict(os.environ)
    simulator = None
    if argv:
        path = Path(argv[0])
    else:  # the sample: test keys, simulated venues
        simulator, _ = testing.demo_setup()
        environ |= {
            "SAMPLE_KRAKEN_SECRET": testing.KRAKEN_TEST_SECRET,
            "SAMPLE_BYBIT_SECRET": testing.BYBIT_TEST_SECRET,
        }
        path = Path(tempfile.mkdtemp()) / "accounts.toml"
        path.write_text(SAMPLE, encoding="utf-8")
    providers, rates = read_accounts(path, environ)
    client = simulator.client() if simulator is not None else None
    portfolio = bb.aggregate(providers, rates=rates, client=client)
    for label, balance in portfolio.balances.items():
        total_usd, available_usd = portfolio.usd(balance)
        line = f"{label:12} {balance.total:>16} {balance.currency:4} = {total_usd:>20} USD"
        print(f"{line} ({available_usd} free)")
    for label, error in portfolio.errors.items():
        print(f"{label:12} failed: {error}")
    print(portfolio.summary())
    print("total USD:", portfolio.total_usd, "complete:", portfolio.complete)


if __name__ == "__main__":
    main(sys.argv[1:])
