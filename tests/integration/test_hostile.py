"""Hostile input on the topics, produced with a raw client, against the whole service (command
workers and a webhook endpoint, the real broker, the emulator over HTTP): interleaved with
200 valid commands and valid events come records aiokafka cannot decode (a header name that
is not UTF-8), JSON nested 100,000 deep, 1 MB values, keys and headers, tombstones and
records keyed other than their command id.

Nothing stops a consumer; every bad record gets exactly one dead letter, and every record
the service writes fits Kafka's limit; every valid command gets exactly one result and at
most one call in CCC; a restart reads again nothing that was committed.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from service.broker import EmbeddedBroker
from service.cloudevents import CloudEvent, EventData, envelope, event_id
from service.emulator.config import EmulatorConfig
from service.emulator.server import EmulatorServer
from service.kafka.admin import describe_topics, ensure_topics
from service.kafka.consumer import read_to_end
from service.kafka.producer import HEADERS_BYTES, partition_for
from service.kafka.records import Record
from service.settings import Settings
from service.webhooks.settings import WebhookSettings
from tests import samples
from tests.inspection import eventually
from tests.integration.commands import Answers, Message, Where, answers, dial_ex, effects, send
from tests.integration.kafka_io import produce_events
from tests.integration.pipeline import INSTANCE, commands_only, in_process
from tests.integration.raw import RawRecord, batch_with, produce_raw
from tests.integration.webhooks import LOOPBACK, Receiver, endpoint, new_secret

EMULATOR = EmulatorConfig(
    instances=(INSTANCE,), agents=2, seed=7, speed=1, inbound_calls_per_minute=0
)
VALID_COMMANDS = 200
VALID_EVENTS = 40
MB = 1_000_000
NESTED = b"[" * 100_000 + b"]" * 100_000
EXECUTED = {"succeeded", "failed", "indeterminate"}


def hostile_commands(tag: str) -> dict[str, RawRecord]:
    """By name, a record no command worker may stop on."""

    def dial(command_id: str) -> bytes:
        return json.dumps(dial_ex(command_id, "13800000000")).encode()

    return {
        "header name not UTF-8": RawRecord(
            f"{tag}-h".encode(), dial(f"{tag}-h"), [(b"\xff\xfe", b"x")]
        ),
        "JSON nested 100,000 deep": RawRecord(f"{tag}-n".encode(), NESTED),
        "1 MB value": RawRecord(f"{tag}-v".encode(), b"{" + b"x" * (MB - 1)),
        "1 MB key": RawRecord(b"k" * MB, dial(f"{tag}-k")),
        "1 MB header": RawRecord(f"{tag}-hv".encode(), b"not json", [(b"blob", b"x" * MB)]),
        "tombstone": RawRecord(f"{tag}-t".encode(), None),
        "key other than its id": RawRecord(b"another-key", dial(f"{tag}-kid")),
    }


def hostile_events() -> dict[str, RawRecord]:
    """By name, a record on an event topic no webhook dispatcher may stop on."""
    event = samples.enveloped(samples.call_record()).model_dump_json().encode()
    return {
        "header name not UTF-8": RawRecord(b"ccc-demo:h", event, [(b"\xc3\x28", b"x")]),
        "JSON nested 100,000 deep": RawRecord(b"ccc-demo:n", NESTED),
        "1 MB value": RawRecord(b"ccc-demo:v", b"x" * MB),
        "1 MB header": RawRecord(b"ccc-demo:hv", b"[]", [(b"blob", b"x" * MB)]),
        "tombstone": RawRecord(b"ccc-demo:t", None),
    }


def valid_commands(tag: str, count: int, first: int = 0) -> list[Message]:
    messages = []
    for n in range(first, first + count):
        command_id, callee = f"{tag}-c{n}", f"1377{n:07d}"
        value = json.dumps(dial_ex(command_id, callee)).encode()
        messages.append(Message("dial", command_id.encode(), value, "first", command_id, callee))
    return messages


def valid_events(tag: str, count: int, first: int = 0) -> list[CloudEvent[EventData]]:
    record = samples.call_record()
    return [
        envelope(
            record.model_copy(update={"contact_id": f"{tag}-{n}"}),
            event_id=event_id(tag, n),
            region="cn-shanghai",
            time=samples.AT,
        )
        for n in range(first, first + count)
    ]


async def produce_hostile(
    settings: Settings, topic: str, records: dict[str, RawRecord]
) -> dict[Where, str]:
    """Each record alone in a batch, on the partition its key would take; by where it landed."""
    name = settings.topics.name(topic)
    partitions = list(range((await describe_topics(settings.kafka, [name]))[name].partitions))
    landed = {}
    for what, raw in records.items():
        partition = partition_for(raw.key or b"", partitions)
        offset = await produce_raw(settings.kafka, name, partition, batch_with([raw]))
        landed[(name, partition, offset)] = what
    return landed


def letters_by_record(records: Sequence[Record]) -> dict[Where, list[dict[str, Any]]]:
    found: dict[Where, list[dict[str, Any]]] = {}
    for record in records:
        letter = json.loads(record.value or b"")
        kept = letter["record"]
        found.setdefault((kept["topic"], kept["partition"], kept["offset"]), []).append(letter)
    return found


def written_size(record: Record) -> int:
    """As the service's producer counts a record against kafka.max_record_bytes."""
    return len(record.key or b"") + len(record.value or b"") + HEADERS_BYTES


