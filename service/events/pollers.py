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
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import structlog

from service.ccc.errors import CccError, CccRequestError
from service.cloudevents import Emitted, Publisher
from service.events.core import (
    OFFLINE,
    CallsCursor,
    KnownState,
    Listing,
    call_record_event,
    call_step_events,
    checked_out,
    logout_event,
    skill_group_events,
    state_changes,
    state_log_events,
    windows,
)
from service.events.rows import (
    AgentStateLogEntry,
    AgentStateRow,
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
AGENT_EVENTS_WINDOW_MS = 3600 * 1000 - 1  # ListAgentEvents' range must be under an hour
# RamIds per ListAgentEvents call: it takes a list, and no limit is documented (assumed).
AGENT_EVENTS_BATCH = 100


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
        states = AgentStatePoller(ports, settings.agent_logout_check_s)
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

    CCC lists only agents whose state changed in the last 4 hours (FACTS.md section 9), and
    rows may move between pages while they are read, so absence proves nothing: an agent
    missing from a complete listing (or unlisted for `logout_check_s`) keeps its last known
    state and is looked up in ListAgentEvents every `logout_check_s` (and at once when it is
    listed again); a check-out there is the logout. A listing whose pages do not add up
    publishes what it saw and marks nobody missing.
    """

    def __init__(self, ports: InstancePorts, logout_check_s: float) -> None:
        self._ports = ports
        self._logout_check_s = logout_check_s
        self._known: dict[str, KnownState] | None = None  # None until the first snapshot
        # Agents missing (see _still_absent): ListAgentEvents read for them up to (ms).
        self._absent: dict[str, int] = {}
        self._seen: dict[str, int] = {}  # CCC's time each known agent was last listed
        self._checked_ms = 0  # CCC's time at the last look for logouts

    async def cycle(self, stop: asyncio.Event) -> None:
        ports = self._ports
        groups = await ports.directory.agents()
        read = await self._read(groups)
        known, now_ms = self._known, read.now_ms
        after = read.current if known is None else {**known, **read.current}
        listed_at = {**self._seen, **dict.fromkeys(read.current, now_ms)}
        listed_at |= {row.agent_id or "": now_ms for row in read.back}
        absent = self._still_absent(read, listed_at)
        for agent_id in [a for a in absent if a not in groups]:
            # Removed from the instance (ListUsers no longer has it): nothing to look up,
            # and ListAgentEvents would refuse its RamId.
            del absent[agent_id]
            after.pop(agent_id, None)
        due = now_ms - self._checked_ms >= self._logout_check_s * 1000
        look = list(absent) if due else [row.agent_id or "" for row in read.back]
        events = read.events
        for agent_id, at_ms in (await self._logouts(look, absent, after, now_ms)).items():
            change = (after[agent_id], at_ms)
            events.append(logout_event(ports.instance_id, agent_id, change, now_ms, groups))
            after[agent_id] = KnownState(OFFLINE, at_ms)
            del absent[agent_id]
        for agent_id in look:
            if agent_id in absent:
                absent[agent_id] = now_ms  # no check-out until now: looked for from here on
        # Listed again: a change from its last known state (Offline if it checked out).
        changes, seen = state_changes(ports.instance_id, after, read.back, now_ms, groups)
        events += changes
        after |= seen
        for row in read.back:
            absent.pop(row.agent_id or "", None)
        # One publish for the cycle: the producer packs it into a batch per partition.
        if await until_acked(partial(ports.publisher.publish, events), stop):
            self._known, self._absent = after, absent
            self._seen = {agent: at for agent, at in listed_at.items() if agent in after}
            if due:
                self._checked_ms = now_ms

    def _still_absent(self, read: _Read, listed_at: Mapping[str, int]) -> dict[str, int]:
        """The absent agents, with those newly missing: from a complete listing, or unlisted
        for `logout_check_s` (rows move between pages, so a listing that does not add up
        may have missed one that is there)."""
        absent = dict(self._absent)
        if self._known is None:
            return absent
        complete = read.listing.complete()
        if not complete:
            log.debug("agent_states_listing_incomplete", **read.listing.summary())
        horizon = read.now_ms - int(self._logout_check_s * 1000)
        for agent_id, state in self._known.items():
            if agent_id in read.current or state.state == OFFLINE or agent_id in absent:
                continue
            last_seen = listed_at.get(agent_id, 0)
            if complete or last_seen <= horizon:
                absent[agent_id] = last_seen
        return absent

    async def _read(self, groups: Mapping[str, list[str]]) -> _Read:
        """Every page, each diffed as it comes, but for absent agents listed again."""
        ports, known, absent = self._ports, self._known, self._absent
        read = _Read(now_ms=ports.ccc.server_time_ms())
        async for page in ports.ccc.pages("ListAgentStates", {"InstanceId": ports.instance_id}):
            read.now_ms = ports.ccc.server_time_ms()
            rows: list[AgentStateRow] = page.items()
            read.listing.add(page.page(), rows)
            listed = read.current.keys() | {row.agent_id for row in read.back}
            # A row moved between pages is listed twice: the first sighting counts.
            unique: dict[str | None, AgentStateRow] = {}
            for row in rows:
                if row.agent_id not in listed:
                    unique.setdefault(row.agent_id, row)
            rows = list(unique.values())
            read.back += [row for row in rows if row.agent_id in absent]
            fresh = [row for row in rows if row.agent_id not in absent]
            changes, seen = state_changes(ports.instance_id, known, fresh, read.now_ms, groups)
            read.current |= seen
            read.events += changes
        return read

    async def _logouts(
        self,
        agent_ids: list[str],
        absent: Mapping[str, int],
        known: Mapping[str, KnownState],
        now_ms: int,
    ) -> dict[str, int]:
        """Per agent of `agent_ids` that checked out since its last known state began, when."""
        found: dict[str, int] = {}
        if not agent_ids:
            return found
        ports = self._ports
        start = min(absent[agent_id] for agent_id in agent_ids)
        ordered = sorted(agent_ids)
        for first in range(0, len(ordered), AGENT_EVENTS_BATCH):
            batch = ordered[first : first + AGENT_EVENTS_BATCH]
            for window in windows(start, now_ms, AGENT_EVENTS_WINDOW_MS):
                params = {
                    "InstanceId": ports.instance_id,
                    "RamId": batch,
                    "StartTime": window[0],
                    "StopTime": window[1],
                }
                try:
                    answer = await ports.ccc.call("ListAgentEvents", params)
                except CccRequestError as error:
                    if not error.code.startswith("NotExists"):
                        raise
                    # An agent removed since the directory was read: looked for next time.
                    log.warning("agent_events_refused", error=str(error))
                    return found
                for agent_id, at_ms in checked_out(answer.items()).items():
                    if agent_id in known and at_ms >= known[agent_id].since_ms:
                        found[agent_id] = max(found.get(agent_id, 0), at_ms)
        return found


@dataclass
class _Read:
    """One read of ListAgentStates."""

    now_ms: int  # CCC's time at the last page
    current: dict[str, KnownState] = field(default_factory=dict)
    events: list[Emitted] = field(default_factory=list)
    back: list[AgentStateRow] = field(default_factory=list)  # absent agents listed again
    listing: Listing = field(default_factory=Listing)


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
