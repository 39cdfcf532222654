"""Reading topics once through, from their beginning to where they end now."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from service.kafka.admin import describe_topics
from service.kafka.connection import client_options
from service.kafka.settings import KafkaSettings


async def partitions_of(
    kafka: KafkaSettings, topics: list[str], partitions: Collection[int] | None = None
) -> list[TopicPartition]:
    """The partitions (of `partitions`, or all) of those of `topics` that exist."""
    found = await describe_topics(kafka, topics)  # asking only for existing ones creates none
    return [
        TopicPartition(name, partition)
        for name, state in found.items()
        for partition in range(state.partitions)
        if partitions is None or partition in partitions
    ]


async def read_to_end(
    kafka: KafkaSettings, topics: list[str], partitions: Collection[int] | None = None
) -> list[Any]:
    """Every record of those of `topics` that exist (of their `partitions`, or all), oldest
    first per partition, up to the end each partition had when the read began. No consumer
    group, nothing committed."""
    assigned = await partitions_of(kafka, topics, partitions)
    if not assigned:
        return []
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        records: list[Any] = []
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(*assigned, timeout_ms=1000)).values():
                records += batch
        return records
    finally:
        await consumer.stop()
