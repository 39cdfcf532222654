"""State logs are read where there is something to read: quiet agents are not asked again
and again, and still nothing is missing on Kafka."""

from __future__ import annotations

from collections import Counter
from functools import partial

from service.broker import EmbeddedBroker
from service.emulator.config import EmulatorConfig
from service.emulator.server import EmulatorServer
from tests.inspection import eventually, inspect
from tests.integration.pipeline import (
    INSTANCE,
    calls_at_least,
    complete,
    in_process,
    service_settings,
)

QUIET = 8
CENTRE = EmulatorConfig(instances=(INSTANCE,), agents=24, quiet_agents=QUIET, seed=3, speed=30)


async def test_quiet_agents_are_not_read_again_and_nothing_is_missing(
    broker: EmbeddedBroker,
) -> None:
    async with EmulatorServer(CENTRE) as emulator:
        settings = service_settings(emulator, broker.bootstrap_servers)
        async with in_process(settings):
            await eventually(partial(calls_at_least, emulator, 40), deadline_s=90)
            await complete(emulator, settings, emulator.clock.now_ms() - 3000)
            requests = await inspect(emulator, "requests")
        agents = emulator.sim.instances[INSTANCE].agents.values()
        quiet = {agent.ram_id for agent in agents if agent.quiet}
        busy = {agent.ram_id for agent in agents if not agent.quiet}
    reads = Counter(r["params"]["RamId"] for r in requests if r["action"] == "ListAgentStateLogs")
    polls = sum(r["action"] == "ListAgentStates" for r in requests)
    assert len(quiet) == QUIET
    assert polls > 30  # a sweep per listing would have read every agent this often
    # A quiet agent logs in and goes Ready, then stays: a read or two for that, then none.
    assert max(reads[ram_id] for ram_id in quiet) <= 3, {r: reads[r] for r in quiet}
    assert sum(reads[ram_id] for ram_id in busy) > 4 * len(busy)
