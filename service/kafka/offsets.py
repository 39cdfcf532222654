"""Which offsets a consumer with manual commits may commit: shared by the command workers
and the webhook dispatchers, which both finish records out of order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass
class Offsets:
    """Per partition, the offsets handed out and not yet finished. A commit may go up to
    the lowest unfinished one and never past it, whatever order records finish in."""

    pending: dict[TopicPartition, set[int]] = field(default_factory=dict)
    next: dict[TopicPartition, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)

    def begin(self, tp: TopicPartition, offset: int) -> None:
        self.pending.setdefault(tp, set()).add(offset)
        self.next[tp] = offset + 1

    def end(self, tp: TopicPartition, offset: int) -> None:
        self.pending.get(tp, set()).discard(offset)

    def committable(self) -> dict[TopicPartition, int]:
        """Positions to commit: those that moved since the last commit."""
        positions = {
            tp: min(self.pending[tp], default=position) for tp, position in self.next.items()
        }
        return {tp: pos for tp, pos in positions.items() if self.committed.get(tp) != pos}

    def forget(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            self.pending.pop(tp, None)
            self.next.pop(tp, None)
            self.committed.pop(tp, None)
