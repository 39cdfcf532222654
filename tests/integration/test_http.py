"""The service's HTTP surface against the real embedded broker and the emulator: /livez,
/readyz flipping with Kafka and at shutdown, and /metrics moving as events and commands flow."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from functools import partial
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import NewTopic
from prometheus_client.parser import text_string_to_metric_families

from service.app import run_service
from service.broker import EmbeddedBroker
from service.console import StartupError
from service.emulator.server import EmulatorServer
from service.kafka.admin import admin_client, describe_topics, ensure_topics
from service.kafka.producer import OutRecord, Producer, partition_for
from service.settings import CommandSettings, HttpSettings, Settings
from tests.inspection import eventually
from tests.integration.commands import Message, dial_ex, send
from tests.integration.pipeline import INSTANCE, free_port, in_process, service_settings


def with_http(settings: Settings, *, commands: bool) -> Settings:
    return settings.model_copy(
        update={
            "http": HttpSettings(
                host="127.0.0.1", port=free_port(), probe_interval_s=0.2, probe_timeout_s=1
            ),
            "commands": CommandSettings(enabled=commands, group_id=f"g-{uuid.uuid4().hex[:8]}"),
        }
    )


async def get(settings: Settings, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{settings.http.port}{path}"
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as answer:
            return answer.status, await answer.text()
    except aiohttp.ClientConnectionError:
        return 0, ""  # not listening yet


async def status_is(settings: Settings, code: int, *failing: str) -> bool:
    """/readyz answers `code`, naming each of `failing`; a 200 counts only once nothing is
    degraded either (CCC answering, every consumer group member assigned)."""
    status, body = await get(settings, "/readyz")
    if status != code:
        return False
    answer = json.loads(body)
    if code == 200 and answer.get("degraded"):
        return False
    return all(name in answer.get("failing", {}) for name in failing)


async def test_readiness_follows_kafka_and_turns_503_at_shutdown(
    emulator_busy: EmulatorServer,
) -> None:
    async with EmbeddedBroker() as broker:
        settings = with_http(
            service_settings(emulator_busy, broker.bootstrap_servers), commands=False
        )
        async with in_process(settings) as (stop, service):
            await eventually(lambda: status_is(settings, 200), deadline_s=30)
            assert await get(settings, "/livez") == (200, '{"status": "alive"}')

            await broker.stop()
            await eventually(lambda: status_is(settings, 503, "kafka"), deadline_s=30)
            assert (await get(settings, "/livez"))[0] == 200, "alive while Kafka is away"

            await broker.start()
            await ensure_topics(settings.kafka, settings.topics)
            await eventually(lambda: status_is(settings, 200), deadline_s=30)

            stop.set()
            # From the moment shutdown begins until the server closes, /readyz says why.
            status, body = await get(settings, "/readyz")
            assert status != 200
            if status:
                assert json.loads(body)["failing"]["shutdown"] == "the service is stopping"
            await service


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        value
        for (sample, sample_labels), value in found.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


async def test_metrics_move_as_events_and_commands_flow(
    broker: EmbeddedBroker, emulator_busy: EmulatorServer
) -> None:
    settings = with_http(service_settings(emulator_busy, broker.bootstrap_servers), commands=True)
    async with in_process(settings):
        await eventually(lambda: status_is(settings, 200), deadline_s=30)  # consumers assigned
        _, text = await get(settings, "/metrics")
        before = samples(text)

        producer = Producer(settings.kafka)
        await producer.start()
        try:
            command_id = f"m-{uuid.uuid4().hex[:8]}"
            command = {
                "command_id": command_id,
                "instance_id": INSTANCE,
                "config_id": 1,
                "phone_numbers": ["13900000099"],
            }
            topic = settings.topics.name("commands_sms")
            record = OutRecord(topic, command_id.encode(), json.dumps(command).encode())
            await producer.send_all([record])
        finally:
            await producer.stop()

        after: dict[Any, float] = {}

        changed = "com.aliyun.ccc.agent.state.changed"

        def grew(name: str, **labels: str) -> bool:
            return total(after, name, **labels) > total(before, name, **labels)

        async def moved() -> bool:
            nonlocal after
            after = samples((await get(settings, "/metrics"))[1])
            return grew("ccc_bridge_commands_total", kind="sms", status="succeeded") and grew(
                "ccc_bridge_events_published_total", type=changed, ccc_instance=INSTANCE
            )

        await eventually(moved, deadline_s=30)
    assert grew("ccc_bridge_ccc_calls_total", action="SendPredefinedShortMessage", outcome="ok")
    assert total(after, "ccc_bridge_poll_cycle_seconds_count", stream="agent_states") > 0
    assert total(after, "ccc_bridge_ledger_entries") >= 1


async def test_a_port_in_use_is_a_startup_error_naming_it(
    broker: EmbeddedBroker, emulator_busy: EmulatorServer
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = service_settings(emulator_busy, broker.bootstrap_servers).model_copy(
            update={"http": HttpSettings(host="127.0.0.1", port=port)}
        )
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}: "):
            await run_service(settings, asyncio.Event())


async def test_a_ledger_with_fewer_partitions_than_the_command_topics_makes_it_unready(
    emulator_busy: EmulatorServer,
) -> None:
    """The broker loses its topics (the embedded one, restarted) and the ledger comes back
    with 2 partitions beside command topics of 6: /readyz says so, and a command whose ledger
    entry would go to a partition the ledger lacks is named too, its write retried."""
    async with EmbeddedBroker() as broker:
        settings = with_http(
            service_settings(emulator_busy, broker.bootstrap_servers), commands=True
        )
        ledger = settings.topics.name("ledger")
        async with in_process(settings) as (_, service):
            await eventually(lambda: status_is(settings, 200), deadline_s=30)
            await broker.restart()
            await eventually(partial(recreated, settings, ledger, 2), deadline_s=30)
            await ensure_topics(settings.kafka, settings.topics)  # the rest, with 6

            async def why() -> str:
                status, body = await get(settings, "/readyz")
                return json.loads(body)["failing"].get("partitions", "") if status == 503 else ""

            async def counts_named() -> bool:
                return "the command topics and the ledger need the same number" in await why()

            await eventually(counts_named, deadline_s=30)
            command_id = next(
                f"c-{n}" for n in range(100) if partition_for(f"c-{n}".encode(), range(6)) >= 2
            )
            await send(settings, [dial_message(command_id)])

            async def partition_named() -> bool:
                return f"{ledger} has no partition" in await why()

            await eventually(partition_named, deadline_s=30)
            assert not service.done(), "not ready, but running"


async def recreated(settings: Settings, topic: str, partitions: int) -> bool:
    """Whether `topic` has `partitions`; if not, it is made so. The service's clients ask
    for their topics as soon as the broker is back, which may create one first (the embedded
    broker creates topics a client asks for), with the default count."""
    found = await describe_topics(settings.kafka, [topic])
    if topic in found and found[topic].partitions == partitions:
        return True
    async with admin_client(settings.kafka) as admin:
        if topic in found:
            await admin.delete_topics([topic])
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    return False


def dial_message(command_id: str) -> Message:
    value = json.dumps(dial_ex(command_id, "13900000031")).encode()
    return Message("dial", command_id.encode(), value, "first", command_id, "13900000031")
