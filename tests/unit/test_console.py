"""What every `ccc-bridge` process sets up before its subcommand runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.console import GC_YOUNG_THRESHOLD


def test_the_cli_freezes_what_it_imported_and_collects_young_objects_less_often(
    tmp_path: Path,
) -> None:
    """In a process of its own: the tuning is process-wide and would reach pytest's."""
    script = (
        "import gc, sys; from service.cli import main; "
        "code = main(['schemas', '--out', sys.argv[1]]); "
        "print(code, gc.get_threshold()[0], gc.get_freeze_count())"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter on a script of ours
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    code, threshold, frozen = (int(word) for word in done.stdout.splitlines()[-1].split())
    assert code == 0
    assert threshold == GC_YOUNG_THRESHOLD
    assert frozen > 10_000  # modules, models and the catalogue, left out of every collection
