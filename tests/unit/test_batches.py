"""parse_records over record batches built by aiokafka's own builder: it reads what aiokafka
reads, the same way, and also what aiokafka raises on, without raising itself."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from hypothesis import given
from hypothesis import strategies as st

from service.kafka.batches import Parsed, parse_records
from service.kafka.records import Record
from tests.integration.raw import Compression, RawRecord, batch_with

TOPIC = "t"
PARTITION = 3
T0 = 1_790_000_000_000
CODECS: dict[Compression, int] = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
CRC_AT = 17
ATTRIBUTES_AT = 21
COUNT_AT = 57
HEADER_SIZE = 61

# (key, value, headers with str names as aiokafka's builder takes them)
Appended = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]

MIXED: list[Appended] = [
    (b"k0", b"v0", [("content-type", b"application/json"), ("empty", None)]),
    (None, b"no key", []),
    (b"tombstone", None, [("x", b"")]),
    (None, None, []),
    (b"", b"", [("", b"empty name")]),
    (b"\x00\xff", b"y" * 300, [("h1", b"1"), ("h2", b"2"), ("h1", b"again")]),
]


def build(
    records: Sequence[Appended],
    *,
    codec: int = 0,
    base_offset: int = 0,
    offsets: Sequence[int] | None = None,
) -> bytes:
    """A v2 batch from aiokafka's builder, at `base_offset` (as the broker sets it: the base
    offset is outside the CRC)."""
    builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, 1 << 24)
    for delta, (key, value, headers) in zip(offsets or range(len(records)), records, strict=True):
        builder.append(delta, timestamp=T0 + 7 * delta, key=key, value=value, headers=headers)
    batch = bytearray(builder.build())
    struct.pack_into(">q", batch, 0, base_offset)
    return bytes(batch)


def with_crc(batch: bytes) -> bytes:
    """`batch` with the CRC it should have, so that only what a test broke is broken."""
    return (
        batch[:CRC_AT]
        + struct.pack(">I", calc_crc32c(batch[ATTRIBUTES_AT:]))
        + batch[ATTRIBUTES_AT:]
    )


def patched(batch: bytes, at: int, data: bytes) -> bytes:
    """`batch` with `data` written at `at`, its CRC right again."""
    return with_crc(batch[:at] + data + batch[at + len(data) :])


def aiokafka_reads(data: bytes, start: int) -> list[tuple[Any, ...]]:
    """What aiokafka's consumer hands out from `data` from `start` on (it skips control
    batches and records before the fetch offset), header names encoded back to bytes."""
    read: list[tuple[Any, ...]] = []
    records = MemoryRecords(data)
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc()
        if batch.is_control_batch:
            continue
        read += [
            (r.offset, r.timestamp, r.key, r.value, [(k.encode(), v) for k, v in r.headers])
            for r in batch
            if r.offset >= start
        ]
    return read


def fields(parsed: Parsed) -> list[tuple[Any, ...]]:
    assert all(r.defect is None for r in parsed.records), parsed.records
    assert all((r.topic, r.partition) == (TOPIC, PARTITION) for r in parsed.records)
    return [(r.offset, r.timestamp_ms, r.key, r.value, list(r.headers)) for r in parsed.records]


def parse(data: bytes, start: int = 0) -> Parsed:
    return parse_records(TOPIC, PARTITION, data, start)


def only_defect(parsed: Parsed) -> str:
    [record] = parsed.records
    assert (record.key, record.value, record.headers, record.timestamp_ms) == (None, None, (), None)
    assert record.defect is not None
    return record.defect


@pytest.mark.parametrize("codec", [0, *CODECS.values()], ids=["none", *CODECS])
def test_every_codec_reads_as_aiokafka_reads(codec: int) -> None:
    batch = build(MIXED, codec=codec, base_offset=40)
    assert batch[ATTRIBUTES_AT + 1] & 0x07 == codec  # the builder did compress
    parsed = parse(batch, 40)
    assert fields(parsed) == aiokafka_reads(batch, 40)
    assert [r.offset for r in parsed.records] == list(range(40, 46))
    assert parsed.records[0].headers == ((b"content-type", b"application/json"), (b"empty", None))
    assert parsed.records[1].timestamp_ms == T0 + 7
    assert parsed.next_offset == 46


def test_batches_back_to_back_and_a_partial_one_at_the_end() -> None:
    batches = [
        build(MIXED[:3], base_offset=0),
        build(MIXED[3:], codec=CODECS["lz4"], base_offset=3),
        build(MIXED[:2], codec=CODECS["zstd"], base_offset=6),
    ]
    data = b"".join(batches)
    parsed = parse(data)
    assert fields(parsed) == aiokafka_reads(data, 0)
    assert (len(parsed.records), parsed.next_offset) == (8, 8)
    for cut in (1, 11, 12, 61, len(batches[2]) - 1):
        partial = parse(data[:-cut])
        assert fields(partial) == fields(parsed)[:6]
        assert partial.next_offset == 6


def test_start_inside_a_batch_skips_the_records_before_it() -> None:
    data = build(MIXED, base_offset=10) + build(MIXED[:1], base_offset=16)
    parsed = parse(data, 13)
    assert [r.offset for r in parsed.records] == [13, 14, 15, 16]
    assert fields(parsed) == aiokafka_reads(data, 13)
    assert parsed.next_offset == 17


def test_no_complete_batch_leaves_next_offset_at_start() -> None:
    assert parse(b"", 5) == Parsed((), 5)
    assert parse(build(MIXED, base_offset=5)[:-1], 5) == Parsed((), 5)
    assert parse(build(MIXED, base_offset=0), 9) == Parsed((), 9)  # all before start


def test_a_compacted_batch_keeps_its_last_offset() -> None:
    # Compaction leaves gaps inside a batch; the batch still covers up to its last offset.
    batch = build(MIXED[:2], offsets=[1, 4], base_offset=20)
    parsed = parse(batch, 20)
    assert [r.offset for r in parsed.records] == [21, 24]
    assert fields(parsed) == aiokafka_reads(batch, 20)
    assert parsed.next_offset == 25


def control_batch(base_offset: int) -> bytes:
    """A transaction commit marker as a broker writes it: transactional and control bits."""
    marker = build([(struct.pack(">hh", 0, 1), struct.pack(">hi", 0, 0), [])], base_offset=0)
    batch = patched(marker, ATTRIBUTES_AT, struct.pack(">h", 0x30))
    return struct.pack(">q", base_offset) + batch[8:]


def test_a_control_batch_is_skipped_but_moved_past() -> None:
    data = build(MIXED[:2], base_offset=0) + control_batch(2) + build(MIXED[:1], base_offset=3)
    parsed = parse(data)
    assert [r.offset for r in parsed.records] == [0, 1, 3]
    assert fields(parsed) == aiokafka_reads(data, 0)
    assert parse(control_batch(2), 2) == Parsed((), 3)


def with_header_name(batch: bytes, placeholder: bytes, name: bytes) -> bytes:
    """aiokafka's builder takes only str names: write `name` over a placeholder as long."""
    assert len(placeholder) == len(name)
    assert batch.count(placeholder) == 1
    return patched(batch, batch.index(placeholder), name)


