"""The service wired to an emulator and a broker as the integration tests run it."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from service.app import run_service
from service.ccc.settings import RateLimitSettings, RetrySettings
from service.emulator.config import (
    EmulatorConfig,
    client_settings,
)
from service.emulator.server import EmulatorServer
from service.kafka.settings import KafkaSettings, TopicSettings
from service.settings import CommandSettings, HttpSettings, PollerSettings, Settings
from tests.inspection import eventually
from tests.integration.events import Message, missing_calls, missing_transitions, read_events

INSTANCE = "ccc-a"
# 50 agents at 30x: about 100 calls within the first 20 seconds.
BUSY = EmulatorConfig(instances=(INSTANCE,), agents=50, seed=11, speed=30)


# Several services at once in one test run: each listens on a port of its own.
LOOPBACK_ANY_PORT = HttpSettings(host="127.0.0.1", port=0)


def service_settings(emulator: EmulatorServer, bootstrap: str) -> Settings:
    return Settings(
        ccc=client_settings(
            emulator.url,
            instances=[INSTANCE],
            rate_limits=RateLimitSettings.off(),
            retry=RetrySettings(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.1),
        ),
        kafka=KafkaSettings(bootstrap_servers=bootstrap, request_timeout_ms=3000),
        http=LOOPBACK_ANY_PORT,
        topics=TopicSettings(prefix=f"t{uuid.uuid4().hex[:8]}."),  # one broker, many tests
        pollers=PollerSettings(
            # One process: no group to join. Joining costs each start seconds, and a start
            # after a SIGKILL the dead member's session timeout (30 s more over test_http,
            # test_pipeline and test_restarts); test_replicas.py tests the split itself.
            split="none",
            agent_states_interval_s=0.2,
            agent_state_logs_interval_s=0.3,
            agent_state_logs_settle_s=1.0,
            agent_state_logs_backfill_s=3600,
            calls_interval_s=0.3,
            skill_groups_interval_s=1.0,
            directory_refresh_s=5,
        ),
    )


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[None]]]:
    """The service in this process, its stop event and its task; stopped on the way out,
    which must end it cleanly (a failure is raised)."""
    stop = asyncio.Event()
    service = asyncio.create_task(run_service(settings, stop))
    try:
        yield stop, service
    finally:
        stop.set()
        await asyncio.wait_for(service, timeout=30)


def commands_only(emulator: EmulatorServer, bootstrap: str, **commands: Any) -> Settings:
    """The service executing commands alone, in a consumer group of its own."""
    return service_settings(emulator, bootstrap).model_copy(
        update={
            "pollers": PollerSettings.off(),
            "commands": CommandSettings(group_id=f"cmd-{uuid.uuid4().hex[:12]}", **commands),
        }
    )


async def complete(emulator: EmulatorServer, settings: Settings, until_ms: int) -> list[Message]:
    """Wait until every transition and call record up to `until_ms` is on Kafka."""
    messages: list[Message] = []

    async def covered() -> bool:
        nonlocal messages
        messages = await read_events(settings.kafka, settings.topics)
        history = emulator.sim.agent_state_history()
        calls = emulator.sim.call_history()
        return not missing_transitions(history, messages, until_ms) and not missing_calls(
            calls, messages, until_ms
        )

    await eventually(covered, deadline_s=60)
    return messages


async def calls_at_least(emulator: EmulatorServer, count: int) -> bool:
    return len(emulator.sim.call_history()) >= count


def free_port() -> int:
    """A loopback port free now, for a service whose port a test must know in advance."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
