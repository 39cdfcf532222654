"""Crashes and outages: the service killed with SIGKILL and restarted, and Kafka going away
and coming back. Checkpoints make the first gapless; the second only pauses publishing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import yaml

from service.broker import EmbeddedBroker
from service.emulator.config import DEFAULT_ACCESS_KEY_SECRET
from service.emulator.server import EmulatorServer
from service.kafka.admin import ensure_topics
from service.settings import Settings
from tests.inspection import eventually
from tests.integration.events import (
    conflicting_ids,
    missing_transitions,
    ms,
    read_events,
)
from tests.integration.pipeline import calls_at_least, complete, in_process, service_settings


async def start_service(settings: Settings, config: Path) -> asyncio.subprocess.Process:
    """`ccc-bridge run` as an operator starts it: a config file, the secret in the env."""
    document = settings.model_dump(mode="json", exclude={"ccc": {"access_key_secret"}})
    await asyncio.to_thread(config.write_text, yaml.safe_dump(document), encoding="utf-8")
    env = os.environ | {"CCC_BRIDGE_CCC__ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--log-level",
        "warning",
        "run",
        "--config",
        str(config),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_sigkill_and_restart_leave_no_gap_and_no_conflicting_id(
    broker: EmbeddedBroker, emulator_busy: EmulatorServer, tmp_path: Path
) -> None:
    settings = service_settings(emulator_busy, broker.bootstrap_servers)
    config = tmp_path / "service.yaml"
    first = await start_service(settings, config)
    try:
        await eventually(partial(published, settings, 200), deadline_s=60)
    finally:
        first.kill()  # SIGKILL: no shutdown code runs
        await first.wait()
    assert first.returncode == -signal.SIGKILL
    # The contact centre goes on while the service is down.
    await eventually(moves_on(emulator_busy, 100), deadline_s=60)
    second = await start_service(settings, config)
    try:
        await eventually(partial(calls_at_least, emulator_busy, 100), deadline_s=90)
        messages = await complete(emulator_busy, settings, emulator_busy.clock.now_ms() - 3000)
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), timeout=30)
    assert second.returncode == 0  # a graceful stop
    assert not conflicting_ids(messages)


async def test_unreachable_kafka_pauses_polling_and_loses_nothing(
    emulator_busy: EmulatorServer,
) -> None:
    """Kafka stops answering (the broker frozen, its data kept) and comes back."""
    async with EmbeddedBroker() as broker, running(emulator_busy, broker) as (settings, service):
        await eventually(partial(published, settings, 200), deadline_s=60)
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            await eventually(moves_on(emulator_busy, 100), deadline_s=60)
            assert not service.done()  # it waits for Kafka rather than fail
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        await complete(emulator_busy, settings, emulator_busy.clock.now_ms() - 3000)
        assert not service.done()


async def test_broker_restart_is_survived_and_publishing_resumes(
    emulator_busy: EmulatorServer,
) -> None:
    """The embedded broker keeps nothing across a restart (memory only): once an operator
    has created the topics again, everything that happens from then on arrives."""
    async with EmbeddedBroker() as broker, running(emulator_busy, broker) as (settings, service):
        await eventually(partial(published, settings, 200), deadline_s=60)
        await broker.stop()
        await eventually(moves_on(emulator_busy, 100), deadline_s=60)
        assert not service.done()
        await broker.start()
        await ensure_topics(settings.kafka, settings.topics)
        # Records acknowledged between the broker's start and the topics' creation may land
        # in topics it does not list (a quirk of the embedded broker): judge what follows.
        since = emulator_busy.clock.now_ms() + 2000
        until = since + 30_000  # simulated: one real second at 30x

        async def caught_up() -> bool:
            assert not service.done()
            messages = await read_events(settings.kafka, settings.topics)
            history = emulator_busy.sim.agent_state_history()
            after = [h for h in history if ms(h["at"]) > since]
            return bool(after) and not missing_transitions(after, messages, until)

        await eventually(caught_up, deadline_s=60)


@asynccontextmanager
async def running(
    emulator: EmulatorServer, broker: EmbeddedBroker
) -> AsyncIterator[tuple[Settings, asyncio.Task[None]]]:
    """The service in this process, stopped (and any failure raised) on the way out."""
    settings = service_settings(emulator, broker.bootstrap_servers)
    async with in_process(settings) as (_, service):
        yield settings, service


async def published(settings: Settings, count: int) -> bool:
    return len(await read_events(settings.kafka, settings.topics)) > count


def moves_on(emulator: EmulatorServer, transitions: int) -> Callable[[], Awaitable[bool]]:
    """A check that holds once `transitions` more state changes happened than now."""
    start = len(emulator.sim.agent_state_history())

    async def check() -> bool:
        return len(emulator.sim.agent_state_history()) > start + transitions

    return check


async def test_revoked_credentials_stop_the_service_with_one_line(
    broker: EmbeddedBroker, emulator_busy: EmulatorServer, tmp_path: Path
) -> None:
    """Crash-only: credentials revoked mid-run end the process (exit 1), saying why last."""
    settings = service_settings(emulator_busy, broker.bootstrap_servers)
    service = await start_service(settings, tmp_path / "service.yaml")
    keys = dict(emulator_busy.config.access_keys)  # shared by every test's BUSY emulator
    try:
        await eventually(partial(published, settings, 50), deadline_s=60)
        emulator_busy.config.access_keys.clear()  # the key is revoked
        _, errors = await asyncio.wait_for(service.communicate(), timeout=60)
    finally:
        emulator_busy.config.access_keys.update(keys)
        if service.returncode is None:
            service.kill()
            await service.wait()
    assert service.returncode == 1
    last = errors.decode().strip().splitlines()[-1]
    assert last.startswith("ccc-bridge run: stopped: ")
    assert "InvalidAccessKeyId.NotFound" in last
    assert "Traceback" not in errors.decode()