def test_a_header_name_that_is_not_utf8_is_a_defect_with_every_byte_kept() -> None:
    records: list[Appended] = [
        (b"k0", b"v0", [("ok", b"1")]),
        (b"k1", b"v1", [("ok", b"1"), ("@@", b"2"), ("fine", None)]),
        (b"k2", b"v2", []),
    ]
    batch = with_header_name(build(records, base_offset=7), b"@@", b"\xff\xfe")
    with pytest.raises(UnicodeDecodeError):  # what getmany raises on it
        aiokafka_reads(batch, 0)
    parsed = parse(batch, 7)
    good, bad, after = parsed.records
    assert (good.defect, after.defect) == (None, None)
    assert bad.defect == r"header 1 name is not UTF-8: b'\xff\xfe'"
    assert (bad.offset, bad.key, bad.value, bad.timestamp_ms) == (8, b"k1", b"v1", T0 + 7)
    assert bad.headers == ((b"ok", b"1"), (b"\xff\xfe", b"2"), (b"fine", None))
    assert parsed.next_offset == 10


def test_a_crc_mismatch_is_one_defect_for_the_whole_batch() -> None:
    bad = bytearray(build(MIXED, base_offset=30))
    bad[-1] ^= 0x01
    data = bytes(bad) + build(MIXED[:1], base_offset=36)
    parsed = parse(data, 30)
    first, after = parsed.records
    assert first.offset == 30
    assert first.defect is not None
    assert first.defect.startswith("unreadable batch, offsets 30..35: CRC-32C mismatch: stored ")
    assert (after.offset, after.key, after.defect) == (36, b"k0", None)
    assert parsed.next_offset == 37
    # Started inside it: the defect stands at the start for what is left of the batch.
    assert parse(bytes(bad), 33).records[0].offset == 33


