"""`ccc-bridge demo`: the emulator and the client, live, on loopback.

Starts the CCC emulator with a simulated contact centre and watches it through the async
client: agent state changes, finished calls, and one outbound call placed by DialEx.
(The Kafka pipeline joins this view once it exists.) Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from service.ccc.client import CccClient
from service.ccc.errors import CccError
from service.emulator.config import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, EmulatorConfig
from service.emulator.server import EmulatorServer
from service.settings import CccSettings

INSTANCE = "ccc-demo"


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "demo",
        help="run the emulator and watch it live through the client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--agents", type=int, default=8, help="simulated agents (default 8)")
    parser.add_argument(
        "--speed", type=float, default=10.0, help="simulated seconds per second (default 10)"
    )
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.set_defaults(func=run)


def state_changes(
    before: Mapping[str, str], after: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """(agent, previous, new) for every agent whose state differs; absent means offline."""
    agents = sorted(set(before) | set(after))
    return [
        (agent, before.get(agent, "offline"), after.get(agent, "offline"))
        for agent in agents
        if before.get(agent) != after.get(agent)
    ]


def _say(text: str) -> None:
    sys.stdout.write(f"{time.strftime('%H:%M:%S')}  {text}\n")
    sys.stdout.flush()


async def _agent_states(client: CccClient) -> dict[str, str]:
    states = {}
    async for row in client.iter_items("ListAgentStates", {"InstanceId": INSTANCE}):
        states[row.login_name or row.agent_id] = row.state
    return states


async def _new_calls(client: CccClient, since_ms: int, seen: set[str]) -> list[Any]:
    fresh = []
    # No StopTime: CCC reads it as "now", and the simulated clock runs ahead of ours.
    window = {"InstanceId": INSTANCE, "StartTime": since_ms}
    async for record in client.iter_items("ListCallDetailRecords", window):
        if record.contact_id not in seen:
            seen.add(record.contact_id)
            fresh.append(record)
    return fresh


async def _watch(client: CccClient, stop: asyncio.Event) -> None:
    states: dict[str, str] = {}
    seen: set[str] = set()
    since_ms = int(time.time() * 1000) - 3_600_000
    while not stop.is_set():
        current = await _agent_states(client)
        for agent, old, new in state_changes(states, current):
            _say(f"agent  {agent:<12} {old:>8} -> {new}")
        states = current
        for call in await _new_calls(client, since_ms, seen):
            who = call.agent_names or "nobody"
            _say(
                f"call   {call.contact_id:<12} {call.contact_type} {call.contact_disposition}, "
                f"{call.duration}s, {call.calling_number} -> {call.called_number}, agent {who}"
            )
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            continue


async def _place_call(client: CccClient) -> None:
    flows = await client.call("ListContactFlows", {"InstanceId": INSTANCE})
    flow = flows.items()[0]
    numbers = await client.call("ListPhoneNumbers", {"InstanceId": INSTANCE, "OutboundOnly": True})
    caller = numbers.items()[0].number
    result = await client.call(
        "DialEx",
        {
            "InstanceId": INSTANCE,
            "Caller": caller,
            "Callee": "13900000000",
            "RoutPoint": flow.contact_flow_id,
            "AnswerMode": 0,
        },
    )
    _say(f"dial   DialEx {caller} -> 13900000000 via IVR: TaskId {result.task_id}")


async def run(args: argparse.Namespace) -> int:
    config = EmulatorConfig(
        instances=(INSTANCE,), agents=args.agents, seed=args.seed, speed=args.speed
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with EmulatorServer(config) as emulator:
        settings = CccSettings(
            endpoint=emulator.url,
            access_key_id=DEFAULT_ACCESS_KEY_ID,
            access_key_secret=SecretStr(DEFAULT_ACCESS_KEY_SECRET),
        )
        _say(f"emulator ready at {emulator.url}: instance {INSTANCE}, {args.agents} agents")
        _say("watching agent states and call records through the client; Ctrl-C stops")
        async with CccClient(settings) as client:
            try:
                await _place_call(client)
                await _watch(client, stop)
            except CccError as error:
                _say(f"error  {error}")
                return 1
    _say("stopped")
    return 0
