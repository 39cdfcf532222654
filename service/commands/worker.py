"""Command workers: a handler on the consumer runtime (service/kafka/consumer.py), in a group
over the command topics, executing each command through CCC at most once and answering
every message with one result or DLQ record.

For each message, in this order:
1. read, parse and validate; a bad one goes to the DLQ (and gets a `rejected` result when
   its command id can be read);
2. the at-most-once decision (service/commands/decision.py) from the ledger entry of its
   command id and the clock: execute, expired, the same result again, `duplicate`, or
   `indeterminate` for a call its worker died in;
3. executed: written `started` to the ledger (and acknowledged) before CCC is called, then
   `done` with the result;
4. the result is published, and only then is the message done (its offset committable).

Every step's records have ids derived from the message's topic, partition and offset, so a
message redelivered after a crash is answered with the same ids again. Every record written
fits kafka.max_record_bytes: dead letters keep what fits of the message, and a result or
letter the broker still refuses for its size is written smaller, never retried as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

import structlog
from aiokafka import TopicPartition

from service.ccc.budget import calling_as
from service.ccc.errors import CccError
from service.cloudevents import Emitted, Publisher, event_id
from service.commands.dead_letters import (
    DEAD_LETTER,
    INTERNAL_ERROR,
    PARSER_FAILED,
    UNREADABLE,
    DeadLetter,
)
from service.commands.decision import (
    Duplicate,
    Execute,
    Expired,
    Interrupted,
    Replay,
    decide,
    interrupted,
)
from service.commands.execute import ccc_request, from_error, succeeded
from service.commands.ledger import Entry, Ledger
from service.commands.models import (
    KINDS,
    Command,
    CommandError,
    CommandKind,
    CommandResult,
    CommandSource,
    FieldError,
    InvalidCommandError,
    Limits,
    Outcome,
    parse_command,
)
from service.kafka.acked import send_dead_letter, until_acked
from service.kafka.consumer import Consumer, Subscription
from service.kafka.dead_letters import KeptRecord, Size
from service.kafka.producer import Producer, RecordTooLargeError
from service.kafka.records import Record
from service.kafka.topics import COMMAND_TOPICS
from service.metrics import COMMAND_LAG, COMMANDS, LEDGER_ENTRIES
from service.settings import Settings

log = structlog.get_logger(__name__)


class Ccc(Protocol):
    async def call(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_attempt: Callable[[], None] | None = None,
    ) -> Any: ...


def now() -> datetime:
    return datetime.now(UTC)


def by_command(record: Record) -> tuple[int, bytes | None]:
    """Messages of one command id run one after another, in offset order, whichever command
    topic they are on: a valid command's key is its id, whose ledger entries are on its
    partition number."""
    return record.partition, record.key


class CommandWorker:
    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        ccc: Ccc,
        publisher: Publisher,
        ccc_up: Callable[[asyncio.Event], Awaitable[bool]] | None = None,
    ) -> None:
        """`ccc_up` waits until CCC answers (True) or the event is set (False); a command
        waits on it before it begins, so an outage fails nothing and runs nothing late
        that expired meanwhile."""
        topics = settings.topics
        commands = settings.commands
        self._settings = settings
        self._producer = producer
        self._ccc = ccc
        self._publisher = publisher
        self._ccc_up = ccc_up
        self._kinds: dict[str, CommandKind] = {
            topics.name(COMMAND_TOPICS[kind]): kind for kind in KINDS
        }
        self._dlq = topics.name("command_dlq")
        self._instances = frozenset(settings.ccc.instances)
        self._limits = Limits.of(commands)
        self._ledger = Ledger(
            producer,
            settings.kafka,
            topics.name("ledger"),
            retention_ms=topics.ledger_retention_ms,
            warn_bytes=commands.ledger_warn_bytes,
        )
        LEDGER_ENTRIES.set_function(self._ledger.size)
        self._calls = asyncio.Semaphore(commands.concurrency)
        self._starting = asyncio.Semaphore(commands.concurrency)
        subscription = Subscription(
            tuple(self._kinds),
            group_id=commands.group_id,
            start_from=commands.start_from,
            # Co-partitioned: partition p of every command topic goes to one member, which
            # then owns partition p of the ledger too.
            assignor="range",
            session_timeout_ms=commands.session_timeout_ms,
            fetch_max_wait_ms=commands.fetch_max_wait_ms,
            max_in_flight=commands.max_in_flight,
            commit_interval_s=commands.commit_interval_s,
            ordered_by=by_command,
        )
        self._consumer = Consumer(
            settings.kafka,
            subscription,
            self._handle,
            name="commands",
            rebalance=self,
            on_lag=_gauge_lag,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; commands in flight then finish and are committed."""
        calling_as("commands")  # first in the CCC budget, for every handler task started here
        await self._consumer.run(stop)

    def assignment_problem(self) -> str | None:
        """For /readyz: None while this worker holds its assignment (its ledger loaded)."""
        return self._consumer.assignment_problem()

    async def assigned(self, partitions: frozenset[TopicPartition]) -> None:
        await self._ledger.load({tp.partition for tp in partitions})

    async def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self._ledger.forget({tp.partition for tp in partitions})

    # -- answering one message -------------------------------------------------------

    async def _handle(self, record: Record) -> bool:
        """True once the message's result (or DLQ record) is acknowledged."""
        halt = self._consumer.halt  # this assignment's: set on revocation and at stop
        source = CommandSource(topic=record.topic, partition=record.partition, offset=record.offset)
        parsed = self._parse(record)
        try:
            if isinstance(parsed, InvalidCommandError):
                return await self._reject(source, record, parsed, halt)
            return await self._answer(source, record, parsed, halt)
        except RecordTooLargeError:
            raise  # even written smaller, refused: a broker limit too small to serve
        except Exception as error:  # a bug must not stop the worker or lose the message
            log.exception("command_failed_internally", topic=record.topic, offset=record.offset)
            failure = InvalidCommandError(
                [FieldError(field="", reason=f"{INTERNAL_ERROR}: {error!r}")]
            )
            return await self._reject(source, record, failure, halt)

    def _parse(self, record: Record) -> Command | InvalidCommandError:
        if record.defect is not None:
            reason = f"{UNREADABLE}: {record.defect}"
            return InvalidCommandError([FieldError(field="", reason=reason)])
        try:
            kind = self._kinds[record.topic]
            command = parse_command(kind, record.value, self._instances, self._limits)
        except InvalidCommandError as invalid:
            return invalid
        except Exception as error:  # a parser bug must not stop the worker: dead-letter it
            log.exception("command_parse_failed", topic=record.topic, offset=record.offset)
            return InvalidCommandError([FieldError(field="", reason=f"{PARSER_FAILED}: {error!r}")])
        if record.key != command.command_id.encode():
            reason = (
                "the Kafka key must be the command_id: it keeps every copy of a command on "
                "one partition, where its ledger entries are"
            )
            return InvalidCommandError(
                [FieldError(field="key", reason=reason)],
                command.command_id,
                command.instance_id,
                command.metadata,
            )
        return command

    async def _answer(
        self, source: CommandSource, record: Record, command: Command, halt: asyncio.Event
    ) -> bool:
        if self._ccc_up is not None and not await self._ccc_up(halt):
            return False  # stopping or revoked while CCC was away: read again later
        received_at = now()
        decision = decide(
            self._ledger.get(source.partition, command.command_id),
            command,
            source,
            timestamp_ms=record.timestamp_ms,
            now=received_at,
            default_expiry_s=self._settings.commands.default_expiry_s,
        )
        match decision:
            case Execute():
                return await self._execute(source, command, received_at, halt)
            case Expired():
                outcome = Outcome(
                    status="expired",
                    error=CommandError(code="Expired", message="it expired before it could run"),
                    completed_at=now(),
                )
                return await self._publish(
                    self._result(source, command, received_at, outcome), halt
                )
            case Replay(result):
                # In the ledger, then the worker died before the result went out: the same
                # result again, with the same id.
                return await self._publish(result, halt)
            case Interrupted(action):
                result = self._result(source, command, received_at, interrupted(action, now()))
                return await self._finish(action, result, halt)
            case Duplicate(original):
                duplicate = Outcome(status="duplicate", completed_at=now())
                result = self._result(source, command, received_at, duplicate, original=original)
                return await self._publish(result, halt)

    async def _execute(
        self, source: CommandSource, command: Command, received_at: datetime, halt: asyncio.Event
    ) -> bool:
        action, params = ccc_request(command)
        attempts = 0

        def count() -> None:
            nonlocal attempts
            attempts += 1

        # Bounded both ways: at most `concurrency` commands are `started` and waiting for a
        # call slot, and `concurrency` calling, so a worker that dies leaves at most twice
        # that many to be answered `indeterminate`. Writing `started` while others call
        # keeps the calls going (bench/commands.py).
        async with self._starting:
            if halt.is_set():
                return False  # stopping or revoked: not begun, left to the next reader
            started = Entry(state="started", source=source, action=action)
            write = partial(self._ledger.write, command.command_id, started)
            if not await until_acked(write, halt):
                return False  # never started: the message is read again later
            await self._calls.acquire()
        try:
            response = await self._ccc.call(action, params, on_attempt=count)
        except CccError as error:
            outcome = from_error(action, error, now())
        else:
            outcome = succeeded(action, response, attempts, now())
        finally:
            self._calls.release()
        log.info(
            "command_executed",
            command_id=command.command_id,
            action=action,
            status=outcome.status,
            attempts=outcome.attempts,
        )
        return await self._finish(action, self._result(source, command, received_at, outcome), halt)

    async def _finish(self, action: str | None, result: CommandResult, halt: asyncio.Event) -> bool:
        """The outcome into the ledger, then the result out. In that order: a crash between
        the two repeats this result, not a new one."""

        async def write(result: CommandResult) -> bool:
            done = Entry(state="done", source=result.source, action=action, result=result)
            return await until_acked(partial(self._ledger.write, result.command_id, done), halt)

        written, result = await _fitting(write, result)
        return written and await self._publish(result, halt)

    def _result(
        self,
        source: CommandSource,
        command: Command | InvalidCommandError,
        received_at: datetime,
        outcome: Outcome,
        *,
        original: Outcome | None = None,
    ) -> CommandResult:
        metadata = command.metadata
        return CommandResult(
            instance_id=command.instance_id,
            command_id=command.command_id or "",  # a rejected one without is not answered
            kind=self._kinds[source.topic],
            **dict(outcome),  # its fields as they are: dumped, they would be validated again
            received_at=received_at,
            latency_ms=round((outcome.completed_at - received_at).total_seconds() * 1000, 3),
            metadata=metadata or {},
            source=source,
            original=original,
        )

    async def _publish(self, result: CommandResult, halt: asyncio.Event) -> bool:
        source = result.source
        identifier = event_id(result.event_type, source.topic, source.partition, source.offset)

        async def send(result: CommandResult) -> bool:
            emitted = Emitted(identifier, result.completed_at, result)
            return await until_acked(partial(self._publisher.publish, [emitted]), halt)

        sent, result = await _fitting(send, result)
        if sent:
            COMMANDS.labels(result.kind, result.status).inc()
        return sent

    async def _reject(
        self,
        source: CommandSource,
        record: Record,
        invalid: InvalidCommandError,
        halt: asyncio.Event,
    ) -> bool:
        """The DLQ record, and a `rejected` result when the command id could be read."""
        at = now()
        reason = str(invalid)
        log.warning("command_rejected", topic=source.topic, offset=source.offset, reason=reason)

        def letter(kept: KeptRecord, size: Size) -> DeadLetter:
            return DeadLetter(
                dlq_id=event_id(DEAD_LETTER, source.topic, source.partition, source.offset),
                reason=reason,
                errors=invalid.errors if size == "whole" else [],
                command_id=invalid.command_id,
                rejected_at=at,
                record=kept,
                dropped=[] if size == "whole" else ["errors"],
            )

        if not await send_dead_letter(self._producer, self._dlq, record, letter, halt):
            return False
        if invalid.command_id is None:
            return True
        outcome = Outcome(
            status="rejected",
            error=CommandError(code="InvalidCommand", message=reason, fields=invalid.errors),
            completed_at=at,
        )
        return await self._publish(self._result(source, invalid, at, outcome), halt)


async def _fitting(
    send: Callable[[CommandResult], Awaitable[bool]], result: CommandResult
) -> tuple[bool, CommandResult]:
    """`send(result)`, or of its smaller form when a broker refuses it for its size; whether
    it was acknowledged, and the result that went."""
    try:
        return await send(result), result
    except RecordTooLargeError:
        smaller = result.smaller()
        return await send(smaller), smaller


def _gauge_lag(lag: Mapping[str, int]) -> None:
    for topic, behind in lag.items():
        COMMAND_LAG.labels(topic).set(behind)
