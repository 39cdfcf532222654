"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.emulator.config import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, EmulatorConfig
from service.emulator.server import EmulatorServer


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Two instances of 12 agents, the development key, an STS key and a bearer token."""
    return EmulatorConfig(
        instances=("ccc-a", "ccc-b"),
        agents=12,
        seed=7,
        access_keys={
            DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET,
            "sts-access-key": "sts-access-secret",
        },
        sts_tokens={"sts-access-key": "sts-security-token"},
        bearer_tokens=frozenset({"emulator-bearer-token"}),
    )


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig) -> AsyncIterator[EmulatorServer]:
    """A running emulator on a free loopback port."""
    async with EmulatorServer(emulator_config) as server:
        yield server
