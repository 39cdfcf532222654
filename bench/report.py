"""What every benchmark prints the same way."""

from __future__ import annotations


def verdict(met: bool) -> str:  # noqa: FBT001 - a yes/no to print
    return "met" if met else "MISSED"
