"""A backfill: the history of a past span of one instance, published through the live pollers'
own functions (publish_call, state_logs), so every event has the id the live pollers give it
and consumers deduplicate what both publish.

The span is read window by window, oldest first; after each window, once Kafka acknowledged
its events, the backfill's own checkpoint (service/events/checkpoints.py) moves to the
window's end. A stop abandons the window in progress: a resumed backfill reads it again, with
the same ids. The live checkpoints are neither read nor written.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from service.events.checkpoints import BackfillProgress, Stream, backfill_key
from service.events.pollers import LOG_WINDOW_MS, InstancePorts, each, publish_call, state_logs
from service.events.rows import CallDetailRecordRow
from service.kafka.acked import until_acked

# A calls window: records of the calls that started in it are read (100 a page) and published
# before the checkpoint moves, so a stop loses at most this much work.
CALL_WINDOW_MS = 3600 * 1000


class Tally(Protocol):
    """Where a backfill reports progress (a progress bar), in units of work: a calls window,
    or one agent's state logs over a window."""

    def planned(self, total: int, done: int) -> None: ...
    def advanced(self, units: int, published: int) -> None: ...


@dataclass(frozen=True)
class BackfillPlan:
    instance_id: str
    stream: Stream
    span: tuple[int, int]  # [from, to) in CCC's epoch ms
    concurrency: int  # contacts or agents read at once

    @property
    def key(self) -> str:
        return backfill_key(self.instance_id, self.stream, self.span)

    @property
    def window_ms(self) -> int:
        return CALL_WINDOW_MS if self.stream == "calls" else LOG_WINDOW_MS


class Backfill:
    def __init__(self, ports: InstancePorts, plan: BackfillPlan) -> None:
        self._ports = ports
        self._plan = plan
        saved = ports.checkpoints.get(plan.key)
        start = BackfillProgress(done_ms=plan.span[0])
        self.progress = start if saved is None else BackfillProgress.model_validate(saved)

    @property
    def done(self) -> bool:
        return self.progress.done_ms >= self._plan.span[1]

    async def run(self, stop: asyncio.Event, tally: Tally) -> bool:
        """Publish what is left of the span; True once all of it is, False if stopped first."""
        plan = self._plan
        agents = sorted(await self._ports.directory.agents()) if plan.stream != "calls" else []
        per_window = max(1, len(agents))
        windows = math.ceil((plan.span[1] - plan.span[0]) / plan.window_ms)
        left = math.ceil((plan.span[1] - self.progress.done_ms) / plan.window_ms)
        tally.planned(windows * per_window, (windows - left) * per_window)
        for start in range(self.progress.done_ms, plan.span[1], plan.window_ms):
            window = (start, min(start + plan.window_ms, plan.span[1]))
            if plan.stream == "calls":
                published = await self._calls(window, stop, tally)
            else:
                published = await self._state_logs(agents, window, stop, tally)
            if stop.is_set():
                return False
            progress = BackfillProgress(
                done_ms=window[1], published=self.progress.published + published
            )
            save = partial(self._ports.checkpoints.save, plan.key, progress.model_dump())
            if not await until_acked(save, stop):
                return False
            self.progress = progress
        return True

    async def _calls(self, window: tuple[int, int], stop: asyncio.Event, tally: Tally) -> int:
        ports = self._ports
        params = {
            "InstanceId": ports.instance_id,
            "StartTime": window[0],
            "StopTime": window[1],
            "OrderBy": "ASC",
        }
        records: list[CallDetailRecordRow]
        records = [r async for r in ports.ccc.iter_items("ListCallDetailRecords", params)]
        await each(records, partial(self._call, stop=stop), self._plan.concurrency, stop)
        tally.advanced(1, len(records))
        return len(records)

    async def _call(self, record: CallDetailRecordRow, *, stop: asyncio.Event) -> None:
        await publish_call(self._ports, record, stop=stop)

    async def _state_logs(
        self, agents: list[str], window: tuple[int, int], stop: asyncio.Event, tally: Tally
    ) -> int:
        published = 0

        async def read(agent_id: str) -> None:
            nonlocal published
            events = await state_logs(self._ports, agent_id, window)
            # None: an agent removed from the instance while this ran; CCC has no logs of it.
            publish = partial(self._ports.publisher.publish, events or [])
            if await until_acked(publish, stop):
                published += len(events or [])
                tally.advanced(1, len(events or []))

        await each(agents, read, self._plan.concurrency, stop)
        return published
