"""The Kafka settings sections: how to connect, and the topics' names and shape (composed into
Settings by service/settings.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from service.sections import Section


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "ccc-bridge"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # Producer: acks=all always; idempotence needs a broker that supports it (Tansu does not).
    enable_idempotence: bool = False
    # lz4: aiokafka's gzip runs at level 9, the costliest step of producing (bench/commands.py).
    compression_type: Literal["gzip", "lz4", "snappy", "zstd"] | None = "lz4"
    linger_ms: int = Field(2, ge=0)
    request_timeout_ms: int = Field(15_000, ge=1000)
    # Every record the service writes (key, value and headers) is at most this: Kafka's
    # default limit is 1 MiB (message.max.bytes). Dead letters keep what fits of the record
    # they stand for; lower it to match a broker with a smaller limit.
    max_record_bytes: int = Field(1_000_000, ge=128 * 1024)


class TopicSettings(Section):
    """Topic names are `prefix` + name; `name("calls")` gives the full one."""

    prefix: str = "ccc."
    agent_states: str = "agent.states"
    calls: str = "calls"
    skillgroups: str = "skillgroups"
    checkpoints: str = "bridge.checkpoints"  # compacted: the pollers' resume points
    commands_dial: str = "commands.dial"
    commands_sms: str = "commands.sms"
    commands_appraise: str = "commands.appraise"
    command_results: str = "commands.results"
    command_dlq: str = "commands.dlq"
    ledger: str = "bridge.ledger"  # compacted: each command id's started / final outcome
    webhook_dlq: str = "webhooks.dlq"  # events an endpoint did not take after the last attempt
    # No records: its partitions are handed out by group assignment, each standing for the
    # CCC instances whose pollers the owner runs.
    poller_assignments: str = "bridge.pollers"
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=-1)  # events; -1 keeps them forever
    # How long a command id is remembered: a command repeated later runs again.
    ledger_retention_ms: int = Field(30 * 24 * 3600 * 1000, ge=-1)
    create_missing: bool = True  # `run` creates missing topics at start (needs the ACL)

    def name(self, topic: str) -> str:
        return self.prefix + str(getattr(self, topic))
