"""CCC's clock going back behind what the pollers have read (issue 14): seen when an
emulator whose clock ran ahead restarted. What CCC stamps after the jump lies before the
checkpoints; the service logs it, reads again from before the jump, and loses nothing,
whether it kept running or restarted from its checkpoints."""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial

from service.broker import EmbeddedBroker
from service.emulator.config import SimClock
from service.emulator.server import EmulatorServer
from service.settings import Settings
from tests.inspection import eventually
from tests.integration.pipeline import (
    BUSY,
    calls_at_least,
    complete,
    free_port,
    in_process,
    service_settings,
)

HOUR_MS = 3_600_000


def centre(port: int, offset_ms: int, run: int) -> EmulatorServer:
    """The same centre (instance, agents) on `port`, its clock `offset_ms` from ours, its
    `run`-th life: contact ids of its own, as CCC never reuses one."""
    clock = SimClock(BUSY.speed, start_ms=int(time.time() * 1000) + offset_ms)
    config = replace(BUSY, port=port, contact_id_base=(run + 1) * 100_000_000_000)
    return EmulatorServer(config, clock)


async def published_all(emulator: EmulatorServer, settings: Settings) -> None:
    """Once the centre has a history of some calls, every transition and record of it."""
    await eventually(partial(calls_at_least, emulator, 30), deadline_s=60)
    await complete(emulator, settings, emulator.clock.now_ms() - 3000)


async def test_a_ccc_clock_behind_the_checkpoints_loses_nothing(broker: EmbeddedBroker) -> None:
    port = free_port()
    ahead = centre(port, 2 * HOUR_MS, 0)
    await ahead.start()
    settings = service_settings(ahead, broker.bootstrap_servers)
    async with in_process(settings) as (_, service):
        try:
            await published_all(ahead, settings)
        finally:
            await ahead.stop()
        # While the service runs, CCC comes back two hours earlier than it has read.
        async with centre(port, 0, 1) as behind:
            await published_all(behind, settings)
            assert not service.done()
    # A restart from checkpoints of that timeline, CCC's clock now an hour behind them.
    async with centre(port, -HOUR_MS, 2) as further, in_process(settings):
        await published_all(further, settings)
