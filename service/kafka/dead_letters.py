"""What a dead letter (commands' or webhooks') keeps of the Kafka record it stands for, and how
a letter is made to fit in one Kafka record (`kafka.max_record_bytes`).

A letter keeps where the record was and its bytes in base64: all of them when they fit, else
the start of the key and the value and the first headers whole, sharing the room left by
the rest of the letter fairly (a small key is never cut to make room for a big value), and
`cut` names what was shortened. The original stays on its topic, where the letter says.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import Field

from service.cloudevents import Outbound
from service.kafka.records import Header, Record

# The Kafka key of a letter is its record's key, cut to this: it only spreads letters over
# partitions, and a hostile key could otherwise fill the record on its own.
MAX_LETTER_KEY = 1024
# Of the record's bytes, what a smaller letter keeps in base64: enough to tell the record.
SMALLER_ROOM = 4096
HEADER_OVERHEAD = 10  # JSON around one header pair: ["", ""],
Part = Literal["key", "value", "headers"]


class KeptRecord(Outbound):
    """The record a dead letter stands for: where it was, and its bytes in base64."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key_base64: str | None
    key_bytes: int | None  # the original key's size; None: no key
    value_base64: str | None
    value_bytes: int | None  # the original value's size; None: a tombstone
    headers_base64: list[tuple[str, str | None]]  # (name, value), each in base64
    headers_count: int  # in the original record
    # Shortened to fit: key and value keep their first bytes, headers the first ones whole.
    cut: list[Part] = Field(default_factory=list)


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _b64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _header_length(header: Header) -> int:
    name, value = header
    return _b64_length(len(name)) + _b64_length(len(value or b"")) + HEADER_OVERHEAD


def shares(room: int, wants: Sequence[int]) -> list[int]:
    """`room` split among `wants` max-min fairly: each gets what it wants or an equal share
    of what the smaller ones left, whichever is less."""
    given = [0] * len(wants)
    left = max(room, 0)
    by_size = sorted(range(len(wants)), key=wants.__getitem__)
    for done, index in enumerate(by_size):
        given[index] = min(wants[index], left // (len(wants) - done))
        left -= given[index]
    return given


def keep(record: Record, room: int) -> KeptRecord:
    """What a letter keeps of `record` with at most `room` characters of base64 for it."""
    headers = record.headers
    wants = [
        _b64_length(len(record.key or b"")),
        _b64_length(len(record.value or b"")),
        sum(map(_header_length, headers)),
    ]
    key_room, value_room, headers_room = shares(room, wants)
    cut: list[Part] = []
    key, key_cut = _start(record.key, key_room)
    value, value_cut = _start(record.value, value_room)
    kept: list[tuple[str, str | None]] = []
    for header in headers:
        headers_room -= _header_length(header)
        if headers_room < 0:
            break
        kept.append((b64(header[0]) or "", b64(header[1])))
    if key_cut:
        cut.append("key")
    if value_cut:
        cut.append("value")
    if len(kept) < len(headers):
        cut.append("headers")
    return KeptRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
        key_base64=key,
        key_bytes=None if record.key is None else len(record.key),
        value_base64=value,
        value_bytes=None if record.value is None else len(record.value),
        headers_base64=kept,
        headers_count=len(headers),
        cut=cut,
    )


def _start(data: bytes | None, room: int) -> tuple[str | None, bool]:
    """`data` in base64 if it fits in `room` characters, else its first bytes that do."""
    if data is None:
        return None, False
    if _b64_length(len(data)) <= room:
        return b64(data), False
    return b64(data[: room // 4 * 3]), True


# "smaller": for a broker whose limit is below kafka.max_record_bytes; what else a letter
# leaves out then is its own to say.
Size = Literal["whole", "smaller"]
Letter = Callable[[KeptRecord, Size], Outbound]


def letter_key(record: Record) -> bytes | None:
    return None if record.key is None else record.key[:MAX_LETTER_KEY]
