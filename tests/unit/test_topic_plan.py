"""Partition counts judged against the settings and against each other, without a broker."""

from __future__ import annotations

from service.kafka.settings import TopicSettings
from service.kafka.topics import co_partitioned, partition_mismatches, topic_plan

TOPICS = TopicSettings(partitions=6)


def counts(**changes: int) -> dict[str, int]:
    found = {spec.name: spec.partitions for spec in topic_plan(TOPICS)}
    return found | {TOPICS.name(topic): count for topic, count in changes.items()}


def test_counts_as_planned_are_fine_and_missing_topics_are_not_judged() -> None:
    assert partition_mismatches(TOPICS, counts()) == []
    assert partition_mismatches(TOPICS, {}) == []


def test_a_topic_unlike_the_settings_is_named() -> None:
    assert partition_mismatches(TOPICS, counts(calls=12)) == ["ccc.calls has 12 (settings: 6)"]


def test_a_ledger_unlike_its_command_topics_is_named_twice_over() -> None:
    found = partition_mismatches(TOPICS, counts(ledger=4))
    assert found[0] == "ccc.bridge.ledger has 4 (settings: 6)"
    assert found[1].startswith("the command topics and the ledger need the same number of")
    assert "ccc.bridge.ledger 4" in found[1]
    assert "ccc.commands.dial 6" in found[1]


def test_co_partitioned_topics_that_agree_with_each_other_only_break_the_settings() -> None:
    every = dict.fromkeys(co_partitioned(TOPICS), 4)
    found = partition_mismatches(TOPICS, counts() | every)
    assert len(found) == len(every)
    assert not any(line.startswith("the command topics") for line in found)
