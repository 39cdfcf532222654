"""Command workers: consume the command topics in a consumer group and execute each
command through CCC at most once, answering every message with one result or DLQ record.

For each message, in this order:
1. parse and validate; a bad one goes to the DLQ (and gets a `rejected` result when its
   command id can be read);
2. look its command id up in the ledger: the message that produced a known outcome gets
   that result again, another message a `duplicate` result, and a `started` with no
   outcome (a crash mid-call) an `indeterminate` one, all without calling CCC;
3. expired commands get `expired`; the rest are written `started` to the ledger (and
   acknowledged) before CCC is called, then `done` with the result;
4. the result is published, and only then may the offset be committed.

Every step's records have ids derived from the message's topic, partition and offset, so a
message redelivered after a crash is answered with the same ids again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from service.ccc.errors import CccError
from service.cloudevents import Emitted, Publisher, event_id
from service.commands.dead_letters import DEAD_LETTER, DeadLetter
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
    Outcome,
    parse_command,
)
from service.kafka.acked import until_acked
from service.kafka.connection import client_options
from service.kafka.dead_letters import b64, kept_bytes
from service.kafka.offsets import Offsets
from service.kafka.producer import OutRecord, Producer
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


class CommandWorker(ConsumerRebalanceListener):  # type: ignore[misc] # untyped base
    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        ccc: Ccc,
        publisher: Publisher,
    ) -> None:
        topics = settings.topics
        self._settings = settings
        self._producer = producer
        self._ccc = ccc
        self._publisher = publisher
        self._kinds: dict[str, CommandKind] = {
            topics.name(COMMAND_TOPICS[kind]): kind for kind in KINDS
        }
        self._dlq = topics.name("command_dlq")
        self._instances = frozenset(settings.ccc.instances)
        self._ledger = Ledger(producer, settings.kafka, topics.name("ledger"))
        LEDGER_ENTRIES.set_function(self._ledger.size)
        self._offsets = Offsets()
        self._owned: set[TopicPartition] = set()  # assigned, with their ledger loaded
        self._generation = 0  # assignments so far: records fetched in an older one are stale
        self._ledger_loaded = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.commands.max_in_flight)
        self._calls = asyncio.Semaphore(settings.commands.concurrency)
        self._starting = asyncio.Semaphore(settings.commands.concurrency)
        # Each message's task, with its command's key (None for an invalid one).
        self._tasks: dict[asyncio.Task[None], tuple[int, str] | None] = {}
        self._last: dict[tuple[int, str], asyncio.Task[None]] = {}  # per command id: its latest
        self._commit_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._stop = asyncio.Event()

    # -- the consumer loop -----------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; commands in flight then finish and are committed."""
        self._stop = stop
        commands = self._settings.commands
        consumer = self._consumer = AIOKafkaConsumer(
            **client_options(self._settings.kafka),
            group_id=commands.group_id,
            enable_auto_commit=False,
            auto_offset_reset=commands.start_from,
            # Co-partitioned: partition p of every command topic goes to one member, which
            # then owns partition p of the ledger too.
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=commands.session_timeout_ms,
            heartbeat_interval_ms=commands.session_timeout_ms // 3,
            fetch_max_wait_ms=commands.fetch_max_wait_ms,
        )
        consumer.subscribe(list(self._kinds), listener=self)
        committer = asyncio.create_task(self._commit_every(commands.commit_interval_s))
        try:
            await consumer.start()
            while not stop.is_set():
                generation = self._generation
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        await self._slots.acquire()  # backpressure: no fetch beyond the slots
                        if generation != self._generation:
                            # A rebalance since the fetch: these are read again, from here
                            # if the partition is still ours, else by its new owner.
                            self._slots.release()
                            if tp in consumer.assignment():
                                consumer.seek(tp, record.offset)
                            break
                        self._dispatch(tp, record)
            await self._drain()
            await self._commit()
        finally:
            # Only when cancelled (the service is going down on an error) is anything left:
            # commands cut off mid-call are `started` in the ledger, answered on restart.
            for task in (*self._tasks, committer):
                task.cancel()
            await asyncio.gather(*self._tasks, committer, return_exceptions=True)
            await consumer.stop()

    def _dispatch(self, tp: TopicPartition, record: Any) -> None:
        self._offsets.begin(tp, record.offset)
        parsed = self._parse(self._kinds[tp.topic], record)
        key = previous = None
        if not isinstance(parsed, InvalidCommandError):
            # Messages of one command id run one after another, in offset order.
            key = (tp.partition, parsed.command_id)
            previous = self._last.get(key)
        task = asyncio.create_task(self._handle(tp, record, parsed, previous))
        self._tasks[task] = key
        if key is not None:
            self._last[key] = task
        task.add_done_callback(self._finished)  # one callback: each is a turn of the loop

    def _finished(self, task: asyncio.Task[None]) -> None:
        key = self._tasks.pop(task)
        if key is not None and self._last.get(key) is task:
            del self._last[key]

    def _parse(self, kind: CommandKind, record: Any) -> Command | InvalidCommandError:
        try:
            command = parse_command(kind, record.value, self._instances)
        except InvalidCommandError as invalid:
            return invalid
        except Exception as error:  # a parser bug must not stop the worker: dead-letter it
            log.exception("command_parse_failed", topic=record.topic, offset=record.offset)
            return InvalidCommandError([FieldError(field="", reason=f"cannot be read: {error!r}")])
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

    async def _handle(
        self,
        tp: TopicPartition,
        record: Any,
        parsed: Command | InvalidCommandError,
        previous: asyncio.Task[None] | None,
    ) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])
            await self._ledger_loaded.wait()
            if tp not in self._owned:
                return  # revoked meanwhile: the new owner reads it from the last commit
            source = CommandSource(topic=tp.topic, partition=tp.partition, offset=record.offset)
            try:
                answered = await self._answer(source, record, parsed)
            except Exception as error:  # a bug must not stop the worker or lose the message
                log.exception("command_failed_internally", topic=tp.topic, offset=record.offset)
                failure = InvalidCommandError(
                    [FieldError(field="", reason=f"internal error: {error!r}")]
                )
                answered = await self._reject(source, record, failure)
            if answered:
                self._offsets.end(tp, record.offset)
        finally:
            self._slots.release()

    async def _drain(self) -> None:
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    # -- answering one message -------------------------------------------------------

    async def _answer(
        self, source: CommandSource, record: Any, parsed: Command | InvalidCommandError
    ) -> bool:
        """True once the message's result (or DLQ record) is acknowledged."""
        if isinstance(parsed, InvalidCommandError):
            return await self._reject(source, record, parsed)
        command = parsed
        received_at = now()
        entry = self._ledger.get(source.partition, command.command_id)
        if entry is None:
            if self._expired(command, record):
                outcome = Outcome(
                    status="expired",
                    error=CommandError(code="Expired", message="it expired before it could run"),
                    completed_at=now(),
                )
                return await self._publish(self._result(source, command, received_at, outcome))
            return await self._execute(source, command, received_at)
        if entry.result is not None:
            if entry.result.source == source:
                # In the ledger, then the worker died before the result went out: the same
                # result again, with the same id.
                return await self._publish(entry.result)
            original = entry.result.outcome()
        elif entry.source == source:
            # Being executed when the worker died: CCC may or may not have acted.
            result = self._result(source, command, received_at, _unknown(entry, now()))
            return await self._finish(entry.action, result)
        else:
            original = _unknown(entry, now())
        duplicate = Outcome(status="duplicate", completed_at=now())
        return await self._publish(
            self._result(source, command, received_at, duplicate, original=original)
        )

    async def _execute(
        self, source: CommandSource, command: Command, received_at: datetime
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
            if self._stop.is_set():
                return False  # stopping: not begun, so left to the next start (uncommitted)
            started = Entry(state="started", source=source, action=action)
            if not await self._acked(partial(self._ledger.write, command.command_id, started)):
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
        return await self._finish(action, self._result(source, command, received_at, outcome))

    async def _finish(self, action: str | None, result: CommandResult) -> bool:
        """The outcome into the ledger, then the result out. In that order: a crash between
        the two repeats this result, not a new one."""
        done = Entry(state="done", source=result.source, action=action, result=result)
        if not await self._acked(partial(self._ledger.write, result.command_id, done)):
            return False
        return await self._publish(result)

    async def _acked(self, send: Callable[[], Awaitable[None]]) -> bool:
        return await until_acked(send, self._stop)

    def _expired(self, command: Command, record: Any) -> bool:
        deadline = command.expires_at
        default_s = self._settings.commands.default_expiry_s
        if deadline is None and default_s is not None and record.timestamp is not None:
            deadline = datetime.fromtimestamp(record.timestamp / 1000, UTC) + timedelta(
                seconds=default_s
            )
        return deadline is not None and deadline <= now()

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

    async def _publish(self, result: CommandResult) -> bool:
        source = result.source
        emitted = Emitted(
            event_id(result.event_type, source.topic, source.partition, source.offset),
            result.completed_at,
            result,
        )
        if not await self._acked(partial(self._publisher.publish, [emitted])):
            return False
        COMMANDS.labels(result.kind, result.status).inc()
        return True

    async def _reject(
        self, source: CommandSource, record: Any, invalid: InvalidCommandError
    ) -> bool:
        """The DLQ record, and a `rejected` result when the command id could be read."""
        at = now()
        letter = DeadLetter(
            dlq_id=event_id(DEAD_LETTER, source.topic, source.partition, source.offset),
            reason=str(invalid),
            errors=invalid.errors,
            command_id=invalid.command_id,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            timestamp_ms=record.timestamp,
            **kept_bytes(record.key, record.value),
            headers=[(name, b64(value) or "") for name, value in record.headers or ()],
            rejected_at=at,
        )
        log.warning(
            "command_rejected", topic=source.topic, offset=source.offset, reason=letter.reason
        )
        dead = OutRecord(self._dlq, record.key, letter.model_dump_json().encode())
        if not await self._acked(partial(self._producer.send_all, [dead])):
            return False
        if invalid.command_id is None:
            return True
        outcome = Outcome(
            status="rejected",
            error=CommandError(code="InvalidCommand", message=letter.reason, fields=invalid.errors),
            completed_at=at,
        )
        return await self._publish(self._result(source, invalid, at, outcome))

    def assignment_problem(self) -> str | None:
        """For /readyz: None while this worker holds its assignment (its ledger loaded)."""
        if self._ledger_loaded.is_set():
            return None
        return "the command consumer is joining its group or rebalancing"

    # -- commits and rebalances ------------------------------------------------------

    async def _commit_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self._commit()
            self._measure_lag()

    def _measure_lag(self) -> None:
        """Per command topic, the messages past what this worker committed (before its
        first commit, past the first it has not finished), up to the end its fetches saw."""
        if self._consumer is None:
            return
        lag = dict.fromkeys(self._kinds, 0)
        for tp in self._owned:
            end = self._consumer.highwater(tp)
            offsets = self._offsets
            done = offsets.committed.get(tp, min(offsets.pending.get(tp, ()), default=None))
            done = offsets.next.get(tp) if done is None else done
            if end is not None and done is not None:
                lag[tp.topic] += max(end - done, 0)
        for topic, behind in lag.items():
            COMMAND_LAG.labels(topic).set(behind)

    async def _commit(self) -> None:
        async with self._commit_lock:
            positions = {
                tp: pos for tp, pos in self._offsets.committable().items() if tp in self._owned
            }
            if not positions or self._consumer is None:
                return
            try:
                await self._consumer.commit(positions)
            except KafkaError as error:
                # The next commit tries again; meanwhile a redelivery is answered from the
                # ledger with the same result.
                log.warning("command_commit_failed", error=str(error))
            else:
                self._offsets.committed |= positions

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._generation += 1
        # What is in flight finishes and is committed while this worker still owns it.
        await self._drain()
        await self._commit()
        self._ledger_loaded.clear()
        self._owned -= set(revoked)
        self._offsets.forget(revoked)
        self._ledger.forget({tp.partition for tp in revoked} - {tp.partition for tp in self._owned})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Records of these may be fetched already: their tasks wait for the ledger.
        self._generation += 1
        await self._ledger.load({tp.partition for tp in assigned})
        self._owned |= set(assigned)
        self._ledger_loaded.set()
        log.info(
            "command_partitions_assigned",
            partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
        )


def _unknown(entry: Entry, at: datetime) -> Outcome:
    return Outcome(
        status="indeterminate",
        action=entry.action,
        error=CommandError(
            code="Interrupted",
            message="the worker stopped during the CCC call: CCC may or may not have acted",
        ),
        attempts=1,
        completed_at=at,
    )
