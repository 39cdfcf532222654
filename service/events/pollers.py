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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

import structlog

from service.ccc.budget import calling_as
from service.ccc.client import MAX_PAGE_SIZE
from service.ccc.errors import CccError, CccRequestError
from service.cloudevents import Emitted, Publisher, from_ms
from service.events.checkpoints import live_key
from service.events.core import (
    BUCKET_MS,
    OFFLINE,
    CallBook,
    CallsCursor,
    KnownState,
    Listing,
    began_ms,
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
    AgentEventRow,
    AgentStateLogEntry,
    AgentStateRow,
    CallDetailRecordRow,
    SkillGroupStateRow,
    UserRow,
    required,
)
from service.events.tracking import Tracker, rewound
from service.kafka.acked import until_acked
from service.metrics import POLL_CYCLE_SECONDS, POLL_LAG_SECONDS, STREAM_BEHIND_SECONDS
from service.settings import PollerSettings

log = structlog.get_logger(__name__)

LOG_WINDOW_MS = 2 * 3600 * 1000  # ListAgentStateLogs refuses longer windows
AGENT_EVENTS_WINDOW_MS = 3600 * 1000 - 1  # ListAgentEvents' range must be under an hour
T = TypeVar("T")


class Ccc(Protocol):
    async def call(self, action: str, params: Mapping[str, Any] | None = None) -> Any: ...
    def pages(self, action: str, params: Mapping[str, Any] | None = None) -> AsyncIterator[Any]: ...
    def iter_items(
        self, action: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Any]: ...
    def server_time_ms(self) -> int: ...


class Checkpoints(Protocol):
    def get(self, key: str) -> Mapping[str, Any] | None: ...
    def age_s(self, key: str) -> float: ...
    async def save(self, key: str, value: Mapping[str, Any]) -> None: ...


class Directory:
    """The instance's agents (RAM id -> skill group ids) from ListUsers: state logs are
    asked per agent, and events name the agent's skill groups.

    Read once when first needed, at the priority of the stream that needs it; then re-read
    by a stream of its own (`cycle`), at the directory's lowest priority in the CCC budget.
    A stream never waits for a refresh: under a tight budget one would wait behind every
    other stream's calls (agent states stalled for minutes so, in bench/scale.py)."""

    def __init__(self, ccc: Ccc, instance_id: str) -> None:
        self._ccc = ccc
        self._instance_id = instance_id
        self._agents: dict[str, list[str]] | None = None
        self._first = asyncio.Lock()

    async def agents(self) -> dict[str, list[str]]:
        if self._agents is None:
            async with self._first:  # the streams that start together read it once
                if self._agents is None:
                    self._agents = await self._read()
        return self._agents

    async def cycle(self, stop: asyncio.Event) -> None:  # noqa: ARG002 - one read, no loop
        if self._agents is not None:  # else the first stream to need it reads it
            self._agents = await self._read()

    async def _read(self) -> dict[str, list[str]]:
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
        return agents


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
    behind_s: Callable[[], float] | None = None  # how far behind CCC's now it is, if known


def streams(ports: InstancePorts, settings: PollerSettings) -> list[Stream]:
    """Every enabled stream of one instance."""
    plan: list[Stream] = []
    tracker = Tracker(
        unlisted_ms=int(settings.agent_logout_check_s * 1000),
        spacing_s=settings.agent_state_logs_interval_s,
        listings=settings.agent_states,
    )
    if settings.agent_states:
        listen = tracker if settings.agent_state_logs else None
        states = AgentStatePoller(
            ports, settings.agent_logout_check_s, settings.agent_events_batch, listen
        )
        plan.append(Stream("agent_states", states.cycle, settings.agent_states_interval_s, None))
    if settings.agent_state_logs:
        logs = StateLogPoller(
            ports,
            tracker,
            StateLogPlan(
                settle_ms=int(settings.agent_state_logs_settle_s * 1000),
                backfill_ms=int(settings.agent_state_logs_backfill_s * 1000),
                net_s=settings.agent_state_logs_net_s,
                batch=settings.agent_events_batch,
                concurrency=settings.concurrency,
                save_s=settings.agent_state_logs_interval_s,
            ),
        )
        # Changes are learnt at the listing's pace: looked for as often, each agent read at
        # most once per agent_state_logs_interval_s (the tracker spaces them).
        tick_s = min(settings.agent_states_interval_s, settings.agent_state_logs_interval_s)
        if not settings.agent_states:
            tick_s = settings.agent_state_logs_interval_s
        plan.append(Stream("agent_state_logs", logs.cycle, tick_s, logs.key, logs.behind_s))
    if settings.calls:
        calls = CallPoller(ports, int(settings.calls_lookback_s * 1000), settings.concurrency)
        plan.append(
            Stream("calls", calls.cycle, settings.calls_interval_s, calls.key, calls.behind_s)
        )
    if settings.skill_groups:
        groups = SkillGroupPoller(ports)
        plan.append(Stream("skill_groups", groups.cycle, settings.skill_groups_interval_s, None))
    if settings.agent_states or settings.agent_state_logs:
        refresh = ports.directory.cycle
        plan.append(Stream("directory", refresh, settings.directory_refresh_s, None))
    return plan


