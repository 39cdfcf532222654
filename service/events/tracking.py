"""Which agents' state logs are worth reading, from what CCC shows for free or cheaply.

ListAgentStateLogs takes one agent per call, and most agents have nothing new in a window,
so reading every agent on every cycle wastes most calls (issue 13). The tracker marks an
agent changed only on evidence:

- ListAgentStates, which the agent-state stream reads anyway: a state whose StateDuration
  began after the agent's log was last done (a new state, and A -> B -> A too), or an
  agent that appeared or disappeared;
- ListAgentEvents, many agents per call (the "net"): any event since what was read. It
  catches what rows cannot show, a login and logout between two listings, and what no
  listing saw while this process was not running (a restart, a takeover).

Per agent it keeps `done_ms`: every log entry before it is published, or known not to exist.
An agent listed without change moves `done_ms` up to its sighting; one that is not listed
only as far as the net has looked. Pure: the poller feeds it rows and events and reads
what it says. Times are CCC's (ms); the spacing between reads is the caller's clock.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# StateDuration is whole seconds, and CCC's time is read from its Date header to the second:
# a change can look up to about this much earlier or later than it was.
MARGIN_MS = 2000
# When CCC's clock goes back, at least this much of its new timeline is read again, however
# recent the last position: our own clock cannot say when the jump came (a restarted
# emulator's clock also runs faster than ours).
REWIND_FLOOR_MS = 30 * 60_000


def rewound(position_ms: int, now_ms: int, age_s: float) -> int | None:
    """Where to read again from when CCC's clock (`now_ms`) is behind `position_ms`, a time
    of its own reached `age_s` ago on our clock; None while it is not behind. CCC stamps
    what happens next with times already read, from the moment its clock went back (within
    `age_s`): everything since is read again, with the same ids for what was published."""
    if now_ms >= position_ms - MARGIN_MS:
        return None
    return now_ms - max(int(age_s * 1000), REWIND_FLOOR_MS) - MARGIN_MS


@dataclass(slots=True)
class _Agent:
    done_ms: int
    resolved_ms: int | None = None  # the last listing that told its status; None: none yet
    listed: bool = False  # its status then
    # Unread changes: the first and the last lie in the log before these times (ms).
    changed: tuple[int, int] | None = None
    read_at: float = float("-inf")  # when it was last read, on the caller's clock


class Tracker:
    """Per agent of one instance: how far its state logs are done, and whether to read them."""

    def __init__(self, *, unlisted_ms: int, spacing_s: float, listings: bool = True) -> None:
        self._unlisted_ms = unlisted_ms  # unlisted this long, an agent counts as absent
        self._spacing_s = spacing_s  # an agent is read at most once per this
        self._listings = listings  # False: no ListAgentStates feed, the net alone tells
        self._agents: dict[str, _Agent] = {}
        self._restored: dict[str, int] = {}
        self.floor_ms = 0  # where an agent new to the tracker starts
        self.net_ms = 0  # ListAgentEvents has been read up to here for every agent
        self.loaded = False

    # -- progress, as the checkpoint keeps it

    def load(self, saved: Mapping[str, Any] | None, start_ms: int) -> None:
        """From a checkpoint, or (None) a first start reading from `start_ms`."""
        if saved is None:
            self.floor_ms = self.net_ms = start_ms
        else:
            self.floor_ms = int(saved["watermark_ms"])
            self.net_ms = int(saved.get("net_ms", self.floor_ms))
            behind = saved.get("behind_ms", {})
            self._restored = {agent: self.floor_ms - int(lag) for agent, lag in behind.items()}
        self.loaded = True

    def checkpoint(self) -> dict[str, Any]:
        """A common watermark (the median agent's progress) and the agents behind it, so its
        size grows with the agents that lag, not with the instance. Agents ahead of it are
        read again from it after a restart: the same events, with the same ids."""
        if self._agents:
            self.floor_ms = int(statistics.median_low(a.done_ms for a in self._agents.values()))
        behind = {
            agent_id: self.floor_ms - agent.done_ms
            for agent_id, agent in self._agents.items()
            if agent.done_ms < self.floor_ms
        }
        return {"watermark_ms": self.floor_ms, "net_ms": self.net_ms, "behind_ms": behind}

    @property
    def position_ms(self) -> int:
        """The furthest CCC time anything is done to."""
        done = (agent.done_ms for agent in self._agents.values())
        return max(self.net_ms, self.floor_ms, *self._restored.values(), *done)

    def rewind(self, to_ms: int) -> None:
        """CCC's clock went back: nothing after `to_ms` counts as done or seen any more."""
        self.net_ms, self.floor_ms = min(self.net_ms, to_ms), min(self.floor_ms, to_ms)
        self._restored = {agent: min(done, to_ms) for agent, done in self._restored.items()}
        for agent in self._agents.values():
            agent.done_ms = min(agent.done_ms, to_ms)
            if agent.resolved_ms is not None:
                agent.resolved_ms = min(agent.resolved_ms, to_ms)
            if agent.changed is not None:
                agent.changed = (min(agent.changed[0], to_ms), agent.changed[1])

    def sync(self, agent_ids: Iterable[str]) -> None:
        """The instance's agents now (the directory): new ones start at the floor, removed
        ones are forgotten (CCC would refuse their RamId)."""
        wanted = set(agent_ids)
        for agent_id in self._agents.keys() - wanted:
            del self._agents[agent_id]
        for agent_id in wanted - self._agents.keys():
            self._add(agent_id)

    def drop(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)

    def _add(self, agent_id: str) -> _Agent:
        done = self._restored.pop(agent_id, self.floor_ms)
        agent = self._agents[agent_id] = _Agent(done)
        return agent

    # -- evidence

    def listing(
        self, started_ms: int, sightings: Mapping[str, tuple[int, int]], *, complete: bool
    ) -> None:
        """One ListAgentStates read that began at `started_ms`: per listed agent when its
        state began (from StateDuration) and when its page was read. `complete`:
        the pages added up, so an agent not in them was not listed."""
        if not self.loaded:
            return
        for agent_id, (since_ms, seen_ms) in sightings.items():
            agent = self._agents.get(agent_id) or self._add(agent_id)
            appeared = agent.resolved_ms is not None and not agent.listed
            # A state that began after what is done: its start, and whatever came between
            # (A -> B -> A included), is unread. One that began before: nothing since.
            if appeared or since_ms >= agent.done_ms - MARGIN_MS:
                # Every unread change lies before the current state began.
                self._changed(agent, min(since_ms, seen_ms) + MARGIN_MS)
            agent.resolved_ms, agent.listed = seen_ms, True
        for agent_id, agent in self._agents.items():
            if agent_id in sightings:
                continue
            unlisted_long = (
                agent.resolved_ms is not None
                and started_ms - agent.resolved_ms >= self._unlisted_ms
            )
            if not (complete or unlisted_long):
                continue  # maybe on a page that moved: not known either way
            if agent.listed:
                self._changed(agent, started_ms + MARGIN_MS)  # gone: logged out, or quiet
            agent.resolved_ms, agent.listed = started_ms, False

    def event(self, agent_id: str, at_ms: int) -> None:
        """ListAgentEvents has an event of the agent at `at_ms`."""
        agent = self._agents.get(agent_id)
        if agent is not None and at_ms >= agent.done_ms:
            self._changed(agent, at_ms + 1)

    def suspect(self, agent_ids: Iterable[str], before_ms: int) -> None:
        """Nothing is known of these agents up to `before_ms`: read them."""
        for agent_id in agent_ids:
            agent = self._agents.get(agent_id)
            if agent is not None:
                self._changed(agent, before_ms)

    @staticmethod
    def _changed(agent: _Agent, before_ms: int) -> None:
        first, last = agent.changed or (before_ms, before_ms)
        agent.changed = (min(first, before_ms), max(last, before_ms))

    # -- what to read

    def advance(self, end_ms: int) -> None:
        """Unchanged agents are done up to what the evidence covers, at most `end_ms`."""
        for agent in self._agents.values():
            if agent.changed is not None:
                continue
            if not self._listings:
                bound = self.net_ms
            elif agent.resolved_ms is None:
                continue
            elif agent.listed:
                bound = agent.resolved_ms - MARGIN_MS
            else:  # a login and logout between two listings shows in the net only
                bound = min(agent.resolved_ms - MARGIN_MS, self.net_ms)
            agent.done_ms = max(agent.done_ms, min(end_ms, bound))

    def due(self, end_ms: int, now: float) -> list[tuple[str, int]]:
        """Changed agents whose change lies before `end_ms` and that were not read within
        the spacing, oldest progress first, with where each one's reading starts."""
        due = [
            (agent_id, agent.done_ms)
            for agent_id, agent in self._agents.items()
            if agent.changed is not None
            and agent.changed[0] <= end_ms
            and agent.done_ms < end_ms
            and now - agent.read_at >= self._spacing_s
        ]
        due.sort(key=lambda item: item[1])
        return due

    def read(self, agent_id: str, end_ms: int, now: float) -> None:
        """The agent's entries before `end_ms` are published."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        agent.done_ms, agent.read_at = max(agent.done_ms, end_ms), now
        if agent.changed is not None:
            last = agent.changed[1]
            # A change seen while it was read may lie past the window: it stays to read.
            agent.changed = None if last <= end_ms else (last, last)

    def behind_ms(self, now_ms: int) -> int:
        """How far behind CCC's `now_ms` the oldest unread change is (0: none)."""
        pending = [a.done_ms for a in self._agents.values() if a.changed is not None]
        return max(0, now_ms - min(pending)) if pending else 0
