"""A real contact centre's size: every stream against CCC's budget at 100 to 5,000 agents.

The service runs as operators run it (`ccc-bridge run`, default settings, its own process)
against the embedded broker and the emulator in real time (`--speed 1`) with 40 ms added to
every CCC action, like a cross-region API. After a warm-up it measures for a while and
prints, per stream:

- CCC calls/min by action, and the share of list answers that were empty (emulator stats);
- poll cycle time against the interval (the service's own histogram);
- p50 / p99 freshness: from the transition (or the record becoming queryable) at CCC, in the
  emulator's history, to the event read from Kafka by this process;
- what of the history is missing on Kafka; the service's RSS; SIGTERM time and exit code.

Then, at the largest size, once more with `ccc.rate_limits.total_per_s: 50` while commands
(SMS and dial, 2/s) are sent, against the same commands with the pollers off; at the end
the emulator is quiesced (everyone logs out, no new calls) and the bench waits until every
transition and record of the run is on Kafka.

    .venv/bin/python -m bench.scale [--sizes 100,1000,5000] [--warmup-s 60] [--measure-s 180]
        [--no-budget-run] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.commands import INSTANCE, Plan
from bench.emulator_process import ROOT, start_emulator, stop_process
from bench.report import verdict
from service.broker import EmbeddedBroker
from service.emulator.config import DEFAULT_ACCESS_KEY_SECRET, client_settings
from service.kafka.admin import describe_topics, ensure_topics
from service.kafka.connection import client_options
from service.kafka.producer import Producer
from service.kafka.settings import KafkaSettings, TopicSettings
from service.logs import configure_logging
from service.settings import HttpSettings, PollerSettings, Settings

LATENCY_MS = 40
WARP_S = 180  # simulated time skipped before the service starts: every agent logged in
STREAM_OF = {
    "ListAgentStates": "agent_states",
    "ListAgentEvents": "agent_states, agent_state_logs",
    "ListAgentStateLogs": "agent_state_logs",
    "ListCallDetailRecords": "calls",
    "ListCallEventDetailByContactId": "calls",
    "ListSkillGroupStates": "skill_groups",
    "ListUsers": "directory",
}
CHANGED = "com.aliyun.ccc.agent.state.changed"
LOGGED = "com.aliyun.ccc.agent.state.logged"
RECORD = "com.aliyun.ccc.call.record"
COMMAND_RATE = 2.0  # commands/s during the budget run
CATCH_UP_DEADLINE_S = 1800
WARM_UP_DEADLINE_S = 900
SHUTDOWN_BUDGET_S = 20.0  # lifecycle.shutdown_budget_s's default


@dataclass
class Run:
    """What one service run measured."""

    agents: int
    total_per_s: float | None
    pollers: bool = True
    commands: bool = False  # commands sent while measuring
    catch_up: bool = False  # quiesce the centre after measuring, and wait for all of it
    minutes_measured: float = 0.0
    warmup_s: float = 0.0
    calls_per_min: dict[str, float] = field(default_factory=dict)
    empty_share: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    stream_calls_per_min: dict[str, float] = field(default_factory=dict)
    cycles: dict[str, tuple[float, float, float]] = field(
        default_factory=dict
    )  # mean, p99, interval
    freshness: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # p50, p99, n
    missing: dict[str, tuple[int, int]] = field(default_factory=dict)  # missing, of
    command_ms: tuple[float, float, int] | None = None
    rss_mb: list[float] = field(default_factory=list)
    catch_up_s: float | None = None
    sigterm_s: float = 0.0
    exit_code: int | None = None

    @property
    def total_per_agent_min(self) -> float:
        return sum(self.calls_per_min.values()) / self.agents


@dataclass
class Seen:
    """Every event read from Kafka during a run, with when this process read it (epoch s)."""

    changed: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    logged: dict[tuple[str, str, int], float] = field(default_factory=dict)
    records: dict[str, float] = field(default_factory=dict)
    results: dict[str, float] = field(default_factory=dict)


def ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def pct(samples: list[float], cut: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * cut / 100))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Emulator:
    """The emulator's test endpoints."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self._http = http

    async def get(self, path: str) -> Any:
        async with self._http.get(f"{self.url}/_emulator/{path}") as answer:
            answer.raise_for_status()
            return await answer.json()

    async def post(self, path: str, body: Any = None) -> Any:
        async with self._http.post(f"{self.url}/_emulator/{path}", json=body) as answer:
            answer.raise_for_status()
            return await answer.json()

    async def reset_stats(self) -> None:
        async with self._http.delete(f"{self.url}/_emulator/stats") as answer:
            answer.raise_for_status()


