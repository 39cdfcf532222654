"""`log.level` and `log.format` reach `ccc-bridge run` as the image starts it (no logging
flags): from env vars, as a Kubernetes deployment sets them; flags after the subcommand win."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from service.broker import EmbeddedBroker
from service.emulator.server import EmulatorServer
from tests.integration.kafka_io import DEADLINE_S, SECRET_ENV, start_cli, write_config
from tests.integration.pipeline import service_settings


def is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def debug_json(line: str) -> bool:
    return is_json(line) and json.loads(line).get("level") == "debug"


def console(line: str) -> bool:
    return bool(line) and not is_json(line)


@pytest.fixture
async def config(broker: EmbeddedBroker, emulator_busy: EmulatorServer, tmp_path: Path) -> Path:
    written = tmp_path / "config.yaml"
    await write_config(service_settings(emulator_busy, broker.bootstrap_servers), written)
    return written


@pytest.mark.parametrize(
    ("env", "flags", "wanted"),
    [
        ({"CCC_BRIDGE_LOG__LEVEL": "debug", "CCC_BRIDGE_LOG__FORMAT": "json"}, [], debug_json),
        # stderr is a pipe here, so only the setting makes it console (auto would be JSON).
        ({"CCC_BRIDGE_LOG__FORMAT": "console"}, [], console),
        (
            {"CCC_BRIDGE_LOG__LEVEL": "error", "CCC_BRIDGE_LOG__FORMAT": "console"},
            ["--log-level", "debug", "--log-format", "json"],
            debug_json,
        ),
    ],
    ids=["level-from-env", "format-from-env", "flags-after-the-subcommand-win"],
)
async def test_run_logs_as_its_settings_say(
    config: Path, env: dict[str, str], flags: list[str], wanted: Callable[[str], bool]
) -> None:
    process = await start_cli("run", "--config", str(config), *flags, env={**SECRET_ENV, **env})
    assert process.stderr is not None
    started = False  # settings are applied by then, and SIGTERM stops it in order
    try:
        async with asyncio.timeout(DEADLINE_S):
            while True:
                line = (await process.stderr.readline()).decode().rstrip("\n")
                assert line, "stderr ended before such a line"
                started = started or "service_started" in line
                if started and wanted(line):
                    break
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE_S):
            _, rest = await process.communicate()  # at debug, a full pipe would block it
    assert process.returncode == 0, rest.decode()[-2000:]
