"""One Fetch request for one partition, its bytes parsed by `parse_records` rather than by
aiokafka: the consumers' way past a record aiokafka cannot decode (it raises inside
`getmany` on that record, and again after every restart)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaClient, TopicPartition
from aiokafka.errors import (
    LeaderNotAvailableError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.protocol.fetch import FetchRequest

from service.kafka.batches import Parsed, parse_records

READ_UNCOMMITTED = 0  # the Fetch isolation level the consumers use
# A broker answers at once when the offset holds records (min_bytes 1), and waits this long
# when it does not. Not 0: Tansu answers a Fetch with max_wait 0 with no partition at all,
# records there or not.
MAX_WAIT_MS = 100
MIN_BYTES = 1


async def fetch_raw(
    client: AIOKafkaClient, tp: TopicPartition, offset: int, *, max_bytes: int
) -> Parsed:
    """The records of `tp` from `offset` on, up to about `max_bytes`, from its leader.

    `client` is started (bootstrapped) by the caller, with the consumers' connection options.
    The Fetch version is the one aiokafka's consumer negotiates, so these are the bytes it
    failed on. A partition error raises the matching aiokafka error, after refreshing the
    metadata where the error says it is stale; RecordTooLargeError when the first batch at
    `offset` does not fit in `max_bytes`.
    """
    leader = await partition_leader(client, tp)
    request = FetchRequest(
        MAX_WAIT_MS,
        MIN_BYTES,
        max_bytes,
        READ_UNCOMMITTED,
        [(tp.topic, [(tp.partition, offset, max_bytes)])],
    )
    error_code, data = _partition_data(await client.send(leader, request), tp)
    if error_code:
        error = for_code(error_code)
        if error.invalid_metadata or error is UnknownTopicOrPartitionError:
            await client.force_metadata_update()
        raise error(f"fetching {_name(tp)} at offset {offset}")
    parsed = parse_records(tp.topic, tp.partition, data, offset)
    if data and not parsed.records and parsed.next_offset == offset:
        # Bytes came, but no complete batch at or after `offset`: the broker cut the first one.
        raise RecordTooLargeError(
            f"the batch at {_name(tp)} offset {offset} is larger than max_bytes {max_bytes}"
        )
    return parsed


async def partition_leader(client: AIOKafkaClient, tp: TopicPartition) -> int:
    """The node id of the leader of `tp`, refreshing the client's metadata once if it does not
    know one. The topic joins those the client tracks (a client that tracked every topic then
    tracks only the ones added: aiokafka's add_topic)."""
    leader: int | None = client.cluster.leader_for_partition(tp)
    if leader is None or leader == -1:
        await client.add_topic(tp.topic)
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(tp)
    if leader is None:
        raise UnknownTopicOrPartitionError(_name(tp))
    if leader == -1:
        raise LeaderNotAvailableError(_name(tp))
    return leader


def _partition_data(response: Any, tp: TopicPartition) -> tuple[int, bytes]:
    """Error code and records bytes of `tp` in a Fetch response of any version: each
    partition starts (partition, error_code, high watermark) and ends with its records. A
    partition left out of the answer has nothing to give (as in Kafka's fetch sessions)."""
    for topic, partitions in response.topics:
        for partition_data in partitions:
            if topic == tp.topic and partition_data[0] == tp.partition:
                return partition_data[1], partition_data[-1] or b""  # null: no records
    return 0, b""


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"
