"""Helpers that read and drive the emulator's inspection API over HTTP, as a user's test would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from service.emulator.server import EmulatorServer


async def inspect(emulator: EmulatorServer, what: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emulator.url}/_emulator/{what}") as r,
    ):
        assert r.status == 200
        items: list[dict[str, Any]] = await r.json()
        return items


async def fault(emulator: EmulatorServer, **spec: Any) -> None:
    url = f"{emulator.url}/_emulator/faults"
    async with aiohttp.ClientSession() as session, session.post(url, json=spec) as response:
        assert response.status == 200, await response.text()


async def codes(emulator: EmulatorServer, action: str) -> list[str]:
    return [r["code"] for r in await inspect(emulator, "requests") if r["action"] == action]


async def eventually(check: Callable[[], Awaitable[bool]], deadline_s: float = 10.0) -> None:
    """Poll a condition until it holds or the deadline passes (never a fixed sleep)."""
    deadline = time.monotonic() + deadline_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)
