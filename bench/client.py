"""Calls per second: our client vs Alibaba's async SDK vs a bare aiohttp POST (the ceiling).

All three call ListAgentStates against one emulator running in its own process, in the same
run, interleaved round by round so machine noise hits each alike. Prints calls/s per client
and concurrency, and the two ratios the foundation issue sets targets for:
ours / Alibaba async SDK (target >= 2.5) and ours / bare aiohttp (target >= 0.67).

    .venv/bin/python -m bench.client [--calls 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
from alibabacloud_ccc20170705 import models as tea_models
from alibabacloud_ccc20170705.client import Client as TeaClient
from alibabacloud_tea_openapi import models as tea_openapi
from pydantic import SecretStr

from bench.emulator_process import start_emulator, stop_process
from service.ccc.catalog import API_VERSION
from service.ccc.client import CccClient
from service.ccc.settings import RateLimitSettings
from service.ccc.signing import AccessKey, authorize, form_encode
from service.emulator.config import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    client_settings,
)

INSTANCE = "ccc-bench"
Call = Callable[[], Awaitable[object]]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def ours(client: CccClient) -> Call:
    async def call() -> object:
        return await client.call("ListAgentStates", {"InstanceId": INSTANCE})

    return call


def alibaba(client: TeaClient) -> Call:
    async def call() -> object:
        request = tea_models.ListAgentStatesRequest(instance_id=INSTANCE)
        return await client.list_agent_states_async(request)

    return call


def bare(session: aiohttp.ClientSession, url: str) -> Call:
    """The same signed request with nothing around it: no models, no retries, no limits."""
    key = AccessKey(DEFAULT_ACCESS_KEY_ID, SecretStr(DEFAULT_ACCESS_KEY_SECRET))

    async def call() -> object:
        params = {
            "Action": "ListAgentStates",
            "Version": API_VERSION,
            "Format": "JSON",
            "InstanceId": INSTANCE,
        }
        params |= authorize(
            "POST",
            params,
            key,
            timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            nonce=uuid.uuid4().hex,
        )
        async with session.post(url, data=form_encode(params), headers=FORM) as response:
            return json.loads(await response.read())

    return call


async def rate(call: Call, calls: int, concurrency: int) -> float:
    remaining = iter(range(calls))

    async def worker() -> None:
        for _ in remaining:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


async def measure(url: str, calls: int, rounds: int) -> dict[tuple[str, int], float]:
    # Rate limits off: measure the client, not the limit.
    settings = client_settings(url, rate_limits=RateLimitSettings.off())
    tea = TeaClient(
        tea_openapi.Config(
            access_key_id=DEFAULT_ACCESS_KEY_ID,
            access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
            endpoint=url.removeprefix("http://"),
            protocol="http",
        )
    )
    samples: dict[tuple[str, int], list[float]] = {}
    async with CccClient(settings) as client, aiohttp.ClientSession() as session:
        clients = {
            "ours": ours(client),
            "alibaba-async": alibaba(tea),
            "bare-aiohttp": bare(session, url),
        }
        for call in clients.values():  # warm up connections and lazy models
            await call()
        for _ in range(rounds):
            for concurrency in (1, 32):
                for name, call in clients.items():
                    value = await rate(call, calls, concurrency)
                    samples.setdefault((name, concurrency), []).append(value)
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    args = parser.parse_args()
    process, url = start_emulator("--instance", INSTANCE)
    try:
        results = asyncio.run(measure(url, args.calls, args.rounds))
    finally:
        stop_process(process)
    print(f"ListAgentStates against the emulator at {url}, {args.calls} calls x {args.rounds}")
    print(f"{'client':<15}{'concurrency':>12}{'calls/s':>10}")
    for (name, concurrency), value in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"{name:<15}{concurrency:>12}{value:>10.0f}")
    for concurrency in (1, 32):
        ours_rate = results[("ours", concurrency)]
        sdk_rate = results[("alibaba-async", concurrency)]
        bare_rate = results[("bare-aiohttp", concurrency)]
        print(
            f"concurrency {concurrency:>2}: ours/alibaba-async = {ours_rate / sdk_rate:.2f} "
            f"(target >= 2.5), ours/bare = {ours_rate / bare_rate:.2f} (target >= 0.67); "
            f"bare/alibaba-async = {bare_rate / sdk_rate:.2f} (what the server leaves room for)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
