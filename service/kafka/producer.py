"""Producing to Kafka: one aiokafka producer with acks=all, which every record of the service
rides (events, checkpoints, ledger entries, results, dead letters)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from service.cloudevents import CONTENT_TYPE
from service.kafka.connection import client_options
from service.kafka.settings import KafkaSettings

HEADERS = [("content-type", CONTENT_TYPE.encode())]
HEADERS_BYTES = sum(len(name) + len(value) for name, value in HEADERS)
# The broker's answers to a record over its max.message.bytes.
REFUSED_FOR_SIZE = (MessageSizeTooLargeError, RecordListTooLargeError)

# Keys (agents, calls, groups) come back cycle after cycle, and aiokafka's murmur2 is pure
# Python: remembering it halves the cost of choosing partitions (bench/events.py).
_key_hash = functools.lru_cache(maxsize=1 << 16)(murmur2)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """Kafka's default partitioner for a keyed record, as every client computes it."""
    index: int = (_key_hash(key) & 0x7FFFFFFF) % len(partitions)
    return partitions[index]


class OutRecord(NamedTuple):
    """A record to produce; with no `partition`, the key's (Kafka's default partitioner)."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


class PublishError(Exception):
    """Kafka did not acknowledge a record; the caller keeps it and tries again."""


class RecordTooLargeError(PublishError):
    """A record over `kafka.max_record_bytes`, or one the broker refused for its size: sent
    again, it would be refused again. The caller sends a smaller record instead."""


class UnknownPartitionError(PublishError):
    """A record for a partition its topic does not have: the topic's partition count changed
    behind the service's back. Retried (the topic may be put right); /readyz reports it."""


class _Batch:
    """One batch being filled for one partition, and its delivery once sent."""

    __slots__ = ("builder", "delivery")

    def __init__(self, builder: BatchBuilder) -> None:
        self.builder = builder
        self.delivery: asyncio.Future[Any] | None = None


Waiter = asyncio.Future[None]


