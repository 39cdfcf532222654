"""The one way the service reads Kafka. Every reader (the command workers, the webhook
dispatchers, the command status view, the poller group, `tail`, `send --wait`, and the
one-off reads of the ledger and checkpoints) is a handler on this runtime; no other module
touches aiokafka's consumer.

What it owns, so that no handler has its own copy:
- the aiokafka consumer, built from KafkaSettings: in a group (manual commits, a rebalance
  listener) or over every partition of its topics (no group, nothing committed);
- the fetch loop, with backpressure: at most `max_in_flight` records in hand; when full, it
  waits for half of them to be done (fetching paused partitions now and then, so the member
  stays in its group however long handlers take);
- per-key ordering: records of one key (as `ordered_by` says) are handled one after another
  in offset order, records of different keys at once;
- offsets: a commit goes up to the lowest record not yet done, never past it, every
  `commit_interval_s`, on revocation (after the records in hand are done) and at stop;
- the lag gauge: per topic, the records not yet done up to the partitions' end offsets;
- records as frozen values of bytes (service/kafka/records.py), made at the edge;
- the way past records aiokafka cannot decode: when a fetch raises on one, each owned
  partition is fetched again at a lower level (service/kafka/raw.py) from the offset the
  runtime expects next, what is there goes to the handler (an undecodable record with its
  `defect`, for the handler to dead-letter), and the consumer seeks past it.

A handler is a plain `async handler(record) -> bool`: True once the record is done (its
offset may be committed), False to leave it for the next reader (its commit waits; the
partition's next owner or the next start reads it again). A handler that raises is a bug:
crash-only, the error ends `run` and the service with it, nothing committed past it.

Background work runs in one TaskGroup: any failure ends `run` with that error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

import structlog
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import CorruptRecordException, KafkaError, RecordTooLargeError

from service.errors import first_cause
from service.kafka.acked import retried
from service.kafka.admin import describe_topics
from service.kafka.connection import client_options
from service.kafka.offsets import Offsets
from service.kafka.raw import fetch_raw
from service.kafka.records import Record
from service.kafka.settings import KafkaSettings

log = structlog.get_logger(__name__)

FETCH_TIMEOUT_MS = 200  # how soon the loop sees `stop` while nothing arrives
FULL_WAIT_S = 1.0  # with max_in_flight records in hand, the longest wait between fetches
MAX_RECORDS = 500  # per fetch, when nothing limits it
RAW_FETCH_BYTES = 1 << 20  # per partition: Kafka returns at least one batch, even bigger
RECOVERY_BACKOFF_S = 1.0  # when the lower-level read found nothing to get past
MAX_FRUITLESS_RECOVERIES = 5  # then the fetch's error is not a record's: it ends the reader
# aiokafka's own errors for a record it cannot read; anything not a KafkaError is one too.
UNDECODABLE = (CorruptRecordException, RecordTooLargeError)
ASSIGNORS = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}

Handler = Callable[[Record], Awaitable[bool]]
OnLag = Callable[[Mapping[str, int]], None]


def by_key(record: Record) -> Hashable:
    """The default order: per partition and Kafka key, as producers of keyed records expect."""
    return (record.topic, record.partition, record.key)


class Rebalance(Protocol):
    """Told when partitions come and go. In a group: `assigned` before any of their records
    is handled, `revoked` once every record in hand is done and committed (and at stop).
    Without a group: `assigned` once the start positions are fixed."""

    async def assigned(self, partitions: frozenset[TopicPartition]) -> None: ...
    async def revoked(self, partitions: frozenset[TopicPartition]) -> None: ...


@dataclass(frozen=True, slots=True)
class Subscription:
    """What to read, and how."""

    topics: tuple[str, ...]
    # None: every partition of the topics that exist (of `partitions`, if given), no group,
    # nothing committed, from `start_from`.
    group_id: str | None = None
    start_from: Literal["earliest", "latest"] = "latest"
    partitions: frozenset[int] | None = None  # without a group: only these numbers
    assignor: Literal["range", "roundrobin"] = "roundrobin"
    session_timeout_ms: int = 10_000
    rebalance_timeout_ms: int | None = None  # None: aiokafka's (the session timeout)
    fetch_max_wait_ms: int = 500
    max_in_flight: int = 256
    commit_interval_s: float = 1.0
    to_end: bool = False  # without a group: `run` returns once `caught_up`
    # The order records are handled in; None: one at a time in the fetch loop, no task each
    # (for handlers that only take note, like the status view).
    ordered_by: Callable[[Record], Hashable] | None = by_key


class Consumer:
    def __init__(  # noqa: PLR0913 - what a reader is, by keyword
        self,
        kafka: KafkaSettings,
        subscription: Subscription,
        handler: Handler,
        *,
        name: str,
        rebalance: Rebalance | None = None,
        on_lag: OnLag | None = None,
    ) -> None:
        self._kafka = kafka
        self._sub = subscription
        self._handler = handler
        self._rebalance = rebalance
        self._on_lag = on_lag
        self._log = log.bind(consumer=name)
        self._consumer: AIOKafkaConsumer | None = None
        self._fetcher: _Fetcher | None = None
        self._owned: frozenset[TopicPartition] = frozenset()  # assigned, hooks done
        self._holding = False
        self._offsets = Offsets()
        self._tasks: KeyedTasks | None = None
        self._commit_lock = asyncio.Lock()
        self._failure: BaseException | None = None  # of a rebalance hook: it ends `run`
        self._stop = asyncio.Event()
        # Set at stop and on revocation: handlers of the records in hand start nothing new.
        self.halt = asyncio.Event()
        # Without a group: set once every partition was read up to its end at the start.
        self.caught_up = asyncio.Event()

    def assignment_problem(self) -> str | None:
        """For /readyz: None while this reader holds its partitions (possibly none)."""
        if self._holding:
            return None
        if self._sub.group_id is None:
            return f"reading {', '.join(self._sub.topics)} has not started"
        return f"the consumer group {self._sub.group_id} is joining or rebalancing"

    def partition_count(self, topic: str) -> int:
        """The partitions of `topic` as this member's metadata has them (0 if unknown)."""
        if self._consumer is None:
            return 0
        return len(self._consumer.partitions_for_topic(topic) or ())

    # -- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read and handle until `stop`; then records in hand are done and committed. Ends
        with the error of anything that failed (a handler, a hook, a commit that is not a
        Kafka error)."""
        self._stop = stop
        sub = self._sub
        options: dict[str, Any] = {
            "enable_auto_commit": False,
            "auto_offset_reset": sub.start_from,
            "fetch_max_wait_ms": sub.fetch_max_wait_ms,
        }
        if sub.group_id is not None:
            options |= {
                "group_id": sub.group_id,
                "partition_assignment_strategy": (ASSIGNORS[sub.assignor],),
                "session_timeout_ms": sub.session_timeout_ms,
                "heartbeat_interval_ms": sub.session_timeout_ms // 3,
            }
            if sub.rebalance_timeout_ms is not None:
                options["rebalance_timeout_ms"] = sub.rebalance_timeout_ms
        consumer = self._consumer = AIOKafkaConsumer(**client_options(self._kafka), **options)
        fetcher = self._fetcher = _Fetcher(consumer, self._kafka, self._log)
        try:
            await self._supervised(consumer, stop)
        except BaseExceptionGroup as group:
            # One cause, as a caller expects it (a KafkaError, a hook's error), not a group.
            raise first_cause(group) from group
        finally:
            self._holding = False
            await fetcher.close()
            await consumer.stop()

    async def _supervised(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        sub = self._sub
        async with asyncio.TaskGroup() as group:
            self._tasks = KeyedTasks(group)
            background = [group.create_task(self._halt_at(stop))]
            if sub.group_id is not None:
                consumer.subscribe(list(sub.topics), listener=_Listener(self))
            if not await self._started(consumer, stop):
                return
            if sub.group_id is not None:
                background.append(group.create_task(self._every(self._commit)))
            if self._on_lag is not None:
                background.append(group.create_task(self._every(self._measure_lag)))
            await self._fetch_until(stop)
            self.halt.set()
            await self._tasks.drain()
            await self._commit()
            if self._rebalance is not None and self._owned:
                await self._rebalance.revoked(self._owned)
            for task in background:
                task.cancel()

    async def _started(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> bool:
        """Started, and without a group its partitions assigned; False if stopped first. Kafka
        away at the start is waited out, as it is later, while the rest of the service (HTTP
        ingress, the other readers) goes on; but a one-off read (`to_end`) fails with the
        KafkaError, for its caller to retry on its own terms."""
        steps = (
            [consumer.start]
            if self._sub.group_id is not None
            else [
                consumer.start,
                self._assign_all,
            ]
        )
        for step in steps:
            if self._sub.to_end:
                await step()
            elif not await retried(step, stop, (KafkaError,), "kafka_consumer_start_failed"):
                return False
        return True

    async def _halt_at(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.halt.set()

    async def _every(self, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(self._sub.commit_interval_s)
            await work()

    async def _assign_all(self) -> None:
        consumer, fetcher = self._checked()
        sub = self._sub
        partitions = await partitions_of(self._kafka, list(sub.topics), sub.partitions)
        consumer.assign(partitions)
        if partitions:
            seek = (
                consumer.seek_to_beginning if sub.start_from == "earliest" else consumer.seek_to_end
            )
            await seek(*partitions)
        await fetcher.track(partitions)
        ends = await consumer.end_offsets(partitions) if partitions else {}
        fetcher.until(ends)
        self._owned = frozenset(partitions)
        if self._rebalance is not None:
            await self._rebalance.assigned(self._owned)
        self._holding = True

    async def _fetch_until(self, stop: asyncio.Event) -> None:
        consumer, fetcher = self._checked()
        tasks = self._tasks
        assert tasks is not None  # noqa: S101 - set by run
        while not stop.is_set():
            if self._failure is not None:
                raise self._failure
            if await fetcher.caught_up():
                self.caught_up.set()
                if self._sub.to_end:
                    return
            limit = self._sub.max_in_flight
            if len(tasks) >= limit:
                # Full: wait until half are done rather than fetch now, which would throw
                # away what aiokafka holds for paused partitions. If none finishes for a
                # while (an endpoint hung), fetch with every partition paused: that keeps
                # this member in its group however long the handlers take.
                if not await tasks.fewer_than(max(limit // 2, 1), FULL_WAIT_S):
                    consumer.pause(*self._owned)
                    await fetcher.fetch(FETCH_TIMEOUT_MS, 1)  # nothing comes while paused
                continue
            if paused := set(consumer.paused()) & self._owned:
                consumer.resume(*paused)
            room = limit - len(tasks)
            records = await fetcher.fetch(FETCH_TIMEOUT_MS, max(min(room, MAX_RECORDS), 1))
            for record in records:
                await self._take(record)

    async def _take(self, record: Record) -> None:
        tp = TopicPartition(record.topic, record.partition)
        if tp not in self._owned:
            return  # revoked while a lower-level fetch was under way: its new owner reads it
        grouped = self._sub.group_id is not None
        if grouped:
            self._offsets.begin(tp, record.offset)
        order = self._sub.ordered_by
        if order is None:
            done = await self._handler(record)
            if done and grouped:
                self._offsets.end(tp, record.offset)
            return
        assert self._tasks is not None  # noqa: S101 - set by run
        self._tasks.start(order(record), partial(self._handle, tp, record, grouped=grouped))

    async def _handle(self, tp: TopicPartition, record: Record, *, grouped: bool) -> None:
        if await self._handler(record) and grouped:
            self._offsets.end(tp, record.offset)

    def _checked(self) -> tuple[AIOKafkaConsumer, _Fetcher]:
        if self._consumer is None or self._fetcher is None:
            raise RuntimeError("the consumer is not running")
        return self._consumer, self._fetcher

    # -- commits, lag and rebalances -----------------------------------------------------

    async def _commit(self) -> None:
        consumer = self._consumer
        if consumer is None or self._sub.group_id is None:
            return
        async with self._commit_lock:
            positions = {
                tp: position
                for tp, position in self._offsets.committable().items()
                if tp in self._owned
            }
            if not positions:
                return
            try:
                await consumer.commit(positions)
            except KafkaError as error:
                # The next commit tries again; meanwhile a restart only reads again what
                # the handlers answer alike (results from the ledger, webhook ids).
                self._log.warning("kafka_commit_failed", error=str(error))
            else:
                self._offsets.committed |= positions

    async def _measure_lag(self) -> None:
        """End offsets, asked of the broker: while fetching is paused, the fetches' own
        high-water marks stand still."""
        consumer, fetcher = self._checked()
        owned = list(self._owned)
        lag = dict.fromkeys(self._sub.topics, 0)
        if owned:
            try:
                ends = await consumer.end_offsets(owned)
            except KafkaError:  # a rebalance meanwhile: next time
                return
            for tp, listed in ends.items():
                # The fetches' high-water mark too: the embedded broker lists the end of a
                # partition as one past the last batch's base offset, not its last record's.
                end = max(listed, consumer.highwater(tp) or 0)
                pending = self._offsets.pending.get(tp)
                first = min(pending) if pending else fetcher.next.get(tp)
                if first is not None:
                    lag[tp.topic] = lag.get(tp.topic, 0) + max(end - first, 0)
        assert self._on_lag is not None  # noqa: S101 - only measured when there is a gauge
        self._on_lag(lag)

    async def revoking(self, revoked: frozenset[TopicPartition]) -> None:
        self._holding = False
        self.halt.set()  # nothing new starts; what is in flight ends and is committed
        if self._tasks is not None:
            await self._tasks.drain()
        await self._commit()
        self._owned = frozenset()
        self._offsets.forget(list(revoked))
        if self._fetcher is not None:
            self._fetcher.forget(revoked)
        if self._rebalance is not None:
            await self._rebalance.revoked(revoked)
        self.halt = asyncio.Event()
        if self._stop.is_set():
            self.halt.set()

    async def assigning(self, assigned: frozenset[TopicPartition]) -> None:
        consumer, fetcher = self._checked()
        # Held back until the hook is done and the start positions are known: a handler
        # never sees a record of a partition before `assigned` ran for it.
        consumer.pause(*assigned)
        if self._rebalance is not None:
            await self._rebalance.assigned(assigned)
        await fetcher.track(assigned)
        self._owned = assigned
        self._holding = True
        self._log.info(
            "kafka_partitions_assigned",
            group_id=self._sub.group_id,
            partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
        )

    def failed(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc] # untyped base
    """aiokafka only logs what a listener raises: here it ends the consumer's `run`."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        try:
            await self._consumer.revoking(frozenset(revoked))
        except Exception as error:  # noqa: BLE001 - handed to run, which raises it
            self._consumer.failed(error)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        try:
            await self._consumer.assigning(frozenset(assigned))
        except Exception as error:  # noqa: BLE001 - handed to run, which raises it
            self._consumer.failed(error)


