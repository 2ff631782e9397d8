"""``python -m bastion_balance``: the ``bastion-balance`` command."""

from .cli import main

main()
