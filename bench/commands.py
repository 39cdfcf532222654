"""Commands: throughput and latency from producing a command to reading its result.

The real service (run_service, pollers off, CCC rate limits off) against the embedded broker
(Tansu, in memory) and the emulator in its own process, so neither one's CPU counts against
ours. The ceiling is the CCC client alone calling the same actions with the same parameters
at the same concurrency: what is left once Kafka, the ledger and the result are taken away.
Prints two figures and the targets the commands issue sets:

1. commands/s from producing N commands (dial_ex and sms, alternating) to the last result
   read from the results topic, and bare CccClient calls/s, at each concurrency in turn
   (`commands.concurrency` for ours, as many calling coroutines for the bare client; a
   fresh broker and service for each). The target compares capacities, each side's best
   rate over the levels: ours / bare >= 0.5. The bare client is CPU-bound from the lowest
   level on; ours gains with concurrency, as more commands share each Kafka round trip;
2. p50 / p99 from producing one command to reading its result, at a paced rate, against the
   bare call's p50 / p99 at the same pace (target: p99 overhead, ours - bare, < 25 ms),
   and where ours goes, from the received_at and completed_at each result carries (at the
   first concurrency level).

Both alternate ours and the bare client round by round: (1) reports medians, (2) the
percentiles of every round's samples together.

    .venv/bin/python -m bench.commands [--commands 1000] [--rounds 3]
        [--concurrency 16,32,64] [--rate 100] [--latency-seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.emulator_process import start_emulator, stop_process
from bench.report import verdict
from service.app import run_service
from service.broker import EmbeddedBroker
from service.ccc.client import CccClient
from service.ccc.settings import RateLimitSettings
from service.commands.execute import ccc_request
from service.commands.models import CommandKind, validate_command
from service.console import tune_gc
from service.emulator.config import client_settings
from service.kafka.admin import describe_topics, ensure_topics
from service.kafka.connection import client_options
from service.kafka.producer import OutRecord, Producer
from service.kafka.settings import KafkaSettings, TopicSettings
from service.kafka.topics import COMMAND_TOPICS
from service.logs import configure_logging
from service.settings import CommandSettings, HttpSettings, PollerSettings, Settings

INSTANCE = "ccc-bench"
CALLER = "02106000001"  # the emulator's first number of the first instance
IVR_FLOW = "flow-1"  # its main menu flow
SMS_CONFIG = 1  # a predefined SMS every emulated instance has
GROUP_JOIN_TIMEOUT_S = 60.0  # Tansu takes ~5 s to form a group
RESULTS_TIMEOUT_S = 120.0
OVERHEAD_TARGET_MS = 25.0
RATIO_TARGET = 0.5


@dataclass(frozen=True)
class Planned:
    """One command: its Kafka record, and the CCC call it stands for."""

    command_id: str
    record: OutRecord
    action: str
    params: Mapping[str, Any]


class Read(NamedTuple):
    at: float  # perf_counter
    wall: float  # time.time(), to compare with the times in the result
    value: bytes


@dataclass
class Figures:
    rates: dict[int, tuple[float, float]] = field(default_factory=dict)  # concurrency: ours, bare
    ours_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)
    # Where ours goes, from the result's received_at and completed_at (wall clock).
    stages_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)
    bare_failures: int = 0


class Plan:
    """Commands with ids unique to this run: dial_ex and sms in turn, each to its own number."""

    def __init__(self, topics: TopicSettings) -> None:
        self._topics = {kind: topics.name(name) for kind, name in COMMAND_TOPICS.items()}
        self._run = uuid.uuid4().hex[:8]
        self._serial = 0

    def commands(self, count: int) -> list[Planned]:
        return [self.one() for _ in range(count)]

    def one(self) -> Planned:
        serial = self._serial = self._serial + 1
        command_id = f"bench-{self._run}-{serial}"
        number = f"139{serial:08d}"
        kind: CommandKind
        body: dict[str, Any] = {"command_id": command_id, "instance_id": INSTANCE}
        if serial % 2:
            kind = "dial"
            body |= {
                "mode": "dial_ex",
                "caller": CALLER,
                "callee": number,
                "answer_mode": "ivr",
                "route_point": IVR_FLOW,
            }
        else:
            kind = "sms"
            body |= {
                "config_id": SMS_CONFIG,
                "phone_numbers": [number],
                "template_params": {"code": f"{serial % 10000:04d}"},
            }
        # The bare call gets exactly what the worker would send CCC for this command.
        action, params = ccc_request(validate_command(kind, body))
        value = json.dumps(body).encode()
        record = OutRecord(self._topics[kind], command_id.encode(), value)
        return Planned(command_id, record, action, params)


class Results:
    """Every record read from the results topic, by command id, with when it was read.

    The reader asks often (fetch_max_wait_ms 10): the broker holds a fetch that found nothing
    up to that long (Tansu even when records arrive meanwhile), and that wait is the reader's,
    not the pipeline's. It does nothing else per record, so it takes as little as it can of
    the CPU the service shares with it.
    """

    def __init__(self) -> None:
        self.read: dict[str, Read] = {}
        self._waiting: set[str] | None = None
        self._all_read = asyncio.Event()

    async def tail(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            read_at, wall = time.perf_counter(), time.time()
            for batch in batches.values():
                for record in batch:
                    command_id = record.key.decode()
                    self.read[command_id] = Read(read_at, wall, record.value)
                    if self._waiting is not None:
                        self._waiting.discard(command_id)
            if self._waiting is not None and not self._waiting:
                self._all_read.set()

    async def wait_for(self, command_ids: Iterable[str], service: asyncio.Task[None]) -> None:
        """Until every one has a result; raises if the service ends first or none comes."""
        self._waiting = set(command_ids) - self.read.keys()
        self._all_read.clear()
        try:
            if not self._waiting:
                return
            waiting = asyncio.ensure_future(self._all_read.wait())
            done, _ = await asyncio.wait(
                [waiting, service], timeout=RESULTS_TIMEOUT_S, return_when="FIRST_COMPLETED"
            )
            waiting.cancel()
            if service in done:
                service.result()  # its error, if it failed
                raise RuntimeError("the service stopped before every result was read")
            if waiting not in done:
                raise TimeoutError(
                    f"{len(self._waiting)} commands without a result after {RESULTS_TIMEOUT_S} s"
                )
        finally:
            self._waiting = None

    def statuses(self, command_ids: Iterable[str]) -> Counter[str]:
        return Counter(
            str(json.loads(self.read[command_id].value)["data"]["status"])
            for command_id in command_ids
        )


@dataclass
class Bench:
    args: argparse.Namespace
    plan: Plan
    producer: Producer
    results: Results
    service: asyncio.Task[None]
    ccc: CccClient
    concurrency: int
    figures: Figures

    async def produce_and_wait(self, commands: list[Planned]) -> None:
        await self.producer.send_all([c.record for c in commands])
        await self.wait_for(commands)

    async def wait_for(self, commands: list[Planned]) -> None:
        await self.results.wait_for([c.command_id for c in commands], self.service)

    def tally(self, commands: list[Planned]) -> None:
        """Count the results' statuses (outside any timing: it parses every one)."""
        self.figures.statuses += self.results.statuses(c.command_id for c in commands)

    async def bare_call(self, command: Planned) -> float:
        """Seconds the call took; a failed call counts, and is counted."""
        started = time.perf_counter()
        try:
            await self.ccc.call(command.action, command.params)
        except Exception:  # noqa: BLE001 - counted and reported, the bench goes on
            self.figures.bare_failures += 1
        return time.perf_counter() - started

    # -- (1) throughput --------------------------------------------------------------

    async def throughput(self) -> None:
        count, concurrency = self.args.commands, self.concurrency
        samples: dict[str, list[float]] = {"ours": [], "bare": []}

        async def ours() -> float:
            commands = self.plan.commands(count)
            started = time.perf_counter()
            await self.produce_and_wait(commands)
            elapsed = time.perf_counter() - started
            self.tally(commands)
            return elapsed

        async def bare() -> float:
            remaining = iter(self.plan.commands(count))

            async def worker() -> None:
                for command in remaining:
                    await self.bare_call(command)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - started

        gc.collect()
        for index in range(self.args.rounds):
            pair: list[tuple[str, Callable[[], Awaitable[float]]]] = [
                ("ours", ours),
                ("bare", bare),
            ]
            for name, step in pair if index % 2 == 0 else reversed(pair):
                samples[name].append(await step())
        self.figures.rates[concurrency] = (
            count / statistics.median(samples["ours"]),
            count / statistics.median(samples["bare"]),
        )

    # -- (2) latency at a pace -------------------------------------------------------

    async def latency(self) -> None:
        per_round = max(1, round(self.args.rate * self.args.latency_seconds / self.args.rounds))

        async def ours() -> None:
            commands = self.plan.commands(per_round)
            sent_at: dict[str, tuple[float, float]] = {}

            async def send(command: Planned) -> None:
                sent_at[command.command_id] = (time.perf_counter(), time.time())
                await self.producer.send_all([command.record])

            await paced(self.args.rate, commands, send)
            await self.wait_for(commands)
            self.tally(commands)
            for command in commands:
                read = self.results.read[command.command_id]
                sent, sent_wall = sent_at[command.command_id]
                self.figures.ours_ms.append((read.at - sent) * 1000)
                data = json.loads(read.value)["data"]
                received = datetime.fromisoformat(data["received_at"]).timestamp()
                completed = datetime.fromisoformat(data["completed_at"]).timestamp()
                stages = self.figures.stages_ms
                stages["produce -> worker has it"].append((received - sent_wall) * 1000)
                stages["worker: ledger, CCC call"].append((completed - received) * 1000)
                stages["ledger, result -> read"].append((read.wall - completed) * 1000)

        async def bare() -> None:
            async def call(command: Planned) -> None:
                self.figures.bare_ms.append(await self.bare_call(command) * 1000)

            await paced(self.args.rate, self.plan.commands(per_round), call)

        gc.collect()
        for index in range(self.args.rounds):
            pair = [ours, bare]
            for step in pair if index % 2 == 0 else reversed(pair):
                await step()


