"""Pure logic of the event pipeline: CCC rows in, (event id, event data) out, and the cursor
arithmetic that lets a poller resume with no gap. No I/O here; the pollers do that.

CCC rows arrive as the client's response models (see service/ccc/catalog.py), typed by the
Protocols of service/events/rows.py; only their attributes are read, so tests can pass any
object with the same attributes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from service.cloudevents import Emitted, event_id, from_ms
from service.events.models import (
    AgentStateChanged,
    AgentStateLogged,
    CallAgent,
    CallEventData,
    CallRecordData,
    NormalizedState,
    Recording,
    SkillGroupRef,
    SkillGroupState,
)
from service.events.rows import (
    AgentEventRow,
    AgentStateLogEntry,
    AgentStateRow,
    CallDetailRecordRow,
    CallEventRow,
    SkillGroupStateRow,
    required,
)

OFFLINE = "Offline"  # ListAgentStates leaves logged-out agents out; events name the state
CHECK_OUT = "签出"  # ListAgentEvents' label of a check-out (FACTS.md section 9)
# CCC's labels of the six states ListAgentStates filters on, English and Chinese (FACTS.md
# section 9), and a logout; anything else is `other`.
NORMALIZED: dict[str, NormalizedState] = {
    "ready": "ready",
    "等待": "ready",
    "break": "break",
    "小休": "break",
    "acw": "acw",
    "处理": "acw",
    "dialing": "dialing",
    "拨号": "dialing",
    "ringing": "ringing",
    "振铃": "ringing",
    "talking": "talking",
    "通话": "talking",
    "offline": "offline",
    "签出": "offline",
}


def normalized(state: str) -> NormalizedState:
    return NORMALIZED.get(state.strip().lower(), "other")


@dataclass(frozen=True, slots=True)
class KnownState:
    state: str
    since_ms: int


def _split(text: str | None) -> list[str]:
    return [part for part in (text or "").split(",") if part]


def _int(value: str | int | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


# -- agent states -----------------------------------------------------------------------


def state_changes(
    instance_id: str,
    known: Mapping[str, KnownState] | None,
    rows: Iterable[AgentStateRow],
    now_ms: int,
    skill_groups: Mapping[str, list[str]],
) -> tuple[list[Emitted], dict[str, KnownState]]:
    """Events for what changed since the last poll (`known`), as far as these rows (one
    page of ListAgentStates) tell, and their part of the new picture.

    `known` is None on the first poll after start: then every agent's current state is
    emitted once as a snapshot. An agent `known` does not hold (first seen since the start:
    back from a quiet spell, or logged in unseen) changes from an unknown state.
    """
    current: dict[str, KnownState] = {}
    events: list[Emitted] = []
    for row in rows:
        agent_id, state = required(row.agent_id, "AgentId"), required(row.state, "State")
        before = None if known is None else known.get(agent_id)
        if before is not None and before.state == state:
            current[agent_id] = before  # keep the first estimate of when it began
            continue
        now_state = current[agent_id] = KnownState(state, began_ms(row, now_ms))
        events.append(
            _state_event(
                instance_id,
                agent_id,
                (before, now_state),
                now_ms,
                snapshot=known is None,
                names=(row.login_name, row.agent_name),
                skill_groups=skill_groups.get(agent_id, []),
            )
        )
    return events, current


def began_ms(row: AgentStateRow, now_ms: int) -> int:
    """When the row's state began, by its StateDuration (whole seconds, FACTS.md section 9)."""
    return now_ms - (_int(row.state_duration) or 0) * 1000


