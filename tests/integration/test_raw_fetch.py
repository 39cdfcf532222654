"""fetch_raw against the real broker, on records aiokafka's consumer cannot decode: getmany
raises on them (again on every call), fetch_raw reads them with a defect and every record
around them as aiokafka reads it, and says where to go on from."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    NotLeaderForPartitionError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
)

from service.kafka.admin import admin_client
from service.kafka.batches import Parsed
from service.kafka.connection import client_options
from service.kafka.raw import fetch_raw
from service.kafka.records import Record
from service.kafka.settings import KafkaSettings
from tests.integration.raw import Compression, RawRecord, batch_with, produce_raw

MAX_BYTES = 1 << 20
BAD_NAME = b"\xff\xfe"


@pytest.fixture
async def tp(kafka_settings: KafkaSettings) -> TopicPartition:
    """Partition 0 of a topic of this test alone."""
    name = f"raw-{uuid.uuid4().hex[:12]}"
    async with admin_client(kafka_settings) as admin:
        await admin.create_topics([NewTopic(name, 1, 1)])
    return TopicPartition(name, 0)


@pytest.fixture
async def client(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaClient]:
    """A started client with the consumers' connection options, as the consumer runtime has."""
    started = AIOKafkaClient(**client_options(kafka_settings))
    await started.bootstrap()
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture
async def consumer(kafka_settings: KafkaSettings, tp: TopicPartition) -> AsyncIterator[Any]:
    reader = AIOKafkaConsumer(**client_options(kafka_settings), enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign([tp])
        yield reader
    finally:
        await reader.stop()


async def produce(
    kafka: KafkaSettings, tp: TopicPartition, values: list[bytes], compression: str | None = None
) -> None:
    async with AIOKafkaProducer(**client_options(kafka), compression_type=compression) as producer:
        for value in values:
            await producer.send_and_wait(
                tp.topic,
                value,
                key=b"key-" + value,
                partition=tp.partition,
                headers=[("content-type", b"text/plain"), ("trace", None)],
            )


def as_read(records: list[Any]) -> list[Record]:
    """aiokafka's ConsumerRecords as parse_records gives them."""
    return [
        Record(
            r.topic,
            r.partition,
            r.offset,
            r.timestamp,
            r.key,
            r.value,
            tuple((name.encode(), value) for name, value in r.headers),
        )
        for r in records
    ]


async def read(consumer: Any, tp: TopicPartition, start: int, count: int) -> list[Record]:
    """`count` records from `start`, by aiokafka: max_records stops it before a bad record."""
    consumer.seek(tp, start)
    batches = await consumer.getmany(tp, timeout_ms=5000, max_records=count)
    return as_read(batches.get(tp, []))


@pytest.mark.parametrize("compression", [None, "zstd"])
async def test_a_header_name_that_is_not_utf8_stops_getmany_and_fetch_raw_reads_past_it(
    kafka_settings: KafkaSettings,
    tp: TopicPartition,
    client: AIOKafkaClient,
    consumer: Any,
    compression: Compression | None,
) -> None:
    await produce(kafka_settings, tp, [b"before-0", b"before-1"])
    bad = batch_with(
        [
            RawRecord(b"k-bad", b"v-bad", [(b"ok", b"1"), (BAD_NAME, b"2")], timestamp_ms=1234),
            RawRecord(b"k-next", b"same batch, a good name", [(b"ok", None)], timestamp_ms=1240),
        ],
        compression=compression,
    )
    # The broker takes it as it is (Tansu does not look at header names).
    assert await produce_raw(kafka_settings, tp.topic, tp.partition, bad) == 2
    await produce(kafka_settings, tp, [b"after-4", b"after-5"], compression="lz4")

    # (a) The failure worked around: getmany raises on the record, on every call, and the
    # consumer does not move (the records before it in the same fetch are not handed out).
    consumer.seek(tp, 0)
    for _ in range(3):
        with pytest.raises(UnicodeDecodeError):
            await consumer.getmany(tp, timeout_ms=5000)
        assert await consumer.position(tp) == 0

    # (b) fetch_raw reads every record, the bad one with a defect and all its bytes.
    parsed = await fetch_raw(client, tp, 0, max_bytes=MAX_BYTES)
    assert parsed.next_offset == 6
    readable = await read(consumer, tp, 0, 2) + await read(consumer, tp, 4, 2)
    assert [r.offset for r in readable] == [0, 1, 4, 5]
    assert [r for r in parsed.records if r.offset != 2] == [
        *readable[:2],
        Record(tp.topic, 0, 3, 1240, b"k-next", b"same batch, a good name", ((b"ok", None),)),
        *readable[2:],
    ]
    assert parsed.records[2] == Record(
        tp.topic,
        0,
        2,
        1234,
        b"k-bad",
        b"v-bad",
        ((b"ok", b"1"), (BAD_NAME, b"2")),
        defect=r"header 1 name is not UTF-8: b'\xff\xfe'",
    )

    # From inside the batch, and past its end: the consumer goes on from next_offset.
    inside = await fetch_raw(client, tp, 3, max_bytes=MAX_BYTES)
    assert ([r.offset for r in inside.records], inside.next_offset) == ([3, 4, 5], 6)
    await produce(kafka_settings, tp, [b"later-6"])
    assert [r.value for r in await read(consumer, tp, parsed.next_offset, 10)] == [b"later-6"]


async def test_a_batch_that_fails_its_crc_is_one_defect(
    kafka_settings: KafkaSettings, tp: TopicPartition, client: AIOKafkaClient, consumer: Any
) -> None:
    await produce(kafka_settings, tp, [b"before-0"])
    broken = bytearray(batch_with([RawRecord(b"k", b"v1"), RawRecord(b"k", b"v2")]))
    broken[-1] ^= 0x01  # in the last value: under the CRC
    # Tansu 0.6.0 stores it all the same (it logs the mismatch); Kafka would refuse it.
    assert await produce_raw(kafka_settings, tp.topic, tp.partition, bytes(broken)) == 1
    await produce(kafka_settings, tp, [b"after-3"])

    consumer.seek(tp, 0)
    with pytest.raises(CorruptRecordException):
        await consumer.getmany(tp, timeout_ms=5000)

    parsed = await fetch_raw(client, tp, 0, max_bytes=MAX_BYTES)
    before, defect, after = parsed.records
    assert (before.value, after.value, parsed.next_offset) == (b"before-0", b"after-3", 4)
    assert (defect.offset, defect.key, defect.value) == (1, None, None)
    assert defect.defect is not None
    assert defect.defect.startswith("unreadable batch, offsets 1..2: CRC-32C mismatch")


async def test_at_the_end_of_the_partition_nothing_and_no_move(
    kafka_settings: KafkaSettings, tp: TopicPartition, client: AIOKafkaClient
) -> None:
    await produce(kafka_settings, tp, [b"only-0"])
    assert await fetch_raw(client, tp, 1, max_bytes=MAX_BYTES) == Parsed((), 1)


async def test_max_bytes_below_one_batch_still_gets_the_first_batch(
    kafka_settings: KafkaSettings, tp: TopicPartition, client: AIOKafkaClient
) -> None:
    # As Kafka does since KIP-74: the first batch comes whole, however small max_bytes is.
    await produce(kafka_settings, tp, [b"v" * 500, b"w" * 500])
    parsed = await fetch_raw(client, tp, 0, max_bytes=10)
    assert [r.value for r in parsed.records][:1] == [b"v" * 500]
    assert parsed.next_offset == len(parsed.records)


async def test_a_partition_that_does_not_exist(client: AIOKafkaClient, tp: TopicPartition) -> None:
    with pytest.raises(UnknownTopicOrPartitionError):
        await fetch_raw(client, TopicPartition(tp.topic, 7), 0, max_bytes=MAX_BYTES)


# -- answers a Kafka broker may give and Tansu does not: a fake client, no broker ---------


class FakeCluster:
    def leader_for_partition(self, tp: TopicPartition) -> int | None:
        return 111 if tp.topic == "t" else None


class FakeClient:
    """Answers every request with `partitions` for topic "t"; counts metadata refreshes."""

    def __init__(self, partitions: list[tuple[Any, ...]]) -> None:
        self.cluster = FakeCluster()
        self.response = SimpleNamespace(topics=[("t", partitions)] if partitions else [])
        self.refreshes = 0
        self.requests: list[Any] = []

    async def send(self, node_id: int, request: Any) -> Any:
        assert node_id == 111
        self.requests.append(request)
        return self.response

    async def force_metadata_update(self) -> bool:
        self.refreshes += 1
        return True


T0 = TopicPartition("t", 0)


@pytest.mark.parametrize(
    ("code", "error", "refreshes"),
    [(6, NotLeaderForPartitionError, 1), (3, UnknownTopicOrPartitionError, 1),
     (1, OffsetOutOfRangeError, 0)],
)  # fmt: skip
async def test_a_partition_error_raises_the_matching_error(
    code: int, error: type[Exception], refreshes: int
) -> None:
    client = FakeClient([(0, code, -1, -1, [], None)])
    with pytest.raises(error, match=r"fetching t\[0\] at offset 5"):
        await fetch_raw(client, T0, 5, max_bytes=MAX_BYTES)
    assert client.refreshes == refreshes  # so that a retry finds the new leader
    [request] = client.requests
    assert request.topics == [("t", [(0, 5, MAX_BYTES)])]


async def test_no_records_or_no_partition_in_the_answer_is_nothing_at_the_offset() -> None:
    assert await fetch_raw(FakeClient([(0, 0, 9, None)]), T0, 5, max_bytes=10) == Parsed((), 5)
    assert await fetch_raw(FakeClient([]), T0, 5, max_bytes=10) == Parsed((), 5)


async def test_a_first_batch_cut_short_is_too_large() -> None:
    cut = batch_with([RawRecord(b"k", b"v" * 100)])[:50]
    with pytest.raises(RecordTooLargeError, match="larger than max_bytes 50"):
        await fetch_raw(FakeClient([(0, 0, 9, cut)]), T0, 0, max_bytes=50)
