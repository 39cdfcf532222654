"""Splitting the instances between replicas: which instances a partition stands for, and
the poller set's own rules (checkpoints read before polling, a failed loop ending it), with
hand-written fakes instead of CCC and Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from service.ccc.errors import CccApiError
from service.ccc.settings import CccSettings
from service.cloudevents import Emitted
from service.events.assignment import ASSIGNOR, Pollers, instances_of
from service.kafka.consumer import ASSIGNORS
from service.settings import PollerSettings, Settings
from tests.inspection import eventually

INSTANCES = st.lists(st.text(min_size=1, max_size=8), max_size=30)
NOTHING: tuple[Any, ...] = ()


@given(INSTANCES, st.integers(min_value=1, max_value=12))
def test_every_instance_belongs_to_exactly_one_partition(instances: list[str], count: int) -> None:
    split = [instances_of({p}, instances, count) for p in range(count)]
    owned = [instance for share in split for instance in share]
    assert sorted(owned) == sorted(set(instances))
    # As even as it can be: with enough partitions, one instance each at most.
    sizes = [len(share) for share in split]
    assert max(sizes) - min(sizes) <= 1


@given(INSTANCES, st.integers(min_value=1, max_value=12), st.randoms())
def test_the_order_of_the_configured_list_makes_no_difference(
    instances: list[str], count: int, rng: Any
) -> None:
    shuffled = [*instances, *instances[:2]]  # and a repeated one counts once
    rng.shuffle(shuffled)
    for p in range(count):
        assert instances_of({p}, shuffled, count) == instances_of({p}, instances, count)


def test_replicas_holding_two_partitions_each_poll_two_of_six_instances() -> None:
    instances = [f"ccc-{n}" for n in range(6)]
    assert instances_of({0, 3}, instances, 6) == ["ccc-0", "ccc-3"]
    assert instances_of({1, 4}, instances, 6) == ["ccc-1", "ccc-4"]
    assert instances_of(set(), instances, 6) == []  # more replicas than partitions


def shares(instances: list[str], partitions: int, members: int) -> list[list[str]]:
    """The instances each member polls, as the group's assignor deals the partitions out."""
    cluster = SimpleNamespace(partitions_for_topic=lambda _: set(range(partitions)))
    assignor = ASSIGNORS[ASSIGNOR]
    metadata = assignor.metadata(["pollers"])
    dealt = assignor.assign(cluster, {f"member-{m:02}": metadata for m in range(members)})
    return [
        instances_of({tp.partition for tp in assignment.partitions()}, instances, partitions)
        for assignment in dealt.values()
    ]


@given(
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=1, max_value=12),
)
def test_replicas_poll_as_many_instances_give_or_take_one(
    count: int, partitions: int, members: int
) -> None:
    """When the instances fill the first partitions only, or each replica gets as many
    partitions as the others; else the partitions themselves are uneven."""
    assume(count <= partitions or partitions % members == 0)
    polled = shares([f"ccc-{n}" for n in range(count)], partitions, members)
    assert sorted(i for share in polled for i in share) == sorted(f"ccc-{n}" for n in range(count))
    sizes = [len(share) for share in polled]
    assert max(sizes) - min(sizes) <= 1, polled


def test_a_commands_only_process_has_no_stream() -> None:
    assert not PollerSettings.off().any_stream
    assert PollerSettings().any_stream


# -- the poller set with fakes ---------------------------------------------------------


class QuietCcc:
    """A contact centre with no agents, calls or groups: every list is empty."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure  # raised by ListAgentStates, when given

    async def call(self, *_: object, **__: object) -> Any:
        return SimpleNamespace(items=list, page=lambda: (0, 1, 100))

    async def pages(self, *_: object, **__: object) -> AsyncIterator[Any]:
        if self.failure is not None:
            raise self.failure
        for page in NOTHING:
            yield page

    async def iter_items(self, *_: object, **__: object) -> AsyncIterator[Any]:
        for item in NOTHING:
            yield item

    def server_time_ms(self) -> int:
        return 1_790_000_000_000


class Published:
    async def publish(self, events: Sequence[Emitted]) -> None:
        pass


class Stored:
    """Checkpoints in a dict; `done` lists what was asked of it, in order."""

    def __init__(self) -> None:
        self.values: dict[str, Mapping[str, Any]] = {}
        self.done: list[str | set[str]] = []  # a read's keys, or a saved key

    def get(self, key: str) -> Mapping[str, Any] | None:
        return self.values.get(key)

    def age_s(self, key: str) -> float:  # noqa: ARG002 - all written just now
        return 0.0

    async def save(self, key: str, value: Mapping[str, Any]) -> None:
        self.done.append(key)
        self.values[key] = value

    async def load(self, keys: Collection[str]) -> None:
        self.done.append(set(keys))


def alone(instances: list[str], **pollers: Any) -> Settings:
    return Settings(
        ccc=CccSettings(instances=instances),
        pollers=PollerSettings(split="none", agent_states_interval_s=0.01, **pollers),
    )


async def test_alone_it_reads_every_checkpoint_then_polls_and_stops_when_asked() -> None:
    checkpoints = Stored()
    pollers = Pollers(alone(["b", "a", "b"]), QuietCcc(), Published(), checkpoints)
    assert pollers.assignment_problem() is not None
    stop = asyncio.Event()
    running = asyncio.create_task(pollers.run(stop))

    async def polling() -> bool:
        return pollers.assignment_problem() is None and len(checkpoints.values) == 4

    await eventually(polling)
    # One read, before any save: the streams that keep a checkpoint, of each instance once.
    keys = {"a:agent-state-logs", "a:calls", "b:agent-state-logs", "b:calls"}
    assert checkpoints.done[0] == keys
    assert not any(isinstance(done, set) for done in checkpoints.done[1:])
    stop.set()
    await asyncio.wait_for(running, timeout=5)


async def test_a_loop_that_cannot_go_on_ends_the_set_with_its_own_error() -> None:
    """Not wrapped in a group: the service's one line names CCC's error, as it did before."""
    revoked = CccApiError(
        "revoked", action="ListAgentStates", code="InvalidAccessKeyId.NotFound",
        http_status=404, request_id=None,
    )  # fmt: skip
    pollers = Pollers(alone(["a", "b"]), QuietCcc(revoked), Published(), Stored())
    with pytest.raises(CccApiError) as raised:
        await asyncio.wait_for(pollers.run(asyncio.Event()), timeout=5)
    assert raised.value is revoked


async def test_with_no_stream_it_takes_no_share_and_is_ready() -> None:
    settings = Settings(ccc=CccSettings(instances=["a"]), pollers=PollerSettings.off())
    checkpoints = Stored()
    pollers = Pollers(settings, QuietCcc(), Published(), checkpoints)
    await asyncio.wait_for(pollers.run(asyncio.Event()), timeout=5)
    assert pollers.assignment_problem() is None
    assert checkpoints.done == []
