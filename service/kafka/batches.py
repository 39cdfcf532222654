"""Record batches (KIP-98, magic 2) read by the service itself rather than by aiokafka, which
raises on a record it cannot decode (a header name that is not UTF-8) and never gets past it:
every record keeps its bytes, and what cannot be read is a record with a `defect`."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.record.util import calc_crc32c

from service.kafka.records import Header, Record


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one partition's fetched bytes hold: its records from the fetch offset on, in
    order, and the offset a consumer goes on from (past every complete batch, control and
    unreadable batches included)."""

    records: tuple[Record, ...]
    next_offset: int


# Record batch v2 (KIP-98): base offset, length, leader epoch, magic, CRC, attributes, last
# offset delta, first and max timestamp, producer id, epoch, base sequence, record count.
_BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
_FRAME = struct.Struct(">qi")  # base offset, length: the same in every magic
_MAGIC_AT = 16
_CRC_FROM = 21  # the CRC covers the attributes to the end; not the offset, length or epoch
_CODEC_MASK = 0x07
_LOG_APPEND_TIME = 0x08
_CONTROL = 0x20
_VARINT_MAX_BYTES = 10  # a varlong; Kafka's 5-byte varints are a subset
_CODECS: dict[int, tuple[str, Callable[[bytes], bytes]]] = {
    1: ("gzip", gzip_decode),
    2: ("snappy", snappy_decode),
    3: ("lz4", lz4_decode),
    4: ("zstd", zstd_decode),
}


class _UnreadableError(Exception):
    """Why a batch cannot be read; never leaves this module."""


def parse_records(topic: str, partition: int, data: bytes, start: int) -> Parsed:
    """The records of one partition's `records` bytes in a Fetch response, from `start` on.

    Never raises: a batch that cannot be read becomes one Record whose `defect` names why and
    the offsets it covers, at the batch's base offset (or at `start`, where the batch began
    before it), so the consumer dead-letters it and moves past. A record whose header name is
    not UTF-8 keeps all its bytes and gets a defect. A trailing partial batch (the broker cuts
    at max_bytes) is left for the next fetch.

    Legacy message sets (magic 0 and 1) are reported as unreadable batches, not handed to
    aiokafka's LegacyRecordBatch: that is compiled code not written for hostile bytes, and
    every producer since Kafka 0.11 (aiokafka's too) writes v2, the only format Kafka 4
    writes."""
    records: list[Record] = []
    next_offset = start
    pos = 0
    while len(data) - pos >= _FRAME.size:
        base_offset, length = _FRAME.unpack_from(data, pos)
        if length < 0:
            # No way to tell where the next batch starts: report this one, read no further.
            if base_offset >= start:
                reason = f"offsets {base_offset}..{base_offset}: batch length {length}"
                records.append(_unreadable(topic, partition, base_offset, reason))
            next_offset = max(next_offset, base_offset + 1)
            break
        end = pos + _FRAME.size + length
        if end > len(data):
            break
        batch = data[pos:end]
        pos = end
        last_offset = base_offset
        try:
            last_offset = _last_offset(batch)
            records += (r for r in _read_batch(topic, partition, batch) if r.offset >= start)
        except _UnreadableError as error:
            if last_offset >= start:
                reason = f"offsets {base_offset}..{last_offset}: {error}"
                records.append(_unreadable(topic, partition, max(base_offset, start), reason))
        next_offset = max(next_offset, last_offset + 1)
    return Parsed(tuple(records), next_offset)


def _last_offset(batch: bytes) -> int:
    """The last offset a batch covers: its base offset unless it is a v2 batch whose header
    says more. Raises _UnreadableError when the header itself is not there."""
    base_offset: int
    length: int
    base_offset, length = _FRAME.unpack_from(batch)
    if length <= _MAGIC_AT - _FRAME.size:
        raise _UnreadableError(f"a batch of {length} bytes has no magic byte")
    magic = batch[_MAGIC_AT]
    if magic in (0, 1):
        raise _UnreadableError(f"legacy message format (magic {magic}) is not read")
    if magic != 2:
        raise _UnreadableError(f"unknown magic {magic}")
    if len(batch) < _BATCH_HEADER.size:
        raise _UnreadableError(
            f"a v2 batch of {len(batch)} bytes is shorter than its {_BATCH_HEADER.size}-byte header"
        )
    last_offset_delta: int = _BATCH_HEADER.unpack_from(batch)[6]
    return base_offset + max(last_offset_delta, 0)


