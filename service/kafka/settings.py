"""The Kafka settings sections: how to connect, and the topics' names and shape (composed into
Settings by service/settings.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from service.sections import Section


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    """Brokers, comma-separated."""
    client_id: str = "ccc-bridge"
    """Kafka client id."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; null: `PLAIN`."""
    sasl_username: str | None = None
    """SASL user."""
    sasl_password: SecretStr | None = None
    """SASL password."""
    ssl_cafile: Path | None = None
    """CA bundle that verifies the brokers; null: the system's CAs."""
    ssl_certfile: Path | None = None
    """Client certificate (PEM), for brokers that require one."""
    ssl_keyfile: Path | None = None
    """The client certificate's private key (PEM, unencrypted)."""
    enable_idempotence: bool = False
    """Idempotent producer: on for real Kafka; it needs a broker that supports it, and the
    embedded broker (Tansu) does not. Acks are always `all`."""
    compression_type: Literal["gzip", "lz4", "snappy", "zstd"] | None = "lz4"
    """`lz4`, `zstd`, `snappy`, `gzip` or null. Not gzip by default: aiokafka's runs at level
    9, the costliest step of producing (bench/commands.py)."""
    linger_ms: int = Field(2, ge=0)
    """Producer linger."""
    request_timeout_ms: int = Field(15_000, ge=1000)
    """One Kafka request."""
    max_record_bytes: int = Field(1_000_000, ge=128 * 1024)
    """The largest record the service writes (key, value and headers); at least 131072. Keep
    it at or below the brokers' `message.max.bytes` and the topics' `max.message.bytes`
    (Kafka's default: 1 MiB). Dead letters keep what fits of the record they stand for."""


class TopicSettings(Section):
    """Topic names are `prefix` + name; `name("calls")` gives the full one."""

    prefix: str = "ccc."
    """Prefix of every topic name."""
    agent_states: str = "agent.states"
    """Agent state changes and state log entries."""
    calls: str = "calls"
    """Call records and call events."""
    skillgroups: str = "skillgroups"
    """Skill-group snapshots."""
    checkpoints: str = "bridge.checkpoints"
    """Compacted: where each poller resumes."""
    commands_dial: str = "commands.dial"
    """Dial commands."""
    commands_sms: str = "commands.sms"
    """SMS commands."""
    commands_appraise: str = "commands.appraise"
    """Survey commands."""
    command_results: str = "commands.results"
    """One result per command."""
    command_dlq: str = "commands.dlq"
    """Commands that could not be parsed or validated."""
    ledger: str = "bridge.ledger"
    """Compacted: each command id's `started` / `done` (its final outcome)."""
    webhook_dlq: str = "webhooks.dlq"
    """Events a webhook endpoint did not take after the last attempt."""
    poller_assignments: str = "bridge.pollers"
    """No records: its partitions are handed out by group assignment, each standing for the
    CCC instances whose pollers the owner runs."""
    partitions: int = Field(6, ge=1)
    """Partitions of created topics (the command topics and the ledger must have equal
    counts)."""
    replication_factor: int = Field(1, ge=1)
    """Replication of created topics."""
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=-1)
    """Event and command topics (7 days); -1 keeps them forever."""
    ledger_retention_ms: int = Field(30 * 24 * 3600 * 1000, ge=-1)
    """How long a command id is remembered (30 days): a command repeated later runs again."""
    create_missing: bool = True
    """`run` creates missing topics at start (needs the ACL)."""

    def name(self, topic: str) -> str:
        return self.prefix + str(getattr(self, topic))
