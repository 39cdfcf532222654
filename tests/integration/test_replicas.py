"""Replicas splitting the poll work (PRODUCT.md section 4, Scale): three `ccc-bridge run`
processes in one poller group over six CCC instances, against the real embedded broker and
the emulator over HTTP.

Each process's own /metrics is its evidence: `ccc_bridge_instance_polled` says which
instances it holds, and its poll cycles per instance show which it really polls. At steady
state every instance is polled by exactly one process; after one is killed with SIGKILL the
others take its instances within the session timeout and a margin, and every agent state
log entry and call record the emulator produced, through the kill and the hand-over, reaches
Kafka.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from service.broker import EmbeddedBroker
from service.emulator.config import EmulatorConfig
from service.emulator.server import EmulatorServer
from service.kafka.admin import ensure_topics
from service.kafka.consumer import read_to_end
from service.settings import CommandSettings, HttpSettings, Settings
from tests.inspection import eventually, inspect
from tests.integration.events import conflicting_ids, ms
from tests.integration.kafka_io import start_worker, stop_worker
from tests.integration.pipeline import complete, free_port, service_settings

INSTANCES = tuple(f"ccc-r{n}" for n in range(6))
# Six small, busy contact centres: at 20x, agents change state every few real seconds.
EMULATOR = EmulatorConfig(instances=INSTANCES, agents=6, seed=5, speed=20)
SESSION_TIMEOUT_S = 3.0
TAKEOVER_MARGIN_S = 7.0  # noticing the rebalance (a heartbeat), rejoining, reading checkpoints
CYCLES = 3  # poll cycles of each instance that make a window of evidence


def replica_settings(emulator: EmulatorServer, bootstrap: str) -> Settings:
    """What the three share: the instances, a poller group of this test's own, no commands
    (their group is tested elsewhere), 6 partitions (the default) for 6 instances."""
    base = service_settings(emulator, bootstrap)
    return base.model_copy(
        update={
            "ccc": base.ccc.model_copy(update={"instances": list(reversed(INSTANCES))}),
            "pollers": base.pollers.model_copy(
                update={
                    "split": "group",
                    "group_id": f"pollers-{uuid.uuid4().hex[:8]}",
                    "session_timeout_ms": int(SESSION_TIMEOUT_S * 1000),
                    # Three processes on a small machine: slower than the in-process tests.
                    "agent_states_interval_s": 0.5,
                    "agent_state_logs_interval_s": 0.5,
                    "calls_interval_s": 0.5,
                }
            ),
            "commands": CommandSettings(enabled=False),
        }
    )


@dataclass
class Replica:
    name: str
    port: int
    process: asyncio.subprocess.Process
    log: Path

    async def metrics(self) -> tuple[set[str], Counter[str]]:
        """The instances it holds now, and its poll cycles done per instance (all streams)."""
        assert self.process.returncode is None, f"{self.name} ended: see {self.log}"
        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as answer:
                text = await answer.text()
        except aiohttp.ClientConnectionError:
            return set(), Counter()  # not listening yet
        held: set[str] = set()
        cycles: Counter[str] = Counter()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "ccc_bridge_instance_polled" and sample.value == 1:
                    held.add(sample.labels["ccc_instance"])
                elif sample.name == "ccc_bridge_poll_cycle_seconds_count":
                    cycles[sample.labels["ccc_instance"]] += int(sample.value)
        return held, cycles


async def start(settings: Settings, name: str, tmp_path: Path) -> Replica:
    port = free_port()
    own = settings.model_copy(update={"http": HttpSettings(host="127.0.0.1", port=port)})
    log = tmp_path / f"{name}.log"
    process = await start_worker(own, tmp_path / f"{name}.yaml", log)
    return Replica(name, port, process, log)


async def split_settled(replicas: list[Replica]) -> dict[str, set[str]]:
    """Wait until each instance is held by exactly one replica, and each replica holds some;
    the instances each replica holds."""
    held: dict[str, set[str]] = {}

    async def settled() -> bool:
        nonlocal held
        held = {replica.name: (await replica.metrics())[0] for replica in replicas}
        every = sorted(instance for share in held.values() for instance in share)
        return every == sorted(INSTANCES) and all(held.values())

    await eventually(settled, deadline_s=40)
    return held


async def polled_by(replicas: list[Replica], held: dict[str, set[str]]) -> dict[str, set[str]]:
    """Per instance, the replicas that completed poll cycles of it during a window in which
    every holder completed at least CYCLES of each of its instances."""
    before = {replica.name: (await replica.metrics())[1] for replica in replicas}
    after = before

    async def window() -> bool:
        nonlocal after
        after = {replica.name: (await replica.metrics())[1] for replica in replicas}
        return all(
            after[name][instance] - before[name][instance] >= CYCLES
            for name, instances in held.items()
            for instance in instances
        )

    await eventually(window, deadline_s=20)
    return {
        instance: {name for name in before if after[name][instance] > before[name][instance]}
        for instance in INSTANCES
    }


def one_each(held: dict[str, set[str]]) -> dict[str, set[str]]:
    return {
        instance: {name for name, share in held.items() if instance in share}
        for instance in INSTANCES
    }


async def resumed_at(emulator: EmulatorServer, since: int, instances: set[str]) -> dict[str, int]:
    """Per instance, the earliest StartTime of its ListAgentStateLogs requests from the
    `since`th request the emulator logged on."""
    starts: dict[str, int] = {}
    for request in (await inspect(emulator, "requests"))[since:]:
        params = request["params"]
        if request["action"] == "ListAgentStateLogs" and params["InstanceId"] in instances:
            start = int(params["StartTime"])
            starts[params["InstanceId"]] = min(start, starts.get(params["InstanceId"], start))
    return starts


async def last_checkpoints(
    settings: Settings, instances: set[str], before_ms: int
) -> dict[str, tuple[int, int]]:
    """Per instance, the state-log checkpoint last saved before `before_ms` (wall clock) as
    the span its first read may start in: the victim's saves were all made before it died,
    the survivors' after the session timeout."""
    topic = settings.topics.name("checkpoints")
    saved: dict[str, tuple[int, int]] = {}
    for record in await read_to_end(settings.kafka, [topic]):
        instance, stream = (record.key or b"").decode().split(":")
        if (
            instance in instances
            and stream == "agent-state-logs"
            and (record.timestamp_ms or 0) < before_ms
        ):
            checkpoint = json.loads(record.value or b"")  # oldest first: the last one stays
            # Agents that had a change to read resume further back, the rest from the
            # watermark: the earliest read starts between the two.
            lag = max(checkpoint.get("behind_ms", {}).values(), default=0)
            saved[instance] = (checkpoint["watermark_ms"] - lag, checkpoint["watermark_ms"])
    return saved


