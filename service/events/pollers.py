"""The pollers: the imperative shell around service/events/core.py.

Each poller owns one stream of one CCC instance. A cycle reads CCC, turns rows into
events, publishes them and, only once Kafka acknowledged every one, moves its checkpoint.
While Kafka is away a poller keeps the cycle's events (bounded: one cycle) and retries;
it does not poll again until they are acknowledged, so nothing is lost and memory holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import structlog

from service.ccc.errors import CccError
from service.cloudevents import Emitted, Publisher
from service.events.core import (
    CallsCursor,
    KnownState,
    call_record_event,
    call_step_events,
    logouts,
    skill_group_events,
    state_changes,
    state_log_events,
    windows,
)
from service.events.rows import (
    AgentStateLogEntry,
    CallDetailRecordRow,
    SkillGroupStateRow,
    UserRow,
    required,
)
from service.kafka.acked import until_acked
from service.metrics import POLL_CYCLE_SECONDS, POLL_LAG_SECONDS
from service.settings import PollerSettings

log = structlog.get_logger(__name__)

LOG_WINDOW_MS = 2 * 3600 * 1000  # ListAgentStateLogs refuses longer windows


class Ccc(Protocol):
    async def call(self, action: str, params: Mapping[str, Any] | None = None) -> Any: ...
    def pages(self, action: str, params: Mapping[str, Any] | None = None) -> AsyncIterator[Any]: ...
    def iter_items(
        self, action: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Any]: ...
    def server_time_ms(self) -> int: ...


class Checkpoints(Protocol):
    def get(self, key: str) -> Mapping[str, Any] | None: ...
    async def save(self, key: str, value: Mapping[str, Any]) -> None: ...


class Directory:
    """The instance's agents (RAM id -> skill group ids), re-read from ListUsers now and
    then: state logs are asked per agent, and events name the agent's skill groups."""

    def __init__(self, ccc: Ccc, instance_id: str, refresh_s: float) -> None:
        self._ccc = ccc
        self._instance_id = instance_id
        self._refresh_s = refresh_s
        self._agents: dict[str, list[str]] = {}
        self._read_at = -float("inf")

    async def agents(self) -> dict[str, list[str]]:
        if time.monotonic() - self._read_at >= self._refresh_s:
            agents = {}
            users: AsyncIterator[UserRow]
            users = self._ccc.iter_items("ListUsers", {"InstanceId": self._instance_id})
            async for user in users:
                levels = user.skill_levels.skill_level if user.skill_levels else []
                agents[required(user.ram_id, "RamId")] = [
                    required(level.skill.skill_group_id, "SkillGroupId")
                    for level in levels
                    if level.skill
                ]
            self._agents, self._read_at = agents, time.monotonic()
        return self._agents


@dataclass(frozen=True)
class InstancePorts:
    """What every poller of one CCC instance talks to."""

    instance_id: str
    ccc: Ccc
    publisher: Publisher
    checkpoints: Checkpoints
    directory: Directory


Cycle = Callable[[asyncio.Event], Awaitable[None]]


@dataclass(frozen=True)
class Stream:
    """One enabled stream of one instance, as poll_loop runs it."""

    name: str
    cycle: Cycle
    interval_s: float
    checkpoint: str | None  # the key of its checkpoint, for those that resume from one


def streams(ports: InstancePorts, settings: PollerSettings) -> list[Stream]:
    """Every enabled stream of one instance."""
    plan: list[Stream] = []
    if settings.agent_states:
        states = AgentStatePoller(ports)
        plan.append(Stream("agent_states", states.cycle, settings.agent_states_interval_s, None))
    if settings.agent_state_logs:
        logs = StateLogPoller(
            ports,
            settle_ms=int(settings.agent_state_logs_settle_s * 1000),
            backfill_ms=int(settings.agent_state_logs_backfill_s * 1000),
        )
        interval_s = settings.agent_state_logs_interval_s
        plan.append(Stream("agent_state_logs", logs.cycle, interval_s, logs.key))
    if settings.calls:
        calls = CallPoller(ports, int(settings.calls_lookback_s * 1000))
        plan.append(Stream("calls", calls.cycle, settings.calls_interval_s, calls.key))
    if settings.skill_groups:
        groups = SkillGroupPoller(ports)
        plan.append(Stream("skill_groups", groups.cycle, settings.skill_groups_interval_s, None))
    return plan


async def poll_loop(
    cycle: Cycle, interval_s: float, stop: asyncio.Event, *, stream: str, instance_id: str
) -> None:
    """Run `cycle` every `interval_s` until `stop` is set; a cycle in progress finishes."""
    duration = POLL_CYCLE_SECONDS.labels(stream, instance_id)
    lag = POLL_LAG_SECONDS.labels(stream, instance_id)
    last_done = time.time()
    lag.set_function(lambda: time.time() - last_done)
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await cycle(stop)
            except CccError as error:
                if not error.retriable:
                    raise  # bad credentials or a bad request will not fix themselves
                # Nothing moved: the next cycle reads the same window again.
                log.warning("poll_cycle_failed", error=str(error), attempts=error.attempts)
            else:
                duration.observe(time.monotonic() - started)
                last_done = time.time()
            wait = interval_s - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0))
    finally:
        # Handed to another replica (or stopping): a lag that grew on here would be false.
        POLL_LAG_SECONDS.remove(stream, instance_id)


