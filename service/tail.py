"""`ccc-bridge tail`: print events as they arrive, one readable line each, until SIGINT or
SIGTERM. `follow` is the reusable part (the demo shows its live view with it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Collection, Mapping

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from service.console import (
    StartupError,
    add_config_argument,
    kafka_failure,
    quiet_kafka_logs,
    say,
    settings_from,
    startup_failed,
    stop_on_signals,
)
from service.kafka.admin import describe_topics
from service.kafka.consumer import Consumer, Subscription
from service.kafka.records import Record
from service.kafka.settings import KafkaSettings
from service.kafka.topics import SHOWN_TOPICS
from service.render import render


async def follow(  # noqa: PLR0913 - the demo's contract: where, what, from where, and two hooks
    kafka: KafkaSettings,
    topics: list[str],
    *,
    from_beginning: bool,
    stop: asyncio.Event,
    emit: Callable[[str], None],
    on_ready: Callable[[], None] | None = None,
    only: Collection[str] | None = None,
) -> None:
    """Emit one line per message on every partition of `topics` until `stop` is set;
    with `only`, just for events of those types.

    No consumer group and no commits: a viewer never takes a share of anyone's partitions.
    `on_ready` runs once the start positions are fixed, so nothing produced after it is
    missed. Raises UnknownTopicOrPartitionError naming a topic that does not exist.
    """
    found = await describe_topics(kafka, topics)
    missing = [topic for topic in topics if topic not in found]
    if missing:
        raise UnknownTopicOrPartitionError(f"no such topic: {', '.join(missing)}")

    async def show(record: Record) -> bool:
        if only is None or _event_type(record.value) in only:
            emit(line(record.value))
        return True

    subscription = Subscription(
        tuple(topics), start_from="earliest" if from_beginning else "latest", ordered_by=None
    )
    ready = None if on_ready is None else _Ready(on_ready)
    await Consumer(kafka, subscription, show, name="tail", rebalance=ready).run(stop)


class _Ready:
    """Calls `on_ready` once the start positions are fixed."""

    def __init__(self, on_ready: Callable[[], None]) -> None:
        self._on_ready = on_ready

    async def assigned(self, partitions: frozenset[TopicPartition]) -> None:  # noqa: ARG002 - all of them, once
        self._on_ready()

    async def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        pass


def _event_type(value: bytes | None) -> str | None:
    try:
        event = json.loads(value or b"")
    except ValueError:
        return None
    return str(event.get("type")) if isinstance(event, Mapping) else None


def line(value: bytes | None) -> str:
    """A message value as a line: rendered when it is a JSON event, else the raw text."""
    if value is None:
        return "(tombstone)"
    text = value.decode(errors="replace")
    try:
        event = json.loads(text)
    except ValueError:
        return text
    return render(event) if isinstance(event, Mapping) else text


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "tail",
        help="print events as they arrive, one readable line each",
        description="Follow every partition of the event topics and command results (or the "
        "TOPICs given) without joining a consumer group, and print each event as one line, "
        "until SIGINT or SIGTERM.",
    )
    parser.add_argument(
        "topics",
        nargs="*",
        metavar="TOPIC",
        help="full topic names (default: the event topics and command results)",
    )
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest message, not the end"
    )
    add_config_argument(parser)
    parser.set_defaults(func=run)


async def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except StartupError as error:
        return startup_failed("tail", error)
    topics = args.topics or [settings.topics.name(topic) for topic in SHOWN_TOPICS]
    start = "the beginning" if args.from_beginning else "the end"
    stop = asyncio.Event()
    with stop_on_signals(stop), quiet_kafka_logs() as connected:

        def ready() -> None:
            connected()
            sys.stderr.write(f"ccc-tail following {', '.join(topics)} from {start}\n")
            sys.stderr.flush()

        try:
            await follow(
                settings.kafka,
                topics,
                from_beginning=args.from_beginning,
                stop=stop,
                emit=say,
                on_ready=ready,
            )
        except KafkaError as error:
            return startup_failed("tail", kafka_failure(settings.kafka, error))
    return 0
