"""`ccc-bridge dlq`: read the dead-letter topics (`show`) and send letters whose cause was
transient back to where they came from (`replay`). docs/dead-letters.md has the rules.

A letter is named by where it is, `<dlq topic>:<partition>:<offset>` (its DLQ_ID): that
names every record of a DLQ topic, unreadable ones too, and finds it with one fetch.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Self

from aiokafka import AIOKafkaClient, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError, RecordTooLargeError
from pydantic import ValidationError

from service.commands import dead_letters as command_letters
from service.commands.dead_letters import DeadLetter
from service.console import (
    StartupError,
    add_config_argument,
    kafka_failure,
    quiet_kafka_logs,
    say,
    settings_from,
    startup_failed,
)
from service.kafka.connection import client_options
from service.kafka.consumer import Consumer, Subscription
from service.kafka.dead_letters import KeptRecord
from service.kafka.raw import fetch_raw
from service.kafka.records import Header, Record
from service.kafka.settings import KafkaSettings, TopicSettings
from service.kafka.topics import COMMAND_TOPICS, EVENT_TOPICS
from service.validation import field_errors
from service.webhooks import core as webhook_letters
from service.webhooks.core import WebhookDeadLetter

EXIT_REFUSED = 1  # some letter was not replayed: the lines say which and why
DlqName = Literal["commands", "webhooks"]
DLQ_TOPICS: dict[DlqName, str] = {"commands": "command_dlq", "webhooks": "webhook_dlq"}
# Where a letter may send its record back: a letter is data anyone able to write the DLQ
# could have forged, and must not reach the ledger or the checkpoints.
REPLAY_TOPICS: dict[DlqName, tuple[str, ...]] = {
    "commands": tuple(COMMAND_TOPICS.values()),
    "webhooks": (*EVENT_TOPICS, "command_results"),  # what webhooks carry
}
FIRST_READ_BYTES = 1 << 20
MAX_READ_BYTES = 64 << 20  # a batch larger than this is not read for one record
PREVIEW_BYTES = 80  # of an unreadable record's value
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Letter = DeadLetter | WebhookDeadLetter


# -- what a DLQ record is, without I/O ---------------------------------------------------------


def dlq_id(record: Record) -> str:
    return f"{record.topic}:{record.partition}:{record.offset}"


def parse_dlq_id(text: str) -> tuple[str, int, int]:
    """`<topic>:<partition>:<offset>` (topic names hold no colon); ValueError if not."""
    topic, _, rest = text.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if not topic or not partition.isdigit() or not rest.isdigit():
        raise ValueError(f"{text!r} is not a DLQ_ID (<topic>:<partition>:<offset>)")
    return topic, int(partition), int(rest)


def parse_since(text: str, now: datetime) -> datetime:
    """An RFC 3339 time (UTC unless it says), or a span back from `now`: 90s, 30m, 2h, 7d."""
    unit = DURATION_UNITS.get(text[-1:])
    if unit is not None and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * unit)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time (2024-05-01T12:00Z) nor a span (2h)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def read_letter(dlq: DlqName, record: Record) -> Letter:
    """The letter a DLQ record holds; ValueError saying why when it holds none."""
    if record.defect is not None:
        raise ValueError(record.defect)
    if record.value is None:
        raise ValueError("no value (a tombstone)")
    model = DeadLetter if dlq == "commands" else WebhookDeadLetter
    try:
        return model.model_validate_json(record.value)
    except ValidationError as error:
        raise ValueError(f"not a {dlq} dead letter: {field_errors(error)}") from None


def replayable(letter: Letter) -> tuple[bool, str]:
    if isinstance(letter, DeadLetter):
        return command_letters.replayable(letter)
    return webhook_letters.replayable(letter)


def visible(text: str) -> str:
    """`text` safe on a terminal: a letter quotes its record's bytes, which anyone could have
    produced, escapes included."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def preview(data: bytes | None) -> str:
    if data is None:
        return "none"
    shown = visible(data[:PREVIEW_BYTES].decode(errors="backslashreplace"))
    return f"{len(data)} bytes {shown!r}" + ("..." if len(data) > PREVIEW_BYTES else "")


