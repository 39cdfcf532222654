"""`ccc-bridge dlq show` and `dlq replay` as an operator runs them, against the embedded broker
and (for commands) the service executing through the emulator: letters shown with reason and
source, hostile records in a DLQ shown as unreadable, transient letters replayed as their
original bytes, others refused unless --force, and a replayed command still guarded by the
ledger."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from service.cloudevents import CONTENT_TYPE
from service.commands.dead_letters import DeadLetter
from service.commands.models import FieldError
from service.emulator.config import EmulatorConfig
from service.emulator.server import EmulatorServer
from service.kafka.admin import ensure_topics
from service.kafka.connection import client_options
from service.kafka.consumer import read_to_end
from service.kafka.dead_letters import keep
from service.kafka.records import Record
from service.kafka.settings import KafkaSettings, TopicSettings
from service.settings import Settings
from service.webhooks.core import WebhookDeadLetter
from tests.inspection import eventually, inspect
from tests.integration.commands import dial_ex
from tests.integration.kafka_io import run_cli
from tests.integration.pipeline import INSTANCE, commands_only, in_process
from tests.integration.raw import RawRecord, batch_with, produce_raw

ROOM = 1 << 16  # the letters keep every byte of these small records
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def env(settings: Settings) -> dict[str, str]:
    return {
        "CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "CCC_BRIDGE_TOPICS__PREFIX": settings.topics.prefix,
    }


def command_letter(record: Record, reason: str, command_id: str | None) -> bytes:
    letter = DeadLetter(
        dlq_id="letter",
        reason=f"message: {reason}",
        errors=[FieldError(field="", reason=reason)],
        command_id=command_id,
        rejected_at=NOW,
        record=keep(record, ROOM),
    )
    return letter.model_dump_json().encode()


def webhook_letter(record: Record, status: int | None, *, cut: int | None = None) -> bytes:
    answer = "connection refused" if status is None else f"HTTP {status}"
    letter = WebhookDeadLetter(
        dlq_id="letter",
        endpoint="crm",
        reason=f"no success in 3 attempts, the last: {answer}",
        event_id="event-1",
        event_type="com.aliyun.ccc.call.record",
        attempts=3,
        last_status=status,
        last_error=answer,
        dead_at=NOW,
        record=keep(record, ROOM if cut is None else cut),
    )
    return letter.model_dump_json().encode()


async def write(settings: Settings, topic: str, values: list[bytes]) -> list[str]:
    """Each value on partition 0 of `topic`: the DLQ_IDs they got."""
    async with AIOKafkaProducer(**client_options(settings.kafka), acks="all") as producer:
        sent = [await producer.send_and_wait(topic, value, partition=0) for value in values]
    return [f"{r.topic}:{r.partition}:{r.offset}" for r in sent]


@pytest.fixture
async def topics_only(kafka_settings: KafkaSettings, topic_settings: TopicSettings) -> Settings:
    await ensure_topics(kafka_settings, topic_settings)
    return Settings(kafka=kafka_settings, topics=topic_settings)


async def test_show_prints_letters_and_hostile_records_as_unreadable(
    topics_only: Settings,
) -> None:
    settings = topics_only
    names = settings.topics
    dial = Record(names.name("commands_dial"), 1, 7, 1, b"cmd-1", b"{}", ((b"h", b"v"),))
    call = Record(names.name("calls"), 0, 3, 1, b"call-9", b'{"id": "event-1"}')
    command_dlq, webhook_dlq = names.name("command_dlq"), names.name("webhook_dlq")
    [internal] = await write(
        settings, command_dlq, [command_letter(dial, "internal error: boom", "cmd-1")]
    )
    # Hostile records among the letters: not JSON with a terminal escape, and a header name
    # no client decodes (aiokafka raises on it).
    [garbage] = await write(settings, command_dlq, [b"\x1b[2J\xff not a letter"])
    bad_header = RawRecord(key=b"k", value=b"{}", headers=[(b"\xff\xfe", b"v")])
    base = await produce_raw(settings.kafka, command_dlq, 0, batch_with([bad_header]))
    [invalid] = await write(
        settings, command_dlq, [command_letter(dial, "caller: not a phone number", "cmd-2")]
    )
    [refused] = await write(settings, webhook_dlq, [webhook_letter(call, 404)])

    code, out, err = await run_cli("dlq", "show", env=env(settings))
    assert code == 0, err
    blocks = {line.split()[0]: line for line in out.splitlines() if not line.startswith(" ")}
    assert set(blocks) == {internal, garbage, f"{command_dlq}:0:{base}", invalid, refused}
    assert "command cmd-1  replayable: an internal error" in blocks[internal]
    assert "not replayable: an invalid command" in blocks[invalid]
    assert "webhook crm  not replayable: the endpoint refused it (HTTP 404)" in blocks[refused]
    assert blocks[garbage].startswith(f"{garbage}  unreadable: not a commands dead letter")
    assert "unreadable: " in blocks[f"{command_dlq}:0:{base}"]
    assert "\x1b" not in out  # the escape is shown, not obeyed
    assert f"  source: {dial.topic}:1:7  key 'cmd-1', value 2 bytes, 1 headers" in out
    assert "  reason: message: internal error: boom" in out
    assert err.splitlines()[-1] == f"5 dead letters in {command_dlq}, {webhook_dlq}"

    code, out, _ = await run_cli(
        "dlq", "show", "--topic", "webhooks", "--since", "1h", env=env(settings)
    )
    assert code == 0
    assert [line.split()[0] for line in out.splitlines() if not line.startswith(" ")] == [refused]
    code, out, _ = await run_cli("dlq", "show", "--since", "2999-01-01T00:00Z", env=env(settings))
    assert (code, out) == (0, "")


async def test_replay_of_webhook_letters_sends_the_original_bytes_and_refuses_a_refusal(
    topics_only: Settings,
) -> None:
    settings = topics_only
    calls = settings.topics.name("calls")
    headers = ((b"content-type", CONTENT_TYPE.encode()), (b"trace", b"t-1"))
    value = json.dumps({"id": "event-1", "pad": "x" * 3000}).encode()
    original = Record(calls, 1, 0, 1_700_000_000_000, b"call-9", value, headers)
    await produce_raw(
        settings.kafka, calls, 1, batch_with([RawRecord(b"call-9", value, headers, 1)])
    )
    # The second letter keeps only the start of the value: replay reads the rest from the
    # original, still on its topic.
    down, refused, cut = await write(
        settings,
        settings.topics.name("webhook_dlq"),
        [
            webhook_letter(original, None),
            webhook_letter(original, 400),
            webhook_letter(original, 503, cut=1000),
        ],
    )

    code, out, _ = await run_cli("dlq", "replay", "--id", down, refused, cut, env=env(settings))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"replayed {down} (the endpoint was down or failing) to {calls}:1:")
    assert lines[1].startswith(f"refused {refused}: the endpoint refused it (HTTP 400)")
    assert lines[1].endswith("(--force replays it anyway)")
    assert lines[2].startswith(f"replayed {cut} ")
    code, out, _ = await run_cli("dlq", "replay", "--force", "--id", refused, env=env(settings))
    assert code == 0, out

    records = await read_to_end(settings.kafka, [calls], [1])
    assert len(records) == 4
    for record in records[1:]:
        assert (record.key, record.value, record.headers) == (b"call-9", value, headers)
        assert record.timestamp_ms == original.timestamp_ms


@pytest.fixture
async def serving(kafka_settings: KafkaSettings) -> AsyncIterator[tuple[EmulatorServer, Settings]]:
    config = EmulatorConfig(instances=(INSTANCE,), agents=5, seed=3, speed=1)
    async with EmulatorServer(config) as emulator:
        settings = commands_only(emulator, kafka_settings.bootstrap_servers)
        await ensure_topics(settings.kafka, settings.topics)  # before a producer auto-creates one
        async with in_process(settings):
            yield emulator, settings


async def results(settings: Settings) -> dict[tuple[str, int], list[str]]:
    """The statuses of each command id's results, by the command's (id, partition)."""
    found: dict[tuple[str, int], list[str]] = {}
    for record in await read_to_end(settings.kafka, [settings.topics.name("command_results")]):
        data = json.loads(record.value or b"")["data"]
        key = (data["command_id"], data["source"]["partition"])
        found.setdefault(key, []).append(data["status"])
    return found


async def test_a_replayed_command_keeps_its_id_and_the_ledger_still_guards_it(
    serving: tuple[EmulatorServer, Settings],
) -> None:
    emulator, settings = serving
    dial_topic = settings.topics.name("commands_dial")

    def dial(command_id: str, callee: str) -> bytes:
        return json.dumps(dial_ex(command_id, callee)).encode()

    # One that ran: sent as usual, then a copy of it (say one a worker failed on) dead-lettered.
    async with AIOKafkaProducer(**client_options(settings.kafka), acks="all") as producer:
        ran = await producer.send_and_wait(dial_topic, dial("ran", "13900000101"), key=b"ran")
    await eventually(lambda: _has(settings, ("ran", ran.partition), ["succeeded"]), deadline_s=20)
    ran_copy = Record(
        dial_topic, ran.partition, ran.offset, None, b"ran", dial("ran", "13900000101")
    )
    # One that never ran: its message met an internal error before the ledger saw it.
    never = Record(dial_topic, 0, 10_000, None, b"never", dial("never", "13900000102"))
    ids = await write(
        settings,
        settings.topics.name("command_dlq"),
        [
            command_letter(ran_copy, "internal error: boom", "ran"),
            command_letter(never, "internal error: boom", "never"),
        ],
    )

    code, out, _ = await run_cli("dlq", "replay", "--id", *ids, env=env(settings))
    assert code == 0, out
    await eventually(
        lambda: _has(settings, ("ran", ran.partition), ["succeeded", "duplicate"]), deadline_s=20
    )
    await eventually(lambda: _has(settings, ("never", 0), ["succeeded"]), deadline_s=20)
    calls = [c["callee"] for c in await inspect(emulator, "calls")]
    assert (calls.count("13900000101"), calls.count("13900000102")) == (1, 1)


async def _has(settings: Settings, key: tuple[str, int], statuses: list[str]) -> bool:
    return (await results(settings)).get(key) == statuses