def with_webhook(settings: Settings, receiver: Receiver) -> Settings:
    webhooks = WebhookSettings(
        endpoints=[endpoint("hostile", receiver)],
        allow_internal_hosts=LOOPBACK,
        group_prefix=f"wh-{uuid.uuid4().hex[:8]}-",
        start_from="earliest",
        fetch_max_wait_ms=20,
        commit_interval_s=0.1,
        session_timeout_ms=3000,  # the embedded broker's first generation: see test_webhooks
    )
    return settings.model_copy(update={"webhooks": webhooks})


async def webhook_letters(settings: Settings) -> list[Record]:
    return await read_to_end(settings.kafka, [settings.topics.name("webhook_dlq")])


def answer_counts(found: Answers) -> Counter[str]:
    """Every result and dead letter read, counted."""
    results = sum(len(copies) for copies in found.results.values())
    letters = sum(len(copies) for copies in found.dead.values())
    return Counter(result=results, letter=letters)


def check_commands(
    found: Answers,
    sent: dict[Where, Message],
    bad: dict[Where, str],
    executed: dict[str, list[dict[str, Any]]],
) -> None:
    """One final result per valid command, at most one call in CCC each; a bad record gets
    one letter, and a `rejected` result too when its command id could be read."""
    for where, message in sent.items():
        results = found.results[where]
        assert len(results) == 1, (message, results)
        status = results[0]["data"]["status"]
        assert status in EXECUTED, (message, results)
        calls = executed.get(message.mark or "", [])
        assert len(calls) <= 1, (message, calls)  # at most once
        assert status != "succeeded" or len(calls) == 1, (message, calls)
    rejected_ids = set()
    for where, what in bad.items():
        letters = found.dead[where]
        assert len(letters) == 1, (what, letters)
        letter = letters[0]
        assert letter["reason"], what
        if letter["command_id"] is not None:
            rejected_ids.add(letter["command_id"])
            assert [r["data"]["status"] for r in found.results[where]] == ["rejected"], what
        else:
            assert where not in found.results, what
    # Readable enough to be answered under their ids: the 1 MB key and the key other than the
    # id. An undecodable record is not read at all; the rest are not JSON or have no value.
    assert len(rejected_ids) == 2, rejected_ids
    assert not any(call["callee"] == "13800000000" for calls in executed.values() for call in calls)


async def check_dead_letters(
    settings: Settings, bad_commands: dict[Where, str], bad_events: dict[Where, str]
) -> None:
    """One letter per bad record, on each DLQ, every one within kafka.max_record_bytes."""
    limit = settings.kafka.max_record_bytes
    for topic, bad in (("command_dlq", bad_commands), ("webhook_dlq", bad_events)):
        records = await read_to_end(settings.kafka, [settings.topics.name(topic)])
        assert records
        assert max(map(written_size, records)) <= limit
        letters = letters_by_record(records)
        assert set(letters) == set(bad), topic
        assert all(len(found) == 1 for found in letters.values()), letters.keys()
    undecodable = next(w for w, what in bad_commands.items() if what.startswith("header name"))
    (letter,) = letters_by_record(
        await read_to_end(settings.kafka, [settings.topics.name("command_dlq")])
    )[undecodable]
    assert "not UTF-8" in letter["reason"]
    assert letter["record"]["headers_base64"] == [["//4=", "eA=="]], "its bytes kept as they were"