@pytest.mark.parametrize("codec", CODECS.values(), ids=list(CODECS))
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_compressed_payload_that_does_not_decompress(codec: int, damage: str) -> None:
    batch = build(MIXED, codec=codec, base_offset=50)
    payload = batch[HEADER_SIZE:]
    payload = payload[: len(payload) // 2] if damage == "truncated" else b"\x00\x01garbage" * 5
    length = struct.pack(">i", HEADER_SIZE - 12 + len(payload))
    broken = with_crc(batch[:8] + length + batch[12:HEADER_SIZE] + payload)  # only the codec fails
    defect = only_defect(parse(broken, 50))
    assert defect.startswith("unreadable batch, offsets 50..55: ")
    assert " payload does not decompress: " in defect
    assert parse(broken, 50).next_offset == 56


@pytest.mark.parametrize(
    ("count", "reason"),
    [
        (7, "6 records where the header counts 7"),
        (5, "bytes left after the 5 records the header counts"),
        (-1, "last offset delta 5, -1 records"),
    ],
)
def test_a_record_count_that_disagrees(count: int, reason: str) -> None:
    batch = patched(build(MIXED, base_offset=0), COUNT_AT, struct.pack(">i", count))
    assert only_defect(parse(batch)) == f"unreadable batch, offsets 0..5: {reason}"


def test_records_that_overrun_the_batch() -> None:
    batch = build([(b"key", b"value", [])])
    # The key length varint (zig-zag 3 = 6) claims 60 bytes.
    at = batch.index(b"\x06key")
    defect = only_defect(parse(patched(batch, at, b"\x78")))
    assert defect == "unreadable batch, offsets 0..0: a record overruns the batch"


@pytest.mark.parametrize(
    ("magic", "reason"),
    [(0, "legacy message format (magic 0) is not read"), (5, "unknown magic 5")],
)
def test_other_magics_are_unreadable(magic: int, reason: str) -> None:
    batch = bytearray(build(MIXED, base_offset=60))
    batch[16] = magic
    # The last offset delta of a v2 header does not apply: the batch is one offset.
    assert parse(bytes(batch), 60) == Parsed(
        (
            Record(
                TOPIC,
                PARTITION,
                60,
                None,
                None,
                None,
                defect=f"unreadable batch, offsets 60..60: {reason}",
            ),
        ),
        61,
    )


def test_an_unknown_codec_is_unreadable() -> None:
    batch = patched(build(MIXED), ATTRIBUTES_AT, struct.pack(">h", 0x06))
    assert only_defect(parse(batch)).endswith(": unknown compression codec 6")


def test_a_negative_batch_length_ends_the_read() -> None:
    data = (
        build(MIXED[:1], base_offset=0)
        + struct.pack(">qi", 1, -7)
        + build(MIXED[:1], base_offset=2)
    )
    parsed = parse(data)
    assert [r.defect for r in parsed.records] == [
        None,
        "unreadable batch, offsets 1..1: batch length -7",
    ]
    assert parsed.next_offset == 2


@pytest.mark.parametrize("compression", [None, *CODECS])
def test_batch_with_encodes_what_aiokafka_reads(compression: Compression | None) -> None:
    records = [
        RawRecord(b"k", b"v" * 200, [(b"a", b"1"), (b"b", None)], timestamp_ms=T0),
        RawRecord(None, None, timestamp_ms=T0 + 5),
    ]
    batch = batch_with(records, compression=compression)
    read = aiokafka_reads(batch, 0)
    assert read == [
        (0, T0, b"k", b"v" * 200, [(b"a", b"1"), (b"b", None)]),
        (1, T0 + 5, None, None, []),
    ]
    assert fields(parse(batch)) == read
    bad = batch_with([RawRecord(b"k", b"v", [(b"\xff\xfe", b"x")])], compression=compression)
    assert parse(bad).records[0].headers == ((b"\xff\xfe", b"x"),)


# -- never raises -------------------------------------------------------------------------

bytes_or_none = st.none() | st.binary(max_size=40)
appended = st.tuples(
    bytes_or_none,
    bytes_or_none,
    st.lists(st.tuples(st.text(max_size=8), bytes_or_none), max_size=3),
)
batches = st.lists(
    st.tuples(st.lists(appended, min_size=1, max_size=5), st.sampled_from([0, *CODECS.values()])),
    min_size=1,
    max_size=3,
)


def joined(drawn: list[tuple[list[Appended], int]]) -> bytes:
    data, offset = b"", 0
    for records, codec in drawn:
        data += build(records, codec=codec, base_offset=offset)
        offset += len(records)
    return data


def check_invariants(parsed: Parsed, start: int) -> None:
    assert parsed.next_offset >= start
    assert all(start <= r.offset < parsed.next_offset for r in parsed.records)


@given(batches, st.integers(0, 20))
def test_any_batches_read_as_aiokafka_reads(
    drawn: list[tuple[list[Appended], int]], start: int
) -> None:
    data = joined(drawn)
    parsed = parse(data, start)
    assert fields(parsed) == aiokafka_reads(data, start)
    check_invariants(parsed, start)


@given(batches, st.integers(0, 20), st.data())
def test_truncated_batches_never_raise(
    drawn: list[tuple[list[Appended], int]], start: int, data: st.DataObject
) -> None:
    whole = joined(drawn)
    cut = data.draw(st.integers(0, len(whole)))
    check_invariants(parse(whole[:cut], start), start)


@given(batches, st.integers(0, 20), st.data())
def test_mutated_batches_never_raise(
    drawn: list[tuple[list[Appended], int]], start: int, data: st.DataObject
) -> None:
    mutated = bytearray(joined(drawn))
    for _ in range(data.draw(st.integers(1, 8))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    check_invariants(parse(bytes(mutated), start), start)


@given(st.lists(appended, min_size=1, max_size=5), st.data())
def test_mutated_records_behind_a_right_crc_never_raise(
    records: list[Appended], data: st.DataObject
) -> None:
    # With the CRC made right again the mutations reach the record parser, not only the CRC.
    batch = build(records)
    body = bytearray(batch[ATTRIBUTES_AT:])
    for _ in range(data.draw(st.integers(1, 6))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    check_invariants(parse(with_crc(batch[:ATTRIBUTES_AT] + bytes(body))), 0)


@given(st.binary(max_size=300), st.integers(0, 5))
def test_any_bytes_never_raise(data: bytes, start: int) -> None:
    check_invariants(parse(data, start), start)
