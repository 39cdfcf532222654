"""Reading back what the service published, and checking it against the emulator's truth."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.kafka.consumer import read_to_end
from service.kafka.settings import KafkaSettings, TopicSettings
from service.kafka.topics import EVENT_TOPICS


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: str
    headers: dict[str, bytes | None]
    event: dict[str, Any]


async def read_events(kafka: KafkaSettings, topics: TopicSettings) -> list[Message]:
    """Every message on the event topics, from the beginning to the current end."""
    records = await read_to_end(kafka, [topics.name(topic) for topic in EVENT_TOPICS])
    return [
        Message(
            r.topic,
            r.partition,
            r.offset,
            (r.key or b"").decode(),
            {name.decode(): value for name, value in r.headers},
            json.loads(r.value or b""),
        )
        for r in records
    ]


def by_type(messages: list[Message], event_type: str) -> list[Message]:
    return [m for m in messages if m.event["type"] == event_type]


def ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def missing_transitions(
    history: list[dict[str, Any]], messages: list[Message], until_ms: int
) -> list[dict[str, Any]]:
    """History transitions up to `until_ms` with no agent.state.logged event of the same
    agent, state and time."""
    logged = {
        (
            m.event["data"]["instance_id"],
            m.event["data"]["agent_id"],
            m.event["data"]["state"],
            ms(m.event["data"]["state_time"]),
        )
        for m in by_type(messages, "com.aliyun.ccc.agent.state.logged")
    }
    return [
        h
        for h in history
        if ms(h["at"]) <= until_ms
        and (h["instance_id"], h["agent_id"], h["state"], ms(h["at"])) not in logged
    ]


def missing_calls(calls: list[dict[str, Any]], messages: list[Message], until_ms: int) -> list[str]:
    published = {
        (m.event["data"]["instance_id"], m.event["data"]["contact_id"])
        for m in by_type(messages, "com.aliyun.ccc.call.record")
    }
    return [
        c["contact_id"]
        for c in calls
        if ms(c["available_at"]) <= until_ms
        and (c["instance_id"], c["contact_id"]) not in published
    ]


def conflicting_ids(messages: list[Message]) -> list[str]:
    """Ids that were published with different content."""
    contents: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        contents[m.event["id"]].add(json.dumps(m.event, sort_keys=True))
    return [event_id for event_id, seen in contents.items() if len(seen) > 1]
