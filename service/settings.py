"""The one settings model (PRODUCT.md section 2).

Precedence, lowest to highest: built-in defaults, config/default.yaml, an optional
`--config FILE`, secret files (a directory of files named like the env vars, as a Kubernetes
secret mount gives), then environment variables `CCC_BRIDGE_<SECTION>__<FIELD>`.
Only the composition root reads settings; nothing else looks at os.environ.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from service.ccc.catalog import load_catalog
from service.ccc.signing import AccessKey, BearerToken, Credentials
from service.webhooks.filters import check_pattern
from service.webhooks.signing import decode_secret

ENV_PREFIX = "CCC_BRIDGE_"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
DEFAULT_SECRETS_DIR = Path("/run/secrets/ccc-bridge")


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetrySettings(Section):
    max_attempts: int = Field(4, ge=1, le=20)
    backoff_initial_s: float = Field(0.1, gt=0)
    backoff_max_s: float = Field(5.0, gt=0)


# Calls that ring a phone or send an SMS go slower than reads. config/default.yaml says the
# same (a test holds them equal), so an installed wheel, which has no config/, acts alike.
SIDE_EFFECT_RATES: dict[str, float | None] = {
    "DialEx": 10.0,
    "StartBack2BackCall": 10.0,
    "SendPredefinedShortMessage": 20.0,
}


class RateLimitSettings(Section):
    """Client-side calls per second, so a burst never earns a throttle storm."""

    default_per_s: float | None = Field(50.0, gt=0)
    # Merged into the defaults like every other layer, so a limit is lifted with null, not
    # by leaving the action out.
    per_action: dict[str, float | None] = Field(default_factory=lambda: dict(SIDE_EFFECT_RATES))

    @classmethod
    def off(cls) -> RateLimitSettings:
        """No client-side limit at all (tests and benchmarks against the emulator)."""
        return cls(default_per_s=None, per_action={})

    @model_validator(mode="after")
    def _known_actions(self) -> Self:
        catalog = load_catalog()
        for action, rate in self.per_action.items():
            if action not in catalog:
                raise ValueError(f"per_action: {action!r} is not a CCC 2017-07-05 action")
            if rate is not None and rate <= 0:
                raise ValueError(f"per_action.{action}: must be a positive calls-per-second rate")
        return self


class CccSettings(Section):
    endpoint: HttpUrl | None = None  # explicit URL; else https://ccc.<region>.aliyuncs.com
    region: str = "cn-shanghai"
    auth: Literal["access_key", "sts", "bearer"] = "access_key"
    access_key_id: str | None = None
    access_key_secret: SecretStr | None = None
    security_token: SecretStr | None = None
    bearer_token: SecretStr | None = None
    instances: list[str] = Field(default_factory=list)
    connect_timeout_s: float = Field(3.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    max_connections: int = Field(64, ge=1)
    page_concurrency: int = Field(4, ge=1)  # pages of one list asked for at once
    retry: RetrySettings = Field(default_factory=RetrySettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)

    @property
    def url(self) -> str:
        if self.endpoint is not None:
            return str(self.endpoint).rstrip("/")
        return f"https://ccc.{self.region}.aliyuncs.com"

    def credentials(self) -> Credentials:
        """The credentials of the auth mode. Checked when a CCC client is built, not when the
        settings load, so commands that never call CCC (topics, tail) need none."""
        if self.auth == "bearer":
            if self.bearer_token is None:
                raise ConfigError("ccc.auth 'bearer' needs ccc.bearer_token")
            return BearerToken(self.bearer_token)
        token = self.security_token if self.auth == "sts" else None
        needed = {"access_key_id": self.access_key_id, "access_key_secret": self.access_key_secret}
        if self.auth == "sts":
            needed["security_token"] = token
        missing = [f"ccc.{name}" for name, value in needed.items() if value is None]
        if missing or self.access_key_id is None or self.access_key_secret is None:
            raise ConfigError(f"ccc.auth {self.auth!r} needs {', '.join(missing)}")
        return AccessKey(self.access_key_id, self.access_key_secret, token)


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


class PollerSettings(Section):
    """Which streams are polled, and how often; every instance gets each enabled stream.
    How replicas share the instances: docs/replicas.md."""

    # group: the replicas that share `group_id` split the instances between them (Kafka
    # group assignment over topics.poller_assignments); none: this process polls every
    # instance, and must be the only one that does.
    split: Literal["group", "none"] = "group"
    group_id: str = "ccc-bridge-pollers"
    session_timeout_ms: int = Field(10_000, ge=1000)  # a dead replica's instances move after this
    agent_states: bool = True
    agent_state_logs: bool = True
    calls: bool = True
    skill_groups: bool = True
    agent_states_interval_s: float = Field(2.0, gt=0)
    agent_state_logs_interval_s: float = Field(10.0, gt=0)
    agent_state_logs_settle_s: float = Field(2.0, ge=0)  # stay this far behind CCC's now
    # With no checkpoint yet (a first start), read state logs from this far back.
    agent_state_logs_backfill_s: float = Field(0.0, ge=0)
    calls_interval_s: float = Field(10.0, gt=0)
    # Call records become queryable after the call ends: re-read this far back. Longer than
    # the longest call you expect, or its record is missed.
    calls_lookback_s: float = Field(1800.0, gt=0)
    skill_groups_interval_s: float = Field(10.0, gt=0)
    directory_refresh_s: float = Field(60.0, gt=0)  # how often the agent list is re-read

    @classmethod
    def off(cls) -> PollerSettings:
        """No stream polled: a process that only executes commands."""
        return cls(agent_states=False, agent_state_logs=False, calls=False, skill_groups=False)

    @property
    def any_stream(self) -> bool:
        return self.agent_states or self.agent_state_logs or self.calls or self.skill_groups


class CommandSettings(Section):
    """The command workers: a consumer group over the three command topics."""

    enabled: bool = True
    group_id: str = "ccc-bridge-commands"
    concurrency: int = Field(16, ge=1)  # CCC calls at once, per process
    # Commands read and not yet answered, per process: a command also waits on Kafka for its
    # ledger entries and result, and meanwhile others' calls go on. Bounds memory.
    max_in_flight: int = Field(256, ge=1)
    # Commands without expires_at expire this long after their Kafka timestamp; None: never.
    default_expiry_s: float | None = Field(None, gt=0)
    # Where a new consumer group starts: earliest also runs commands sent before the first start.
    start_from: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(10_000, ge=1000)  # a dead worker's partitions move after this
    commit_interval_s: float = Field(0.2, gt=0)
    # How long a fetch may wait for new commands. Kafka answers as soon as one arrives; the
    # embedded broker waits the whole time, so this bounds a command's wait there.
    fetch_max_wait_ms: int = Field(20, ge=0)


class WebhookEndpoint(Section):
    """One HTTP endpoint: the events its `event_types` match, POSTed and signed with `secret`
    (Standard Webhooks). URLs come from configuration only, never from a message."""

    # Errors leave the input out, so a rejected secret is not printed. Pydantic reads this
    # from the model validated first; under Settings, the CLI prints fields and messages only.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    # In the consumer group id, metric labels and dead letters: a plain, short word.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    url: HttpUrl
    # "*", exact types, or prefixes ending in ".*" such as "com.aliyun.ccc.call.*".
    event_types: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    secret: SecretStr  # whsec_ + base64 of 24 to 64 random bytes
    timeout_s: float = Field(10.0, gt=0)  # one attempt, connecting included
    max_attempts: int = Field(6, ge=1, le=50)  # then the event goes to the webhook DLQ
    backoff_initial_s: float = Field(0.5, gt=0)  # full jitter, doubling per attempt
    backoff_max_s: float = Field(30.0, gt=0)  # also caps how long a Retry-After is honoured
    concurrency: int = Field(16, ge=1)  # requests at once
    # Events read and not yet delivered or dead-lettered: bounds memory while it is down.
    max_in_flight: int = Field(256, ge=1)

    @field_validator("event_types")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        return [check_pattern(pattern) for pattern in patterns]

    @field_validator("secret")
    @classmethod
    def _secret(cls, secret: SecretStr) -> SecretStr:
        # The message says what is wrong with it, never what it was.
        decode_secret(secret.get_secret_value())
        return secret


class WebhookSettings(Section):
    """The webhook dispatcher: one consumer group per endpoint, so a slow or dead one holds
    up nothing else. Endpoints may come as a JSON list in CCC_BRIDGE_WEBHOOKS__ENDPOINTS
    (an env var or a secret file), secrets included."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # as WebhookEndpoint
    endpoints: list[WebhookEndpoint] = Field(default_factory=list)
    group_prefix: str = "ccc-bridge-webhook-"  # an endpoint's group: the prefix + its name
    # Where an endpoint's new group starts: latest sends what is published from its first
    # start on; earliest also the retained history (up to topics.retention_ms of it).
    start_from: Literal["earliest", "latest"] = "latest"
    # Kafka answers a fetch as soon as events arrive; the embedded broker waits this long.
    fetch_max_wait_ms: int = Field(100, ge=0)
    commit_interval_s: float = Field(1.0, gt=0)  # also how often the lag metric is measured
    # A dead replica's partitions move to the others after this.
    session_timeout_ms: int = Field(10_000, ge=1000)

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, endpoints: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
        names = [endpoint.name for endpoint in endpoints]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"endpoint names must differ: {', '.join(repeated)} repeated")
        return endpoints


