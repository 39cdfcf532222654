"""What the generators under scripts/ share: write their file, or with --check say whether
the committed one is what they would write (the tests hold them equal too)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def write_or_check(path: Path, render: Callable[[], str], description: str, module: str) -> int:
    """`render()` into `path`; with --check, 1 if `path` differs from it, else 0."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    wanted = render()
    if parser.parse_args().check:
        if path.read_text(encoding="utf-8") != wanted:
            print(f"{path} is stale: run python -m {module}")
            return 1
        return 0
    path.write_text(wanted, encoding="utf-8")
    print(f"wrote {path}")
    return 0