def service_settings(
    url: str, kafka: KafkaSettings, total_per_s: float | None, *, pollers: bool, logs_s: float
) -> Settings:
    run = uuid.uuid4().hex[:8]
    ccc = client_settings(url, instances=[INSTANCE])
    if total_per_s is not None:
        limits = ccc.rate_limits.model_copy(update={"total_per_s": total_per_s})
        ccc = ccc.model_copy(update={"rate_limits": limits})
    return Settings(
        ccc=ccc,
        kafka=kafka,
        http=HttpSettings(host="127.0.0.1", port=free_port()),
        topics=TopicSettings(prefix=f"scale{run}."),
        pollers=(
            PollerSettings(group_id=f"scale-{run}", agent_state_logs_interval_s=logs_s)
            if pollers
            else PollerSettings.off()
        ),
    )


def environment(settings: Settings) -> dict[str, str]:
    """The settings that differ from the defaults, as a container gets them: env vars."""
    values = settings.model_dump(mode="json", exclude_defaults=True)
    values["ccc"]["access_key_secret"] = DEFAULT_ACCESS_KEY_SECRET
    return {
        f"CCC_BRIDGE_{section.upper()}__{name.upper()}": (
            value if isinstance(value, str) else json.dumps(value)
        )
        for section, fields in values.items()
        for name, value in fields.items()
    }


async def start_service(settings: Settings) -> asyncio.subprocess.Process:
    """`ccc-bridge run`, configured by its environment, as a container runs it."""
    command = [sys.executable, "-m", "service", "--log-level", "warning", "run"]
    env = os.environ | environment(settings)
    return await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env)


async def wait_ready(
    settings: Settings, service: asyncio.subprocess.Process, http: aiohttp.ClientSession
) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if service.returncode is not None:
            raise RuntimeError(f"the service exited with {service.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{settings.http.port}/readyz") as answer:
                if answer.status == 200:
                    return
        await asyncio.sleep(0.5)
    raise TimeoutError("the service was not ready within 120 s")


