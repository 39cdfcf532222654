"""Kafka administration: making the broker match the topic plan (service/kafka/topics.py),
and what it reports of existing topics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from service.kafka.connection import client_options
from service.kafka.settings import KafkaSettings, TopicSettings
from service.kafka.topics import topic_plan

ADMIN_TIMEOUT_MS = 5000  # a CLI that cannot reach the broker says so quickly


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the broker reports it; `configs` is empty where it does not say."""

    partitions: int
    configs: Mapping[str, str]


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


@dataclass(frozen=True, slots=True)
class GroupState:
    """A consumer group as its coordinator describes it; `members` by client id and host."""

    state: str
    members: list[str]


async def describe_group(kafka: KafkaSettings, group_id: str) -> GroupState:
    """A group no one has joined is `Empty` (or `Dead`, as Kafka says of an unknown one)
    with no members."""
    async with admin_client(kafka) as admin:
        responses = await admin.describe_consumer_groups([group_id])
    group = responses[0].to_object()["groups"][0]
    if group["error_code"] != 0:
        raise for_code(group["error_code"])(f"cannot describe consumer group {group_id}")
    members = [
        f"{m['client_id'] or m['member_id']}@{m['client_host'] or '?'}" for m in group["members"]
    ]
    return GroupState(group["state"], members)
