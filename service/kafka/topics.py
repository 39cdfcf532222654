"""The topic catalogue: which topics the service uses, and what each should be (a pure plan;
service/kafka/admin.py makes the broker match it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.kafka.settings import TopicSettings

EVENT_TOPICS = ("agent_states", "calls", "skillgroups")
# Command topic per kind. With the same partition count, a command id lands on the same
# partition number in each, and that partition of the ledger holds its entries.
COMMAND_TOPICS = {"dial": "commands_dial", "sms": "commands_sms", "appraise": "commands_appraise"}
OUTPUT_TOPICS = ("command_results", "command_dlq", "webhook_dlq")
SHOWN_TOPICS = (*EVENT_TOPICS, "command_results")  # what `tail` and the demo show


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
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


def co_partitioned(topics: TopicSettings) -> list[str]:
    """The topics that must have one partition count: a command's ledger entries live on the
    partition number of its command."""
    return [topics.name(topic) for topic in (*COMMAND_TOPICS.values(), "ledger")]


def partition_mismatches(topics: TopicSettings, found: Mapping[str, int]) -> list[str]:
    """What is wrong with the partition counts `found` (by topic, of those that exist): each
    topic whose count is not the settings', and co-partitioned topics that disagree."""
    wrong = [
        f"{spec.name} has {found[spec.name]} (settings: {spec.partitions})"
        for spec in topic_plan(topics)
        if spec.name in found and found[spec.name] != spec.partitions
    ]
    if (problem := co_partition_problem(topics, found)) is not None:
        wrong.append(problem)
    return wrong


def co_partition_problem(topics: TopicSettings, found: Mapping[str, int]) -> str | None:
    """Why the co-partitioned topics among `found` (partition counts by topic) cannot serve,
    or None when they agree."""
    counts = {name: found[name] for name in co_partitioned(topics) if name in found}
    if len(set(counts.values())) <= 1:
        return None
    listed = ", ".join(f"{name} {count}" for name, count in counts.items())
    return f"the command topics and the ledger need the same number of partitions ({listed})"