async def each(
    items: Sequence[T], work: Callable[[T], Awaitable[None]], limit: int, stop: asyncio.Event
) -> None:
    """`work` on every item, `limit` at a time, in the items' order; the first failure ends
    it. A stop cancels what has not finished: work here reads CCC and publishes, so what a
    stop cut short is done again by the next cycle or owner, with the same event ids."""
    if not items:
        return
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await work(item)

    workers = [asyncio.create_task(worker()) for _ in range(min(limit, len(items)))]
    stopping = asyncio.create_task(stop.wait())
    try:
        pending: set[asyncio.Task[Any]] = set(workers)
        while pending:
            finished, pending = await asyncio.wait(
                pending | {stopping}, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(stopping)
            for task in finished - {stopping}:
                task.result()
            if stopping in finished:
                return
    finally:
        for task in [*workers, stopping]:
            task.cancel()
        await asyncio.gather(*workers, stopping, return_exceptions=True)


MAX_BACKOFF_S = 30.0  # a stream whose cycles fail is tried at least this often


def backoff_s(interval_s: float, failures: int) -> float:
    """The wait between cycles after `failures` failed in a row: doubling, capped."""
    return (
        interval_s
        if failures == 0
        else max(interval_s, min(interval_s * 2**failures, MAX_BACKOFF_S))
    )


async def poll_loop(stream: Stream, stop: asyncio.Event, *, instance_id: str) -> None:
    """Run the stream's cycle every interval until `stop` is set; a cycle in progress stops
    between its CCC calls."""
    duration = POLL_CYCLE_SECONDS.labels(stream.name, instance_id)
    lag = POLL_LAG_SECONDS.labels(stream.name, instance_id)
    last_done = time.time()
    lag.set_function(lambda: time.time() - last_done)
    if stream.behind_s is not None:
        STREAM_BEHIND_SECONDS.labels(stream.name, instance_id).set_function(stream.behind_s)
    calling_as(stream.name)
    failures = 0
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await stream.cycle(stop)
            except CccError as error:
                if not error.retriable:
                    raise  # bad credentials or a bad request will not fix themselves
                # Nothing moved: the next cycle reads the same window again, later the
                # longer CCC stays away.
                failures += 1
                log.warning("poll_cycle_failed", error=str(error), attempts=error.attempts)
            else:
                duration.observe(time.monotonic() - started)
                last_done = time.time()
                failures = 0
            wait = backoff_s(stream.interval_s, failures) - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0))
    finally:
        # Handed to another replica (or stopping): a lag that grew on here would be false.
        POLL_LAG_SECONDS.remove(stream.name, instance_id)
        if stream.behind_s is not None:
            STREAM_BEHIND_SECONDS.remove(stream.name, instance_id)


