"""The CCC client's settings sections: endpoint, credentials, timeouts, retries and rate
limits (composed into Settings by service/settings.py)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, HttpUrl, SecretStr, model_validator

from service.ccc.catalog import load_catalog
from service.ccc.credentials import (
    CredentialSource,
    ProviderCredentials,
    StaticCredentials,
    provider_for,
)
from service.ccc.signing import AccessKey, BearerToken
from service.errors import ConfigError
from service.sections import Section


class RetrySettings(Section):
    max_attempts: int = Field(4, ge=1, le=20)
    """Attempts per CCC call, where a retry is safe."""
    backoff_initial_s: float = Field(0.1, gt=0)
    """First backoff between attempts (full jitter, doubling)."""
    backoff_max_s: float = Field(5.0, gt=0)
    """Longest backoff between attempts."""
    side_effects_on_server_errors: bool = False
    """Also retry side effects (DialEx, StartBack2BackCall, SMS, surveys) on a 5xx,
    `ServiceUnavailable` included. Off: no source says CCC did not act when it answers a 5xx
    and Alibaba's own SDK never retries a CCC call, so a retry may ring or text twice. Reads
    retry on a 5xx whatever this says."""


# Calls that ring a phone or send an SMS go slower than reads. config/default.yaml says the
# same (a test holds them equal), so an installed wheel, which has no config/, acts alike.
SIDE_EFFECT_RATES: dict[str, float | None] = {
    "DialEx": 10.0,
    "StartBack2BackCall": 10.0,
    "SendPredefinedShortMessage": 20.0,
}


class RateLimitSettings(Section):
    """Client-side calls per second, so a burst never earns a throttle storm."""

    default_per_s: float | None = Field(100.0, gt=0)
    """Calls per second per action, client side: a guard against bursts, not the account's
    quota (`total_per_s` is that). At 5,000 agents ListAgentStateLogs needs about 70/s and
    ListCallEventDetailByContactId about 50/s. null: no limit."""
    total_per_s: float | None = Field(None, gt=0)
    """Every CCC call of the process together, per second, on top of the per-action limits:
    commands first, then the pollers by stream ([call budget](client.md#the-call-budget)).
    null: no cap, though the pollers still slow down when CCC throttles."""
    per_action: dict[str, float | None] = Field(default_factory=lambda: dict(SIDE_EFFECT_RATES))
    """Per-action limits (a JSON object), merged into these defaults like every other layer:
    an action's limit is lifted with null, not by leaving the action out."""

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


# The modes of Alibaba's credentials package, by its own names, plus CCC's bearer token.
CccAuth = Literal[
    "access_key", "sts", "ram_role_arn", "oidc_role_arn", "ecs_ram_role", "default", "bearer"
]
# What each mode cannot do without; ram_role_arn may also take a security_token (its
# AccessKey is then an STS one).
NEEDED: dict[str, tuple[str, ...]] = {
    "access_key": ("access_key_id", "access_key_secret"),
    "sts": ("access_key_id", "access_key_secret", "security_token"),
    "ram_role_arn": ("access_key_id", "access_key_secret", "role_arn"),
    "oidc_role_arn": ("role_arn", "oidc_provider_arn", "oidc_token_file"),
    "ecs_ram_role": (),  # role_name unset: the instance's role, asked of the metadata service
    "default": (),  # the library's chain: ALIBABA_CLOUD_* variables, profiles, OIDC, ECS
    "bearer": ("bearer_token",),
}


class CccSettings(Section):
    endpoint: HttpUrl | None = None
    """Explicit API URL; null: `https://ccc.<region>.aliyuncs.com`."""
    region: str = "cn-shanghai"
    """The CCC region."""
    auth: CccAuth = "access_key"
    """How CCC calls are signed: `access_key`, `sts` (a static token: it cannot be
    refreshed), `ram_role_arn`, `oidc_role_arn` (RRSA on ACK), `ecs_ram_role`, `default`
    (Alibaba's chain: `ALIBABA_CLOUD_*` variables, profiles, OIDC, ECS) or `bearer`. The
    refreshable ones are renewed ahead of expiry ([credentials](deploy.md#credentials))."""
    access_key_id: str | None = None
    """Access key id (`access_key`, `sts`, `ram_role_arn`)."""
    access_key_secret: SecretStr | None = None
    """Access key secret (`access_key`, `sts`, `ram_role_arn`)."""
    security_token: SecretStr | None = None
    """STS token (`sts`; with `ram_role_arn`, the key that assumes the role is an STS one)."""
    bearer_token: SecretStr | None = None
    """Bearer token (`bearer`)."""
    role_arn: str | None = Field(None, pattern=r"^acs:ram::\d+:role/\S+$")
    """The RAM role to assume, `acs:ram::<account>:role/<name>` (`ram_role_arn`,
    `oidc_role_arn`)."""
    role_session_name: str = Field("ccc-bridge", pattern=r"^[\w.@-]{2,64}$")
    """The role session's name, as ActionTrail shows it."""
    role_session_duration_s: int = Field(3600, ge=900, le=43200)
    """Lifetime of the role's keys. Alibaba's range: at least 900 s, at most the role's
    maximum session (1 to 12 hours)."""
    oidc_provider_arn: str | None = Field(None, pattern=r"^acs:ram::\d+:oidc-provider/\S+$")
    """The cluster's OIDC provider, `acs:ram::<account>:oidc-provider/<name>`
    (`oidc_role_arn`)."""
    oidc_token_file: Path | None = None
    """RRSA: the projected service-account token, read again on every refresh
    (`oidc_role_arn`)."""
    role_name: str | None = None
    """The ECS instance's RAM role (`ecs_ram_role`); null: asked of the metadata service."""
    sts_endpoint: str | None = None
    """STS host or URL (`sts-vpc.cn-shanghai.aliyuncs.com`, the emulator's URL); null: the
    library's (`sts.aliyuncs.com`, or by `ALIBABA_CLOUD_STS_REGION`)."""
    credentials_retry_s: float = Field(300.0, gt=0)
    """A failing credential refresh is retried with backoff; once the service has gone this
    long without a valid credential, it exits 1."""
    instances: list[str] = Field(default_factory=list)
    """CCC instance ids to serve (a JSON list in the environment)."""
    connect_timeout_s: float = Field(3.0, gt=0)
    """Connecting to CCC."""
    read_timeout_s: float = Field(10.0, gt=0)
    """One CCC answer."""
    max_connections: int = Field(64, ge=1)
    """HTTP connections to CCC."""
    page_concurrency: int = Field(4, ge=1)
    """Pages of one list action asked for at once."""
    retry: RetrySettings = Field(default_factory=RetrySettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)

    @property
    def url(self) -> str:
        if self.endpoint is not None:
            return str(self.endpoint).rstrip("/")
        return f"https://ccc.{self.region}.aliyuncs.com"

    def credentials(self) -> CredentialSource:
        """The credentials of the auth mode. Checked when a CCC client is built, not when the
        settings load, so commands that never call CCC (topics, tail) need none; a provider
        is built, and asked, on the first call."""
        missing = [f"ccc.{name}" for name in NEEDED[self.auth] if getattr(self, name) is None]
        if missing:
            raise ConfigError(f"ccc.auth {self.auth!r} needs {', '.join(missing)}")
        if self.auth == "bearer" and self.bearer_token is not None:
            return StaticCredentials(BearerToken(self.bearer_token))
        key_id, secret = self.access_key_id, self.access_key_secret
        if self.auth in {"access_key", "sts"} and key_id is not None and secret is not None:
            token = self.security_token if self.auth == "sts" else None
            return StaticCredentials(AccessKey(key_id, secret, token))
        token_file = self.oidc_token_file
        if self.auth == "oidc_role_arn" and token_file is not None and not token_file.is_file():
            # Read again on every refresh (the kubelet rotates it); missing at the start, it
            # is a mount that is not there.
            raise ConfigError(f"ccc.oidc_token_file: {token_file} is not a file")
        return ProviderCredentials(
            partial(provider_for, self),
            mode=self.auth,
            retry_s=self.credentials_retry_s,
            backoff_initial_s=self.retry.backoff_initial_s,
            backoff_max_s=self.retry.backoff_max_s,
        )
