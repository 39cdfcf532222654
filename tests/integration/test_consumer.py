"""The consumer runtime on the real broker: reads to the end, per-key order, commits that never
pass a record not done, a handler's failure not swallowed, and no record lost or handled twice
around one aiokafka cannot decode."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic

from service.kafka.admin import admin_client
from service.kafka.connection import client_options
from service.kafka.consumer import Consumer, Subscription, read_to_end
from service.kafka.records import Record
from service.kafka.settings import KafkaSettings
from tests.inspection import eventually
from tests.integration.raw import RawRecord, batch_with, produce_raw

PARTITIONS = 3


async def new_topic(kafka: KafkaSettings) -> str:
    name = f"runtime-{uuid.uuid4().hex[:10]}"
    async with admin_client(kafka) as admin:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    return name


async def produce(kafka: KafkaSettings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Sent together, so each partition gets them in few large batches."""
    async with AIOKafkaProducer(**client_options(kafka), linger_ms=50) as producer:
        sent = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*sent)


def group(topic: str) -> Subscription:
    """A new group over `topic`, quick to fetch and commit."""
    return Subscription(
        (topic,),
        group_id=f"g-{uuid.uuid4().hex[:10]}",
        start_from="earliest",
        fetch_max_wait_ms=20,
        commit_interval_s=0.1,
        session_timeout_ms=3000,
    )


async def running(
    consumer: Consumer, until: Callable[[], Awaitable[bool]], deadline_s: float = 30
) -> None:
    """Run `consumer` until `until` holds, then stop it; its failure, if it failed."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def done() -> bool:
        if task.done():
            task.result()  # its error, now
        return await until()

    try:
        await eventually(done, deadline_s=deadline_s)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def test_read_to_end_reads_every_record_of_batches_larger_than_one_fetch(
    kafka_settings: KafkaSettings,
) -> None:
    topic = await new_topic(kafka_settings)
    records = [(f"k{n % 7}".encode(), f"v{n}".encode()) for n in range(2500)]
    await produce(kafka_settings, topic, records)
    read = await read_to_end(kafka_settings, [topic])
    assert Counter(r.value for r in read) == Counter(value for _, value in records)


async def test_records_of_a_key_go_in_order_and_only_done_ones_are_committed(
    kafka_settings: KafkaSettings,
) -> None:
    topic = await new_topic(kafka_settings)
    records = [(f"k{n % 5}".encode(), f"{n}".encode()) for n in range(300)]
    await produce(kafka_settings, topic, records)
    seen: list[Record] = []
    left = b"k3"  # its records are left undone: the partition's commits stop at the first

    async def handle(record: Record) -> bool:
        await asyncio.sleep(0)  # others of other keys run meanwhile
        seen.append(record)
        return record.key != left

    subscription = group(topic)

    async def all_seen() -> bool:
        return len(seen) == len(records)

    await running(Consumer(kafka_settings, subscription, handle, name="first"), all_seen)
    for key in {r.key for r in seen}:
        values = [int(r.value or b"") for r in seen if r.key == key]
        assert values == sorted(values), key  # in offset order, per key
    first_left = {r.partition: r.offset for r in reversed(seen) if r.key == left}
    again: list[Record] = []

    async def keep(record: Record) -> bool:
        again.append(record)
        return True

    async def left_ones_read() -> bool:
        return sum(r.key == left for r in again) == sum(r.key == left for r in seen)

    await running(Consumer(kafka_settings, subscription, keep, name="second"), left_ones_read)
    # Read again from the first record not done of each partition, nothing before it, and
    # nothing of a partition where every record was done.
    assert again
    for record in again:
        assert record.partition in first_left, record
        assert record.offset >= first_left[record.partition], record
    for partition, offset in first_left.items():
        assert min(r.offset for r in again if r.partition == partition) == offset


async def test_a_handler_that_fails_ends_the_run_with_its_error(
    kafka_settings: KafkaSettings,
) -> None:
    topic = await new_topic(kafka_settings)
    await produce(kafka_settings, topic, [(b"k", b"1"), (b"k", b"2")])

    async def handle(record: Record) -> bool:
        raise RuntimeError(f"a bug at offset {record.offset}")

    consumer = Consumer(kafka_settings, group(topic), handle, name="failing")
    with pytest.raises(RuntimeError, match="a bug at offset 0"):
        await asyncio.wait_for(consumer.run(asyncio.Event()), timeout=30)


async def test_around_a_record_aiokafka_cannot_decode_nothing_is_lost_or_handled_twice(
    kafka_settings: KafkaSettings,
) -> None:
    """Good records before and after the bad one in its own batch, and on the other
    partitions in the same fetches: each handled once, the bad one with its defect."""
    topic = await new_topic(kafka_settings)
    for partition in range(PARTITIONS):
        before = [RawRecord(b"k", f"{partition}-{n}".encode()) for n in range(5)]
        bad = RawRecord(b"k", b"bad", [(b"\xff", b"")])
        after = [RawRecord(b"k", f"{partition}-{n}".encode()) for n in range(5, 10)]
        await produce_raw(kafka_settings, topic, partition, batch_with([*before, bad, *after]))
        more = [RawRecord(b"k", f"{partition}-{n}".encode()) for n in range(10, 20)]
        await produce_raw(kafka_settings, topic, partition, batch_with(more))
    handled: list[Record] = []

    async def handle(record: Record) -> bool:
        handled.append(record)
        return True

    async def all_handled() -> bool:
        return len(handled) >= PARTITIONS * 21

    consumer = Consumer(kafka_settings, group(topic), handle, name="defects")
    await running(consumer, all_handled)
    assert len(handled) == PARTITIONS * 21
    values = Counter(r.value for r in handled if r.defect is None)
    expected = Counter(f"{p}-{n}".encode() for p in range(PARTITIONS) for n in range(20))
    assert values == expected
    defects = [r for r in handled if r.defect is not None]
    assert [(r.value, r.offset) for r in defects] == [(b"bad", 5)] * PARTITIONS
    assert all("not UTF-8" in (r.defect or "") for r in defects)


async def test_no_more_than_max_in_flight_records_are_in_hand(
    kafka_settings: KafkaSettings,
) -> None:
    topic = await new_topic(kafka_settings)
    records = [(f"k{n}".encode(), f"{n}".encode()) for n in range(40)]
    await produce(kafka_settings, topic, records)
    in_hand, most, done = 0, 0, 0
    release = asyncio.Event()

    async def handle(record: Record) -> bool:
        nonlocal in_hand, most, done
        in_hand += 1
        most = max(most, in_hand)
        await release.wait()
        in_hand -= 1
        done += 1
        return True

    async def held_up() -> bool:
        if in_hand == 4:
            release.set()  # the rest may go: the runtime stopped at 4
        return done == len(records)

    subscription = replace(group(topic), max_in_flight=4)
    await running(Consumer(kafka_settings, subscription, handle, name="bounded"), held_up)
    assert most == 4