def clock_went_back(key: str, position_ms: int, now_ms: int, again_ms: int) -> None:
    log.warning(
        "ccc_clock_behind_checkpoint",
        stream=key,
        behind_s=(position_ms - now_ms) / 1000,
        reading_again_from=from_ms(again_ms).isoformat(),
    )


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

    def __init__(
        self,
        ports: InstancePorts,
        logout_check_s: float,
        batch: int,
        tracker: Tracker | None = None,
    ) -> None:
        self._ports = ports
        self._logout_check_s = logout_check_s
        self._batch = batch  # RamIds per ListAgentEvents call
        self._tracker = tracker  # told what each listing shows, for the state-log stream
        self._known: dict[str, KnownState] | None = None  # None until the first snapshot
        # Agents missing (see _still_absent): ListAgentEvents read for them up to (ms).
        self._absent: dict[str, int] = {}
        self._seen: dict[str, int] = {}  # CCC's time each known agent was last listed
        self._checked_ms = 0  # CCC's time at the last look for logouts
        self._cycled_at = time.monotonic()  # when a cycle last published, on our clock

    async def cycle(self, stop: asyncio.Event) -> None:
        ports = self._ports
        self._rewind(ports.ccc.server_time_ms())
        groups = await ports.directory.agents()
        read = await self._read(groups)
        if self._tracker is not None:
            self._tracker.listing(read.started_ms, read.sightings, complete=read.listing.complete())
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
            self._cycled_at = time.monotonic()

    def _rewind(self, now_ms: int) -> None:
        """CCC's clock went back: what it stamps now may lie before the times known, so they
        are moved back, or logouts would be looked for only once it caught up again."""
        position = max(self._checked_ms, *self._seen.values(), 0)
        again = rewound(position, now_ms, time.monotonic() - self._cycled_at)
        if again is None:
            return
        clock_went_back(f"{self._ports.instance_id}:agent-states", position, now_ms, again)
        self._checked_ms = min(self._checked_ms, again)
        self._absent = {agent: min(at, again) for agent, at in self._absent.items()}
        self._seen = {agent: min(at, again) for agent, at in self._seen.items()}
        if self._known is not None:
            self._known = {
                agent: KnownState(known.state, min(known.since_ms, again))
                for agent, known in self._known.items()
            }

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
        now_ms = ports.ccc.server_time_ms()
        read = _Read(started_ms=now_ms, now_ms=now_ms)
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
            for row in rows:
                read.sightings[row.agent_id or ""] = (began_ms(row, read.now_ms), read.now_ms)
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
        start = min(absent[agent_id] for agent_id in agent_ids)
        for batch, window in event_batches(agent_ids, start, now_ms, self._batch):
            rows = await agent_events(self._ports, batch, window)
            if rows is None:
                return found  # an agent removed since the directory was read: next time
            for agent_id, at_ms in checked_out(rows).items():
                if agent_id in known and at_ms >= known[agent_id].since_ms:
                    found[agent_id] = max(found.get(agent_id, 0), at_ms)
        return found


def event_batches(
    agent_ids: Iterable[str], start_ms: int, end_ms: int, size: int
) -> list[tuple[list[str], tuple[int, int]]]:
    """The ListAgentEvents requests that cover these agents over [start, end): `size`
    RamIds each, in windows under the hour it allows."""
    ordered = sorted(agent_ids)
    return [
        (ordered[first : first + size], window)
        for window in windows(start_ms, end_ms, AGENT_EVENTS_WINDOW_MS)
        for first in range(0, len(ordered), size)
    ]


async def agent_events(
    ports: InstancePorts, agent_ids: list[str], window: tuple[int, int]
) -> list[AgentEventRow] | None:
    """ListAgentEvents of these agents in the window; None when CCC refuses one of the
    RamIds (an agent removed since the directory was read spoils its whole batch)."""
    params = {
        "InstanceId": ports.instance_id,
        "RamId": agent_ids,
        "StartTime": window[0],
        "StopTime": window[1],
    }
    try:
        answer = await ports.ccc.call("ListAgentEvents", params)
    except CccRequestError as error:
        if not error.code.startswith("NotExists"):
            raise
        log.warning("agent_events_refused", error=str(error), agents=len(agent_ids))
        return None
    rows: list[AgentEventRow] = answer.items()
    return rows


@dataclass
class _Read:
    """One read of ListAgentStates."""

    started_ms: int  # CCC's time at the first page
    now_ms: int  # CCC's time at the last page
    # Per agent listed: when its state began and when its page came (for the tracker).
    sightings: dict[str, tuple[int, int]] = field(default_factory=dict)
    current: dict[str, KnownState] = field(default_factory=dict)
    events: list[Emitted] = field(default_factory=list)
    back: list[AgentStateRow] = field(default_factory=list)  # absent agents listed again
    listing: Listing = field(default_factory=Listing)


