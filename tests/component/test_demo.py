"""`ccc-bridge demo` as a user runs it: live lines, then Ctrl-C stops it cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys

from service.demo import state_changes


def test_state_changes_reports_every_difference_and_offline() -> None:
    before = {"a": "Ready", "b": "Talking", "c": "Break"}
    after = {"a": "Ready", "b": "ACW", "d": "Ready"}
    assert state_changes(before, after) == [
        ("b", "Talking", "ACW"),
        ("c", "Break", "offline"),
        ("d", "offline", "Ready"),
    ]
    assert state_changes(after, after) == []


async def test_demo_shows_agents_calls_and_stops_on_ctrl_c() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "demo",
        "--speed",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    seen: set[str] = set()
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not {"dial", "agent", "call"} <= seen:
                line = (await process.stdout.readline()).decode()
                assert line, f"demo ended early: {lines}"
                lines.append(line)
                seen.add(line.split()[1])
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            rest, errors = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, errors.decode()
    assert rest.decode().splitlines()[-1].endswith("stopped")
    dial = next(line for line in lines if line.split()[1] == "dial")
    assert "TaskId" in dial
    assert "TaskId None" not in dial
