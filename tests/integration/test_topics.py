"""Topic administration against the real broker: ensure_topics, describe_topics and
`ccc-bridge topics [--create]`."""

from __future__ import annotations

import socket

from aiokafka.admin import NewTopic

from service.kafka.admin import admin_client, describe_topics, ensure_topics
from service.kafka.settings import KafkaSettings, TopicSettings
from service.kafka.topics import topic_plan
from tests.integration.kafka_io import run_cli


def env(kafka: KafkaSettings, topics: TopicSettings) -> dict[str, str]:
    return {
        "CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CCC_BRIDGE_TOPICS__PREFIX": topics.prefix,
        "CCC_BRIDGE_TOPICS__PARTITIONS": str(topics.partitions),
    }


async def test_ensure_topics_creates_the_missing_ones_once(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    names = [spec.name for spec in topic_plan(topic_settings)]
    assert await describe_topics(kafka_settings, names) == {}

    assert await ensure_topics(kafka_settings, topic_settings) == names
    assert await ensure_topics(kafka_settings, topic_settings) == []

    found = await describe_topics(kafka_settings, names)
    assert {name: state.partitions for name, state in found.items()} == dict.fromkeys(names, 2)
    checkpoints = found[topic_settings.name("checkpoints")]
    assert checkpoints.configs["cleanup.policy"] == "compact"
    calls = found[topic_settings.name("calls")]
    assert calls.configs["retention.ms"] == str(topic_settings.retention_ms)
    ledger = found[topic_settings.name("ledger")]
    assert ledger.configs["retention.ms"] == str(topic_settings.ledger_retention_ms)


async def test_ensure_topics_leaves_an_existing_topic_alone(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    wider = topic_settings.model_copy(update={"partitions": 3})
    await ensure_topics(kafka_settings, wider)
    assert await ensure_topics(kafka_settings, topic_settings) == []
    found = await describe_topics(kafka_settings, [topic_settings.name("calls")])
    assert found[topic_settings.name("calls")].partitions == 3


async def test_topics_command_lists_then_creates(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    names = [spec.name for spec in topic_plan(topic_settings)]
    code, out, err = await run_cli("topics", env=env(kafka_settings, topic_settings))
    assert (code, err) == (0, "")
    listed = out.splitlines()
    assert [line.split()[0] for line in listed] == names
    assert all(line.endswith(" missing") for line in listed)
    by_name = dict(zip(names, listed, strict=True))
    assert "cleanup.policy=compact" in by_name[topic_settings.name("checkpoints")]
    assert "cleanup.policy=compact,delete" in by_name[topic_settings.name("ledger")]
    assert f"retention.ms={topic_settings.retention_ms}" in by_name[topic_settings.name("calls")]

    code, out, _ = await run_cli("topics", "--create", env=env(kafka_settings, topic_settings))
    assert code == 0
    assert all(line.endswith(" created, 2 partitions") for line in out.splitlines())

    code, out, _ = await run_cli("topics", env=env(kafka_settings, topic_settings))
    assert code == 0
    assert all(line.endswith(" exists, 2 partitions") for line in out.splitlines())
    assert len(await describe_topics(kafka_settings, names)) == len(names)


async def test_topics_command_with_no_broker_says_so_in_one_line() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{probe.getsockname()[1]}"
    code, out, err = await run_cli(
        "topics", "--create", env={"CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": nowhere}
    )
    assert code == 2
    assert out == ""
    assert err == f"ccc-bridge topics: cannot reach Kafka at {nowhere} (is the broker running?)\n"


async def test_topics_command_with_a_bad_config_says_so_in_one_line() -> None:
    code, _, err = await run_cli("topics", env={"CCC_BRIDGE_TOPICS__PARTITIONS": "none"})
    assert code == 2
    assert err.startswith("ccc-bridge topics: bad configuration: topics.partitions: ")
    assert err.count("\n") == 1


async def test_topics_command_exits_1_naming_topics_whose_partitions_disagree(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    """A ledger made with 3 partitions (by hand, or auto-created by a broker that lost its
    topics) beside command topics of 2: `--create` leaves it, and says it is wrong."""
    ledger = topic_settings.name("ledger")
    async with admin_client(kafka_settings) as admin:
        await admin.create_topics([NewTopic(ledger, 3, 1)])
    code, out, err = await run_cli("topics", "--create", env=env(kafka_settings, topic_settings))
    assert code == 1
    by_name = {line.split()[0]: line for line in out.splitlines()}
    assert by_name[ledger].endswith(" exists, 3 partitions (MISMATCH)")
    assert by_name[topic_settings.name("calls")].endswith(" created, 2 partitions")
    assert err.startswith("ccc-bridge topics: partition counts disagree: ")
    assert f"{ledger} has 3 (settings: 2)" in err
    assert "the command topics and the ledger need the same number of partitions (" in err
    assert err.count("\n") == 1
