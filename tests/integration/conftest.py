"""The real embedded broker (Tansu over TCP), shared by the session: it starts in milliseconds,
but one is enough. Tests that restart a broker start their own EmbeddedBroker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from service.broker import EmbeddedBroker
from service.emulator.server import EmulatorServer
from service.kafka.settings import KafkaSettings, TopicSettings
from tests.integration.pipeline import BUSY


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def broker() -> AsyncIterator[EmbeddedBroker]:
    """A running broker on a free loopback port. Only its address is for tests to use: it
    lives in the session's event loop, so start/stop/restart belong to a broker of your own."""
    async with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def kafka_settings(broker: EmbeddedBroker) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=broker.bootstrap_servers, client_id="ccc-bridge-test")


@pytest.fixture
def topic_settings() -> TopicSettings:
    """Topics of this test alone (a unique prefix), as the broker is shared; 2 partitions."""
    return TopicSettings(prefix=f"t{uuid.uuid4().hex[:12]}.", partitions=2)


@pytest.fixture
async def emulator_busy() -> AsyncIterator[EmulatorServer]:
    """One instance of 50 busy agents at 30x: about 100 calls in the first 20 seconds."""
    async with EmulatorServer(BUSY) as server:
        yield server