def describe(dlq: DlqName, record: Record) -> Iterator[str]:
    """The lines `dlq show` prints for one DLQ record."""
    name = dlq_id(record)
    try:
        letter = read_letter(dlq, record)
    except ValueError as error:
        yield f"{name}  unreadable: {visible(str(error))}"
        yield f"  key {preview(record.key)}, value {preview(record.value)}"
        return
    can, why = replayable(letter)
    if isinstance(letter, DeadLetter):
        at, what = letter.rejected_at, f"command {visible(str(letter.command_id))}"
    else:
        at, what = letter.dead_at, f"webhook {visible(letter.endpoint)}"
    verdict = "replayable" if can else "not replayable"
    yield f"{name}  {at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}  {what}  {verdict}: {why}"
    yield f"  reason: {visible(letter.reason)}"
    yield f"  source: {_source(letter.record)}"
    if isinstance(letter, WebhookDeadLetter) and letter.event_id is not None:
        event = f"{visible(letter.event_id)} {visible(str(letter.event_type))}"
        yield f"  event:  {event}, {letter.attempts} attempts"


def _source(kept: KeptRecord) -> str:
    key = _kept_bytes(kept.key_base64)
    shown = "no key" if key is None else f"key {visible(key.decode(errors='backslashreplace'))!r}"
    value = "a tombstone" if kept.value_bytes is None else f"value {kept.value_bytes} bytes"
    cut = f" (the letter keeps the start of: {', '.join(kept.cut)})" if kept.cut else ""
    where = f"{visible(kept.topic)}:{kept.partition}:{kept.offset}"
    return f"{where}  {shown}, {value}, {kept.headers_count} headers{cut}"


def _kept_bytes(encoded: str | None) -> bytes | None:
    return None if encoded is None else base64.b64decode(encoded)


@dataclass(frozen=True, slots=True)
class Original:
    """The record a letter stands for, as it is to be produced again."""

    topic: str
    partition: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def original(kept: KeptRecord, found: Record | None) -> Original:
    """The record to produce again: the letter's bytes when it kept them whole, else the
    original still on its topic (`found`), if it is the one the letter kept the start of.
    ValueError saying why it cannot be produced again."""
    key, value = _kept_bytes(kept.key_base64), _kept_bytes(kept.value_base64)
    headers: list[Header] = [
        (base64.b64decode(name), _kept_bytes(data)) for name, data in kept.headers_base64
    ]
    if kept.cut:
        if found is None:
            raise ValueError(
                f"the letter keeps only the start of its record ({', '.join(kept.cut)}), and "
                f"the record is no longer at {kept.topic}:{kept.partition}:{kept.offset}"
            )
        if not _starts(found, key, value, headers) or found.defect is not None:
            raise ValueError(
                f"the record at {kept.topic}:{kept.partition}:{kept.offset} is not the one "
                "the letter kept the start of"
            )
        key, value, headers = found.key, found.value, list(found.headers)
    if value is None:
        raise ValueError("a tombstone: there is nothing to send again")
    try:
        named = [(name.decode(), data or b"") for name, data in headers]
    except UnicodeDecodeError:
        raise ValueError("a header name is not UTF-8: no Kafka client sends it") from None
    return Original(kept.topic, kept.partition, kept.timestamp_ms, key, value, named)


def _starts(found: Record, key: bytes | None, value: bytes | None, headers: list[Header]) -> bool:
    return (
        (key is None) == (found.key is None)
        and (found.key or b"").startswith(key or b"")
        and (value is None) == (found.value is None)
        and (found.value or b"").startswith(value or b"")
        and list(found.headers[: len(headers)]) == headers
    )


# -- the commands --------------------------------------------------------------------------


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "dlq",
        help="show dead letters, or replay those whose cause was transient",
        description="The dead-letter topics of commands and webhooks (docs/dead-letters.md).",
    )
    actions = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="print dead letters with their reason and source",
        description="Print every dead letter (oldest first per partition) with its DLQ_ID, "
        "reason, source record and whether it may be replayed; records that are no dead "
        "letter are printed as unreadable.",
    )
    show.add_argument(
        "--topic",
        choices=tuple(DLQ_TOPICS),
        help="one dead-letter topic (default: both)",
    )
    show.add_argument(
        "--since",
        metavar="T",
        help="only letters written since T: an RFC 3339 time or a span back (30m, 2h, 7d)",
    )
    add_config_argument(show)
    show.set_defaults(func=run_show)
    replay = actions.add_parser(
        "replay",
        help="produce dead letters' original records to their topic again",
        description="Produce the record each letter stands for (key, value, headers, "
        "timestamp) to its original topic and partition. Letters whose cause was not "
        "transient are refused unless --force.",
    )
    replay.add_argument(
        "--id",
        dest="ids",
        metavar="DLQ_ID",
        nargs="+",
        required=True,
        help="letters as `dlq show` names them: <topic>:<partition>:<offset>",
    )
    replay.add_argument(
        "--force",
        action="store_true",
        help="replay letters whose cause was not transient too (invalid, refused)",
    )
    add_config_argument(replay)
    replay.set_defaults(func=run_replay)


