"""The emulator in its own process, so its CPU does not count against what is measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_emulator(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """`ccc-bridge emulator --port 0 FLAGS...`; returns the process and its URL once ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "emulator", "--port", "0", *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    url = next(word.split("=", 1)[1] for word in line.split() if word.startswith("url="))
    return process, url


def stop_process(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)
