"""The CCC client's settings sections: endpoint, credentials, timeouts, retries and rate
limits (composed into Settings by service/settings.py)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, HttpUrl, SecretStr, model_validator

from service.ccc.catalog import load_catalog
from service.ccc.signing import AccessKey, BearerToken, Credentials
from service.errors import ConfigError
from service.sections import Section


class RetrySettings(Section):
    max_attempts: int = Field(4, ge=1, le=20)
    backoff_initial_s: float = Field(0.1, gt=0)
    backoff_max_s: float = Field(5.0, gt=0)
    # Off: no source says CCC did not act when it answers a 5xx (ServiceUnavailable
    # included) and Alibaba's own SDK never retries a CCC call, so repeating a DialEx or an
    # SMS after one may ring or text twice. Reads retry on a 5xx whatever this says.
    side_effects_on_server_errors: bool = False


# Calls that ring a phone or send an SMS go slower than reads. config/default.yaml says the
# same (a test holds them equal), so an installed wheel, which has no config/, acts alike.
SIDE_EFFECT_RATES: dict[str, float | None] = {
    "DialEx": 10.0,
    "StartBack2BackCall": 10.0,
    "SendPredefinedShortMessage": 20.0,
}


class RateLimitSettings(Section):
    """Client-side calls per second, so a burst never earns a throttle storm."""

    # A guard against bursts, not the account's quota (total_per_s is that): at 5,000 agents
    # ListAgentStateLogs needs about 70/s and ListCallEventDetailByContactId about 50/s.
    default_per_s: float | None = Field(100.0, gt=0)
    # Every call of the process together, commands first (service/ccc/budget.py); None: no
    # cap, though the pollers still slow down when CCC throttles.
    total_per_s: float | None = Field(None, gt=0)
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
