"""The package version: a literal, read by the build (hatch) and at import without any metadata lookup.

(``importlib.metadata.version()`` cost about 6 ms of every ``import bastion_balance``.)
"""

__version__ = "0.1.0"