class AgentStatePoller:
    """ListAgentStates, every page, diffed against the previous poll.

    Each page is diffed while the next pages are still on their way, so a cycle over
    thousands of agents costs little more than reading them.
    """

    def __init__(self, ports: InstancePorts) -> None:
        self._ports = ports
        self._known: dict[str, KnownState] | None = None  # None until the first snapshot

    async def cycle(self, stop: asyncio.Event) -> None:
        ports = self._ports
        groups = await ports.directory.agents()
        current: dict[str, KnownState] = {}
        events: list[Emitted] = []
        now_ms = ports.ccc.server_time_ms()
        async for page in ports.ccc.pages("ListAgentStates", {"InstanceId": ports.instance_id}):
            now_ms = ports.ccc.server_time_ms()
            changes, seen = state_changes(
                ports.instance_id, self._known, page.items(), now_ms, groups
            )
            current |= seen
            events += changes
        events += logouts(ports.instance_id, self._known, current, now_ms, groups)
        # One publish for the cycle: the producer packs it into a batch per partition.
        if await until_acked(partial(ports.publisher.publish, events), stop):
            self._known = current


class StateLogPoller:
    """ListAgentStateLogs per agent, in windows of at most 2 hours, from a checkpoint."""

    def __init__(self, ports: InstancePorts, settle_ms: int, backfill_ms: int) -> None:
        self._ports = ports
        self._settle_ms = settle_ms  # how far behind now to stay, for entries still arriving
        self._backfill_ms = backfill_ms
        self.key = f"{ports.instance_id}:agent-state-logs"

    async def cycle(self, stop: asyncio.Event) -> None:
        ports = self._ports
        end = ports.ccc.server_time_ms() - self._settle_ms
        saved = ports.checkpoints.get(self.key)
        if saved is None:
            # A first start: remember where reading begins, so the next cycle goes on from it.
            start = end - self._backfill_ms
            checkpoint = {"watermark_ms": start}
            if not await until_acked(partial(ports.checkpoints.save, self.key, checkpoint), stop):
                return
        else:
            start = int(saved["watermark_ms"])
        for window in windows(start, end, LOG_WINDOW_MS):
            events = []
            for agent_id in sorted(await ports.directory.agents()):
                events += await self._window(agent_id, window)
            if not await until_acked(partial(ports.publisher.publish, events), stop):
                return
            checkpoint = {"watermark_ms": window[1]}
            if not await until_acked(partial(ports.checkpoints.save, self.key, checkpoint), stop):
                return

    async def _window(self, agent_id: str, window: tuple[int, int]) -> list[Emitted]:
        instance_id = self._ports.instance_id
        params = {
            "InstanceId": instance_id,
            "RamId": int(agent_id),
            "StartTime": window[0],
            "EndTime": window[1],
        }
        entries: list[AgentStateLogEntry]
        entries = [e async for e in self._ports.ccc.iter_items("ListAgentStateLogs", params)]
        return state_log_events(instance_id, agent_id, entries)


class CallPoller:
    """ListCallDetailRecords with a look-back for late records; each new contact's steps
    (ListCallEventDetailByContactId) go out before its record, under the same key."""

    def __init__(self, ports: InstancePorts, lookback_ms: int) -> None:
        self._ports = ports
        self._lookback_ms = lookback_ms
        self.key = f"{ports.instance_id}:calls"

    async def cycle(self, stop: asyncio.Event) -> None:
        ports = self._ports
        end = ports.ccc.server_time_ms()
        saved = ports.checkpoints.get(self.key)
        cursor = CallsCursor.model_validate(saved) if saved else CallsCursor(watermark_ms=end)
        params = {
            "InstanceId": ports.instance_id,
            "StartTime": cursor.query_start(self._lookback_ms),
            "StopTime": end,
            "OrderBy": "ASC",
        }
        records: list[CallDetailRecordRow]
        records = [r async for r in ports.ccc.iter_items("ListCallDetailRecords", params)]
        events: list[Emitted] = []
        for record in cursor.unseen(records):
            events += await self._contact(record)
        if await until_acked(partial(ports.publisher.publish, events), stop):
            advanced = cursor.advance(records, end, self._lookback_ms).model_dump()
            await until_acked(partial(ports.checkpoints.save, self.key, advanced), stop)

    async def _contact(self, record: CallDetailRecordRow) -> list[Emitted]:
        instance_id = self._ports.instance_id
        summary = call_record_event(instance_id, record)
        contact_id = required(record.contact_id, "ContactId")
        detail = await self._ports.ccc.call(
            "ListCallEventDetailByContactId",
            {"InstanceId": instance_id, "ContactId": contact_id},
        )
        steps = call_step_events(instance_id, contact_id, detail.items(), summary.time)
        return [*steps, summary]


class SkillGroupPoller:
    """ListSkillGroupStates snapshots."""

    def __init__(self, ports: InstancePorts) -> None:
        self._ports = ports

    async def cycle(self, stop: asyncio.Event) -> None:
        ports = self._ports
        params = {"InstanceId": ports.instance_id}
        rows: list[SkillGroupStateRow]
        rows = [row async for row in ports.ccc.iter_items("ListSkillGroupStates", params)]
        events = skill_group_events(ports.instance_id, rows, ports.ccc.server_time_ms())
        await until_acked(partial(ports.publisher.publish, events), stop)
