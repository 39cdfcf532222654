"""`ccc-bridge checkpoints show|reset`: where every poller resumes, readably, and moving one
while no replica polls its instance (docs/backfill.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from aiokafka.errors import KafkaError

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
)
from service.events.checkpoints import STREAMS, live_key, position, reset_value, shown
from service.events.publisher import CheckpointStore
from service.kafka.admin import describe_group
from service.kafka.consumer import read_to_end
from service.kafka.producer import Producer
from service.settings import Settings

EXIT_REFUSED = 1


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "checkpoints",
        help="show or move where each poller resumes",
        description="The checkpoints topic: where each stream of each instance resumes, and "
        "the progress of backfills.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="every stream's position per instance, and every backfill's progress",
        description="Print the latest checkpoint of every stream of every instance, and the "
        "progress of every backfill, one line each, times in UTC.",
    )
    add_config_argument(show)
    show.set_defaults(func=run_show)
    reset = actions.add_parser(
        "reset",
        help="move one live stream's checkpoint to a time",
        description="Write a checkpoint that makes the live stream go on from --to. Refused "
        "while a replica polls the instance (the poller group has members, or "
        "pollers.split is none and nothing can tell) unless --force is given.",
    )
    add_stream_arguments(reset, STREAMS, "the live stream whose checkpoint moves")
    add_time_argument(
        reset, "--to", "to_ms", "where it goes on from, RFC 3339 with an offset; not in the future"
    )
    reset.add_argument(
        "--force",
        action="store_true",
        help="write it even while a replica may poll the instance (it may overwrite it)",
    )
    add_config_argument(reset)
    reset.set_defaults(func=run_reset)


async def run_show(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except StartupError as error:
        return startup_failed("checkpoints show", error)
    topic = settings.topics.name("checkpoints")
    with quiet_kafka_logs():
        try:
            records = await read_to_end(settings.kafka, [topic])
        except KafkaError as error:
            return startup_failed("checkpoints show", kafka_failure(settings.kafka, error))
    latest: dict[str, tuple[bytes | None, int | None]] = {}
    for record in records:  # oldest first per partition, and a key lives on one partition
        if record.key is not None:
            latest[record.key.decode(errors="replace")] = (record.value, record.timestamp_ms)
    lines = []
    for key, (value, written_ms) in latest.items():
        if value is None:
            continue  # deleted
        try:
            saved: Mapping[str, Any] = json.loads(value)
        except ValueError:
            saved = {}
        at = position(key, saved)
        written = "" if written_ms is None else f" (written {shown(written_ms)})"
        lines.append(f"{at.instance_id}  {at.stream}  {at.detail}{written}")
    if not lines:
        say(f"no checkpoints in {topic}")
    for line in sorted(lines):
        say(line)
    return 0


async def run_reset(args: argparse.Namespace) -> int:
    command = "checkpoints reset"
    if args.to_ms > time.time() * 1000:
        # A checkpoint ahead of CCC's clock reads as CCC's clock going back.
        return startup_failed(command, "--to is in the future")
    try:
        settings = settings_from(args)
    except StartupError as error:
        return startup_failed(command, error)
    key = live_key(args.instance, args.stream)
    with quiet_kafka_logs():
        try:
            holder = await _holder(settings, args.instance)
        except KafkaError as error:
            return startup_failed(command, kafka_failure(settings.kafka, error))
        if holder is not None and not args.force:
            sys.stderr.write(f"ccc-bridge {command}: {holder}; stop it, or give --force\n")
            return EXIT_REFUSED
        producer = Producer(settings.kafka)
        try:
            await producer.start()
            store = CheckpointStore(producer, settings.kafka, settings.topics)
            await store.load([key])
            saved = store.get(key)
            value = reset_value(args.stream, saved, args.to_ms)
            await store.save(key, value)
        except KafkaError as error:
            return startup_failed(command, kafka_failure(settings.kafka, error))
        finally:
            await producer.stop()
    before = "none" if saved is None else position(key, saved).detail
    say(f"{key}: was {before}; now {position(key, value).detail}")
    if holder is not None:
        # Its pollers keep their position in memory and save it again: only the next owner
        # (after a restart or a rebalance) starts from this one.
        sys.stderr.write(
            f"ccc-bridge {command}: forced ({holder}): a replica polling it overwrites this "
            "at its next save\n"
        )
    return 0


async def _holder(settings: Settings, instance_id: str) -> str | None:
    """Why a replica may hold the instance; None when none does. In a poller group every
    partition, so every instance, is someone's while the group has members (and during a
    rebalance too); `split: none` processes join no group, so nothing can tell."""
    pollers = settings.pollers
    if pollers.split == "none":
        return f"pollers.split is none: no group tells whether a process polls {instance_id}"
    group = await describe_group(settings.kafka, pollers.group_id)
    if not group.members:
        return None
    return (
        f"the poller group {pollers.group_id} is {group.state} with members "
        f"{', '.join(group.members)}: one of them polls {instance_id}"
    )