async def send_markers(settings: Settings, tag: str) -> dict[Where, Message]:
    """A valid command on every partition of the dial topic: answered, it shows the worker got
    past everything before it."""
    name = settings.topics.name("commands_dial")
    count = (await describe_topics(settings.kafka, [name]))[name].partitions
    chosen: dict[int, Message] = {}
    for message in valid_commands(f"{tag}-marker", 200, first=VALID_COMMANDS):
        chosen.setdefault(partition_for(message.key or b"", list(range(count))), message)
        if len(chosen) == count:
            break
    return await send(settings, list(chosen.values()))


async def test_no_hostile_record_stops_a_consumer_and_each_gets_one_dead_letter_that_fits(
    broker: EmbeddedBroker,
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with EmulatorServer(EMULATOR) as emulator, Receiver(new_secret()) as receiver:
        settings = with_webhook(commands_only(emulator, broker.bootstrap_servers), receiver)
        await ensure_topics(settings.kafka, settings.topics)
        sent: dict[Where, Message] = {}
        bad_commands: dict[Where, str] = {}
        bad_events: dict[Where, str] = {}
        events = valid_events(tag, VALID_EVENTS)
        async with in_process(settings) as (_, service), answers(settings) as found:
            # Eight rounds: valid commands and events, then one bad record of each kind.
            commands = iter(hostile_commands(tag).items())
            hostile = iter(hostile_events().items())
            share = VALID_COMMANDS // 8
            for step in range(8):
                sent |= await send(settings, valid_commands(tag, share, step * share))
                if (bad := next(commands, None)) is not None:
                    bad_commands |= await produce_hostile(settings, "commands_dial", dict([bad]))
                round_events = events[step * 5 : step * 5 + 5]
                await produce_events(settings.kafka, settings.topics.name("calls"), round_events)
                if (bad := next(hostile, None)) is not None:
                    bad_events |= await produce_hostile(settings, "calls", dict([bad]))
            assert (len(sent), len(bad_commands), len(bad_events)) == (VALID_COMMANDS, 7, 5)

            async def all_answered() -> bool:
                assert not service.done(), service  # no record stops the service
                await found.poll()
                return (
                    all(found.results.get(where) for where in sent)
                    and all(found.dead.get(where) for where in bad_commands)
                    and receiver.ids().keys() >= {event.id for event in events}
                    and len(await webhook_letters(settings)) >= len(bad_events)
                )

            await eventually(all_answered, deadline_s=90)
            await found.poll()  # a rejected result may follow its letter
            answered = answer_counts(found)
            delivered = receiver.ids()
            assert not service.done(), service

        check_commands(found, sent, bad_commands, (await effects(emulator)).executed)
        await check_dead_letters(settings, bad_commands, bad_events)
        # The endpoint takes every event type: the call records, and the commands' results.
        assert {event.id for event in events} <= delivered.keys(), "each valid event delivered"
        assert set(delivered.values()) == {1}, "and once"
        assert not receiver.forged

        # Restarted: what was read before was committed at the stop, so only the markers
        # (on every partition, behind every record read before) are read and answered.
        async with in_process(settings) as (_, service), answers(settings) as again:
            markers = await send_markers(settings, tag)
            marker_events = valid_events(f"{tag}-marker", 12)
            await produce_events(settings.kafka, settings.topics.name("calls"), marker_events)

            async def markers_answered() -> bool:
                assert not service.done(), service
                await again.poll()
                counts = answer_counts(again)
                return (
                    all(again.results.get(where) for where in markers)
                    and counts["result"] >= answered["result"] + len(markers)
                    and counts["letter"] >= answered["letter"]
                    and receiver.ids().keys() >= {event.id for event in marker_events}
                )

            await eventually(markers_answered, deadline_s=60)
            await again.poll()
        assert answer_counts(again) - answered == Counter(result=len(markers)), (
            "a restart answered again something committed before it"
        )
        again_delivered = receiver.ids() - delivered
        assert {event.id for event in marker_events} <= again_delivered.keys()
        assert not again_delivered.keys() & delivered.keys(), (
            "a restart delivered again an event committed before it"
        )
        assert len(await webhook_letters(settings)) == len(bad_events)
