"""`ccc-bridge demo` as a user runs it: broker, emulator and service on loopback, events live
on screen, and Ctrl-C stops all three with no process left behind."""

from __future__ import annotations

import asyncio
import signal
import sys

from tests.integration.kafka_io import alive, children


async def test_demo_shows_agents_calls_and_command_results_and_stops_cleanly_on_ctrl_c() -> None:
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
    kinds: set[str] = set()
    lines: list[str] = []
    try:
        async with asyncio.timeout(90):
            while not {"agent", "call", "result"} <= kinds:
                line = (await process.stdout.readline()).decode()
                assert line, f"demo ended early: {lines}"
                lines.append(line)
                words = line.split()
                if len(words) > 2 and words[1] == "ccc-demo":
                    kinds.add(words[2])
        helpers = children(process.pid)
        assert helpers, "the broker runs as a child process"
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest, errors = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, errors.decode()
    assert rest.decode().splitlines()[-1] == "stopped"
    assert not [pid for pid in helpers if alive(pid)], "no orphan process"
    assert lines[0].startswith("broker ")
    assert "->" in next(line for line in lines if " agent " in line and "->" in line)
    result = next(line for line in lines if " result " in line)
    assert " succeeded " in result, "the sample command ran in the emulator"
