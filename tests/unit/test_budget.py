"""The CCC call budget: priorities, FIFO, rate, cancellation, AIMD and the stream context.

Time is virtual: the budget's clock is also the event loop's, so its timers fire only when a
test moves the clock, and nothing here sleeps for real.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from service.ccc.budget import (
    FLOOR_PER_S,
    RATE_WINDOW_S,
    STREAMS,
    Budget,
    calling_as,
    current_stream,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(asyncio.get_running_loop(), "time", clock)
    return clock


async def settle() -> None:
    """Let due timers fire and the waiters they grant run."""
    for _ in range(10):
        await asyncio.sleep(0)


async def advance(clock: Clock, seconds: float) -> None:
    clock.now += seconds
    await settle()


class Callers:
    """Tasks acquiring the budget, and the order they were let through in."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.through: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, stream: str, name: str | None = None) -> asyncio.Task[None]:
        async def call() -> None:
            await self.budget.acquire(stream)
            self.through.append(name or stream)

        task = asyncio.create_task(call())
        self.tasks.append(task)
        return task

    async def drain(self, tokens: int) -> None:
        """Spend the bucket's burst, so the next callers queue."""
        for _ in range(tokens):
            await self.budget.acquire("commands")


async def test_contended_tokens_go_to_commands_then_by_stream_priority(clock: Clock) -> None:
    budget = Budget(4.0, clock=clock)
    callers = Callers(budget)
    await callers.drain(4)
    for stream in ["agent_state_logs", "calls", "directory", "commands", "agent_states"]:
        callers.start(stream)
    await settle()
    assert callers.through == []
    for _ in range(5):
        await advance(clock, 0.25)  # one token each
    assert callers.through == ["commands", "agent_states", "calls", "agent_state_logs", "directory"]


async def test_one_priority_is_served_first_come_first_served(clock: Clock) -> None:
    budget = Budget(4.0, clock=clock)
    callers = Callers(budget)
    await callers.drain(4)
    for n in range(6):
        callers.start("skill_groups" if n % 2 else "directory", f"poller-{n}")
        await settle()
    for _ in range(6):
        await advance(clock, 0.25)
    assert callers.through == [f"poller-{n}" for n in range(6)]


async def test_the_rate_holds_after_the_one_second_burst(clock: Clock) -> None:
    budget = Budget(4.0, clock=clock)
    callers = Callers(budget)
    for _ in range(12):
        callers.start("calls")
    await settle()
    assert len(callers.through) == 4  # a second's worth at once
    for step in range(1, 9):
        await advance(clock, 0.25)
        assert len(callers.through) == 4 + step


async def test_a_cancelled_waiter_leaves_its_place_and_no_token_is_lost(clock: Clock) -> None:
    budget = Budget(4.0, clock=clock)
    callers = Callers(budget)
    await callers.drain(4)
    first = callers.start("calls", "cancelled")
    callers.start("calls", "second")
    await settle()
    first.cancel()
    await advance(clock, 0.25)
    assert callers.through == ["second"]
    # Granted, then cancelled before it ran: its token goes back to the bucket.
    victim = callers.start("calls", "never")
    await settle()
    clock.now += 0.25
    await asyncio.sleep(0)  # this turn of the loop runs us, then the timer that grants it
    await asyncio.sleep(0)  # this one runs us before the granted waiter resumes
    victim.cancel()
    await settle()
    assert victim.cancelled()
    callers.start("calls", "third")
    await settle()
    assert callers.through == ["second", "third"]


async def test_a_waiter_cancelled_while_blocking_others_lets_them_go(clock: Clock) -> None:
    """A queued command blocks the pollers behind it; cancelled, it no longer does."""
    budget = Budget(4.0, clock=clock)
    callers = Callers(budget)
    await callers.drain(4)
    command = callers.start("commands")
    callers.start("calls")
    await settle()
    command.cancel()
    await advance(clock, 0.25)
    assert callers.through == ["calls"]


async def test_no_cap_and_no_throttle_never_waits(clock: Clock) -> None:
    budget = Budget(None, clock=clock)
    callers = Callers(budget)
    for stream in STREAMS:
        for _ in range(100):
            callers.start(stream)
    await settle()
    assert len(callers.through) == 100 * len(STREAMS)
    assert budget.poller_rate() == math.inf


async def poll_at(clock: Clock, budget: Budget, stream: str, per_s: int, seconds: int) -> None:
    """Calls as fast as `per_s`, for `seconds`."""
    for _ in range(per_s * seconds):
        await budget.acquire(stream)
        clock.now += 1 / per_s


