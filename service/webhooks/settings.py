"""The webhook settings sections: the endpoints and how their deliveries are consumed
(composed into Settings by service/settings.py)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)

from service.sections import Section
from service.webhooks.filters import check_pattern
from service.webhooks.hosts import HostPolicy, allow_entry
from service.webhooks.signing import decode_secret


class WebhookEndpoint(Section):
    """One HTTP endpoint: the events its `event_types` match, POSTed and signed with `secret`
    (Standard Webhooks). URLs come from configuration only, never from a message."""

    # Errors leave the input out, so a rejected secret is not printed. Pydantic reads this
    # from the model validated first; under Settings, the CLI prints fields and messages only.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    """In the consumer group id, metric labels and dead letters: a plain, short word
    (letters, digits, `_`, `.`, `-`)."""
    url: HttpUrl
    """Where events are POSTed ([allowed hosts](webhooks.md#where-endpoints-may-point))."""
    event_types: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    """`*`, exact types, or prefixes ending in `.*` such as `com.aliyun.ccc.call.*`."""
    secret: SecretStr
    """`whsec_` + base64 of 24 to 64 random bytes: signs each delivery."""
    timeout_s: float = Field(10.0, gt=0)
    """One attempt, connecting included."""
    max_attempts: int = Field(6, ge=1, le=50)
    """Then the event goes to the webhook DLQ."""
    backoff_initial_s: float = Field(0.5, gt=0)
    """First backoff: full jitter, doubling per attempt."""
    backoff_max_s: float = Field(30.0, gt=0)
    """Longest backoff; also caps how long a `Retry-After` is honoured."""
    concurrency: int = Field(16, ge=1)
    """Requests at once to this endpoint."""
    max_in_flight: int = Field(256, ge=1)
    """Events read and not yet delivered or dead-lettered: bounds memory while it is down."""

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
    """The endpoints, a JSON list of `{name, url, event_types, secret, ...}` (each field
    below; [webhooks](webhooks.md)); holds secrets."""
    group_prefix: str = "ccc-bridge-webhook-"
    """An endpoint's consumer group: the prefix + its name."""
    start_from: Literal["earliest", "latest"] = "latest"
    """Where an endpoint's new group starts: `latest` sends what is published from its first
    start on; `earliest` also the retained history (up to `topics.retention_ms` of it)."""
    fetch_max_wait_ms: int = Field(100, ge=0)
    """Kafka answers a fetch as soon as events arrive; the embedded broker waits this long."""
    commit_interval_s: float = Field(1.0, gt=0)
    """Also how often the lag metric is measured."""
    session_timeout_ms: int = Field(10_000, ge=1000)
    """A dead replica's partitions move to the others after this."""
    allow_internal_hosts: list[Annotated[str, AfterValidator(allow_entry)]] = Field(
        default_factory=list
    )
    """Hosts, addresses or CIDR networks endpoints may reach although they are loopback,
    link-local or a metadata service (refused otherwise: service/webhooks/hosts.py)."""

    @property
    def host_policy(self) -> HostPolicy:
        return HostPolicy.allowing(self.allow_internal_hosts)

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, endpoints: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
        names = [endpoint.name for endpoint in endpoints]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"endpoint names must differ: {', '.join(repeated)} repeated")
        return endpoints

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        """A URL whose host is a refused address or name is refused at startup; a hostname
        is checked again on every address it resolves to (HttpPoster)."""
        policy = self.host_policy
        for endpoint in self.endpoints:
            host = endpoint.url.host or ""
            if (why := policy.refusal(host)) is not None:
                raise ValueError(
                    f"endpoint {endpoint.name}: {host} is {why}; name it in "
                    "webhooks.allow_internal_hosts to send there"
                )
        return self
