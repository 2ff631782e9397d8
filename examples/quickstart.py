"""Quickstart: fetch and aggregate balances, here against the built-in simulated venues.

With real keys, drop the simulator and the client= argument:

    kraken = bb.Kraken(api_key=os.environ["KRAKEN_KEY"], api_secret=os.environ["KRAKEN_SECRET"])
    portfolio = bb.aggregate([kraken])
"""

from __future__ import annotations

from decimal import Decimal

import bastion_balance as bb
from bastion_balance.testing import demo_setup


def main() -> None:
    simulator, providers = demo_setup()  # every venue simulated, test keys, no network
    with simulator.client() as http:
        portfolio = bb.aggregate(providers, client=http, rates={"EUR": Decimal("1.08")})
    for label, balance in portfolio.balances.items():
        print(f"{label:24} {balance.currency:5} total {balance.total:>20} available {balance.available:>20}")
    print("total USD:", portfolio.total_usd, "available margin USD:", portfolio.available_margin_usd)
    print("complete:", portfolio.complete, "errors:", dict(portfolio.errors))
    print(bb.dumps(portfolio.to_bastion(), indent=2))


if __name__ == "__main__":
    main()
