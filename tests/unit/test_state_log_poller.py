"""The state-log poller's net against a hand-written CCC: a batch ListAgentEvents refuses
(an agent removed since the directory was read spoils its whole batch) is not taken for
quiet agents; every agent of it is read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from service.ccc.errors import CccRequestError
from service.events.pollers import Directory, InstancePorts, StateLogPlan, StateLogPoller
from service.events.tracking import Tracker
from tests.unit.test_agent_state_poller import NOW, Published

AGENTS = ("101", "102", "103")


@dataclass
class FakeCcc:
    """ListUsers lists AGENTS; ListAgentEvents refuses a RamId (`refuse`) or has no event;
    ListAgentStateLogs has no entry, and records whose logs were asked for."""

    refuse: bool
    read: list[str] = field(default_factory=list)

    async def call(self, action: str, params: Mapping[str, Any] | None = None) -> Any:  # noqa: ARG002 - no event either way
        assert action == "ListAgentEvents"
        if self.refuse:
            raise CccRequestError(
                "The RamId 104 does not exist in instance i.",
                action=action,
                code="NotExists.RamId",
                http_status=404,
                request_id=None,
            )
        return SimpleNamespace(items=list)

    async def iter_items(
        self, action: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Any]:
        if action == "ListUsers":
            for agent in AGENTS:
                yield SimpleNamespace(ram_id=agent, skill_levels=None)
            return
        assert action == "ListAgentStateLogs"
        assert params is not None
        self.read.append(str(params["RamId"]))  # and no entry

    async def pages(
        self, action: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Any]:
        raise AssertionError(f"not asked of this poller: {action} {params}")
        yield  # an async generator, as the client's

    def server_time_ms(self) -> int:
        return NOW


class Checkpoints:
    def __init__(self) -> None:
        self.saved: dict[str, Mapping[str, Any]] = {}

    def get(self, key: str) -> Mapping[str, Any] | None:
        return self.saved.get(key)

    def age_s(self, key: str) -> float:  # noqa: ARG002 - all written just now
        return 0.0

    async def save(self, key: str, value: Mapping[str, Any]) -> None:
        self.saved[key] = value


async def net_once(ccc: FakeCcc) -> list[str]:
    """One cycle of the poller with the net alone (no listings), from an hour back."""
    ports = InstancePorts("i", ccc, Published(), Checkpoints(), Directory(ccc, "i"))
    tracker = Tracker(unlisted_ms=30_000, spacing_s=0.0, listings=False)
    plan = StateLogPlan(
        settle_ms=0, backfill_ms=3_000_000, net_s=60.0, batch=100, concurrency=4, save_s=0.0
    )
    await StateLogPoller(ports, tracker, plan).cycle(asyncio.Event())
    return sorted(ccc.read)


async def test_a_batch_the_net_cannot_read_is_read_agent_by_agent() -> None:
    assert await net_once(FakeCcc(refuse=True)) == sorted(AGENTS)


async def test_a_batch_the_net_reads_without_events_costs_no_state_log_read() -> None:
    assert await net_once(FakeCcc(refuse=False)) == []
