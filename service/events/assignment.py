"""Poll work split between replicas by Kafka group assignment (PRODUCT.md section 4, Scale).

The replicas form one consumer group (`pollers.group_id`) over topics.poller_assignments, a
topic that holds no records: its partitions only stand for shares of the CCC instances.
Partition p stands for the instances whose index in the sorted instance list is p modulo the
partition count (`instances_of`), so every replica with the same instance list maps them
alike, and fewer instances than partitions fill the first partitions. The round-robin
assignor deals partitions out in order, so the replicas' instance counts differ by one at
most (when the partition count is a multiple of the replica count, or above the instance
count). A sticky assignor would move fewer partitions when members come and go, but can
leave the partitions that carry instances bunched on one replica; and with eager
rebalancing every loop pauses during a rebalance anyway.

Hand-over is gapless, at least once. On revocation (aiokafka awaits the listener before it
rejoins) the poll loops stop after the cycle in progress, its events and checkpoint
acknowledged. On assignment the checkpoints of the instances owned are read again from Kafka,
where the previous owner left them, before their loops start. A replica that dies leaves its
last acknowledged checkpoints: after `pollers.session_timeout_ms` its instances move and are
read again from there, and what it published after them comes again with the same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, Protocol

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from service.cloudevents import Publisher
from service.events.pollers import (
    Ccc,
    Checkpoints,
    Directory,
    InstancePorts,
    Stream,
    poll_loop,
    streams,
)
from service.kafka.acked import retried
from service.kafka.consumer import Consumer, Subscription
from service.kafka.records import Record
from service.metrics import INSTANCE_POLLED
from service.settings import Settings

log = structlog.get_logger(__name__)

WATCH_INTERVAL_S = 0.2  # how soon a stop or a failed poll loop is seen
# How long a rebalance waits for each member to finish its cycles in progress and rejoin (a
# state-log cycle over many agents takes seconds); under the consumer's 40 s request
# timeout, which its JoinGroup request must outlast.
REBALANCE_TIMEOUT_MS = 30_000
# Round robin: it deals partitions out in order, so replicas' instance counts differ by one.
ASSIGNOR: Literal["roundrobin"] = "roundrobin"


def instances_of(
    partitions: Collection[int], instances: Iterable[str], partition_count: int
) -> list[str]:
    """The instances that `partitions` (of `partition_count`) stand for: the one at index i
    of the sorted list belongs to partition i mod the count. Sorted, so the order a
    replica's configuration lists them in makes no difference."""
    return [
        instance
        for index, instance in enumerate(sorted(set(instances)))
        if index % partition_count in partitions
    ]


class ReloadableCheckpoints(Checkpoints, Protocol):
    async def load(self, keys: Collection[str]) -> None: ...