async def scrape(
    settings: Settings, http: aiohttp.ClientSession
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(f"http://127.0.0.1:{settings.http.port}/metrics") as answer:
        text = await answer.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def tail(settings: Settings, seen: Seen, stop: asyncio.Event) -> None:
    """Read the event and result topics from the start, noting when each event arrived."""
    names = [settings.topics.name(t) for t in ("agent_states", "calls", "command_results")]
    await ensure_topics(settings.kafka, settings.topics)
    found = await describe_topics(settings.kafka, names)
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka), enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(n, p) for n in names for p in range(found[n].partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            at = time.time()
            for batch in batches.values():
                for record in batch:
                    note(seen, record.key, record.value, at)
    finally:
        await consumer.stop()


def note(seen: Seen, key: bytes | None, value: bytes | None, at: float) -> None:
    if value is None:
        return
    event = json.loads(value)
    kind, data = event.get("type"), event.get("data") or {}
    if kind == CHANGED and not data.get("snapshot"):
        seen.changed.append((at, data))
    elif kind == LOGGED:
        seen.logged.setdefault((data["agent_id"], data["state"], ms(data["state_time"])), at)
    elif kind == RECORD:
        seen.records.setdefault(data["contact_id"], at)
    elif key is not None and "status" in data:
        seen.results.setdefault(key.decode(), at)


def freshness(
    seen: Seen,
    history: list[dict[str, Any]],
    calls: list[dict[str, Any]],
    span: tuple[int, int],
    offset_ms: int,
) -> dict[str, tuple[float, float, int]]:
    """Seconds from CCC (history, simulated time less the warp) to read from Kafka."""
    first, last = span
    moves: dict[tuple[str, str], list[int]] = defaultdict(list)
    for h in history:
        moves[h["agent_id"], h["state"]].append(ms(h["at"]))
    changed = []
    for at, data in seen.changed:
        since = ms(data["state_since"])
        candidates = moves.get((data["agent_id"], data["state"]), [])
        began = min(candidates, key=lambda m: abs(m - since), default=None)
        if began is not None and abs(began - since) <= 2500 and first <= began <= last:
            changed.append(at - (began - offset_ms) / 1000)
    logged = [
        at - (when - offset_ms) / 1000
        for (_, _, when), at in seen.logged.items()
        if first <= when <= last
    ]
    available = {c["contact_id"]: ms(c["available_at"]) for c in calls}
    records = [
        at - (available[contact] - offset_ms) / 1000
        for contact, at in seen.records.items()
        if contact in available and first <= available[contact] <= last
    ]
    return {
        name: (pct(samples, 50), pct(samples, 99), len(samples))
        for name, samples in (
            ("agent.state.changed", changed),
            ("agent.state.logged", logged),
            ("call.record", records),
        )
    }


def missing(
    seen: Seen, history: list[dict[str, Any]], calls: list[dict[str, Any]], span: tuple[int, int]
) -> dict[str, tuple[int, int]]:
    first, last = span
    moves = [
        (h["agent_id"], h["state"], ms(h["at"])) for h in history if first <= ms(h["at"]) <= last
    ]
    records = [c["contact_id"] for c in calls if first <= ms(c["available_at"]) <= last]
    return {
        "agent.state.logged": (sum(m not in seen.logged for m in moves), len(moves)),
        "call.record": (sum(c not in seen.records for c in records), len(records)),
    }


def call_figures(run: Run, stats: dict[str, Any], minutes: float) -> None:
    for action, counts in stats["actions"].items():
        run.calls_per_min[action] = counts["calls"] / minutes
        if counts["ok"]:
            run.empty_share[action] = counts["empty"] / counts["ok"]
        for code, n in counts["errors"].items():
            run.errors[f"{action} {code}"] = n


def cycle_figures(
    run: Run, before: dict[Any, float], after: dict[Any, float], settings: Settings
) -> None:
    intervals = {
        "agent_states": settings.pollers.agent_states_interval_s,
        "agent_state_logs": min(
            settings.pollers.agent_states_interval_s, settings.pollers.agent_state_logs_interval_s
        ),
        "calls": settings.pollers.calls_interval_s,
        "skill_groups": settings.pollers.skill_groups_interval_s,
    }

    def delta(name: str, labels: dict[str, str]) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for stream, interval in intervals.items():
        labels = {"stream": stream, "ccc_instance": INSTANCE}
        count = delta("ccc_bridge_poll_cycle_seconds_count", labels)
        if not count:
            continue
        mean = delta("ccc_bridge_poll_cycle_seconds_sum", labels) / count
        bounds = sorted(
            (float(dict(k[1])["le"]), v - before.get(k, 0.0))
            for k, v in after.items()
            if k[0] == "ccc_bridge_poll_cycle_seconds_bucket" and dict(k[1]).get("stream") == stream
        )
        p99 = next((le for le, n in bounds if n >= 0.99 * count), float("inf"))
        run.cycles[stream] = (mean, p99, interval)
    for key, value in after.items():
        if key[0] == "ccc_bridge_ccc_stream_calls_total":
            stream = dict(key[1])["stream"]
            run.stream_calls_per_min[stream] = (
                (value - before.get(key, 0.0)) * 60 / (run.minutes_measured or 1)
            )


async def send_commands(settings: Settings, seen: Seen, seconds: float) -> list[float]:
    """Commands at COMMAND_RATE for `seconds`; ms from producing each to reading its result."""
    producer = Producer(settings.kafka)
    await producer.start()
    plan, sent = Plan(settings.topics), {}
    try:
        started = time.monotonic()
        for index in range(int(seconds * COMMAND_RATE)):
            await asyncio.sleep(max(0.0, started + index / COMMAND_RATE - time.monotonic()))
            command = plan.one()
            sent[command.command_id] = time.time()
            await producer.send_all([command.record])
        deadline = time.monotonic() + 60
        # The reader notes results as they come: look now and then, up to a deadline.
        while sent.keys() - seen.results.keys() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    finally:
        await producer.stop()
    return [(seen.results[c] - at) * 1000 for c, at in sent.items() if c in seen.results]


@dataclass(frozen=True)
class Place:
    """Where a run happens."""

    emulator: Emulator
    kafka: KafkaSettings
    http: aiohttp.ClientSession
    offset_ms: int  # the emulator's clock less ours


async def one_run(args: argparse.Namespace, place: Place, run: Run) -> None:
    emulator, kafka, http = place.emulator, place.kafka, place.http
    settings = service_settings(
        emulator.url, kafka, run.total_per_s, pollers=run.pollers, logs_s=args.state_logs_interval_s
    )
    seen, stop = Seen(), asyncio.Event()
    await ensure_topics(kafka, settings.topics)
    reader = asyncio.create_task(tail(settings, seen, stop))
    service = await start_service(settings)
    try:
        await wait_ready(settings, service, http)
        # Under a budget the histories lag by design: no waiting for them to catch up first.
        behind = run.total_per_s is None and run.pollers
        run.warmup_s = await warm_up(settings, http, args.warmup_s, until_current=behind)
        await emulator.reset_stats()
        before = await scrape(settings, http)
        t0 = time.time()
        commands = (
            asyncio.create_task(send_commands(settings, seen, args.measure_s))
            if run.commands
            else None
        )
        while time.time() - t0 < args.measure_s:
            run.rss_mb.append(rss_mb(service.pid))
            await asyncio.sleep(min(10.0, args.measure_s - (time.time() - t0)))
        t1 = time.time()
        run.minutes_measured = (t1 - t0) / 60
        stats = await emulator.get("stats")
        after = await scrape(settings, http)
        call_figures(run, stats, run.minutes_measured)
        cycle_figures(run, before, after, settings)
        if commands is not None:
            latencies = await commands
            run.command_ms = (pct(latencies, 50), pct(latencies, 99), len(latencies))
        if run.pollers:
            await stream_figures(run, place, seen, (t0, t1))
    finally:
        started = time.monotonic()
        service.send_signal(signal.SIGTERM)
        run.exit_code = await asyncio.wait_for(service.wait(), timeout=120)
        run.sigterm_s = time.monotonic() - started
        stop.set()
        await reader


async def stream_figures(run: Run, place: Place, seen: Seen, window: tuple[float, float]) -> None:
    """Freshness over the measured window (in the emulator's time) and what is missing: of
    it, after a minute; with a catch-up, of everything since it began, quiesce's logouts
    included (those are left out of freshness: they come after the window)."""
    emulator, offset = place.emulator, place.offset_ms
    span = (int(window[0] * 1000) + offset, int(window[1] * 1000) + offset)
    checked = (span[0], span[1] - 60_000)
    if run.catch_up:
        quiesced = (await emulator.post("quiesce"))["quiesced_at"]
        span = (span[0], min(span[1], quiesced - 1))
        checked = (span[0], 2**62)
        run.catch_up_s = await catch_up(emulator, seen, checked)
    history = await emulator.get("history/agent-states")
    calls = await emulator.get("history/calls")
    run.freshness = freshness(seen, history, calls, span, offset)
    run.missing = missing(seen, history, calls, checked)


async def warm_up(
    settings: Settings, http: aiohttp.ClientSession, least_s: float, *, until_current: bool
) -> float:
    """At least `least_s`, and until the first start's backlog (the calls look-back, the
    first net) is read: each stream no further behind than its interval (or a deadline)."""
    started = time.monotonic()
    await asyncio.sleep(least_s)
    if not until_current:
        return least_s
    pollers = settings.pollers
    limits = {"calls": pollers.calls_interval_s * 2, "agent_state_logs": 30.0}
    while time.monotonic() - started < WARM_UP_DEADLINE_S:
        metrics = await scrape(settings, http)
        behind = {
            dict(labels)["stream"]: value
            for (name, labels), value in metrics.items()
            if name == "ccc_bridge_stream_behind_seconds"
        }
        if all(behind.get(stream, 0.0) <= limit for stream, limit in limits.items()):
            break
        await asyncio.sleep(5)
    return time.monotonic() - started


async def catch_up(emulator: Emulator, seen: Seen, span: tuple[int, int]) -> float:
    """Seconds until every transition and record of the span is on Kafka (or the deadline)."""
    started = time.monotonic()
    while time.monotonic() - started < CATCH_UP_DEADLINE_S:
        history = await emulator.get("history/agent-states")
        calls = await emulator.get("history/calls")
        if all(gone == 0 for gone, _ in missing(seen, history, calls, span).values()):
            return time.monotonic() - started
        await asyncio.sleep(30)  # the histories are large: asking often would slow the emulator
    return float("inf")


async def at_size(args: argparse.Namespace, agents: int, *, budget_run: bool) -> list[Run]:
    process, url = start_emulator("--agents", str(agents), "--speed", "1", "--instance", INSTANCE)
    runs: list[Run] = []
    try:
        async with aiohttp.ClientSession() as http, EmbeddedBroker() as broker:
            emulator = Emulator(url, http)
            await emulator.post("faults", {"action": "*", "latency_ms": LATENCY_MS})
            await emulator.post("clock", {"advance_s": WARP_S})
            kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
            place = Place(emulator, kafka, http, WARP_S * 1000)
            plan = [] if budget_run and args.only_budget_run else [Run(agents, None)]
            if budget_run:
                plan += [
                    Run(agents, None, pollers=False, commands=True),
                    Run(agents, args.total_per_s, commands=True, catch_up=True),
                ]
            for run in plan:
                print(
                    f"{agents} agents, total_per_s {run.total_per_s}, pollers {run.pollers}",
                    file=sys.stderr,
                    flush=True,
                )
                await one_run(args, place, run)
                runs.append(run)
    finally:
        stop_process(process)
    return runs


def report(runs: list[Run]) -> None:
    for run in runs:
        title = f"{run.agents} agents"
        if run.total_per_s is not None:
            title += f", total_per_s {run.total_per_s:g}"
        if not run.pollers:
            title += ", pollers off"
        if run.commands:
            title += f", commands at {COMMAND_RATE:g}/s"
        print(
            f"\n== {title} (warm-up {run.warmup_s:.0f} s, measured {run.minutes_measured:.1f} min)"
        )
        if run.pollers:
            report_streams(run)
        if run.command_ms is not None:
            p50, p99, n = run.command_ms
            print(f"command latency p50 {p50:.0f} ms, p99 {p99:.0f} ms ({n})")
        if run.rss_mb:
            first, peak, last = run.rss_mb[0], max(run.rss_mb), run.rss_mb[-1]
            print(f"service RSS {first:.0f} -> {peak:.0f} -> {last:.0f} MB (first, peak, last)")
        stopped = run.exit_code == 0 and run.sigterm_s <= SHUTDOWN_BUDGET_S
        print(
            f"SIGTERM: exit {run.exit_code} after {run.sigterm_s:.1f} s "
            f"(budget {SHUTDOWN_BUDGET_S:g} s: {verdict(stopped)})"
        )


def report_streams(run: Run) -> None:
    total = sum(run.calls_per_min.values())
    print(
        f"CCC calls/min {total:,.0f} = {run.total_per_agent_min:.2f} per agent per minute "
        f"(target <= 1.5: {verdict(run.total_per_agent_min <= 1.5)})"
    )
    for action, rate in sorted(run.calls_per_min.items(), key=lambda kv: -kv[1]):
        empty = run.empty_share.get(action)
        shown = "" if empty is None else f"  empty {empty:.0%}"
        print(f"  {action:32} {STREAM_OF.get(action, 'commands'):30} {rate:8.0f}/min{shown}")
    for name, n in sorted(run.errors.items()):
        print(f"  error {name}: {n}")
    print("cycle (mean / p99 bucket) against interval:")
    for stream, (mean, p99, interval) in run.cycles.items():
        print(f"  {stream:18} {mean:6.2f} s / {p99:6.2f} s, interval {interval:g} s")
    print("freshness from CCC to Kafka, p50 / p99 (n):")
    for name, (p50, p99, n) in run.freshness.items():
        print(f"  {name:20} {p50:6.2f} s / {p99:6.2f} s ({n})")
    for name, (gone, of) in run.missing.items():
        print(f"  missing {name}: {gone} of {of}")
    if run.catch_up_s is not None:
        print(f"after quiesce, all on Kafka within {run.catch_up_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,5000", help="agents per run, comma-separated")
    parser.add_argument(
        "--warmup-s", type=float, default=60.0, help="service running before measuring"
    )
    parser.add_argument("--measure-s", type=float, default=180.0, help="seconds measured per run")
    parser.add_argument(
        "--total-per-s", type=float, default=50.0, help="total_per_s of the budget run"
    )
    parser.add_argument(
        "--state-logs-interval-s",
        type=float,
        default=PollerSettings().agent_state_logs_interval_s,
        help="pollers.agent_state_logs_interval_s (default: the service's)",
    )
    parser.add_argument("--no-budget-run", action="store_true", help="skip the budget run")
    parser.add_argument(
        "--only-budget-run", action="store_true", help="at the largest size, only the budget run"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    configure_logging("warning", "console")  # the broker's lines would bury the figures
    sizes = [int(size) for size in args.sizes.split(",")]
    runs: list[Run] = []
    for agents in sizes:
        runs += asyncio.run(
            at_size(args, agents, budget_run=not args.no_budget_run and agents == max(sizes))
        )
    report(runs)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(run) for run in runs], indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
