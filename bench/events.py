"""Agent-state events: throughput, poll cycle, end-to-end latency and memory, at 5,000 agents.

Against the embedded broker (Tansu, in memory) and the emulator in its own process, so
neither one's CPU counts against ours. Prints four figures and the targets issue 3 sets:

1. events/s from parsed CCC rows to Kafka acknowledgement (diff, envelope, JSON, acks=all)
   over a bare aiokafka producer sending the same serialized records (target >= 0.7);
2. one AgentStatePoller cycle (every ListAgentStates page, diff, publish) over fetching the
   same pages with the bare client (target <= 1.3x);
3. p50 / p99 from a transition in the emulator to its event being read from Kafka, with the
   real service running (target p99 <= poll interval + 100 ms);
4. peak memory: the bench process's max RSS, and one poll cycle's Python heap peak.

(1) and (2) alternate ours and the baseline round by round and report medians.

    .venv/bin/python -m bench.events [--agents 5000] [--rounds 5] [--latency-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import gc
import json
import resource
import statistics
import sys
import time
import tracemalloc
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.emulator_process import start_emulator, stop_process
from bench.report import verdict
from service.app import run_service
from service.broker import EmbeddedBroker
from service.ccc.client import CccClient
from service.ccc.settings import CccSettings, RateLimitSettings
from service.cloudevents import Emitted
from service.console import tune_gc
from service.emulator.config import (
    client_settings,
)
from service.events.core import state_changes
from service.events.models import AgentStateChanged
from service.events.pollers import AgentStatePoller, Directory, InstancePorts
from service.events.publisher import CheckpointStore, EventPublisher
from service.kafka.admin import describe_topics, ensure_topics
from service.kafka.connection import client_options
from service.kafka.producer import HEADERS, Producer
from service.kafka.settings import KafkaSettings, TopicSettings
from service.logs import configure_logging
from service.settings import HttpSettings, PollerSettings, Settings

INSTANCE = "ccc-bench"
LIST = ("ListAgentStates", {"InstanceId": INSTANCE})
CHANGED = AgentStateChanged.event_type
STATES = ("Ready", "Break", "Talking", "ACW")
# Skipped on each emulator before measuring: every agent logs in within a simulated minute,
# and the bench should see a centre at work, not one opening.
WARM_UP_S = 180


@dataclass
class Figures:
    rate_ours: float = 0.0
    rate_bare: float = 0.0
    events_per_round: int = 0
    cycle_ours_s: float = 0.0
    cycle_bare_s: float = 0.0
    rows_per_cycle: int = 0
    events_per_cycle: float = 0.0
    cycle_heap_peak: int = 0
    latencies_ms: list[float] | None = None
    unmatched: int = 0
    rss_after_service_kb: int = 0


def ccc_settings(url: str) -> CccSettings:
    return client_settings(  # rate limits off: measure the code, not the limit
        url, instances=[INSTANCE], rate_limits=RateLimitSettings.off()
    )


def fresh_topics() -> TopicSettings:
    return TopicSettings(prefix=f"bench{uuid.uuid4().hex[:8]}.")


async def timed(step: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


async def interleaved(
    rounds: int, ours: Callable[[], Awaitable[object]], bare: Callable[[], Awaitable[object]]
) -> tuple[float, float]:
    """Median seconds of each; the order flips every round so neither always goes first.

    The heap is collected first, so no full collection owed to an earlier figure's garbage
    lands in this one's rounds (it did: (2) measured 1.45x after (1), 1.1x without).
    """
    gc.collect()
    samples: dict[str, list[float]] = {"ours": [], "bare": []}
    for index in range(rounds):
        pair = [("ours", ours), ("bare", bare)]
        for name, step in pair if index % 2 == 0 else reversed(pair):
            samples[name].append(await timed(step))
    return statistics.median(samples["ours"]), statistics.median(samples["bare"])


def changed_rows(rows: Sequence[Any]) -> list[Any]:
    """The next snapshot: nine agents in ten in another state, as a busy centre's poll sees."""
    return [
        row if index % 10 == 0 else row.model_copy(update={"state": next_state(row.state)})
        for index, row in enumerate(rows)
    ]


def next_state(state: str) -> str:
    return STATES[(STATES.index(state) + 1) % len(STATES)] if state in STATES else STATES[0]


async def warm_up(url: str) -> int:
    """Skip WARM_UP_S of simulated time; how many ms the simulated clock now runs ahead."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/_emulator/clock", json={"advance_s": WARM_UP_S}) as answer,
    ):
        answer.raise_for_status()
    return WARM_UP_S * 1000


class CountingPublisher:
    """The real publisher, counting the events it is handed."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher
        self.total = 0

    async def publish(self, events: Sequence[Emitted]) -> None:
        self.total += len(events)
        await self._publisher.publish(events)