@dataclass
class Polled:
    """The streams of an instance this process owns. Kept across a rebalance that leaves the
    instance here, so what its pollers remember (the agent states last seen) goes on."""

    streams: list[Stream]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Pollers:
    """The poll loops of the instances this process owns: every configured one (`pollers.split`
    `none`), or its share by group assignment (`group`)."""

    def __init__(
        self,
        settings: Settings,
        ccc: Ccc,
        publisher: Publisher,
        checkpoints: ReloadableCheckpoints,
    ) -> None:
        self._settings = settings
        self._ccc = ccc
        self._publisher = publisher
        self._checkpoints = checkpoints
        self._instances = list(dict.fromkeys(settings.ccc.instances))
        self._topic = settings.topics.name("poller_assignments")
        self._owned: dict[str, Polled] = {}
        self._holding = False  # polling what it owns (in a group: joined, not rebalancing)
        self._failure: BaseException | None = None  # of a poll loop: it ends the service
        self._stop = asyncio.Event()
        self._consumer: Consumer | None = None

    def assignment_problem(self) -> str | None:
        """For /readyz: None while this process polls its share of the instances (which may
        be none, when the group has more members than partitions)."""
        if self._holding:
            return None
        if self._settings.pollers.split == "none":
            return "the pollers are reading their checkpoints"
        return f"the poller group {self._settings.pollers.group_id} is joining or rebalancing"

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop`; cycles in progress then finish. A poll loop that fails (an error
        no retry mends) ends this with its exception: crash-only, the service goes down."""
        self._stop = stop
        if not self._settings.pollers.any_stream:
            # Nothing to poll (a commands-only process): it must not take a share either.
            self._holding = True
        elif self._settings.pollers.split == "none":
            await self._poll_all(stop)
        else:
            await self._poll_share(stop)

    async def _poll_all(self, stop: asyncio.Event) -> None:
        try:
            await self._take(self._instances)
            await self._watch(stop)
            await self._release()
            self._raise_failure()
        finally:
            await self._cancel()

    async def _poll_share(self, stop: asyncio.Event) -> None:
        pollers = self._settings.pollers
        subscription = Subscription(
            (self._topic,),
            group_id=pollers.group_id,
            assignor=ASSIGNOR,
            session_timeout_ms=pollers.session_timeout_ms,
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        )
        # Nothing ever comes; being in the group is the point. At stop the runtime calls
        # `revoked` before leaving it: the next owners start from the final checkpoints, and
        # at once rather than after the session timeout.
        self._consumer = Consumer(
            self._settings.kafka, subscription, _no_records, name="pollers", rebalance=self
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._watch(stop))
                await self._consumer.run(stop)
            self._raise_failure()
        finally:
            await self._cancel()  # no loop may outlive this member's share

    async def _watch(self, stop: asyncio.Event) -> None:
        """Until `stop`: a poll loop that failed ends this with its error."""
        while not stop.is_set():
            self._raise_failure()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_INTERVAL_S)

    async def revoked(
        self,
        partitions: frozenset[TopicPartition],  # noqa: ARG002 - eager rebalancing: all of them
    ) -> None:
        # Everything is revoked, then reassigned. The loops stop before this returns, so no
        # instance's next owner starts before its final checkpoint.
        self._holding = False
        await self._release()

    async def assigned(self, partitions: frozenset[TopicPartition]) -> None:
        await self._assigned({tp.partition for tp in partitions})

    async def _assigned(self, partitions: set[int]) -> None:
        owned: list[str] = []
        if partitions and self._consumer is not None:
            # The count the assignor dealt out, not topics.partitions: an existing topic may
            # have been created with another.
            count = self._consumer.partition_count(self._topic)
            owned = instances_of(partitions, self._instances, count)
        lost = sorted(self._owned.keys() - set(owned))
        for instance_id in lost:
            del self._owned[instance_id]
        gained = [instance_id for instance_id in owned if instance_id not in self._owned]
        if await self._take(owned):
            log.info(
                "poller_instances_assigned",
                partitions=sorted(partitions),
                instances=owned,
                gained=gained,
                lost=lost,
            )

    async def _take(self, instance_ids: list[str]) -> bool:
        """Start polling these, their checkpoints read again first (without them a loop would
        start from now, skipping what happened since); False if stopped meanwhile."""
        for instance_id in instance_ids:
            if instance_id not in self._owned:
                self._owned[instance_id] = Polled(self._streams(instance_id))
        keys = [
            stream.checkpoint
            for instance_id in instance_ids
            for stream in self._owned[instance_id].streams
            if stream.checkpoint is not None
        ]
        load = partial(self._checkpoints.load, keys)
        if not await retried(load, self._stop, (KafkaError,), "checkpoints_read_failed"):
            return False
        if self._stop.is_set():
            return False
        for instance_id in instance_ids:
            self._start(instance_id)
        self._holding = True
        return True

    def _streams(self, instance_id: str) -> list[Stream]:
        pollers = self._settings.pollers
        directory = Directory(self._ccc, instance_id)
        ports = InstancePorts(instance_id, self._ccc, self._publisher, self._checkpoints, directory)
        return streams(ports, pollers)

    def _start(self, instance_id: str) -> None:
        polled = self._owned[instance_id]
        polled.stop = asyncio.Event()
        for stream in polled.streams:
            loop = poll_loop(stream, polled.stop, instance_id=instance_id)
            task = asyncio.create_task(loop)
            task.add_done_callback(self._note_failure)
            polled.tasks.append(task)
        INSTANCE_POLLED.labels(instance_id).set(1)

    async def _release(self) -> None:
        """Every loop stops after its cycle in progress (events and checkpoint acknowledged,
        unless Kafka fails meanwhile: then they are read again by the next owner)."""
        tasks = []
        for polled in self._owned.values():
            polled.stop.set()
            tasks += polled.tasks
            polled.tasks = []
        if tasks:
            await asyncio.wait(tasks)
        for instance_id in self._owned:
            INSTANCE_POLLED.labels(instance_id).set(0)

    async def _cancel(self) -> None:
        """Cancel the loops still running, which only a failure or a cancellation leaves:
        crash-only, nobody waits for their cycles then."""
        tasks = [task for polled in self._owned.values() for task in polled.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _note_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure


async def _no_records(record: Record) -> bool:  # noqa: ARG001 - the topic holds none
    return True
