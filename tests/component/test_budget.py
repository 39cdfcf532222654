"""The process's CCC call budget, through the client, against the emulator over HTTP: commands
go first while pollers queue, and the pollers slow down on throttling and recover."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
from prometheus_client import REGISTRY

from service.ccc.budget import calling_as
from service.ccc.client import CccClient
from service.ccc.errors import CccThrottledError
from service.ccc.settings import RateLimitSettings, RetrySettings
from service.emulator.config import client_settings
from service.emulator.server import EmulatorServer
from tests.inspection import eventually, fault

INSTANCE = "ccc-a"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def holds(check: Callable[[], bool]) -> Callable[[], Coroutine[Any, Any, bool]]:
    """`check` as the awaitable condition `eventually` polls."""

    async def checked() -> bool:
        return check()

    return checked


@contextlib.asynccontextmanager
async def running(
    tasks: list[Callable[[], Coroutine[Any, Any, None]]],
) -> AsyncIterator[list[asyncio.Task[None]]]:
    started = [asyncio.create_task(task()) for task in tasks]
    try:
        yield started
    finally:
        for task in started:
            task.cancel()
        await asyncio.gather(*started, return_exceptions=True)


def client(emulator: EmulatorServer, total_per_s: float) -> CccClient:
    limits = RateLimitSettings(default_per_s=None, per_action={}, total_per_s=total_per_s)
    retry = RetrySettings(max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.05)
    return CccClient(client_settings(emulator.url, rate_limits=limits, retry=retry))


async def timed_command(ccc: CccClient) -> float:
    """Seconds a command-stream call takes (the stream is unset here: commands)."""
    started = time.monotonic()
    await ccc.call("GetInstance", {"InstanceId": INSTANCE})
    return time.monotonic() - started


async def test_a_command_goes_first_while_pollers_queue(emulator: EmulatorServer) -> None:
    waited = metric("ccc_bridge_ccc_budget_wait_seconds_sum", stream="calls")
    sent = metric("ccc_bridge_ccc_stream_calls_total", stream="calls")
    async with client(emulator, total_per_s=10.0) as ccc:

        async def poll() -> None:
            calling_as("calls")
            await ccc.call("ListRoles", {"InstanceId": INSTANCE})

        async with running([poll] * 40) as pollers:
            # The burst (one second's worth) is spent; the other pollers queue at 10/s.
            await eventually(holds(lambda: sum(task.done() for task in pollers) >= 10))
            took = await timed_command(ccc)
            assert took < 0.5  # a token is due within 0.1 s, and it goes to the command
            assert sum(task.done() for task in pollers) < 30  # the pollers still queue
    assert metric("ccc_bridge_ccc_budget_wait_seconds_sum", stream="calls") > waited
    assert metric("ccc_bridge_ccc_stream_calls_total", stream="calls") >= sent + 10


async def test_pollers_slow_down_on_throttling_and_recover(emulator: EmulatorServer) -> None:
    """Under a 4/s cap: cut to 2/s or less by the throttles, then raised by 1/s every
    second, and lifted at the cap within a few seconds of CCC taking calls again."""
    async with client(emulator, total_per_s=4.0) as ccc:

        async def poll() -> None:
            calling_as("agent_states")
            while True:
                with contextlib.suppress(CccThrottledError):
                    await ccc.call("ListAgentStates", {"InstanceId": INSTANCE})

        def limit() -> float:
            return metric("ccc_bridge_ccc_poller_rate_limit")

        assert limit() == float("inf")
        async with running([poll] * 2):
            await fault(emulator, action="ListAgentStates", throttle_rate=1.0)
            await eventually(holds(lambda: limit() <= 2.0))
            assert await timed_command(ccc) < 0.5  # commands keep their share
            await _clear_faults(emulator)
            await eventually(holds(lambda: limit() == float("inf")), deadline_s=15)
    assert metric("ccc_bridge_ccc_stream_calls_total", stream="agent_states") > 0


async def _clear_faults(emulator: EmulatorServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.delete(f"{emulator.url}/_emulator/faults") as response,
    ):
        assert response.status == 200
