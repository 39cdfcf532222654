"""The one settings model (PRODUCT.md section 2). The sections of the CCC client, Kafka and
the webhooks live in their packages (service/ccc, service/kafka, service/webhooks); the rest
are here.

Precedence, lowest to highest: built-in defaults, config/default.yaml, an optional
`--config FILE`, secret files (a directory of files named like the env vars, as a Kubernetes
secret mount gives), then environment variables `CCC_BRIDGE_<SECTION>__<FIELD>`.
Only the composition root reads settings; nothing else looks at os.environ.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from service.ccc.settings import CccSettings
from service.errors import ConfigError
from service.kafka.settings import KafkaSettings, TopicSettings
from service.sections import Section
from service.webhooks.settings import WebhookSettings

ENV_PREFIX = "CCC_BRIDGE_"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
DEFAULT_SECRETS_DIR = Path("/run/secrets/ccc-bridge")
# A value PyYAML quotes in its problem text (a tag, a character): content, so never shown.
_QUOTED = re.compile(r"""(['"])(?:\\.|(?!\1)[^\\])*\1""")


class PollerSettings(Section):
    """Which streams are polled, and how often; every instance gets each enabled stream.
    How replicas share the instances: docs/replicas.md."""

    split: Literal["group", "none"] = "group"
    """`group`: the replicas that share `group_id` split the instances between them (Kafka
    group assignment over `topics.poller_assignments`); `none`: this process polls every
    instance, and must be the only one that does."""
    group_id: str = "ccc-bridge-pollers"
    """The pollers' consumer group."""
    session_timeout_ms: int = Field(10_000, ge=1000)
    """A dead replica's instances move after this."""
    agent_states: bool = True
    """ListAgentStates -> `agent.state.changed`."""
    agent_state_logs: bool = True
    """ListAgentStateLogs -> `agent.state.logged`."""
    calls: bool = True
    """ListCallDetailRecords -> `call.record`, `call.event`."""
    skill_groups: bool = True
    """ListSkillGroupStates -> `skillgroup.state`."""
    agent_states_interval_s: float = Field(2.0, gt=0)
    """How often ListAgentStates is polled."""
    agent_logout_check_s: float = Field(30.0, gt=0)
    """How often agents missing from ListAgentStates are looked up in ListAgentEvents for a
    check-out: CCC lists only agents active in the last 4 hours, so absence alone proves no
    logout. A logout is published at most this (plus one poll) late."""
    agent_state_logs_interval_s: float = Field(20.0, gt=0)
    """Each agent whose listing shows a change has its state log read at most once per this:
    a transition is on Kafka within about this plus `agent_states_interval_s` and twice the
    settle time."""
    agent_state_logs_settle_s: float = Field(2.0, ge=0)
    """Stay this far behind CCC's clock."""
    agent_state_logs_backfill_s: float = Field(0.0, ge=0)
    """With no checkpoint yet (a first start), read state logs from this far back."""
    agent_state_logs_net_s: float = Field(60.0, gt=0)
    """ListAgentEvents for every agent, this often: catches a login and logout between two
    listings, and what happened while no replica polled (then at once on start)."""
    agent_events_batch: int = Field(100, ge=1)
    """RamIds per ListAgentEvents call. CCC documents no limit; the emulator takes thousands
    ([emulator](emulator.md)). Larger batches, fewer calls."""
    concurrency: int = Field(8, ge=1)
    """Per-agent and per-contact reads at once, per stream and instance."""
    calls_interval_s: float = Field(10.0, gt=0)
    """How often the call look-back is scanned (ListCallDetailRecords)."""
    calls_lookback_s: float = Field(1800.0, gt=0)
    """Call records become queryable after the call ends: re-read this far back. Longer than
    the longest call you expect, or its record is missed."""
    skill_groups_interval_s: float = Field(10.0, gt=0)
    """How often ListSkillGroupStates is polled."""
    directory_refresh_s: float = Field(60.0, gt=0)
    """How often the agent list (ListUsers) is re-read."""

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
    """This process consumes the command topics."""
    group_id: str = "ccc-bridge-commands"
    """The command workers' consumer group."""
    concurrency: int = Field(16, ge=1)
    """CCC calls at once, per process."""
    max_in_flight: int = Field(256, ge=1)
    """Commands read and not yet answered, per process: a command also waits on Kafka for its
    ledger entries and result, and meanwhile others' calls go on. Bounds memory."""
    default_expiry_s: float | None = Field(None, gt=0)
    """Commands without `expires_at` expire this long after their Kafka timestamp; null:
    never."""
    start_from: Literal["earliest", "latest"] = "earliest"
    """Where a new consumer group starts: `earliest` also runs commands sent before the first
    start; or `latest`."""
    session_timeout_ms: int = Field(10_000, ge=1000)
    """A dead worker's partitions move after this."""
    commit_interval_s: float = Field(0.2, gt=0)
    """How often offsets are committed, up to the lowest command not yet answered."""
    fetch_max_wait_ms: int = Field(20, ge=0)
    """How long a fetch may wait for new commands. Kafka answers as soon as one arrives; the
    embedded broker waits the whole time, so this bounds a command's wait there."""
    # Checks no CCC document sets (docs/emulator.md).
    phone_min_digits: int = Field(3, ge=1)
    """Fewest digits a phone number of a command may have (no CCC document sets one)."""
    phone_max_digits: int = Field(20, ge=1)
    """Most digits a phone number of a command may have (no CCC document sets one)."""
    template_value_max_chars: int | None = Field(35, ge=1)
    """Longest SMS template value: Alibaba SMS's default per variable, which Alibaba can lift
    for an account; null: not checked here (CCC or SMS will say)."""
    ledger_warn_bytes: int = Field(256 * 1024 * 1024, ge=1)
    """The command ledger in memory is every entry within `topics.ledger_retention_ms` of
    the partitions a process owns; past this many bytes it logs `ledger_over_budget` and
    drops nothing (forgetting an id early would let its repeat run again): shorten the
    retention."""


# An API key is a bearer credential: short or guessable keys are refused at startup.
MIN_API_KEY_CHARS = 16
_API_KEY = re.compile(rf"[!-~]{{{MIN_API_KEY_CHARS},}}")


def _api_key(key: SecretStr) -> SecretStr:
    # Says what is wrong, never the key (the error names the field: http.api_keys.<n>).
    if not _API_KEY.fullmatch(key.get_secret_value()):
        raise ValueError(
            f"an API key must be at least {MIN_API_KEY_CHARS} characters of visible ASCII "
            "(no spaces: a header carries it)"
        )
    return key


class HttpSettings(Section):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # an API key may be wrong
    host: str = "0.0.0.0"  # noqa: S104 - a service in a container listens on all interfaces
    """Listen address."""
    port: int = Field(8080, ge=0, le=65535)
    """`/v1/commands`, `/openapi.json`, and `/livez`, `/readyz`, `/metrics` unless
    `http.admin_port` is set; 0: any free port."""
    admin_port: int | None = Field(None, ge=0, le=65535)
    """Set: `/livez`, `/readyz` and `/metrics` listen there alone, and `port` serves
    `/v1/commands` and `/openapi.json`. null: one port serves everything (a laptop)."""
    header_timeout_s: float = Field(10.0, gt=0)
    """A request's line and headers must arrive within this of connecting or of the previous
    answer (so idle keep-alive connections close after it too)."""
    body_timeout_s: float = Field(30.0, gt=0)
    """A request's body must arrive within this of its headers, else 408."""
    max_connections: int = Field(512, ge=1)
    """Open connections per port: past it a new one gets 503 and is closed at once."""
    probe_interval_s: float = Field(5.0, gt=0)
    """How often Kafka is asked for `/readyz`, and CCC (`GetInstance`) when it is idle or
    away: while away, less often, doubling up to every 30 s."""
    probe_timeout_s: float = Field(3.0, gt=0)
    """How long one of those probes may take."""
    ccc_fresh_s: float = Field(60.0, gt=0)
    """CCC (`GetInstance`) is asked when nothing else did within this."""
    api_keys: list[Annotated[SecretStr, AfterValidator(_api_key)]] = Field(default_factory=list)
    """Keys accepted by `/v1/commands` (`Authorization: Bearer <key>` or `X-API-Key`), a
    JSON list, each at least 16 characters of visible ASCII. None configured: the command
    endpoints answer 401 to everyone."""
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    """A larger command body gets 413."""
    produce_timeout_s: float = Field(5.0, gt=0)
    """How long `POST /v1/commands` waits for Kafka's acknowledgement before answering 503."""
    status_entries: int = Field(100_000, ge=1)
    """Command ids whose ledger state and result `GET /v1/commands/{id}` can tell, newest
    kept."""
    status_max_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    """The memory those ids may take (64 MiB), the oldest going first: measured, about 0.65 KB
    an id whose result has no metadata, plus the metadata (up to 64 KiB)."""


class LifecycleSettings(Section):
    shutdown_budget_s: float = Field(20.0, gt=0)
    """SIGTERM to exit: readiness turns 503, pollers finish their cycle, commands in flight
    finish and commit, producers flush. Past this the process exits 1 at once; keep the
    pod's `terminationGracePeriodSeconds` above it. A second signal exits at once too."""


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    """`debug`, `info`, `warning` or `error`; `--log-level` wins over it."""
    format: Literal["auto", "json", "console"] = "auto"
    """`auto` (console on a TTY, else JSON), `json` or `console`; `--log-format` wins over
    it."""


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
    for _, layer in file_layers(config_file):
        values = _deep_merge(values, layer)
    return Settings(**values, _secrets_dir=secrets_dir())


def file_layers(config_file: Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The YAML layers, lowest first, each with the name `config check` shows for it."""
    layers = []
    if DEFAULT_CONFIG.exists():
        layers.append(("config/default.yaml", _read_yaml(DEFAULT_CONFIG)))
    if config_file is not None:
        if not config_file.exists():
            raise FileNotFoundError(f"config file {config_file} does not exist")
        layers.append((str(config_file), _read_yaml(config_file)))
    return layers


def secrets_dir() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}SECRETS_DIR", DEFAULT_SECRETS_DIR))


def outer_layers() -> tuple[dict[str, Any], dict[str, Any]]:
    """What the secret files and the env vars set, as Settings reads them (nested by
    section), for `config check` to tell which layer a value came from."""
    secrets = SecretsSettingsSource(Settings, secrets_dir=secrets_dir())
    return NestedSecretsSettingsSource(secrets)(), EnvSettingsSource(Settings)()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        # PyYAML's message quotes the offending line, which may hold a secret; so does its
        # traceback, hence `from None`.
        raise _yaml_error(path, error) from None
    if not isinstance(data, dict):
        raise TypeError(f"{path}: the top level must be a mapping of sections")
    return data


def _yaml_error(path: Path, error: yaml.YAMLError) -> ConfigError:
    """Where the file stops being YAML (line and column, 1-based) and the kind of problem,
    without the content."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = _QUOTED.sub("…", error.problem or "")
        return ConfigError(f"{path}, line {mark.line + 1}, column {mark.column + 1}: {problem}")
    return ConfigError(f"{path}: not YAML ({type(error).__name__})")


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