async def paced(
    rate: float, commands: list[Planned], fire: Callable[[Planned], Coroutine[Any, Any, None]]
) -> None:
    """`fire` each command at its turn, `rate` a second, whether or not earlier ones ended."""
    started = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for index, command in enumerate(commands):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(command)))
    await asyncio.gather(*tasks)


def bench_settings(url: str, kafka: KafkaSettings, concurrency: int) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings(
        # Rate limits off: measure the pipeline, not the limit.
        ccc=client_settings(url, instances=[INSTANCE], rate_limits=RateLimitSettings.off()),
        kafka=kafka,
        http=HttpSettings(host="127.0.0.1", port=0),
        topics=TopicSettings(prefix=f"bench{run}."),
        pollers=PollerSettings.off(),
        commands=CommandSettings(concurrency=concurrency, group_id=f"bench-{run}"),
    )


async def start_reader(settings: Settings) -> AIOKafkaConsumer:
    topic = settings.topics.name("command_results")
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka), enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    found = await describe_topics(settings.kafka, [topic])
    partitions = [TopicPartition(topic, p) for p in range(found[topic].partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return consumer


async def measure(args: argparse.Namespace, url: str) -> Figures:
    figures = Figures()
    for level, concurrency in enumerate(args.concurrency):
        await measure_at(args, url, concurrency, figures, latency=level == 0)
    return figures


async def measure_at(
    args: argparse.Namespace, url: str, concurrency: int, figures: Figures, *, latency: bool
) -> None:
    async with EmbeddedBroker() as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        settings = bench_settings(url, kafka, concurrency)
        await ensure_topics(settings.kafka, settings.topics)
        results = Results()
        consumer = await start_reader(settings)
        producer = Producer(settings.kafka)
        await producer.start()
        stop, reading = asyncio.Event(), asyncio.Event()
        reader = asyncio.create_task(results.tail(consumer, reading))
        service = asyncio.create_task(run_service(settings, stop))
        try:
            async with CccClient(settings.ccc) as ccc:
                plan = Plan(settings.topics)
                bench = Bench(args, plan, producer, results, service, ccc, concurrency, figures)
                await warm_up(bench)
                await bench.throughput()
                if latency:
                    await bench.latency()
        finally:
            stop.set()
            reading.set()
            await asyncio.gather(service, reader)  # a failed service raises here
            await consumer.stop()
            await producer.stop()


async def warm_up(bench: Bench) -> None:
    """Until the group is formed and every path has run once: one command of each kind
    through the service, one call of each action through the bare client."""
    commands = bench.plan.commands(2)
    started = time.perf_counter()
    await bench.producer.send_all([c.record for c in commands])
    await asyncio.wait_for(
        bench.results.wait_for([c.command_id for c in commands], bench.service),
        GROUP_JOIN_TIMEOUT_S,
    )
    print(f"warm-up: the first results after {time.perf_counter() - started:.1f} s (group join)")
    for command in bench.plan.commands(2):
        await bench.ccc.call(command.action, command.params)


def percentile(samples: list[float], cut: int) -> float:
    if len(samples) < 2:  # quantiles needs two
        return samples[0] if samples else 0.0
    return statistics.quantiles(samples, n=100, method="inclusive")[cut - 1]


def report(args: argparse.Namespace, figures: Figures) -> None:
    best_ours = max(ours for ours, _ in figures.rates.values())
    best_bare = max(bare for _, bare in figures.rates.values())
    ratio = best_ours / best_bare
    ours50, ours99 = percentile(figures.ours_ms, 50), percentile(figures.ours_ms, 99)
    bare50, bare99 = percentile(figures.bare_ms, 50), percentile(figures.bare_ms, 99)
    overhead = ours99 - bare99
    results = sum(figures.statuses.values())
    succeeded = figures.statuses["succeeded"]
    print(f"{args.rounds} rounds; dial_ex and sms in turn")
    print(f"(1) produce -> result read, {args.commands} per round, median:")
    for concurrency, (ours, bare) in figures.rates.items():
        print(
            f"    concurrency {concurrency:3d}: ours {ours:,.0f} commands/s, "
            f"bare CccClient {bare:,.0f} calls/s, ratio {ours / bare:.2f}"
        )
    print(
        f"(2) at {args.rate:g}/s for {args.latency_seconds:g} s each, concurrency "
        f"{args.concurrency[0]}: ours p50 {ours50:.1f} ms, "
        f"p99 {ours99:.1f} ms, max {max(figures.ours_ms, default=0):.1f} ms "
        f"({len(figures.ours_ms)} commands); bare p50 {bare50:.1f} ms, p99 {bare99:.1f} ms, "
        f"max {max(figures.bare_ms, default=0):.1f} ms ({len(figures.bare_ms)} calls)"
    )
    for stage, samples in figures.stages_ms.items():
        print(
            f"    ours, {stage:<26} p50 {percentile(samples, 50):6.1f} ms, "
            f"p99 {percentile(samples, 99):6.1f} ms"
        )
    print(
        f"results: {results} read, {succeeded} succeeded, "
        f"others {dict(figures.statuses - Counter(succeeded=succeeded)) or 'none'}; "
        f"bare calls failed: {figures.bare_failures}"
    )
    print("summary")
    print(
        f"  (1) best ours/best bare    {ratio:6.2f}        target >= {RATIO_TARGET}   "
        f"{verdict(ratio >= RATIO_TARGET)}"
    )
    print(
        f"  (2) p99 overhead          {overhead:6.1f} ms     target < {OVERHEAD_TARGET_MS:g} ms  "
        f"{verdict(overhead < OVERHEAD_TARGET_MS)}"
    )
    print(
        f"      every command succeeded  {succeeded}/{results}     "
        f"{verdict(succeeded == results and figures.bare_failures == 0)}"
    )


def levels(text: str) -> list[int]:
    values = [int(part) for part in text.split(",")]
    if min(values) < 1:
        raise argparse.ArgumentTypeError("positive integers, comma-separated")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1000, help="commands per round of (1)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--concurrency",
        type=levels,
        default=[16, 32, 64],
        help="commands at once, both sides: comma-separated levels (default 16,32,64)",
    )
    parser.add_argument("--rate", type=float, default=100.0, help="commands/s of (2)")
    parser.add_argument(
        "--latency-seconds", type=float, default=15.0, help="length of (2), s, for each side"
    )
    parser.add_argument("--agents", type=int, default=10, help="agents in the emulated instance")
    args = parser.parse_args()
    configure_logging("warning", "console")  # one info line per command would bury the figures
    tune_gc()  # as `ccc-bridge run` does; the bare client, in this process too, has it as well
    process, url = start_emulator("--instance", INSTANCE, "--agents", str(args.agents))
    try:
        figures = asyncio.run(measure(args, url))
    finally:
        stop_process(process)
    report(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
