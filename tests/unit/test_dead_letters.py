"""What a dead letter keeps of its record, and that every letter fits one Kafka record: fair
shares of the room, cut parts flagged, and a smaller letter for a broker that refuses one."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from service.commands.dead_letters import DeadLetter
from service.commands.models import CommandError, CommandResult, FieldError
from service.commands.worker import _fitting
from service.kafka.acked import send_dead_letter
from service.kafka.dead_letters import (
    MAX_LETTER_KEY,
    SMALLER_ROOM,
    KeptRecord,
    Size,
    keep,
    shares,
)
from service.kafka.producer import OutRecord, RecordTooLargeError
from service.kafka.records import Record
from tests.samples import command_result

MB = 1_000_000
AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@given(room=st.integers(0, 10_000), wants=st.lists(st.integers(0, 10_000), max_size=5))
def test_shares_are_max_min_fair(room: int, wants: list[int]) -> None:
    given_ = shares(room, wants)
    assert sum(given_) <= room
    assert all(0 <= got <= want for got, want in zip(given_, wants, strict=True))
    if sum(wants) <= room:
        assert given_ == wants
    for got, want in zip(given_, wants, strict=True):
        if got < want:  # cut: nobody else got more than it
            assert max(given_) <= got + 1


def record(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[bytes, bytes]]
) -> Record:
    return Record("ccc.commands.dial", 3, 17, 1_764_000_000_000, key, value, tuple(headers))


def test_what_fits_is_kept_whole() -> None:
    kept = keep(record(b"c-1", b"{}", [(b"h", b"v"), (b"\xff", b"")]), 10_000)
    assert kept.cut == []
    assert base64.b64decode(kept.key_base64 or "") == b"c-1"
    assert base64.b64decode(kept.value_base64 or "") == b"{}"
    assert kept.headers_base64 == [("aA==", "dg=="), ("/w==", "")]
    assert (kept.key_bytes, kept.value_bytes, kept.headers_count) == (3, 2, 2)


def test_a_big_value_is_cut_without_cutting_a_small_key() -> None:
    value = b"x" * 100_000
    kept = keep(record(b"c-1", value, []), 1000)
    assert kept.cut == ["value"]
    assert base64.b64decode(kept.key_base64 or "") == b"c-1"
    start = base64.b64decode(kept.value_base64 or "")
    assert value.startswith(start)
    assert 0 < len(kept.value_base64 or "") <= 1000


def test_headers_are_kept_whole_or_not_at_all_in_order() -> None:
    headers = [(b"a", b"1" * 300), (b"b", b"2" * 3000), (b"c", b"3")]
    kept = keep(record(None, None, headers), 1000)
    assert kept.cut == ["headers"]
    assert [base64.b64decode(name) for name, _ in kept.headers_base64] == [b"a"]
    assert kept.headers_count == 3
    assert (kept.key_base64, kept.value_base64) == (None, None)  # no key, a tombstone


class FakeSink:
    """Takes records up to `limit` bytes of value, as a broker with that limit would."""

    def __init__(self, room: int, broker_limit: int | None = None) -> None:
        self._room = room
        self._broker_limit = broker_limit
        self.sent: list[OutRecord] = []

    def room(self, key: bytes | None) -> int:
        return self._room - len(key or b"")

    async def send_all(self, records: Sequence[OutRecord]) -> None:
        for out in records:
            if self._broker_limit is not None and len(out.value) > self._broker_limit:
                raise RecordTooLargeError("refused for its size")
        self.sent += records


async def test_a_letter_for_a_hostile_record_fits_the_limit() -> None:
    hostile = record(b"k" * MB, b"v" * MB, [(b"h" * 1000, b"x" * MB)])
    sink = FakeSink(MB)

    def letter(kept: KeptRecord, size: Size) -> DeadLetter:
        errors = [FieldError(field="x" * 5000, reason="r" * 5000)] * 20
        return DeadLetter(
            dlq_id="d-1",
            reason="r" * 100_000,
            errors=errors if size == "whole" else [],
            command_id=None,
            rejected_at=AT,
            record=kept,
        )

    assert await send_dead_letter(sink, "dlq", hostile, letter, asyncio.Event())
    (out,) = sink.sent
    assert out.key == b"k" * MAX_LETTER_KEY
    assert len(out.value) <= sink.room(out.key)
    assert len(out.value) > MB // 2  # the room left is used, not wasted
    document = json.loads(out.value)
    assert document["record"]["cut"] == ["key", "value", "headers"]
    assert document["record"]["value_bytes"] == MB
    assert all(len(e["reason"]) < 600 and len(e["field"]) < 300 for e in document["errors"])


async def test_a_letter_the_broker_refuses_for_its_size_goes_again_smaller() -> None:
    hostile = record(b"c-1", b"v" * 500_000, [])
    sink = FakeSink(MB, broker_limit=200_000)

    def letter(kept: KeptRecord, size: Size) -> DeadLetter:
        errors = [FieldError(field="callee", reason="not a phone number")]
        return DeadLetter(
            dlq_id="d-1",
            reason="callee: not a phone number",
            errors=errors if size == "whole" else [],
            command_id="c-1",
            rejected_at=AT,
            record=kept,
            dropped=[] if size == "whole" else ["errors"],
        )

    assert await send_dead_letter(sink, "dlq", hostile, letter, asyncio.Event())
    (out,) = sink.sent
    document = json.loads(out.value)
    assert document["dropped"] == ["errors"]
    assert document["errors"] == []
    assert document["record"]["cut"] == ["value"]
    assert base64.b64decode(document["record"]["key_base64"]) == b"c-1"
    assert 0 < len(document["record"]["value_base64"]) <= SMALLER_ROOM
    assert document["reason"] == "callee: not a phone number"


async def test_a_result_the_broker_refuses_for_its_size_goes_again_smaller() -> None:
    big = command_result(
        metadata={"blob": "x" * 50_000},
        status="rejected",
        error=CommandError(
            code="InvalidCommand",
            message="m" * 5000,
            fields=[FieldError(field="callee", reason="r" * 400)],
        ),
    )
    sent: list[CommandResult] = []

    async def send(result: CommandResult) -> bool:
        if len(result.model_dump_json()) > 10_000:
            raise RecordTooLargeError("refused for its size")
        sent.append(result)
        return True

    assert await _fitting(send, big) == (True, sent[0])
    (went,) = sent
    assert went.dropped == ["metadata", "error.fields"]
    assert went.metadata == {}
    assert went.error is not None
    assert went.error.fields == []
    assert went.error.message == "m" * 1024
    assert (went.command_id, went.status, went.source) == (big.command_id, "rejected", big.source)