class StateLogPoller:
    """ListAgentStateLogs for the agents the tracker says changed, each at most once per
    `spacing`, a few at a time; each agent's entries go out as soon as they are read.

    The tracker learns of changes from the agent-state stream's listings (or, with that
    stream off, from this poller's ListAgentEvents net alone); the net, every `net_s`, reads
    ListAgentEvents for every agent in batches, which also covers what happened while no
    process polled the instance. See service/events/tracking.py.
    """

    def __init__(self, ports: InstancePorts, tracker: Tracker, plan: StateLogPlan) -> None:
        self._ports = ports
        self._tracker = tracker
        self._plan = plan
        self._net_at = -float("inf")
        self._saved_at = -float("inf")
        self.key = live_key(ports.instance_id, "agent-state-logs")

    def behind_s(self) -> float:
        return self._tracker.behind_ms(self._ports.ccc.server_time_ms()) / 1000

    async def cycle(self, stop: asyncio.Event) -> None:
        ports, tracker, plan = self._ports, self._tracker, self._plan
        end = ports.ccc.server_time_ms() - plan.settle_ms
        if not tracker.loaded:
            saved = ports.checkpoints.get(self.key)
            tracker.load(saved, end - plan.backfill_ms)
            if saved is None and not await self._save(stop):
                return  # a first start: where reading begins is kept before anything else
        again = rewound(tracker.position_ms, end, ports.checkpoints.age_s(self.key))
        if again is not None:
            clock_went_back(self.key, tracker.position_ms, end, again)
            tracker.rewind(again)
            self._net_at = -float("inf")  # the net covers the agents no listing shows
        tracker.sync(await ports.directory.agents())
        if time.monotonic() - self._net_at >= plan.net_s:
            await self._net(end, stop)
        tracker.advance(end)
        due = tracker.due(end, time.monotonic())
        await each(due, partial(self._read, end=end, stop=stop), plan.concurrency, stop)
        if stop.is_set() or time.monotonic() - self._saved_at >= plan.save_s:
            await self._save(stop)

    async def _save(self, stop: asyncio.Event) -> bool:
        checkpoint = self._tracker.checkpoint()
        saved = await until_acked(partial(self._ports.checkpoints.save, self.key, checkpoint), stop)
        if saved:
            self._saved_at = time.monotonic()
        return saved

    async def _net(self, end: int, stop: asyncio.Event) -> None:
        """ListAgentEvents for every agent since the net last looked, in batches."""
        ports, tracker = self._ports, self._tracker
        agents = await ports.directory.agents()
        batches = event_batches(agents, tracker.net_ms, end, self._plan.batch)

        async def look(batch: tuple[list[str], tuple[int, int]]) -> None:
            agent_ids, window = batch
            rows = await agent_events(ports, agent_ids, window)
            if rows is None:  # nothing is known of the batch's agents: read them all
                tracker.suspect(agent_ids, window[1])
                return
            for row in rows:
                if row.ram_id is not None and row.event_time is not None:
                    tracker.event(str(row.ram_id), row.event_time)

        await each(batches, look, self._plan.concurrency, stop)
        if not stop.is_set():
            tracker.net_ms = max(tracker.net_ms, end)
            self._net_at = time.monotonic()

    async def _read(self, due: tuple[str, int], *, end: int, stop: asyncio.Event) -> None:
        agent_id, start = due
        ports = self._ports
        events = await state_logs(ports, agent_id, (start, end))
        if events is None:
            self._tracker.drop(agent_id)  # removed from the instance: the directory agrees soon
            return
        if await until_acked(partial(ports.publisher.publish, events), stop):
            self._tracker.read(agent_id, end, time.monotonic())


async def state_logs(
    ports: InstancePorts, agent_id: str, span: tuple[int, int]
) -> list[Emitted] | None:
    """The agent's ListAgentStateLogs entries in [start, end) as events, read in the windows
    CCC allows; None when CCC does not know the agent (removed from the instance). The live
    poller and the backfill both read through here, so an entry gets one id whoever reads it."""
    events: list[Emitted] = []
    try:
        for window in windows(*span, LOG_WINDOW_MS):
            params = {
                "InstanceId": ports.instance_id,
                "RamId": int(agent_id),
                "StartTime": window[0],
                "EndTime": window[1],
            }
            entries: list[AgentStateLogEntry]
            entries = [e async for e in ports.ccc.iter_items("ListAgentStateLogs", params)]
            events += state_log_events(ports.instance_id, agent_id, entries)
    except CccRequestError as error:
        if not error.code.startswith("NotExists"):
            raise
        log.warning("agent_state_logs_refused", agent_id=agent_id, error=str(error))
        return None
    return events