async def test_three_replicas_split_the_instances_and_survivors_take_over_a_killed_ones_gaplessly(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    async with EmulatorServer(EMULATOR) as emulator:
        settings = replica_settings(emulator, broker.bootstrap_servers)
        await ensure_topics(settings.kafka, settings.topics)
        replicas = [await start(settings, name, tmp_path) for name in ("a", "b", "c")]
        try:
            held = await split_settled(replicas)
            assert await polled_by(replicas, held) == one_each(held)

            victim, survivors = replicas[0], replicas[1:]
            orphans = held[victim.name]
            killed_at, killed_at_ms = time.monotonic(), round(time.time() * 1000)
            victim.process.kill()  # SIGKILL: it neither finishes a cycle nor leaves the group
            await victim.process.wait()
            dead_from = emulator.clock.now_ms()
            # From here on, the survivors' requests (and any of the victim's still in the
            # emulator's hands: those read from its last checkpoint too).
            requests_then = len(await inspect(emulator, "requests"))
            held = await split_settled(survivors)
            took_s = time.monotonic() - killed_at
            dead_until = emulator.clock.now_ms()
            assert took_s < SESSION_TIMEOUT_S + TAKEOVER_MARGIN_S, took_s
            assert await polled_by(survivors, held) == one_each(held)
            # Everything up to now, the victim's instances' while nobody polled them included.
            messages = await complete(emulator, settings, emulator.clock.now_ms() - 3000)
            # Read again from the victim's last acknowledged checkpoint, not from the hour of
            # backfill a first start reads (which would hide a checkpoint left unread).
            resumed = await resumed_at(emulator, requests_then, orphans)
            bounds = await last_checkpoints(settings, orphans, killed_at_ms)
            assert resumed.keys() == bounds.keys() == orphans
            assert all(low <= resumed[i] <= high for i, (low, high) in bounds.items()), bounds
            unpolled = [
                entry
                for entry in emulator.sim.agent_state_history()
                if entry["instance_id"] in orphans and dead_from < ms(entry["at"]) < dead_until
            ]
        finally:
            codes = [await stop_worker(replica.process) for replica in replicas]
    assert unpolled, "nothing happened at the victim's instances while they had no poller"
    assert codes[1:] == [0, 0], codes  # the survivors stop cleanly
    assert not conflicting_ids(messages)
