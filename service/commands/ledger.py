"""The command ledger: per command id, `started` before CCC is called and `done` (with the
result) after, in a compacted topic keyed by command id.

Entries of a command go to the ledger partition with the number of the command's partition.
Command messages are keyed by command id, so every message of one id is on one partition
number, and the worker owning that number owns the ledger entries too: it reads them when
it is assigned the partition and is the only one writing them until it is revoked.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict

from service.commands.models import CommandResult, CommandSource
from service.kafka.consumer import read_to_end
from service.kafka.producer import OutRecord, Producer
from service.kafka.settings import KafkaSettings

log = structlog.get_logger(__name__)

# Bytes an entry costs besides its id and value (the tuple, dict slot, str and float
# headers), about as tracemalloc counts them.
ENTRY_OVERHEAD_BYTES = 250


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["started", "done"]
    source: CommandSource  # the message that started it
    action: str | None = None
    result: CommandResult | None = None  # when done


class Ledger:
    """The entries of the partitions this worker owns, read at assignment and kept for
    `retention_ms` (topics.ledger_retention_ms, -1: forever) after they were written, as
    the topic keeps them.

    Bounded by retention only. An entry forgotten earlier would let a repeat of its command
    run again, so past `warn_bytes` nothing is dropped: the ledger warns (ledger_over_budget)
    and the remedy is a shorter retention or more memory. Memory is about what the topic
    holds for these partitions: commands within retention, each with its result."""

    def __init__(  # noqa: PLR0913 - the topic, and how long and how much of it is kept
        self,
        producer: Producer,
        kafka: KafkaSettings,
        topic: str,
        *,
        retention_ms: int,
        warn_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._producer = producer
        self._kafka = kafka
        self._topic = topic
        self._retention_s = None if retention_ms < 0 else retention_ms / 1000
        self._warn_bytes = warn_bytes
        self._clock = clock
        # Per partition, command id -> (raw value, written at in epoch seconds), oldest first
        # (an OrderedDict pops its oldest in O(1)). Raw: most are never looked at again.
        self._entries: dict[int, OrderedDict[str, tuple[bytes, float]]] = {}
        self._bytes = 0
        self._over = False

    async def load(self, partitions: Iterable[int]) -> None:
        wanted = set(partitions) - self._entries.keys()
        if not wanted:
            return
        for partition in wanted:
            self._entries[partition] = OrderedDict()
        now = self._clock()
        for record in await read_to_end(self._kafka, [self._topic], wanted):
            if record.key is not None and record.value is not None:
                at = now if record.timestamp_ms is None else record.timestamp_ms / 1000
                self._keep(record.partition, record.key.decode(), record.value, at)
        self._expire()

    def size(self) -> int:
        return sum(len(entries) for entries in self._entries.values())

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            for command_id, (value, _) in self._entries.pop(partition, OrderedDict()).items():
                self._bytes -= _cost(command_id, value)

    def get(self, partition: int, command_id: str) -> Entry | None:
        self._expire()
        kept = self._entries.get(partition, OrderedDict()).get(command_id)
        return None if kept is None else Entry.model_validate_json(kept[0])

    async def write(self, command_id: str, entry: Entry) -> None:
        """Returns once Kafka acknowledged the entry (PublishError otherwise)."""
        value = entry.model_dump_json().encode()
        partition = entry.source.partition
        await self._producer.send_all(
            [OutRecord(self._topic, command_id.encode(), value, partition)]
        )
        self._keep(partition, command_id, value, self._clock())
        self._expire()

    def _keep(self, partition: int, command_id: str, value: bytes, at: float) -> None:
        entries = self._entries.setdefault(partition, OrderedDict())
        if (old := entries.pop(command_id, None)) is not None:  # re-added: newest last
            self._bytes -= _cost(command_id, old[0])
        entries[command_id] = (value, at)
        self._bytes += _cost(command_id, value)

    def _expire(self) -> None:
        """Drops what is past retention, oldest first: each partition's entries are in the
        order they were written (a clock step back keeps an entry longer, never shorter)."""
        if self._retention_s is not None:
            horizon = self._clock() - self._retention_s
            for entries in self._entries.values():
                while entries and entries[next(iter(entries))][1] <= horizon:
                    command_id, (value, _) = entries.popitem(last=False)
                    self._bytes -= _cost(command_id, value)
        over = self._bytes > self._warn_bytes
        if over != self._over:
            self._over = over
            report = log.warning if over else log.info
            event = "ledger_over_budget" if over else "ledger_within_budget"
            report(event, bytes=self._bytes, entries=self.size(), warn_bytes=self._warn_bytes)


def _cost(command_id: str, value: bytes) -> int:
    return len(command_id) + len(value) + ENTRY_OVERHEAD_BYTES