@dataclass(frozen=True)
class StateLogPlan:
    """How the state-log poller paces itself (from PollerSettings)."""

    settle_ms: int  # how far behind CCC's now to stay, for entries still arriving
    backfill_ms: int  # a first start reads this far back
    net_s: float  # how often ListAgentEvents is read for every agent
    batch: int  # RamIds per ListAgentEvents call
    concurrency: int
    save_s: float  # how often the checkpoint is written


class CallPoller:
    """ListCallDetailRecords over the look-back, minute by minute: a span whose TotalCount
    matches the records seen in it is skipped, one that grew is halved until whole minutes
    (or one page) are read. Each new contact's steps (ListCallEventDetailByContactId) go out
    before its record, under the same key, a few contacts at a time."""

    def __init__(self, ports: InstancePorts, lookback_ms: int, concurrency: int) -> None:
        self._ports = ports
        self._lookback_ms = lookback_ms
        self._concurrency = concurrency
        self._book: CallBook | None = None
        self._end_ms: int | None = None
        self.key = live_key(ports.instance_id, "calls")

    def behind_s(self) -> float:
        if self._end_ms is None:
            return 0.0
        return max(0, self._ports.ccc.server_time_ms() - self._end_ms) / 1000

    async def cycle(self, stop: asyncio.Event) -> None:
        ports = self._ports
        end = ports.ccc.server_time_ms()
        if self._book is None:
            saved = ports.checkpoints.get(self.key)
            restored = CallsCursor.model_validate(saved) if saved else None
            self._book = CallBook(restored)
            self._end_ms = None if restored is None else restored.watermark_ms
        book = self._book
        if self._end_ms is not None:
            again = rewound(self._end_ms, end, ports.checkpoints.age_s(self.key))
            if again is not None:
                clock_went_back(self.key, self._end_ms, end, again)
                book.rewind(again // BUCKET_MS)
        first = (end - self._lookback_ms) // BUCKET_MS
        book.forget(first)
        fresh = await self._scan(first, end // BUCKET_MS + 1, end)
        await each(fresh, partial(self._contact, stop=stop), self._concurrency, stop)
        cursor = book.cursor(end).model_dump(exclude_none=True)
        if await until_acked(partial(ports.checkpoints.save, self.key, cursor), stop):
            self._end_ms = end

    async def _scan(self, first: int, last: int, end: int) -> list[CallDetailRecordRow]:
        """The records to publish that started in minutes [first, last), before `end`."""
        ports, book = self._ports, self._book
        assert book is not None  # noqa: S101 - cycle made it
        params = {
            "InstanceId": ports.instance_id,
            "StartTime": first * BUCKET_MS,
            "StopTime": min(last * BUCKET_MS, end),
            "OrderBy": "ASC",
        }
        page = {"PageNumber": 1, "PageSize": MAX_PAGE_SIZE}
        answer = await ports.ccc.call("ListCallDetailRecords", params | page)
        total = (answer.page() or (0, 0, 0))[0]
        if total == book.known(first, last):
            return []  # nothing arrived: records never change or vanish once queryable
        records: list[CallDetailRecordRow]
        if total <= MAX_PAGE_SIZE:
            records = answer.items()
        elif last - first == 1:
            records = [r async for r in ports.ccc.iter_items("ListCallDetailRecords", params)]
        else:
            middle = (first + last) // 2
            return [*await self._scan(first, middle, end), *await self._scan(middle, last, end)]
        return book.fresh(records)

    async def _contact(self, record: CallDetailRecordRow, *, stop: asyncio.Event) -> None:
        if await publish_call(self._ports, record, stop=stop):
            assert self._book is not None  # noqa: S101 - cycle made it
            self._book.add(record)


async def publish_call(
    ports: InstancePorts, record: CallDetailRecordRow, *, stop: asyncio.Event
) -> bool:
    """The call's steps (ListCallEventDetailByContactId), then its record, under one key;
    False if stopped before Kafka acknowledged them. The live poller and the backfill both
    publish through here, so a call gets the same ids whoever reads it."""
    summary = call_record_event(ports.instance_id, record)
    contact_id = required(record.contact_id, "ContactId")
    detail = await ports.ccc.call(
        "ListCallEventDetailByContactId",
        {"InstanceId": ports.instance_id, "ContactId": contact_id},
    )
    steps = call_step_events(ports.instance_id, contact_id, detail.items(), summary.time)
    return await until_acked(partial(ports.publisher.publish, [*steps, summary]), stop)


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