async def test_a_throttle_halves_the_measured_poller_rate_and_it_recovers(clock: Clock) -> None:
    """Without a cap: halved from the rate measured; up by 1/s (5 % of a ceiling under 20)
    every second; lifted at twice the rate measured."""
    budget = Budget(None, clock=clock)
    await poll_at(clock, budget, "calls", 8, 3)
    granted = await budget.acquire("calls")
    budget.throttled("calls", "Throttling.User", granted)
    assert budget.poller_rate() == 4.0
    # The answers to calls already in flight at the cut say nothing new.
    budget.throttled("agent_states", "Throttling.User", granted)
    assert budget.poller_rate() == 4.0
    cut_at = clock.now
    clock.now = cut_at + 1.0
    assert budget.poller_rate() == 5.0
    clock.now = cut_at + 11.99
    assert budget.poller_rate() == pytest.approx(15.99)
    clock.now = cut_at + 12.0
    assert budget.poller_rate() == math.inf  # 2 x 8/s reached: lifted


async def test_throttled_pollers_wait_for_their_rate(clock: Clock) -> None:
    budget = Budget(None, clock=clock)
    await poll_at(clock, budget, "agent_states", 8, 3)
    budget.throttled("agent_states", "Throttling", clock())
    callers = Callers(budget)
    for _ in range(3):
        callers.start("agent_states")
    callers.start("commands")
    await settle()
    assert callers.through == ["commands"]  # at once: AIMD never holds commands back
    await advance(clock, 1 / budget.poller_rate() + 0.001)
    assert callers.through == ["commands", "agent_states"]


async def test_repeated_throttles_halve_down_to_the_floor(clock: Clock) -> None:
    budget = Budget(None, clock=clock)
    await poll_at(clock, budget, "calls", 16, 3)
    await budget.acquire("calls")  # 32 calls in the window: 16/s
    rates = []
    for _ in range(6):
        clock.now += 0.001
        budget.throttled("calls", "Throttling.User", clock())  # granted after the cut
        rates.append(budget.poller_rate())
    assert rates == pytest.approx([8, 4, 2, FLOOR_PER_S, FLOOR_PER_S, FLOOR_PER_S], abs=0.01)


async def test_with_a_cap_the_pollers_recover_up_to_it(clock: Clock) -> None:
    budget = Budget(40.0, clock=clock)
    await poll_at(clock, budget, "calls", 20, 2)
    budget.throttled("calls", "Throttling.User", clock())
    assert budget.poller_rate() == pytest.approx(10.0, rel=0.1)
    clock.now += 1.0
    assert budget.poller_rate() == pytest.approx(12.0, rel=0.1)  # 5 % of 40 a second
    clock.now += 15.0
    assert budget.poller_rate() == math.inf  # at the cap: the total bucket alone limits


async def test_command_throttles_slow_the_pollers_but_not_on_an_actions_own_limit(
    clock: Clock,
) -> None:
    budget = Budget(None, clock=clock)
    await poll_at(clock, budget, "calls", 8, 1)
    budget.throttled("commands", "Throttling.Api", clock())
    assert budget.poller_rate() == math.inf
    budget.throttled("commands", "Throttling.User", clock())
    assert budget.poller_rate() == 2.0
    callers = Callers(budget)
    for _ in range(50):
        callers.start("commands")
    await settle()
    assert len(callers.through) == 50  # commands never wait for it


async def test_the_cut_counts_only_recent_poller_calls(clock: Clock) -> None:
    budget = Budget(None, clock=clock)
    await poll_at(clock, budget, "calls", 10, 1)
    for _ in range(40):
        await budget.acquire("commands")
    clock.now += RATE_WINDOW_S
    budget.throttled("calls", "Throttling.User", clock())
    assert budget.poller_rate() == FLOOR_PER_S  # no poller call in the window


async def test_unknown_streams_are_refused(clock: Clock) -> None:
    budget = Budget(None, clock=clock)
    with pytest.raises(ValueError, match="unknown CCC stream 'cdr'"):
        calling_as("cdr")
    with pytest.raises(ValueError, match="unknown CCC stream 'cdr'"):
        await budget.acquire("cdr")


async def test_the_stream_is_the_tasks_and_child_tasks_inherit_it() -> None:
    async def current() -> str:
        return current_stream()

    async def poller() -> tuple[str, str]:
        calling_as("calls")
        return current_stream(), await asyncio.create_task(current())

    assert await asyncio.create_task(current()) == "commands"  # unset: commands, first
    assert await asyncio.create_task(poller()) == ("calls", "calls")
    assert current_stream() == "commands"  # the poller's task kept its stream to itself