async def run_show(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        since = None if args.since is None else parse_since(args.since, datetime.now(UTC))
    except (StartupError, ValueError) as error:
        return startup_failed("dlq show", error)
    names = [args.topic] if args.topic else list(DLQ_TOPICS)
    by_topic = {settings.topics.name(DLQ_TOPICS[name]): name for name in names}
    since_ms = None if since is None else since.timestamp() * 1000
    shown = 0

    async def show(record: Record) -> bool:
        nonlocal shown
        if since_ms is None or (record.timestamp_ms or 0) >= since_ms:
            for line in describe(by_topic[record.topic], record):
                say(line)
            shown += 1
        return True

    subscription = Subscription(
        tuple(by_topic), start_from="earliest", ordered_by=None, to_end=True
    )
    with quiet_kafka_logs():
        try:
            await Consumer(settings.kafka, subscription, show, name="dlq").run(asyncio.Event())
        except KafkaError as error:
            return startup_failed("dlq show", kafka_failure(settings.kafka, error))
    sys.stderr.write(f"{shown} dead letters in {', '.join(by_topic)}\n")
    return 0


async def run_replay(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        wanted = [parse_dlq_id(text) for text in args.ids]
    except (StartupError, ValueError) as error:
        return startup_failed("dlq replay", error)
    with quiet_kafka_logs():
        try:
            async with _Replayer(settings.kafka, settings.topics, force=args.force) as replayer:
                done = [await replayer.replay(*where) for where in wanted]
        except KafkaError as error:
            return startup_failed("dlq replay", kafka_failure(settings.kafka, error))
    return 0 if all(done) else EXIT_REFUSED


class _Replayer:
    """A raw client to read single records by offset, and a producer of its own: replay
    writes records as their first producer wrote them (their headers, partition and
    timestamp), which the service's producer, stamping its own header, never does."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, *, force: bool) -> None:
        self._client = AIOKafkaClient(**client_options(kafka))
        self._producer = AIOKafkaProducer(**client_options(kafka), acks="all")
        self._force = force
        self._dlqs = {topics.name(topic): name for name, topic in DLQ_TOPICS.items()}
        self._targets = {
            name: {topics.name(topic) for topic in allowed}
            for name, allowed in REPLAY_TOPICS.items()
        }

    async def __aenter__(self) -> Self:
        try:
            await self._client.bootstrap()
            await self._producer.start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()
        await self._client.close()

    async def replay(self, topic: str, partition: int, offset: int) -> bool:
        """One letter's record produced again; False (and why, printed) if it was not."""
        name = f"{topic}:{partition}:{offset}"
        try:
            again, why = await self._prepare(topic, partition, offset)
        except ValueError as refusal:
            say(f"refused {name}: {refusal}")
            return False
        sent = await self._producer.send_and_wait(
            again.topic,
            again.value,
            key=again.key,
            partition=again.partition,
            timestamp_ms=again.timestamp_ms,
            headers=again.headers,
        )
        say(f"replayed {name} ({why}) to {sent.topic}:{sent.partition}:{sent.offset}")
        return True

    async def _prepare(self, topic: str, partition: int, offset: int) -> tuple[Original, str]:
        """The record to produce again and why it may be; ValueError saying why not."""
        dlq = self._dlqs.get(topic)
        if dlq is None:
            raise ValueError(f"{topic} is not a dead-letter topic ({', '.join(self._dlqs)})")
        record = await self._read(topic, partition, offset)
        if record is None:
            raise ValueError("no such record (never written, or past the topic's retention)")
        try:
            letter = read_letter(dlq, record)
        except ValueError as error:
            raise ValueError(f"unreadable: {visible(str(error))}") from None
        kept = letter.record
        if kept.topic not in self._targets[dlq]:
            raise ValueError(f"its record's topic {visible(kept.topic)} is not one {dlq} read")
        can, why = replayable(letter)
        if not can and not self._force:
            raise ValueError(f"{why} (--force replays it anyway)")
        found = await self._read(kept.topic, kept.partition, kept.offset) if kept.cut else None
        return original(kept, found), why

    async def _read(self, topic: str, partition: int, offset: int) -> Record | None:
        """The record at `offset`, or None where there is none (any more)."""
        tp = TopicPartition(topic, partition)
        max_bytes = FIRST_READ_BYTES
        while True:
            try:
                parsed = await fetch_raw(self._client, tp, offset, max_bytes=max_bytes)
            except OffsetOutOfRangeError:
                return None
            except RecordTooLargeError:
                if max_bytes >= MAX_READ_BYTES:
                    raise
                max_bytes *= 4
                continue
            return next((r for r in parsed.records if r.offset == offset), None)
