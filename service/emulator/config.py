"""Emulator configuration and its simulation clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from service.ccc.settings import CccSettings

DEFAULT_ACCESS_KEY_ID = "emulator-access-key"
# A published development credential: the emulator is for laptops and tests, never production.
DEFAULT_ACCESS_KEY_SECRET = "emulator-access-secret"  # noqa: S105


def client_settings(url: str, **overrides: Any) -> CccSettings:
    """Settings of a CCC client for the emulator at `url`, with its development key."""
    values: dict[str, Any] = {
        "endpoint": url,
        "access_key_id": DEFAULT_ACCESS_KEY_ID,
        "access_key_secret": SecretStr(DEFAULT_ACCESS_KEY_SECRET),
    }
    return CccSettings(**(values | overrides))


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port
    region: str = "cn-shanghai"
    instances: tuple[str, ...] = ("ccc-demo",)
    agents: int = 10  # per instance
    seed: int = 1
    speed: float = 1.0  # simulated seconds per real second
    # AccessKeyId -> AccessKeySecret
    access_keys: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET}
    )
    # AccessKeyId -> SecurityToken: such a key is an STS key and needs its token
    sts_tokens: dict[str, str] = field(default_factory=dict)
    bearer_tokens: frozenset[str] = frozenset()
    # Lifetime of the keys its STS issues; None: the DurationSeconds asked for (at least 900,
    # as Alibaba's). Tests take a few seconds, to see many expiries.
    sts_duration_s: int | None = None
    # OIDC tokens AssumeRoleWithOIDC accepts (RRSA's projected service-account tokens).
    oidc_tokens: frozenset[str] = frozenset()
    # inbound calls per simulated minute per instance, for every 10 agents
    inbound_calls_per_minute: float = 6.0
    # ListAgentStates lists only agents whose state changed within this many simulated
    # seconds (4 hours: doc 90007, FACTS.md section 9); the demo shortens it to show it.
    active_window_s: float = 4 * 3600.0
    # Agents per instance that, once Ready after logging in, stay Ready and take no calls:
    # they fall out of ListAgentStates after `active_window_s`, still logged in.
    quiet_agents: int = 0
    # Of the calls answered, the share during which the agent passes through a state beyond
    # the six ListAgentStates filters on (conference, help: FACTS.md section 9).
    other_states_rate: float = 0.0
    # ListAgentStates rows in a new order on every call: row order is undocumented, so a
    # list read page by page may miss or repeat an agent.
    shuffle_rows: bool = False
    # Simulated seconds of history kept: state logs, agent events, calls and their records,
    # SMS and appraisals older than this are forgotten, so a long run's memory is bounded.
    retention_s: float = 7200.0
    # ContactIds are this plus a serial. A second emulator standing in for the same centre
    # (a test of CCC's clock going back) takes another base, as CCC never reuses an id.
    contact_id_base: int = 100_000_000_000


class SimClock:
    """Simulated epoch time: runs `speed` times real time, and tests can jump it forward."""

    def __init__(
        self,
        speed: float = 1.0,
        *,
        start_ms: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._speed = speed
        self._monotonic = monotonic
        self._origin_mono = monotonic()
        self._origin_ms = int(wall() * 1000) if start_ms is None else start_ms
        self._offset_ms = 0

    def now_ms(self) -> int:
        elapsed = self._monotonic() - self._origin_mono
        return self._origin_ms + int(elapsed * self._speed * 1000) + self._offset_ms

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset_ms += int(seconds * 1000)
