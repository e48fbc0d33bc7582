"""Sub-commands of `safegen` that serve people: ``review`` and ``study``."""

from __future__ import annotations

import argparse

__all__ = ["add_review_commands"]


def add_review_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``review`` and ``study`` to the ``safegen`` sub-parsers (each sets ``handler``)."""