@dataclass
class Listing:
    """Whether the pages of one ListAgentStates read add up: one TotalCount on every page,
    no agent twice, and as many agents as that. Rows can move between pages while they are
    read (their order is undocumented), so an agent missing from a listing that does not
    add up may simply have been on another page."""

    totals: set[int] = field(default_factory=set)
    ids: list[str] = field(default_factory=list)

    def add(self, page: tuple[int, int, int] | None, rows: Iterable[AgentStateRow]) -> None:
        if page is not None:
            self.totals.add(page[0])
        self.ids += [row.agent_id or "" for row in rows]

    def complete(self) -> bool:
        agents = len(set(self.ids))
        return len(self.totals) == 1 and agents == len(self.ids) == next(iter(self.totals))

    def summary(self) -> dict[str, object]:
        return {
            "total_counts": sorted(self.totals),
            "rows": len(self.ids),
            "agents": len(set(self.ids)),
        }


def checked_out(rows: Iterable[AgentEventRow]) -> dict[str, int]:
    """Per agent (RamId), the time of its latest check-out among these ListAgentEvents rows."""
    latest: dict[str, int] = {}
    for row in rows:
        if (row.event or "").strip() != CHECK_OUT or row.ram_id is None:
            continue
        if row.event_time is not None:
            agent_id = str(row.ram_id)
            latest[agent_id] = max(latest.get(agent_id, 0), row.event_time)
    return latest


def logout_event(
    instance_id: str,
    agent_id: str,
    change: tuple[KnownState, int],
    now_ms: int,
    skill_groups: Mapping[str, list[str]],
) -> Emitted:
    """The agent, last known in `change[0]`, checked out at `change[1]` (ms)."""
    before, at_ms = change
    return _state_event(
        instance_id,
        agent_id,
        (before, KnownState(OFFLINE, at_ms)),
        now_ms,
        snapshot=False,
        names=(None, None),
        skill_groups=skill_groups.get(agent_id, []),
    )


def _state_event(  # noqa: PLR0913 - one agent's change, spelled out
    instance_id: str,
    agent_id: str,
    change: tuple[KnownState | None, KnownState],
    now_ms: int,
    *,
    snapshot: bool,
    names: tuple[str | None, str | None],
    skill_groups: list[str],
) -> Emitted:
    before, after = change
    data = AgentStateChanged(
        instance_id=instance_id,
        agent_id=agent_id,
        login_name=names[0],
        agent_name=names[1],
        state=after.state,
        normalized_state=normalized(after.state),
        previous_state=None if before is None else before.state,
        state_since=from_ms(after.since_ms),
        observed_at=from_ms(now_ms),
        snapshot=snapshot,
        skill_group_ids=skill_groups,
    )
    # A change is a fact: when it began, to the second, identifies it. A snapshot is an
    # observation, so when it was made is part of what it is.
    since_s = after.since_ms // 1000
    fact = ("snapshot", now_ms) if snapshot else ("changed", before.state if before else None)
    return Emitted(
        event_id(data.event_type, instance_id, agent_id, after.state, since_s, *fact),
        from_ms(now_ms if snapshot else after.since_ms),
        data,
    )


# -- agent state logs ---------------------------------------------------------------------


def state_log_events(
    instance_id: str, agent_id: str, entries: Sequence[AgentStateLogEntry]
) -> list[Emitted]:
    """One event per ListAgentStateLogs entry; equal entries are told apart by their order."""
    seen: Counter[tuple[int, str, str]] = Counter()
    events = []
    for entry in entries:
        at = _int(entry.state_time) or 0
        identity = (at, entry.state or "", entry.contact_id or "")
        seen[identity] += 1
        data = AgentStateLogged(
            instance_id=instance_id,
            agent_id=agent_id,
            state=entry.state or "",
            normalized_state=normalized(entry.state or ""),
            state_code=entry.state_code or None,
            state_time=from_ms(at),
            contact_id=entry.contact_id or None,
            connect_id=entry.connect_id or None,
            counter_party=entry.counter_party or None,
            skill_group_ids=_split(entry.skill_group_ids),
        )
        ident = event_id(data.event_type, instance_id, agent_id, *identity, seen[identity])
        events.append(Emitted(ident, data.state_time, data))
    return events