async def pipeline_and_cycle(url: str, kafka: KafkaSettings, rounds: int, figures: Figures) -> None:
    await warm_up(url)
    topics = fresh_topics()
    await ensure_topics(kafka, topics)
    producer = Producer(kafka)
    # The ceiling: aiokafka with our wire settings (acks=all, compression, linger), nothing else.
    bare = AIOKafkaProducer(
        **client_options(kafka),
        acks="all",
        compression_type=kafka.compression_type,
        linger_ms=kafka.linger_ms,
    )
    await producer.start()
    await bare.start()
    try:
        async with CccClient(ccc_settings(url)) as ccc:
            publisher = EventPublisher(producer, topics, ccc_settings(url).region)
            checkpoints = CheckpointStore(producer, kafka, topics)  # unused by this poller
            directory = Directory(ccc, INSTANCE)  # read once, as between refreshes
            ports = InstancePorts(INSTANCE, ccc, publisher, checkpoints, directory)
            await throughput(ports, publisher, bare, rounds, figures)
            await poll_cycle(ports, publisher, rounds, figures)
    finally:
        await bare.stop()
        await producer.stop()


async def throughput(
    ports: InstancePorts,
    publisher: EventPublisher,
    bare: AIOKafkaProducer,
    rounds: int,
    figures: Figures,
) -> None:
    """(1) Rows fetched once, so this measures our pipeline and not CCC."""
    skill_groups = await ports.directory.agents()
    before = [row async for row in ports.ccc.iter_items(*LIST)]
    after = changed_rows(before)
    now_ms = ports.ccc.server_time_ms()
    _, known = state_changes(INSTANCE, None, before, now_ms, skill_groups)

    def diff() -> list[Emitted]:  # what the poller does over a whole poll
        return state_changes(INSTANCE, known, after, now_ms, skill_groups)[0]

    events = diff()
    records = [publisher.record(event) for event in events]

    async def ours() -> None:
        await publisher.publish(diff())

    async def ceiling() -> None:
        futures = [
            await bare.send(record.topic, record.value, key=record.key, headers=HEADERS)
            for record in records
        ]
        await asyncio.gather(*futures)

    await ours()  # warm up connections and metadata of every partition
    await ceiling()
    ours_s, bare_s = await interleaved(rounds, ours, ceiling)
    figures.events_per_round = len(events)
    figures.rate_ours, figures.rate_bare = len(events) / ours_s, len(events) / bare_s


async def poll_cycle(
    ports: InstancePorts, publisher: EventPublisher, rounds: int, figures: Figures
) -> None:
    """(2) The poller as the service runs it, against the live, busy emulator."""
    counting = CountingPublisher(publisher)
    check_s = PollerSettings().agent_logout_check_s
    poller = AgentStatePoller(dataclasses.replace(ports, publisher=counting), check_s, 100)
    stop = asyncio.Event()
    await poller.cycle(stop)  # the first cycle is the snapshot of every agent
    rows: list[Any] = []

    async def fetch() -> None:
        rows[:] = [row async for row in ports.ccc.iter_items(*LIST)]

    per_cycle: list[int] = []

    async def cycle() -> None:
        before = counting.total
        await poller.cycle(stop)
        per_cycle.append(counting.total - before)

    figures.cycle_ours_s, figures.cycle_bare_s = await interleaved(rounds, cycle, fetch)
    figures.rows_per_cycle = len(rows)
    figures.events_per_cycle = statistics.median(per_cycle)

    # (4) What one cycle holds at once (rows, events, records); tracemalloc slows every
    # allocation, so it runs for this one cycle and not during (3).
    tracemalloc.start()
    try:
        await poller.cycle(stop)
        figures.cycle_heap_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def latency(
    url: str, kafka: KafkaSettings, seconds: float, interval_s: float, figures: Figures
) -> None:
    settings = Settings(
        ccc=ccc_settings(url),
        kafka=kafka,
        http=HttpSettings(host="127.0.0.1", port=0),
        topics=fresh_topics(),
        pollers=PollerSettings(
            agent_states=True,
            agent_state_logs=False,
            calls=False,
            skill_groups=False,
            agent_states_interval_s=interval_s,
        ),
    )
    offset_ms = await warm_up(url)
    await ensure_topics(settings.kafka, settings.topics)
    reads = await tail_while_serving(settings, seconds)
    figures.rss_after_service_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/_emulator/history/agent-states") as answer,
    ):
        history = await answer.json()
    transitions: dict[str, list[tuple[int, str]]] = defaultdict(list)
    # Latency: wall time read minus the transition's real time (simulated, less the jump).
    for item in history:  # in time order
        transitions[item["agent_id"]].append((epoch_ms(item["at"]) - offset_ms, item["state"]))
    figures.latencies_ms = []
    for read_ms, agent_id, state in reads:
        at_ms = latest(transitions[agent_id], read_ms, state)
        if at_ms is None:
            figures.unmatched += 1
        else:
            figures.latencies_ms.append(read_ms - at_ms)


