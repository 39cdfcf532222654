"""Producing to Kafka: one aiokafka producer with acks=all, which every record of the service
rides (events, checkpoints, ledger entries, results, dead letters)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from service.cloudevents import CONTENT_TYPE
from service.kafka.connection import client_options
from service.kafka.settings import KafkaSettings

HEADERS = [("content-type", CONTENT_TYPE.encode())]

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
        self._stopped = False
        self._waiting: list[tuple[Sequence[OutRecord], asyncio.Future[None]]] = []
        self._packer: asyncio.Task[None] | None = None
        self._settling: set[asyncio.Task[None]] = set()

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

    async def send_all(self, records: Sequence[OutRecord]) -> None:
        """Returns once Kafka acknowledged every record (PublishError otherwise).

        Records of callers sending in the same turn of the event loop travel together,
        packed into one batch per partition: aiokafka queues one batch per partition at a
        time, so many small sends (a command's ledger entries and result) would otherwise
        queue behind one another (bench/commands.py).
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((records, waiter))
        if self._packer is None or self._packer.done():
            self._packer = asyncio.create_task(self._pack())
        await waiter

    async def _pack(self) -> None:
        await asyncio.sleep(0)  # one turn of the loop: whoever sends in it joins this batch
        while self._waiting:
            group, self._waiting = self._waiting, []
            waiters = [waiter for _, waiter in group]
            try:
                deliveries = await self._enqueue([r for records, _ in group for r in records])
            except Exception as error:  # noqa: BLE001 - each caller gets it, as a PublishError
                _settle(waiters, error)
            else:
                settling = asyncio.create_task(self._acked(deliveries, waiters))
                self._settling.add(settling)
                settling.add_done_callback(self._settling.discard)

    @staticmethod
    async def _acked(
        deliveries: list[asyncio.Future[Any]], waiters: list[asyncio.Future[None]]
    ) -> None:
        try:
            await asyncio.gather(*deliveries)
        except Exception as error:  # noqa: BLE001 - each caller gets it, as a PublishError
            _settle(waiters, error)
        else:
            _settle(waiters, None)

    async def _enqueue(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]]:
        """Hands the records to aiokafka, a batch per partition (a third less CPU per record
        than one by one: bench/events.py); their delivery futures. The partition is the
        key's by Kafka's default partitioner, as any other producer of these keys chooses."""
        futures = []
        batches: dict[tuple[str, int], BatchBuilder] = {}
        partitions: dict[str, list[int]] = {}
        for topic, key, value, partition in records:
            if partition is None:
                if topic not in partitions:
                    partitions[topic] = await self.partitions_for(topic)
                partition = partition_for(key or b"", partitions[topic])  # noqa: PLW2901
            where = (topic, partition)
            batch = batches.get(where)
            if batch is not None and batch.append(
                timestamp=None, key=key, value=value, headers=HEADERS
            ):
                continue
            if batch is not None:  # full: it goes now, a new one takes the record
                futures.append(await self._send(batch, *where))
            batch = batches[where] = self._producer.create_batch()
            batch.append(timestamp=None, key=key, value=value, headers=HEADERS)
        for (topic, partition), batch in batches.items():
            futures.append(await self._send(batch, topic, partition))
        return futures

    async def _send(self, batch: BatchBuilder, topic: str, partition: int) -> asyncio.Future[Any]:
        # Closed, the batch is ready at once: an open one would wait linger_ms for records
        # that send() never adds to it.
        batch.close()
        return await self._producer.send_batch(batch, topic, partition=partition)  # type: ignore[no-any-return]


def _settle(waiters: Sequence[asyncio.Future[None]], error: Exception | None) -> None:
    for waiter in waiters:
        if waiter.done():  # its caller gave up (cancelled)
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(PublishError(f"{type(error).__name__}: {error}"))