def windows(start_ms: int, end_ms: int, max_ms: int) -> list[tuple[int, int]]:
    """Half-open windows [a, b) covering [start, end), none longer than `max_ms`."""
    if max_ms <= 0:
        raise ValueError("max_ms must be positive")
    return [(a, min(a + max_ms, end_ms)) for a in range(start_ms, end_ms, max_ms)]


# -- calls --------------------------------------------------------------------------------


BUCKET_MS = 60_000  # the calls poller's unit of look-back: minutes of call start
Cell = tuple[int, int]  # (start minute, minutes from start to end) of a call


class CallsCursor(BaseModel):
    """The calls checkpoint: how many records were seen per cell, not which, so it stays a
    few kilobytes however many calls the look-back holds (a cell per start minute and length
    in minutes: at most look-back squared over two)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    watermark_ms: int  # CCC's time at the last cycle
    cells: list[tuple[int, int, int]] = Field(default_factory=list)  # (start, length, seen)
    # The earlier format (contact id -> start ms): read after an upgrade, never written.
    seen: dict[str, int] | None = None


def cell_of(record: CallDetailRecordRow) -> Cell:
    start = _int(record.start_time) or 0
    end = start + (_int(record.duration) or 0) * 1000
    return start // BUCKET_MS, end // BUCKET_MS - start // BUCKET_MS


class CallBook:
    """The records seen in the look-back, so a poll reads only the minutes whose count grew.

    It relies on CCC's records never changing or vanishing once queryable, and on
    TotalCount being exact. In memory it knows every contact id it saw; after a restart only
    the counts per cell: a cell read again with as many unknown records as it counted holds
    nothing new, and one with more is published whole (those seen come again, same ids).
    """

    def __init__(self, cursor: CallsCursor | None = None) -> None:
        self._ids: dict[str, Cell] = {}
        self._cells: Counter[Cell] = Counter()  # records seen per cell
        self._unknown: Counter[Cell] = Counter()  # of those, ones whose ids a restart lost
        if cursor is not None:
            for start, length, seen in cursor.cells:
                self._cells[start, length] += seen
                self._unknown[start, length] += seen
            for contact_id, start_ms in (cursor.seen or {}).items():
                self._ids[contact_id] = (start_ms // BUCKET_MS, 0)
                self._cells[start_ms // BUCKET_MS, 0] += 1

    def known(self, first: int, last: int) -> int:
        """Records seen that started in minutes [first, last)."""
        return sum(n for (start, _), n in self._cells.items() if first <= start < last)

    def fresh(self, records: Iterable[CallDetailRecordRow]) -> list[CallDetailRecordRow]:
        """Of every record of some whole minutes, those to publish."""
        unknown: dict[Cell, dict[str, CallDetailRecordRow]] = {}
        for record in records:
            contact_id = required(record.contact_id, "ContactId")
            if contact_id not in self._ids:
                unknown.setdefault(cell_of(record), {})[contact_id] = record
        fresh: list[CallDetailRecordRow] = []
        for cell, found in unknown.items():
            counted = self._unknown.pop(cell, 0)
            if counted and len(found) <= counted:
                # Exactly those seen before the restart: known again, nothing to publish.
                self._ids |= dict.fromkeys(found, cell)
                self._cells[cell] -= counted - len(found)
                continue
            self._cells[cell] -= counted  # which of them are new is unknown: all go again
            fresh += found.values()
        return fresh

    def add(self, record: CallDetailRecordRow) -> None:
        """The record is published."""
        contact_id = required(record.contact_id, "ContactId")
        if contact_id not in self._ids:
            cell = self._ids[contact_id] = cell_of(record)
            self._cells[cell] += 1

    def rewind(self, first: int) -> None:
        """CCC's clock went back: minutes from `first` on are read and published again."""
        self._keep(lambda start: start < first)

    def forget(self, first: int) -> None:
        """Minutes before `first` fell out of the look-back."""
        self._keep(lambda start: start >= first)

    def _keep(self, minute: Callable[[int], bool]) -> None:
        """Only what started in minutes that `minute` accepts."""
        self._ids = {c: cell for c, cell in self._ids.items() if minute(cell[0])}
        self._cells = Counter({cell: n for cell, n in self._cells.items() if minute(cell[0])})
        self._unknown = Counter({cell: n for cell, n in self._unknown.items() if minute(cell[0])})

    def cursor(self, watermark_ms: int) -> CallsCursor:
        cells = [(start, length, n) for (start, length), n in sorted(self._cells.items()) if n]
        return CallsCursor(watermark_ms=watermark_ms, cells=cells)