class Producer:
    """One aiokafka producer, started and stopped with the service (stop is idempotent)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._producer = AIOKafkaProducer(
            **client_options(kafka),
            acks="all",
            enable_idempotence=kafka.enable_idempotence,
            compression_type=kafka.compression_type,
            linger_ms=kafka.linger_ms,
            request_timeout_ms=kafka.request_timeout_ms,
        )
        self.max_record_bytes = kafka.max_record_bytes
        self._stopped = False
        self._waiting: list[tuple[Sequence[OutRecord], Waiter]] = []
        self._packer: asyncio.Task[None] | None = None
        self._settling: set[asyncio.Task[None]] = set()
        # Per topic, the partitions written to that it did not have, for /readyz.
        self.unknown_partitions: dict[str, set[int]] = {}

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is pending and close; also after a failed start, which leaves the
        client half-open."""
        if not self._stopped:
            self._stopped = True
            await self._producer.stop()

    async def reachable(self) -> bool:
        """Whether the brokers answer a metadata request now."""
        return bool(await self._producer.client.force_metadata_update())

    async def partitions_for(self, topic: str) -> list[int]:
        return sorted(await self._producer.partitions_for(topic))

    def room(self, key: bytes | None) -> int:
        """The most bytes a value keyed `key` may have (the headers are the producer's)."""
        return self.max_record_bytes - len(key or b"") - HEADERS_BYTES

    async def send_all(self, records: Sequence[OutRecord]) -> None:
        """Returns once Kafka acknowledged every record: RecordTooLargeError for one that is
        too large, PublishError otherwise.

        Records of callers sending in the same turn of the event loop travel together,
        packed into one batch per partition: aiokafka queues one batch per partition at a
        time, so many small sends (a command's ledger entries and result) would otherwise
        queue behind one another (bench/commands.py). Each caller hears of its own records.
        """
        for record in records:
            if len(record.value) > self.room(record.key):
                size = len(record.value) + len(record.key or b"") + HEADERS_BYTES
                raise RecordTooLargeError(
                    f"a record of {size} bytes for {record.topic}: over kafka.max_record_bytes "
                    f"({self.max_record_bytes})"
                )
        waiter: Waiter = asyncio.get_running_loop().create_future()
        self._waiting.append((records, waiter))
        if self._packer is None or self._packer.done():
            self._packer = asyncio.create_task(self._pack())
        await waiter

    async def _pack(self) -> None:
        await asyncio.sleep(0)  # one turn of the loop: whoever sends in it joins this batch
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                deliveries = await self._enqueue(group)
            except Exception as error:  # noqa: BLE001 - each caller gets it, as a PublishError
                for _, waiter in group:
                    _settle(waiter, error)
            else:
                settling = asyncio.create_task(_acked(deliveries))
                self._settling.add(settling)
                settling.add_done_callback(self._settling.discard)

    async def _enqueue(
        self, group: Sequence[tuple[Sequence[OutRecord], Waiter]]
    ) -> list[tuple[Waiter, list[_Batch]]]:
        """Hands the records to aiokafka, a batch per partition (a third less CPU per record
        than one by one: bench/events.py); each caller's batches. The partition is the key's
        by Kafka's default partitioner, as any other producer of these keys chooses."""
        batches: dict[tuple[str, int], _Batch] = {}
        partitions: dict[str, list[int]] = {}
        deliveries = []
        for records, waiter in group:
            try:
                targets = [await self._partition(record, partitions) for record in records]
            except UnknownPartitionError as error:
                _settle(waiter, error)
                continue
            used: list[_Batch] = []
            for (topic, key, value, _), partition in zip(records, targets, strict=True):
                where = (topic, partition)
                batch = batches.get(where)
                if batch is None or not batch.builder.append(
                    timestamp=None, key=key, value=value, headers=HEADERS
                ):
                    if batch is not None:  # full: it goes now, a new one takes the record
                        await self._send(batch, *where)
                    batch = batches[where] = _Batch(self._producer.create_batch())
                    batch.builder.append(timestamp=None, key=key, value=value, headers=HEADERS)
                used.append(batch)
            deliveries.append((waiter, used))
        for where, batch in batches.items():
            await self._send(batch, *where)
        return deliveries

    async def _partition(self, record: OutRecord, partitions: dict[str, list[int]]) -> int:
        topic = record.topic
        if topic not in partitions:
            partitions[topic] = await self.partitions_for(topic)
        known = partitions[topic]
        if record.partition is None:
            return partition_for(record.key or b"", known)
        if record.partition not in known:
            self.unknown_partitions.setdefault(topic, set()).add(record.partition)
            raise UnknownPartitionError(
                f"{topic} has no partition {record.partition} (it has {len(known)}): its "
                "partition count changed behind the service's back"
            )
        return record.partition

    async def _send(self, batch: _Batch, topic: str, partition: int) -> None:
        # Closed, the batch is ready at once: an open one would wait linger_ms for records
        # that send() never adds to it.
        batch.builder.close()
        batch.delivery = await self._producer.send_batch(batch.builder, topic, partition=partition)


async def _acked(deliveries: list[tuple[Waiter, list[_Batch]]]) -> None:
    futures = {
        batch.delivery
        for _, batches in deliveries
        for batch in batches
        if batch.delivery is not None
    }
    if futures:
        await asyncio.wait(futures)
    for waiter, batches in deliveries:
        errors = [error for batch in batches if (error := _failure(batch)) is not None]
        _settle(waiter, errors[0] if errors else None)


def _failure(batch: _Batch) -> BaseException | None:
    delivery = batch.delivery
    if delivery is None or delivery.cancelled():
        return PublishError("the batch was not sent")
    return delivery.exception()


def _settle(waiter: Waiter, error: BaseException | None) -> None:
    if waiter.done():  # its caller gave up (cancelled)
        return
    if error is None:
        waiter.set_result(None)
    elif isinstance(error, PublishError):
        waiter.set_exception(error)
    elif isinstance(error, REFUSED_FOR_SIZE):
        waiter.set_exception(RecordTooLargeError(f"the broker refused it for its size: {error}"))
    else:
        waiter.set_exception(PublishError(f"{type(error).__name__}: {error}"))
