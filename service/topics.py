"""`ccc-bridge topics`: list the configured topics as planned and as the broker has them;
with --create, create the missing ones first."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from aiokafka.errors import KafkaError

from service.console import (
    StartupError,
    add_config_argument,
    kafka_failure,
    quiet_kafka_logs,
    say,
    settings_from,
    startup_failed,
)
from service.kafka.admin import describe_topics, ensure_topics
from service.kafka.topics import partition_mismatches, topic_plan

EXIT_MISMATCH = 1


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "topics",
        help="list or create the configured topics",
        description="List the configured topics with their partitions, retention or cleanup "
        "policy, and whether each exists; with --create, create the missing ones first.",
    )
    parser.add_argument("--create", action="store_true", help="create the missing topics")
    add_config_argument(parser)
    parser.set_defaults(func=run)


async def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except StartupError as error:
        return startup_failed("topics", error)
    plan = topic_plan(settings.topics)
    with quiet_kafka_logs():
        try:
            created = await ensure_topics(settings.kafka, settings.topics) if args.create else []
            found = await describe_topics(settings.kafka, [spec.name for spec in plan])
        except KafkaError as error:
            return startup_failed("topics", kafka_failure(settings.kafka, error))
    for spec in plan:
        state = found.get(spec.name)
        if state is None:
            status = "missing"
        else:
            verb = "created" if spec.name in created else "exists"
            status = f"{verb}, {state.partitions} partitions"
            if state.partitions != spec.partitions:
                status += " (MISMATCH)"
        planned = f"{spec.partitions} partitions, {_configs(spec.configs)}"
        say(f"{spec.name:<28} {planned:<42} {status}")
    counts = {name: state.partitions for name, state in found.items()}
    if mismatches := partition_mismatches(settings.topics, counts):
        # Existing topics are never changed: a partition count is the operator's to set right
        # (Kafka can add partitions, which moves keys, but never remove them).
        sys.stderr.write(f"ccc-bridge topics: partition counts disagree: {'; '.join(mismatches)}\n")
        return EXIT_MISMATCH
    return 0


def _configs(configs: Mapping[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in configs.items())
