"""Crash-only: whatever fails in the service ends it with exit 1 and one line naming the
cause; an orderly stop is 0; records of one key are handled in order, and a handler that
fails ends its consumer rather than being dropped."""

from __future__ import annotations

import asyncio

import pytest

from service.app import supervised
from service.ccc.errors import CccAuthError
from service.console import StartupError
from service.kafka.consumer import KeyedTasks

BUDGET_S = 5.0


async def service_whose_background_task_fails(error: Exception, cancelled: asyncio.Event) -> None:
    """A stand-in for run_service: a long-running worker beside a commit loop that fails."""

    async def worker() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def commit_loop() -> None:
        await asyncio.sleep(0.01)
        raise error

    async with asyncio.TaskGroup() as group:
        group.create_task(worker())
        group.create_task(commit_loop())


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            RuntimeError("lost the offsets"),
            "ccc-bridge run: stopped: RuntimeError: lost the offsets",
        ),
        (
            CccAuthError(
                "the key is revoked",
                action="ListAgentStates",
                code="InvalidAccessKeyId.NotFound",
                http_status=404,
                request_id=None,
            ),
            "ccc-bridge run: stopped: ",
        ),
    ],
)
async def test_a_failing_background_task_ends_the_process_with_one_line(
    error: Exception, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cancelled = asyncio.Event()
    code = await supervised(
        lambda: service_whose_background_task_fails(error, cancelled), asyncio.Event(), BUDGET_S
    )
    assert code == 1
    assert cancelled.is_set(), "the other tasks were cancelled"
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(line)
    assert str(error) in last


async def test_an_orderly_stop_is_0_and_a_startup_error_is_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stop = asyncio.Event()

    async def service() -> None:
        await stop.wait()

    stop.set()
    assert await supervised(service, stop, BUDGET_S) == 0

    async def cannot_start() -> None:
        raise StartupError("cannot reach Kafka at 127.0.0.1:1")

    assert await supervised(cannot_start, asyncio.Event(), BUDGET_S) == 2
    assert capsys.readouterr().err == "ccc-bridge run: cannot reach Kafka at 127.0.0.1:1\n"


async def test_a_stop_past_the_budget_is_cut_short_with_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        await stop.wait()
        await asyncio.Event().wait()  # never finishes its stop

    stop.set()
    assert await supervised(stubborn, stop, 0.05) == 1
    assert "not stopped after 0.05 s" in capsys.readouterr().err


async def test_one_key_goes_in_order_while_other_keys_go_past() -> None:
    done: list[str] = []
    release, b_done = asyncio.Event(), asyncio.Event()
    async with asyncio.TaskGroup() as group:
        tasks = KeyedTasks(group)

        def piece(name: str, gate: asyncio.Event | None = None) -> None:
            async def work() -> None:
                if gate is not None:
                    await gate.wait()
                done.append(name)
                if name == "b2":
                    b_done.set()

            tasks.start(name[0], work)

        piece("a1", release)
        piece("a2")
        piece("b1")
        piece("a3")
        piece("b2")
        assert len(tasks) == 5
        await b_done.wait()
        assert done == ["b1", "b2"], "b is not held up by a's slow first piece"
        release.set()
        await tasks.drain()
    assert done == ["b1", "b2", "a1", "a2", "a3"], "a in order"
    assert len(tasks) == 0


async def test_a_handler_that_fails_ends_its_consumer_and_no_later_piece_of_its_key_runs() -> None:
    done: list[str] = []

    async def consumer() -> None:
        async with asyncio.TaskGroup() as group:
            tasks = KeyedTasks(group)

            async def fails() -> None:
                raise RuntimeError("a bug")

            async def later() -> None:
                done.append("later")

            tasks.start("a", fails)
            tasks.start("a", later)
            await asyncio.Event().wait()  # the fetch loop, cancelled by the failure

    with pytest.raises(ExceptionGroup) as raised:
        await consumer()
    assert raised.group_contains(RuntimeError, match="a bug")
    assert done == []
