"""Record batches no normal client would produce, and a way to produce them over the real
broker: header names that are not UTF-8 (aiokafka's producer takes only `str` names), or any
other bytes a test needs in a record.

The batch is encoded here from the KIP-98 layout rather than by aiokafka's builder, which
encodes header names from `str` inside its compiled code; the CRC is computed over the bytes
as they end up, compressed or not."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from aiokafka import AIOKafkaClient, TopicPartition
from aiokafka.codec import gzip_encode, lz4_encode, snappy_encode, zstd_encode
from aiokafka.errors import for_code
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.util import calc_crc32c, encode_varint

from service.kafka.connection import client_options
from service.kafka.raw import partition_leader
from service.kafka.settings import KafkaSettings

Compression = Literal["gzip", "snappy", "lz4", "zstd"]
ACKS_ALL = -1
ACK_TIMEOUT_MS = 10_000
_CODECS: dict[Compression, tuple[int, Callable[[bytes], bytes]]] = {
    "gzip": (1, gzip_encode),
    "snappy": (2, snappy_encode),
    "lz4": (3, lz4_encode),
    "zstd": (4, zstd_encode),
}


@dataclass(frozen=True, slots=True)
class RawRecord:
    """Bytes exactly as they go in the batch; a timestamp of None is the time of building."""

    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[bytes, bytes | None]] = ()
    timestamp_ms: int | None = None


def batch_with(records: Sequence[RawRecord], *, compression: Compression | None = None) -> bytes:
    """A v2 record batch (magic 2) of `records` at offset deltas 0, 1, ..., as a producer
    sends it: base offset 0, no producer id, no partition leader epoch."""
    if not records:
        raise ValueError("a record batch holds at least one record")
    now = int(time.time() * 1000)
    stamps = [now if record.timestamp_ms is None else record.timestamp_ms for record in records]
    body = b"".join(
        _record(delta, stamp - stamps[0], record)
        for delta, (stamp, record) in enumerate(zip(stamps, records, strict=True))
    )
    attributes = 0
    if compression is not None:
        attributes, encode = _CODECS[compression]
        body = encode(body)
    # attributes, last offset delta, first and max timestamp, producer id, producer epoch,
    # base sequence, record count: what the CRC covers, with the records.
    covered = (
        struct.pack(
            ">hiqqqhii", attributes, len(records) - 1, stamps[0], max(stamps), -1, -1, -1,
            len(records),
        )
        + body
    )  # fmt: skip
    # partition leader epoch, magic, CRC-32C
    after_length = struct.pack(">ibI", -1, 2, calc_crc32c(covered)) + covered
    return struct.pack(">qi", 0, len(after_length)) + after_length


async def produce_raw(kafka: KafkaSettings, topic: str, partition: int, batch: bytes) -> int:
    """Send `batch` as it is to `topic`[`partition`] (an existing topic) with acks=all: the
    base offset the broker assigned it."""
    client = AIOKafkaClient(**client_options(kafka))
    try:
        await client.bootstrap()
        leader = await partition_leader(client, TopicPartition(topic, partition))
        request = ProduceRequest(None, ACKS_ALL, ACK_TIMEOUT_MS, [(topic, [(partition, batch)])])
        response = await client.send(leader, request)
    finally:
        await client.close()
    [(_, [(_, error_code, base_offset, *_)])] = response.topics
    if error_code:
        raise for_code(error_code)(f"producing a raw batch to {topic}[{partition}]")
    offset: int = base_offset
    return offset


def _record(offset_delta: int, timestamp_delta: int, record: RawRecord) -> bytes:
    fields = bytearray(b"\x00")  # record attributes: unused
    encode_varint(timestamp_delta, fields.append)
    encode_varint(offset_delta, fields.append)
    _nullable(fields, record.key)
    _nullable(fields, record.value)
    encode_varint(len(record.headers), fields.append)
    for name, value in record.headers:
        _nullable(fields, name)
        _nullable(fields, value)
    length = bytearray()
    encode_varint(len(fields), length.append)
    return bytes(length + fields)


def _nullable(out: bytearray, data: bytes | None) -> None:
    if data is None:
        encode_varint(-1, out.append)
    else:
        encode_varint(len(data), out.append)
        out += data