class _Fetcher:
    """aiokafka's fetch, with records as frozen values, the offset expected next per
    partition, and the way past records aiokafka cannot decode."""

    def __init__(self, consumer: AIOKafkaConsumer, kafka: KafkaSettings, logger: Any) -> None:
        self._consumer = consumer
        self._kafka = kafka
        self._log = logger
        self.next: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] | None = None
        self._checked_ends: set[TopicPartition] = set()
        self._client: AIOKafkaClient | None = None
        self._fruitless = 0  # lower-level reads in a row that found nothing to get past

    async def track(self, partitions: Collection[TopicPartition]) -> None:
        """From now on, hand out these partitions' records, starting at their positions."""
        for tp in partitions:
            self.next[tp] = await self._consumer.position(tp)
        if partitions:
            self._consumer.resume(*partitions)

    def forget(self, partitions: Collection[TopicPartition]) -> None:
        for tp in partitions:
            self.next.pop(tp, None)

    def until(self, ends: Mapping[TopicPartition, int]) -> None:
        self._ends = dict(ends)

    async def caught_up(self) -> bool:
        """Every partition read up to where `until` said it ended. By the consumer's position,
        which also moves over the gaps compaction leaves, where no record says so."""
        ends = self._ends
        if ends is None:
            return False
        for tp, end in ends.items():
            if tp not in self._checked_ends and (highwater := self._consumer.highwater(tp)):
                # The first fetch's high-water mark, where the listed end falls short: the
                # embedded broker lists one past the last batch's base offset.
                ends[tp] = max(end, highwater)
                self._checked_ends.add(tp)
            if self.next.get(tp, 0) < ends[tp] and await self._consumer.position(tp) < ends[tp]:
                return False
        self._ends = None  # once is enough
        return True

    async def fetch(self, timeout_ms: int, max_records: int) -> list[Record]:
        consumer = self._consumer
        try:
            batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as error:
            if not isinstance(error, UNDECODABLE):
                raise
            return await self._past_undecodable(error)
        except Exception as error:  # noqa: BLE001 - a record aiokafka cannot decode
            return await self._past_undecodable(error)
        records: list[Record] = []
        for tp, batch in batches.items():
            if tp not in self.next:
                # Fetched before its positions were taken (an assignment under way): read
                # again once it is tracked.
                if tp in consumer.assignment():
                    consumer.seek(tp, batch[0].offset)
                continue
            records += map(_record, batch)
            self.next[tp] = batch[-1].offset + 1
        return records

    async def _past_undecodable(self, error: BaseException) -> list[Record]:
        """Each tracked partition fetched again from the offset expected next, below aiokafka's
        decoding, and the consumer moved past what that read. aiokafka names no partition,
        and may have dropped records of partitions it drained before the one it failed on:
        every partition goes back to where this fetcher expects it first."""
        self._log.warning("kafka_record_undecodable", error=repr(error))
        for tp, start in self.next.items():
            self._consumer.seek(tp, start)
        client = await self._raw_client()
        records: list[Record] = []
        for tp, start in sorted(self.next.items()):
            try:
                parsed = await fetch_raw(client, tp, start, max_bytes=RAW_FETCH_BYTES)
            except KafkaError as failure:
                # The partitions left are read again by the next fetch, which fails again on
                # the record, and comes back here.
                self._log.warning("kafka_raw_fetch_failed", partition=str(tp), error=str(failure))
                break
            if self.next.get(tp) != start:
                continue  # revoked meanwhile
            records += parsed.records
            self._consumer.seek(tp, parsed.next_offset)
            self.next[tp] = parsed.next_offset
        if records:
            self._fruitless = 0
            return records
        self._fruitless += 1
        if self._fruitless >= MAX_FRUITLESS_RECOVERIES:
            raise error  # nothing found to get past, again and again: not a record's fault
        await asyncio.sleep(RECOVERY_BACKOFF_S)
        return records

    async def _raw_client(self) -> AIOKafkaClient:
        if self._client is None:
            client = AIOKafkaClient(**client_options(self._kafka))
            await client.bootstrap()
            self._client = client
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _record(record: Any) -> Record:
    headers = record.headers
    return Record(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp,
        record.key,
        record.value,
        tuple((name.encode(), value) for name, value in headers) if headers else (),
    )