def call_record_event(instance_id: str, record: CallDetailRecordRow) -> Emitted:
    ids = _split(record.skill_group_id_list)
    names = _split(record.skill_group_names)
    data = CallRecordData(
        instance_id=instance_id,
        contact_id=record.contact_id,
        contact_type=record.contact_type,
        contact_disposition=record.contact_disposition,
        calling_number=record.calling_number,
        called_number=record.called_number,
        start_time=from_ms(_int(record.start_time) or 0),
        duration_s=_int(record.duration),
        agents=[
            CallAgent(agent_id=a.agent_id, satisfaction=a.satisfaction, feedback=a.feedback)
            for a in (record.agents.call_detail_agent if record.agents is not None else [])
        ],
        agent_names=_split(record.agent_names),
        skill_groups=[
            SkillGroupRef(skill_group_id=gid, skill_group_name=names[i] if i < len(names) else None)
            for i, gid in enumerate(ids)
        ],
        satisfaction=_int(record.satisfaction),
        satisfaction_desc=record.satisfaction_desc or None,
        recordings=[
            Recording(
                file_name=r.file_name,
                agent_id=r.agent_id,
                agent_name=r.agent_name,
                start_time=None if (at := _int(r.start_time)) is None else from_ms(at),
                duration_s=_int(r.duration),
                file_description=r.file_description,
            )
            for r in (record.recordings.recording if record.recordings is not None else [])
        ],
    )
    return Emitted(event_id(data.event_type, instance_id, data.contact_id), data.start_time, data)


def call_step_events(
    instance_id: str, contact_id: str, steps: Sequence[CallEventRow], start_time: datetime
) -> list[Emitted]:
    """ListCallEventDetailByContactId's steps, numbered from 1 in the order CCC lists them."""
    events = []
    for seq, step in enumerate(steps, start=1):
        data = CallEventData(
            instance_id=instance_id,
            contact_id=contact_id,
            seq=seq,
            event=step.event,
            status=step.status,
            time=step.time_stamp,
            agent_name=step.agent_name or None,
            skill_group=(step.detail_data.skill_group or None) if step.detail_data else None,
            call_mode=step.call_mode,
            duration_s=_int(step.duration),
        )
        ident = event_id(data.event_type, instance_id, contact_id, seq)
        events.append(Emitted(ident, start_time, data))
    return events


# -- skill groups -------------------------------------------------------------------------


def skill_group_events(
    instance_id: str, rows: Iterable[SkillGroupStateRow], now_ms: int
) -> list[Emitted]:
    """One snapshot per skill group: an observation, so its time is part of its id."""
    events = []
    for row in rows:
        data = SkillGroupState(
            instance_id=instance_id,
            skill_group_id=row.skill_group_id,
            skill_group_name=row.skill_group_name,
            logged_in_agents=row.logged_in_agents or 0,
            ready_agents=row.ready_agents or 0,
            talking_agents=row.talking_agents or 0,
            working_agents=row.working_agents or 0,
            breaking_agents=row.breaking_agents or 0,
            waiting_calls=row.waiting_calls or 0,
            longest_call_s=row.longest_call or 0,
            observed_at=from_ms(now_ms),
        )
        ident = event_id(data.event_type, instance_id, data.skill_group_id, now_ms)
        events.append(Emitted(ident, data.observed_at, data))
    return events
