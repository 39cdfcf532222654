"""`each`: bounded concurrency, first failure ends it, a stop cancels what is in flight; and
how long a failing stream waits."""

from __future__ import annotations

import asyncio

import pytest

from service.events.pollers import MAX_BACKOFF_S, backoff_s, each


async def test_it_runs_every_item_never_more_than_the_limit_at_once() -> None:
    running, peak, done = 0, 0, []

    async def work(item: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        done.append(item)

    await each(list(range(50)), work, 4, asyncio.Event())
    assert sorted(done) == list(range(50))
    assert peak == 4


async def test_the_first_failure_ends_it_and_cancels_the_rest() -> None:
    started: list[int] = []
    never = asyncio.Event()

    async def work(item: int) -> None:
        started.append(item)
        if item == 2:
            raise RuntimeError("boom")
        await never.wait()

    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(each(list(range(10)), work, 3, asyncio.Event()), timeout=5)
    assert started == [0, 1, 2]


async def test_a_stop_cancels_work_in_flight_and_starts_no_more() -> None:
    stop = asyncio.Event()
    started: list[int] = []
    cancelled: list[int] = []

    async def work(item: int) -> None:
        started.append(item)
        if len(started) == 2:
            stop.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(item)
            raise

    await asyncio.wait_for(each(list(range(100)), work, 2, stop), timeout=5)
    assert started == [0, 1]
    assert sorted(cancelled) == [0, 1]


def test_a_failing_stream_waits_longer_after_each_failure_up_to_the_cap() -> None:
    waits = [backoff_s(2.0, n) for n in range(6)]
    assert waits == [2.0, 4.0, 8.0, 16.0, MAX_BACKOFF_S, MAX_BACKOFF_S]
    assert backoff_s(60.0, 3) == 60.0  # never more often than its own interval