def epoch_ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def latest(transitions: list[tuple[int, str]], until_ms: float, state: str) -> int | None:
    """When the agent last entered `state` no later than `until_ms`."""
    end = bisect.bisect_right(transitions, until_ms, key=lambda t: t[0])
    return next((at for at, to in reversed(transitions[:end]) if to == state), None)


async def tail_while_serving(settings: Settings, seconds: float) -> list[tuple[float, str, str]]:
    """(wall ms when read, agent, state) of every change event while the service runs."""
    topic = settings.topics.name("agent_states")
    # A reader that asks often: the broker holds a fetch up to fetch_max_wait_ms (500 ms by
    # default) and that wait is the reader's, not the pipeline's.
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka), enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    stop = asyncio.Event()
    service: asyncio.Task[None] | None = None
    reads: list[tuple[float, str, str]] = []
    try:
        found = await describe_topics(settings.kafka, [topic])
        partitions = [TopicPartition(topic, p) for p in range(found[topic].partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        service = asyncio.create_task(run_service(settings, stop))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not service.done():
            batches = await consumer.getmany(*partitions, timeout_ms=100)
            read_ms = time.time() * 1000
            for batch in batches.values():
                for record in batch:
                    event = json.loads(record.value)
                    data = event["data"]
                    if event["type"] == CHANGED and not data["snapshot"]:
                        reads.append((read_ms, data["agent_id"], data["state"]))
    finally:
        stop.set()
        if service is not None:
            await service  # a failed service raises here
        await consumer.stop()
    return reads


async def measure(args: argparse.Namespace, fast_url: str, slow_url: str) -> Figures:
    figures = Figures()
    async with EmbeddedBroker() as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        await pipeline_and_cycle(fast_url, kafka, args.rounds, figures)
        await latency(slow_url, kafka, args.latency_seconds, args.interval, figures)
    return figures


def report(args: argparse.Namespace, figures: Figures) -> None:
    ratio = figures.rate_ours / figures.rate_bare
    cycle = figures.cycle_ours_s / figures.cycle_bare_s
    lat = figures.latencies_ms or [0.0]
    cuts = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    p50, p99 = cuts[49], cuts[98]
    budget_ms = args.interval * 1000 + 100
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.agents} agents, {args.rounds} rounds; (1)+(2) emulator at speed {args.speed}")
    print(
        f"(1) rows -> Kafka ack: ours {figures.rate_ours:,.0f} events/s, "
        f"bare aiokafka {figures.rate_bare:,.0f} events/s "
        f"({figures.events_per_round} events per round)"
    )
    print(
        f"(2) poll cycle: ours {figures.cycle_ours_s * 1000:.0f} ms, bare pages "
        f"{figures.cycle_bare_s * 1000:.0f} ms ({figures.rows_per_cycle} rows, "
        f"median {figures.events_per_cycle:.0f} change events per cycle)"
    )
    print(
        f"(3) change -> readable on Kafka, speed 1, interval {args.interval:g} s, "
        f"{args.latency_seconds:g} s: {len(figures.latencies_ms or [])} events "
        f"({figures.unmatched} with no matching transition), max {max(lat):.0f} ms"
    )
    print(
        f"(4) max RSS {figures.rss_after_service_kb / 1024:.0f} MB after the service run, "
        f"{peak_mb:.0f} MB at the end; one poll cycle's heap peak "
        f"{figures.cycle_heap_peak / 2**20:.1f} MB (tracemalloc)"
    )
    print("summary")
    print(f"  (1) ours/bare events/s   {ratio:6.2f}      target >= 0.7   {verdict(ratio >= 0.7)}")
    print(f"  (2) cycle ours/bare      {cycle:6.2f}x     target <= 1.3x  {verdict(cycle <= 1.3)}")
    print(
        f"  (3) latency p50/p99      {p50:.0f} / {p99:.0f} ms  target p99 <= {budget_ms:.0f} ms "
        f"{verdict(p99 <= budget_ms)}"
    )
    print(f"  (4) peak RSS             {peak_mb:.0f} MB      (recorded, no target)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=5000, help="agents in the instance")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--speed", type=float, default=20.0, help="emulator speed for (1), (2)")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="length of (3), s")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval of (3), s")
    args = parser.parse_args()
    configure_logging("warning", "console")  # the service's info lines would bury the figures
    tune_gc()  # as `ccc-bridge run` does; the baselines, in this process too, have it as well
    with ExitStack() as stack:
        urls = []
        # Two emulators: the busy one for (1) and (2); at speed 1 for (3), where simulated
        # time is wall time. An emulator only works when asked, so the idle one costs nothing.
        for speed in (args.speed, 1.0):
            flags = ("--instance", INSTANCE, "--agents", str(args.agents), "--speed", str(speed))
            process, url = start_emulator(*flags)
            stack.callback(stop_process, process)
            urls.append(url)
        figures = asyncio.run(measure(args, *urls))
    report(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