class HttpSettings(Section):
    host: str = "0.0.0.0"  # noqa: S104 - a service in a container listens on all interfaces
    port: int = Field(8080, ge=0, le=65535)
    probe_interval_s: float = Field(5.0, gt=0)  # how often /readyz's Kafka and CCC checks run
    probe_timeout_s: float = Field(3.0, gt=0)
    ccc_fresh_s: float = Field(60.0, gt=0)  # CCC must have answered within this
    # Keys accepted by /v1/commands (`Authorization: Bearer <key>` or `X-API-Key`). None
    # configured: the command endpoints answer 401 to everyone.
    api_keys: list[SecretStr] = Field(default_factory=list)
    max_body_bytes: int = Field(256 * 1024, ge=1024)  # a larger command body gets 413
    # How long POST /v1/commands waits for Kafka's acknowledgement before answering 503.
    produce_timeout_s: float = Field(5.0, gt=0)
    # Command ids whose ledger state and result GET /v1/commands/{id} can tell, newest kept.
    status_entries: int = Field(100_000, ge=1)


class LifecycleSettings(Section):
    # SIGTERM to exit: readiness turns 503, pollers finish their cycle, commands in flight
    # finish and commit, producers flush. Past this the process exits 1 at once; keep the
    # pod's terminationGracePeriodSeconds above it. A second signal exits at once too.
    shutdown_budget_s: float = Field(20.0, gt=0)


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"  # auto: console on a TTY, else JSON


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        secrets_nested_delimiter="__",
        secrets_dir_missing="ok",
        case_sensitive=False,
        extra="forbid",
        hide_input_in_errors=True,  # a rejected value may be a secret
    )

    ccc: CccSettings = Field(default_factory=CccSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    pollers: PollerSettings = Field(default_factory=PollerSettings)
    commands: CommandSettings = Field(default_factory=CommandSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - signature fixed by pydantic-settings
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files in this service
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Files come in as init values, so env and secret files override them.
        return (env_settings, NestedSecretsSettingsSource(file_secret_settings), init_settings)


def load_settings(config_file: Path | None = None) -> Settings:
    """Read every layer. Secret files live in $CCC_BRIDGE_SECRETS_DIR (default
    /run/secrets/ccc-bridge), one file per setting named like its env var."""
    values: dict[str, Any] = {}
    if DEFAULT_CONFIG.exists():
        values = _read_yaml(DEFAULT_CONFIG)
    if config_file is not None:
        if not config_file.exists():
            raise FileNotFoundError(f"config file {config_file} does not exist")
        values = _deep_merge(values, _read_yaml(config_file))
    secrets_dir = Path(os.environ.get(f"{ENV_PREFIX}SECRETS_DIR", DEFAULT_SECRETS_DIR))
    return Settings(**values, _secrets_dir=secrets_dir)


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: the top level must be a mapping of sections")
    return data


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
