"""The command ledger: per command id, `started` before CCC is called and `done` (with the
result) after, in a compacted topic keyed by command id.

Entries of a command go to the ledger partition with the number of the command's partition.
Command messages are keyed by command id, so every message of one id is on one partition
number, and the worker owning that number owns the ledger entries too: it reads them when
it is assigned the partition and is the only one writing them until it is revoked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from service.commands.models import CommandResult, CommandSource
from service.kafka.consumer import read_to_end
from service.kafka.producer import OutRecord, Producer
from service.kafka.settings import KafkaSettings


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["started", "done"]
    source: CommandSource  # the message that started it
    action: str | None = None
    result: CommandResult | None = None  # when done


class Ledger:
    """The entries of the partitions this worker owns, read at assignment."""

    def __init__(self, producer: Producer, kafka: KafkaSettings, topic: str) -> None:
        self._producer = producer
        self._kafka = kafka
        self._topic = topic
        # Raw values, parsed on lookup: most entries are never looked at again.
        self._entries: dict[int, dict[str, bytes]] = {}

    async def load(self, partitions: Iterable[int]) -> None:
        wanted = set(partitions) - self._entries.keys()
        if not wanted:
            return
        loaded: dict[int, dict[str, bytes]] = {partition: {} for partition in wanted}
        for record in await read_to_end(self._kafka, [self._topic], wanted):
            if record.key is not None and record.value is not None:
                loaded[record.partition][record.key.decode()] = record.value
        self._entries |= loaded

    def size(self) -> int:
        return sum(len(entries) for entries in self._entries.values())

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._entries.pop(partition, None)

    def get(self, partition: int, command_id: str) -> Entry | None:
        raw = self._entries.get(partition, {}).get(command_id)
        return None if raw is None else Entry.model_validate_json(raw)

    async def write(self, command_id: str, entry: Entry) -> None:
        """Returns once Kafka acknowledged the entry (PublishError otherwise)."""
        value = entry.model_dump_json().encode()
        partition = entry.source.partition
        await self._producer.send_all(
            [OutRecord(self._topic, command_id.encode(), value, partition)]
        )
        self._entries.setdefault(partition, {})[command_id] = value
