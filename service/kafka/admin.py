"""The configured topics: what they should be (a pure plan), and making the broker match."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from service.console import (
    StartupError,
    add_config_argument,
    kafka_failure,
    quiet_kafka_logs,
    say,
    settings_from,
    startup_failed,
)
from service.kafka.connection import client_options
from service.settings import KafkaSettings, TopicSettings

EVENT_TOPICS = ("agent_states", "calls", "skillgroups")
# Command topic per kind. With the same partition count, a command id lands on the same
# partition number in each, and that partition of the ledger holds its entries.
COMMAND_TOPICS = {"dial": "commands_dial", "sms": "commands_sms", "appraise": "commands_appraise"}
OUTPUT_TOPICS = ("command_results", "command_dlq", "webhook_dlq")
SHOWN_TOPICS = (*EVENT_TOPICS, "command_results")  # what `tail` and the demo show
ADMIN_TIMEOUT_MS = 5000  # a CLI that cannot reach the broker says so quickly


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    configs: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the broker reports it; `configs` is empty where it does not say."""

    partitions: int
    configs: Mapping[str, str]


def topic_plan(topics: TopicSettings) -> list[TopicSpec]:
    """Event and command topics keep `retention_ms`; checkpoints and the ledger are
    compacted (latest per key), the ledger also forgetting after `ledger_retention_ms`."""
    kept = {"retention.ms": str(topics.retention_ms)}
    compacted = {"cleanup.policy": "compact"}
    ledger = {"cleanup.policy": "compact,delete", "retention.ms": str(topics.ledger_retention_ms)}
    configs = {
        **dict.fromkeys((*EVENT_TOPICS, *COMMAND_TOPICS.values(), *OUTPUT_TOPICS), kept),
        "checkpoints": compacted,
        "ledger": ledger,
        "poller_assignments": compacted,
    }
    return [
        TopicSpec(topics.name(topic), topics.partitions, topics.replication_factor, config)
        for topic, config in configs.items()
    ]


@asynccontextmanager
async def admin_client(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; raises KafkaConnectionError when the broker is unreachable."""
    admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=ADMIN_TIMEOUT_MS)
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


async def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Create the planned topics that are missing; the names created. Existing ones are left
    as they are (their partitions and configs are not changed)."""
    async with admin_client(kafka) as admin:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_plan(topics) if spec.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    spec.partitions,
                    spec.replication,
                    topic_configs=dict(spec.configs),
                )
                for spec in missing
            ],
            timeout_ms=ADMIN_TIMEOUT_MS,
        )
    created = []
    for name, code, message in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != TopicAlreadyExistsError.errno:  # another replica was quicker: fine
            raise for_code(code)(f"cannot create topic {name}: {message}")
    return created


async def describe_topics(kafka: KafkaSettings, names: list[str]) -> dict[str, TopicState]:
    """Those of `names` that exist, with their partition count and configs."""
    async with admin_client(kafka) as admin:
        # Only existing topics: a metadata request for a missing one may auto-create it.
        existing = set(await admin.list_topics())
        wanted = [name for name in names if name in existing]
        if not wanted:
            return {}
        partitions = {
            topic["topic"]: len(topic["partitions"])
            for topic in await admin.describe_topics(wanted)
        }
        configs = await _topic_configs(admin, wanted)
    return {
        name: TopicState(partitions[name], configs.get(name, {}))
        for name in wanted
        if name in partitions
    }


async def _topic_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """Configs by topic, or nothing where the broker does not answer DescribeConfigs."""
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    except KafkaError:
        return {}
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            code, _, _, name, entries = resource[:5]
            if code == 0:
                configs[name] = _entries(entries)
    return configs


def _entries(entries: list[Any]) -> dict[str, str]:
    return {entry[0]: entry[1] for entry in entries if entry[1] is not None}


# -- ccc-bridge topics --------------------------------------------------------------------


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
        planned = f"{spec.partitions} partitions, {_configs(spec.configs)}"
        say(f"{spec.name:<28} {planned:<42} {status}")
    return 0


def _configs(configs: Mapping[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in configs.items())