def _read_batch(topic: str, partition: int, batch: bytes) -> list[Record]:
    """The records of a complete v2 batch (none for a control batch)."""
    (
        base_offset, _, _, _, crc, attributes, last_offset_delta,
        first_timestamp, max_timestamp, _, _, _, count,
    ) = _BATCH_HEADER.unpack_from(batch)  # fmt: skip
    computed = calc_crc32c(batch[_CRC_FROM:])
    if computed != crc:
        raise _UnreadableError(f"CRC-32C mismatch: stored {crc:#010x}, computed {computed:#010x}")
    if last_offset_delta < 0 or count < 0:
        raise _UnreadableError(f"last offset delta {last_offset_delta}, {count} records")
    if attributes & _CONTROL:
        return []  # transaction markers: nothing for a handler
    body = _decompress(attributes & _CODEC_MASK, batch[_BATCH_HEADER.size :])
    reader = _Reader(body)
    records: list[Record] = []
    previous_delta = -1
    for index in range(count):
        if reader.at_end():
            raise _UnreadableError(f"{index} records where the header counts {count}")
        record = reader.record(index)
        if not previous_delta < record.offset_delta <= last_offset_delta:
            raise _UnreadableError(
                f"record {index} has offset delta {record.offset_delta} after "
                f"{previous_delta}, in a batch up to {last_offset_delta}"
            )
        previous_delta = record.offset_delta
        # LogAppendTime: the broker's time, which it writes as the batch's max timestamp.
        timestamp = (
            max_timestamp
            if attributes & _LOG_APPEND_TIME
            else first_timestamp + record.timestamp_delta
        )
        records.append(
            Record(
                topic=topic,
                partition=partition,
                offset=base_offset + record.offset_delta,
                timestamp_ms=timestamp,
                key=record.key,
                value=record.value,
                headers=record.headers,
                defect=_header_defect(record.headers),
            )
        )
    if not reader.at_end():
        raise _UnreadableError(f"bytes left after the {count} records the header counts")
    return records


def _decompress(codec: int, payload: bytes) -> bytes:
    if codec == 0:
        return payload
    if codec not in _CODECS:
        raise _UnreadableError(f"unknown compression codec {codec}")
    name, decode = _CODECS[codec]
    try:
        return decode(payload)
    # The codecs raise what their libraries raise (OSError, EOFError, zlib.error,
    # cramjam.DecompressionError, struct.error...): any of them means this batch is lost.
    except Exception as error:  # noqa: BLE001
        raise _UnreadableError(
            f"{name} payload does not decompress: {type(error).__name__}: {error}"
        ) from None


def _header_defect(headers: tuple[Header, ...]) -> str | None:
    bad = []
    for index, (name, _) in enumerate(headers):
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(f"header {index} name is not UTF-8: {name!r}")
    return "; ".join(bad) or None


def _unreadable(topic: str, partition: int, offset: int, reason: str) -> Record:
    return Record(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=None,
        key=None,
        value=None,
        defect=f"unreadable batch, {reason}",
    )


@dataclass(frozen=True, slots=True)
class _RawRecord:
    timestamp_delta: int
    offset_delta: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]


class _Reader:
    """Records of a v2 batch body, read with every length checked against what is there."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def record(self, index: int) -> _RawRecord:
        length = self._varint()
        if length < 0 or self._pos + length > len(self._data):
            raise _UnreadableError(f"record {index} of {length} bytes overruns the batch")
        end = self._pos + length
        self._take(1)  # record attributes: unused
        timestamp_delta = self._varint()
        offset_delta = self._varint()
        key = self._nullable()
        value = self._nullable()
        header_count = self._varint()
        if header_count < 0:
            raise _UnreadableError(f"record {index} has {header_count} headers")
        headers: list[Header] = []
        for _ in range(header_count):
            name_length = self._varint()
            if name_length < 0:
                raise _UnreadableError(f"record {index} has a header name of length -1")
            headers.append((self._take(name_length), self._nullable()))
        if self._pos != end:
            raise _UnreadableError(
                f"record {index} says {length} bytes, its fields take {self._pos - end + length}"
            )
        return _RawRecord(timestamp_delta, offset_delta, key, value, tuple(headers))

    def _nullable(self) -> bytes | None:
        length = self._varint()
        return None if length < 0 else self._take(length)  # Kafka: any negative length is null

    def _take(self, count: int) -> bytes:
        if self._pos + count > len(self._data):
            raise _UnreadableError("a record overruns the batch")
        taken = self._data[self._pos : self._pos + count]
        self._pos += count
        return taken

    def _varint(self) -> int:
        """A zig-zag varint (Kafka's varint and varlong)."""
        raw = 0
        for shift in range(0, 7 * _VARINT_MAX_BYTES, 7):
            if self._pos >= len(self._data):
                raise _UnreadableError("a record overruns the batch")
            byte = self._data[self._pos]
            self._pos += 1
            raw |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (raw >> 1) ^ -(raw & 1)
        raise _UnreadableError(f"a varint longer than {_VARINT_MAX_BYTES} bytes")
