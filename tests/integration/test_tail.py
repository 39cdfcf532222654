"""`follow` and `ccc-bridge tail` on the real broker, and a second Kafka client (librdkafka,
through confluent-kafka) reading the same CloudEvents."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from service.cloudevents import CONTENT_TYPE, CloudEvent, Emitted, EventData
from service.events.models import AgentStateChanged
from service.events.publisher import EventPublisher
from service.kafka.admin import ensure_topics
from service.kafka.producer import Producer
from service.kafka.settings import KafkaSettings, TopicSettings
from service.render import render
from service.tail import follow
from tests import samples
from tests.integration.kafka_io import (
    DEADLINE_S,
    produce,
    produce_events,
    read_line,
    run_cli,
    start_cli,
    stop_cli,
)


def rendered(event: CloudEvent[EventData]) -> str:
    return render(event.model_dump(mode="json"))


async def test_follow_emits_a_line_per_event_from_where_it_started(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    await ensure_topics(kafka_settings, topic_settings)
    agents, calls = topic_settings.name("agent_states"), topic_settings.name("calls")
    before = samples.enveloped(samples.agent_changed(snapshot=True))
    await produce_events(kafka_settings, agents, [before])

    events = samples.every_type()[:4]  # agent and call events: the two topics followed
    expected = [*map(rendered, events), "not json", "[1, 2]"]
    lines: list[str] = []
    ready, stop, complete = asyncio.Event(), asyncio.Event(), asyncio.Event()

    def emit(line: str) -> None:
        lines.append(line)
        if len(lines) == len(expected):
            complete.set()

    following = asyncio.create_task(
        follow(
            kafka_settings,
            [agents, calls],
            from_beginning=False,
            stop=stop,
            emit=emit,
            on_ready=ready.set,
        )
    )
    async with asyncio.timeout(DEADLINE_S):
        await ready.wait()
    for event in events:
        await produce_events(kafka_settings, topic_settings.name(event.data.topic), [event])
    await produce(kafka_settings, calls, [(None, b"not json"), (None, b"[1, 2]")])

    async with asyncio.timeout(DEADLINE_S):
        await complete.wait()
        stop.set()
        await following
    assert sorted(lines) == sorted(expected)
    assert rendered(before) not in lines


async def test_tail_command_prints_events_as_they_arrive(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    await ensure_topics(kafka_settings, topic_settings)
    old = samples.enveloped(samples.skill_group())
    await produce_events(kafka_settings, topic_settings.name("skillgroups"), [old])
    process = await start_cli(
        "tail",
        env={
            "CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "CCC_BRIDGE_TOPICS__PREFIX": topic_settings.prefix,
        },
    )
    try:
        ready = await read_line(process.stderr)
        assert ready.startswith("ccc-tail following ")
        assert ready.endswith(" from the end")
        new = samples.enveloped(samples.call_record())
        await produce_events(kafka_settings, topic_settings.name("calls"), [new])
        assert await read_line(process.stdout) == rendered(new)
    finally:
        code = await stop_cli(process, signal.SIGINT)
    assert code == 0
    assert process.stdout is not None
    assert await process.stdout.read() == b""  # the older event was never printed


async def test_tail_command_from_the_beginning_of_a_named_topic(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    await ensure_topics(kafka_settings, topic_settings)
    topic = topic_settings.name("calls")
    event = samples.enveloped(samples.call_event())
    await produce_events(kafka_settings, topic, [event])
    env = {"CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    process = await start_cli("tail", topic, "--from-beginning", env=env)
    try:
        assert await read_line(process.stderr) == f"ccc-tail following {topic} from the beginning"
        assert await read_line(process.stdout) == rendered(event)
    finally:
        assert await stop_cli(process, signal.SIGTERM) == 0


async def test_tail_command_of_a_missing_topic_says_so_in_one_line(
    kafka_settings: KafkaSettings,
) -> None:
    env = {"CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    code, out, err = await run_cli("tail", "no.such.topic", env=env)
    assert code == 2
    assert out == ""
    assert err.startswith("ccc-bridge tail: ")
    assert "no such topic: no.such.topic" in err
    assert err.count("\n") == 1


async def test_a_confluent_kafka_consumer_reads_our_events(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    await ensure_topics(kafka_settings, topic_settings)
    topic = topic_settings.name("agent_states")
    event = samples.enveloped(samples.agent_changed())
    # Published exactly as the service publishes: its producer, envelope and headers.
    producer = Producer(kafka_settings)
    await producer.start()
    try:
        publisher = EventPublisher(producer, topic_settings, event.source.split("/")[2])
        await publisher.publish([Emitted(event.id, event.time, event.data)])
    finally:
        await producer.stop()

    def consume_one() -> Message:
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_settings.bootstrap_servers,
                "group.id": f"confluent-{uuid.uuid4().hex}",  # fresh: see KAFKA-BROKER.md
                "enable.auto.commit": False,
            }
        )
        try:
            # Assigned, not subscribed: a group join on Tansu can wait out a session timeout.
            consumer.assign(
                [
                    TopicPartition(topic, partition, OFFSET_BEGINNING)
                    for partition in range(topic_settings.partitions)
                ]
            )
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    return message
            raise AssertionError(f"nothing read from {topic}")
        finally:
            consumer.close()

    message = await asyncio.to_thread(consume_one)
    assert message.key() == event.data.key().encode()
    assert message.headers() == [("content-type", CONTENT_TYPE.encode())]
    value = message.value()
    assert isinstance(value, bytes)
    parsed = CloudEvent[AgentStateChanged].model_validate(json.loads(value))
    assert parsed == event