class KeyedTasks:
    """Runs work so that pieces of one key go one after another, in the order started, and
    pieces of different keys at once: one key's slow record holds up that key only. Tasks
    belong to the consumer's TaskGroup, so one that fails ends the consumer."""

    def __init__(self, group: asyncio.TaskGroup) -> None:
        self._group = group
        self._running: set[asyncio.Task[None]] = set()
        self._last: dict[Hashable, asyncio.Task[None]] = {}  # per key, the latest started
        self._below = 0  # `fewer_than`'s count, and the event set when it is reached
        self._fewer = asyncio.Event()

    def __len__(self) -> int:
        return len(self._running)

    def start(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        task = self._group.create_task(_after(self._last.get(key), work))
        self._running.add(task)
        self._last[key] = task
        task.add_done_callback(partial(self._finished, key))

    def _finished(self, key: Hashable, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._last.get(key) is task:
            del self._last[key]
        if len(self._running) < self._below:
            self._fewer.set()

    async def fewer_than(self, count: int, timeout_s: float) -> bool:
        """Whether fewer than `count` run, waiting up to `timeout_s` for it."""
        self._below = count
        self._fewer.clear()
        if len(self._running) >= count:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fewer.wait(), timeout_s)
        return len(self._running) < count

    async def drain(self) -> None:
        while self._running:
            await asyncio.wait(set(self._running))


async def _after(previous: asyncio.Task[None] | None, work: Callable[[], Awaitable[None]]) -> None:
    if previous is not None:
        await asyncio.wait([previous])  # however it ended: the order holds, not the outcome
    await work()


# -- one-off reads ----------------------------------------------------------------------------


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
    kafka: KafkaSettings, topics: Sequence[str], partitions: Collection[int] | None = None
) -> list[Record]:
    """Every record of those of `topics` that exist (of their `partitions`, or all), oldest
    first per partition, up to the end each partition had when the read began. No consumer
    group, nothing committed."""
    records: list[Record] = []

    async def keep(record: Record) -> bool:
        records.append(record)
        return True

    subscription = Subscription(
        tuple(topics),
        start_from="earliest",
        partitions=None if partitions is None else frozenset(partitions),
        ordered_by=None,
        to_end=True,
    )
    await Consumer(kafka, subscription, keep, name="read_to_end").run(asyncio.Event())
    return records
