"""The agent-state poller against a hand-written CCC: absence proves no logout, a check-out in
ListAgentEvents does, an agent back from a quiet spell is no login, and a listing whose pages
do not add up marks nobody absent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from service.cloudevents import Emitted
from service.events.models import AgentStateChanged
from service.events.pollers import AgentStatePoller, Directory, InstancePorts

NOW = 1_790_000_000_000
AGENTS = ("a", "b", "c")


def row(agent: str, state: str, duration_s: int = 5) -> Any:
    return SimpleNamespace(
        agent_id=agent,
        state=state,
        state_duration=str(duration_s),
        login_name=None,
        agent_name=None,
    )


@dataclass
class Page:
    rows: list[Any]
    total: int

    def items(self) -> list[Any]:
        return self.rows

    def page(self) -> tuple[int, int, int]:
        return (self.total, 1, 100)


@dataclass
class FakeCcc:
    """Answers ListAgentStates with the pages set for it, ListAgentEvents with the check-outs
    set for it (and records what it was asked), ListUsers with AGENTS."""

    now_ms: int = NOW
    pages_: list[Page] = field(default_factory=list)
    check_outs: dict[str, int] = field(default_factory=dict)  # RamId -> EventTime
    asked: list[Mapping[str, Any]] = field(default_factory=list)
    directory_reads: int = 0

    def listing(self, *rows: Any, total: int | None = None) -> None:
        self.pages_ = [Page(list(rows), len(rows) if total is None else total)]

    async def call(self, action: str, params: Mapping[str, Any] | None = None) -> Any:
        assert action == "ListAgentEvents"
        assert params is not None
        self.asked.append(params)
        events = [
            SimpleNamespace(event="签出", event_time=at, ram_id=ram_id)
            for ram_id, at in self.check_outs.items()
            if str(ram_id) in params["RamId"] and params["StartTime"] <= at < params["StopTime"]
        ]
        return SimpleNamespace(items=lambda: events)

    async def pages(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,  # noqa: ARG002 - one instance
    ) -> AsyncIterator[Any]:
        assert action == "ListAgentStates"
        for page in self.pages_:
            yield page

    async def iter_items(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,  # noqa: ARG002 - one instance
    ) -> AsyncIterator[Any]:
        assert action == "ListUsers"
        self.directory_reads += 1
        for agent in AGENTS:
            yield SimpleNamespace(ram_id=agent, skill_levels=None)

    def server_time_ms(self) -> int:
        return self.now_ms


@dataclass
class Published:
    events: list[Emitted] = field(default_factory=list)

    async def publish(self, events: Sequence[Emitted]) -> None:
        self.events += events

    def changes(self) -> list[tuple[str, str | None, str]]:
        found = []
        for event in self.events:
            data = event.data
            assert isinstance(data, AgentStateChanged)
            found.append((data.agent_id, data.previous_state, data.state))
        self.events.clear()
        return found


class Checkpoints:
    def get(self, key: str) -> Mapping[str, Any] | None:  # noqa: ARG002 - none kept
        return None

    def age_s(self, key: str) -> float:  # noqa: ARG002 - all written just now
        return 0.0

    async def save(self, key: str, value: Mapping[str, Any]) -> None:  # noqa: ARG002 - refused
        raise AssertionError("the agent-state poller keeps no checkpoint")


def poller(ccc: FakeCcc, published: Published, check_s: float) -> AgentStatePoller:
    directory = Directory(ccc, "i")
    ports = InstancePorts("i", ccc, published, Checkpoints(), directory)
    return AgentStatePoller(ports, check_s, batch=100)


async def test_a_quiet_agent_is_not_logged_out_and_comes_back_from_its_last_state() -> None:
    ccc, published = FakeCcc(), Published()
    states = poller(ccc, published, check_s=0)  # look every cycle
    stop = asyncio.Event()
    ccc.listing(row("a", "Ready"), row("b", "Break"))
    await states.cycle(stop)
    assert [c[0] for c in published.changes()] == ["a", "b"]  # the snapshot
    ccc.now_ms += 4 * 3600_000
    ccc.listing(row("a", "Ready", 4 * 3600 + 5))  # b quiet for 4 hours: not listed
    await states.cycle(stop)
    assert published.changes() == [], "absence alone is no logout"
    assert ccc.asked[-1]["RamId"] == ["b"]  # but it was looked for
    ccc.now_ms += 60_000
    ccc.listing(row("a", "Ready", 4 * 3600 + 65), row("b", "Ready", 2))
    await states.cycle(stop)
    assert published.changes() == [("b", "Break", "Ready")], "no login: back from its break"


async def test_a_check_out_is_the_logout_and_what_follows_a_login() -> None:
    ccc, published = FakeCcc(), Published()
    states = poller(ccc, published, check_s=3600)  # not due: only agents listed again
    stop = asyncio.Event()
    ccc.listing(row("a", "Ready"), row("b", "Talking"))
    await states.cycle(stop)
    published.changes()
    ccc.now_ms += 10_000
    ccc.listing(row("a", "Ready", 15))  # complete, without b: b is absent from now
    await states.cycle(stop)
    assert published.changes() == []
    assert ccc.asked == [], "not due yet"
    ccc.check_outs = {"b": ccc.now_ms + 1000}
    ccc.now_ms += 20_000
    ccc.listing(row("a", "Ready", 35), row("b", "Ready", 3))  # b is back: looked for at once
    await states.cycle(stop)
    assert published.changes() == [("b", "Talking", "Offline"), ("b", "Offline", "Ready")]


async def test_a_listing_that_does_not_add_up_marks_nobody_absent_for_a_while() -> None:
    ccc, published = FakeCcc(), Published()
    states = poller(ccc, published, check_s=30)
    stop = asyncio.Event()
    ccc.listing(row("a", "Ready"), row("b", "Ready"), row("c", "Ready"))
    await states.cycle(stop)
    published.changes()
    # c moved between pages while they were read: two rows for three agents, and a seen twice.
    for step in range(5):
        ccc.now_ms += 2_000
        ccc.listing(row("a", "ACW" if step else "Ready"), row("a", "Ready"), total=3)
        ccc.pages_.append(Page([row("b", "Ready")], 3))
        await states.cycle(stop)
    assert published.changes() == [("a", "Ready", "ACW")], "a's change once, nothing of c"
    assert ccc.asked == [], "c missed by listings that do not add up: not absent yet"
    ccc.now_ms += 30_000  # unlisted for longer than the check interval: looked for
    await states.cycle(stop)
    assert [params["RamId"] for params in ccc.asked] == [["c"]]
    assert published.changes() == []


async def test_the_directory_is_read_once_when_needed_then_only_by_its_own_stream() -> None:
    ccc = FakeCcc()
    directory = Directory(ccc, "i")
    stop = asyncio.Event()
    await directory.cycle(stop)  # nobody needed it yet: the first stream to need it reads it
    assert ccc.directory_reads == 0
    first = await asyncio.gather(directory.agents(), directory.agents())
    assert first[0] == first[1] == {agent: [] for agent in AGENTS}
    assert ccc.directory_reads == 1  # two streams starting together: one read
    await directory.agents()
    assert ccc.directory_reads == 1  # a stream never waits for a re-read
    await directory.cycle(stop)
    assert ccc.directory_reads == 2
