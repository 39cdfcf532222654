"""`ccc-bridge backfill`: publish the history of a past span of one instance with the live
pollers' event ids (service/events/backfill.py), a progress bar on a terminal, stoppable
with SIGINT/SIGTERM and resumed by running the same command again (docs/backfill.md)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Self

from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from service.ccc.budget import calling_as
from service.ccc.client import CccClient
from service.ccc.errors import CccError
from service.console import (
    StartupError,
    add_config_argument,
    add_stream_arguments,
    add_time_argument,
    kafka_failure,
    quiet_kafka_logs,
    say,
    settings_from,
    startup_failed,
    stop_on_signals,
)
from service.errors import ConfigError
from service.events.backfill import Backfill, BackfillPlan
from service.events.checkpoints import STREAMS, shown, unit
from service.events.pollers import Directory, InstancePorts
from service.events.publisher import CheckpointStore, EventPublisher
from service.kafka.admin import ensure_topics
from service.kafka.producer import Producer
from service.settings import Settings

EXIT_FAILED = 1
EXIT_STOPPED = 130  # stopped by a signal before the end: run the same command to resume
CCC_STREAM = "backfill"  # its place in the CCC call budget: after every live stream


class Bar:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise, where the
    closing line says it all."""

    def __init__(self, plan: BackfillPlan, published: int) -> None:
        self.published = published
        self._what = unit(plan.stream)
        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn(f"{plan.instance_id} {plan.stream}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[published]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self._task = self._progress.add_task("", total=None, published=self._published())

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def planned(self, total: int, done: int) -> None:
        self._progress.update(self._task, total=total, completed=done)

    def advanced(self, units: int, published: int) -> None:
        self.published += published
        self._progress.update(self._task, advance=units, published=self._published())

    def _published(self) -> str:
        return f"{self.published} {self._what}"


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "backfill",
        help="publish a past span of one instance's history, with the live pollers' event ids",
        description="Read one stream of one CCC instance over [--from, --to) and publish it "
        "with the event ids the live pollers give, so consumers deduplicate it. Its progress "
        "is kept in the checkpoints topic under a key of its own: stopped (SIGINT, SIGTERM), "
        "the same command resumes it. The live checkpoints are never moved. See "
        "docs/backfill.md.",
    )
    add_stream_arguments(
        parser,
        STREAMS,
        "calls: call records and their steps; agent-state-logs: every agent's state log",
    )
    add_time_argument(
        parser,
        "--from",
        "start",
        "start of the span, RFC 3339 with an offset (2024-05-01T00:00:00+08:00)",
    )
    add_time_argument(
        parser,
        "--to",
        "end",
        "end of the span (excluded), RFC 3339 with an offset; not in the future",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="start again from --from, ignoring the progress of an earlier run of this span",
    )
    add_config_argument(parser)
    parser.set_defaults(func=run)


async def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        plan = _plan(args, settings)
        settings.ccc.credentials()
    except (StartupError, ConfigError) as error:
        return startup_failed("backfill", error)
    stop = asyncio.Event()
    with stop_on_signals(stop), quiet_kafka_logs() as connected:
        producer = Producer(settings.kafka)
        try:
            try:
                await producer.start()
                if settings.topics.create_missing:
                    await ensure_topics(settings.kafka, settings.topics)
                checkpoints = CheckpointStore(producer, settings.kafka, settings.topics)
                if not args.restart:
                    await checkpoints.load([plan.key])
            except KafkaError as error:
                return startup_failed("backfill", kafka_failure(settings.kafka, error))
            connected()
            publisher = EventPublisher(
                producer, settings.topics, settings.ccc.region, skip_too_large=True
            )
            async with CccClient(settings.ccc) as ccc:
                directory = Directory(ccc, plan.instance_id)
                ports = InstancePorts(plan.instance_id, ccc, publisher, checkpoints, directory)
                return await _backfill(Backfill(ports, plan), plan, stop)
        finally:
            await producer.stop()


def _plan(args: argparse.Namespace, settings: Settings) -> BackfillPlan:
    if args.start >= args.end:
        raise StartupError("--from must be before --to")
    if args.end > time.time() * 1000:
        # What CCC has not recorded yet would be skipped for good by this span's progress.
        raise StartupError("--to is in the future: the live pollers publish what is to come")
    span = (args.start, args.end)
    return BackfillPlan(args.instance, args.stream, span, settings.pollers.concurrency)


async def _backfill(backfill: Backfill, plan: BackfillPlan, stop: asyncio.Event) -> int:
    span = f"{plan.instance_id} {plan.stream} {shown(plan.span[0])}..{shown(plan.span[1])}"
    if backfill.done:
        say(f"{span}: already complete (--restart publishes it again)")
        return 0
    if backfill.progress.done_ms > plan.span[0]:
        say(f"{span}: resuming from {shown(backfill.progress.done_ms)}")
    calling_as(CCC_STREAM)
    bar = Bar(plan, backfill.progress.published)
    try:
        with bar:
            complete = await backfill.run(stop, bar)
    except CccError as error:
        done = shown(backfill.progress.done_ms)
        say(f"{span}: stopped at {done}: {error}; run the same command to resume")
        return EXIT_FAILED
    if not complete:
        done = shown(backfill.progress.done_ms)
        say(f"{span}: stopped at {done}; run the same command to resume")
        return EXIT_STOPPED
    say(f"{span}: complete, {backfill.progress.published} {unit(plan.stream)} published")
    return 0
