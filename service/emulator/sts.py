"""The emulator's STS (2015-04-01): issues short-lived AccessKeys with a SecurityToken, as
AssumeRole and AssumeRoleWithOIDC do, and remembers them so the gateway can check what CCC
calls are signed with (docs/emulator.md, STS)."""

from __future__ import annotations

import secrets
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

STS_VERSION = "2015-04-01"
STS_ACTIONS = frozenset({"AssumeRole", "AssumeRoleWithOIDC"})
# How long an expired key is still known (and refused as expired, not as unknown); then it
# is forgotten, so issuing every few seconds for hours keeps memory bounded.
EXPIRED_KEPT_S = 3600.0


@dataclass(frozen=True, slots=True)
class IssuedKey:
    secret: str
    token: str
    expires_at: int  # epoch seconds, as the Expiration it was issued with


class SecurityTokenService:
    def __init__(self, duration_s: int | None, wall: Callable[[], float] = time.time) -> None:
        self._duration_s = duration_s  # None: the DurationSeconds asked for
        self._wall = wall  # real time, like the Timestamp check: clients expire keys by it
        self._keys: dict[str, IssuedKey] = {}

    def key(self, key_id: str) -> IssuedKey | None:
        return self._keys.get(key_id)

    def expired(self, key: IssuedKey) -> bool:
        return self._wall() >= key.expires_at

    def issue(self, role_arn: str, session_name: str, duration_s: int) -> dict[str, Any]:
        """The body of AssumeRole's answer (AssumeRoleWithOIDC's less OIDCTokenInfo)."""
        now = int(self._wall())
        self._forget_before(now - EXPIRED_KEPT_S)
        key_id = f"STS.{secrets.token_hex(12)}"
        key = IssuedKey(
            secret=secrets.token_urlsafe(24),
            token=secrets.token_urlsafe(96),
            expires_at=now + (self._duration_s or duration_s),
        )
        self._keys[key_id] = key
        account, _, role = role_arn.removeprefix("acs:ram::").partition(":role/")
        return {
            "Credentials": {
                "AccessKeyId": key_id,
                "AccessKeySecret": key.secret,
                "SecurityToken": key.token,
                "Expiration": datetime.fromtimestamp(key.expires_at, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
            },
            "AssumedRoleUser": {
                "Arn": f"acs:ram::{account}:assumed-role/{role}/{session_name}",
                "AssumedRoleId": f"{zlib.crc32(role_arn.encode())}:{session_name}",
            },
        }

    def _forget_before(self, moment: float) -> None:
        for key_id in [k for k, key in self._keys.items() if key.expires_at < moment]:
            del self._keys[key_id]
