"""Credentials to sign CCC calls with, asked for on every request.

The static modes (`access_key`, `sts`, `bearer`) sign with what the settings hold. The others
ask a provider of Alibaba's `alibabacloud-credentials` (RAM role, RRSA/OIDC, ECS RAM role,
the default chain), through `ProviderCredentials`, which:
- calls the provider from one task at a time: the library guards its refresh with a
  threading lock, which would block the whole event loop (up to 5 s) were a second
  coroutine to ask while the first refreshes;
- asks ahead of expiry, in the background, while requests go on signing with the credential
  in hand, so a refresh never holds up polling or commands;
- retries a failing refresh with backoff, and gives up only once there has been no valid
  credential for `ccc.credentials_retry_s`: then every call fails (CccCredentialsError) and
  the service exits 1 naming the cause.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from pydantic import SecretStr

from service.ccc.signing import AccessKey, Credentials

if TYPE_CHECKING:
    from service.ccc.settings import CccSettings

log = structlog.get_logger(__name__)

# The library refreshes a credential once it is within 15 minutes of expiry and not before:
# asking earlier returns the one in hand. A short-lived one (tests) is refreshed after two
# thirds of its life.
REFRESH_BEFORE_S = 15 * 60
# Credentials without an expiry (the default chain hides the one it has) are asked for again
# this often: the chain's providers answer from their cache until they refresh.
RECHECK_S = 60.0
# Never ask again sooner than this, even when the provider hands back the credential in hand.
MIN_RECHECK_S = 1.0


class CredentialsUnavailableError(Exception):
    """No valid credential, and the provider kept failing past the retry budget."""


class CredentialSource(Protocol):
    async def get(self) -> Credentials:
        """The credential to sign the next request with."""
        ...

    async def renew(self, refused: Credentials) -> Credentials | None:
        """A newer credential than `refused`, which CCC refused; None: there is none."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    credentials: Credentials

    async def get(self) -> Credentials:
        return self.credentials

    async def renew(self, refused: Credentials) -> Credentials | None:  # noqa: ARG002 - the protocol's
        return None  # a static STS token cannot be refreshed: the operator must replace it

    async def aclose(self) -> None:
        return None


class Provider(Protocol):
    """What is used of the library's ICredentialsProvider."""

    async def get_credentials_async(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Held:
    """A credential in hand: used alone until `refresh_at`, then while a refresh runs beside
    it until `usable_until`, a margin before it expires."""

    key: AccessKey
    refresh_at: float
    usable_until: float


def hold(key: AccessKey, expires_at: float | None, now: float) -> Held:
    if expires_at is None:
        return Held(key, now + RECHECK_S, math.inf)
    margin = min(REFRESH_BEFORE_S, max(expires_at - now, 0.0) / 3)
    return Held(key, max(expires_at - margin, now + MIN_RECHECK_S), expires_at - margin / 4)


class ProviderCredentials:
    def __init__(  # noqa: PLR0913 - each is a knob of the retry or a seam for tests
        self,
        build: Callable[[], Provider],
        *,
        mode: str,
        retry_s: float,
        backoff_initial_s: float,
        backoff_max_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._build = build
        self._mode = mode
        self._retry_s = retry_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._provider: Provider | None = None
        self._held: Held | None = None
        self._refresh: asyncio.Task[Held] | None = None

    async def get(self) -> AccessKey:
        held, now = self._held, self._clock()
        if held is not None and now < held.refresh_at:
            return held.key
        refresh = self._refreshing()
        if held is not None and now < held.usable_until:
            return held.key
        # Shielded: a caller cancelled (a stopping poller) leaves the refresh to the others.
        return (await asyncio.shield(refresh)).key

    async def renew(self, refused: Credentials) -> AccessKey:
        held = self._held
        if held is not None and held.key is refused:
            self._held = replace(held, refresh_at=-math.inf, usable_until=-math.inf)
        return await self.get()

    async def aclose(self) -> None:
        refresh, self._refresh = self._refresh, None
        if refresh is not None and not refresh.done():
            refresh.cancel()
            await asyncio.gather(refresh, return_exceptions=True)

    def _refreshing(self) -> asyncio.Task[Held]:
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._fetch())
            # Read its error even when nobody waits for it (a background refresh).
            self._refresh.add_done_callback(lambda task: task.cancelled() or task.exception())
        return self._refresh

    async def _fetch(self) -> Held:
        started = self._clock()
        failures = 0
        while True:
            try:
                fetched = await self._provider_or_build().get_credentials_async()
            except CredentialsUnavailableError:
                raise
            except Exception as error:  # noqa: BLE001 - the library raises anything: ValueError, its own, aiohttp's
                failures += 1
                self._wait_or_give_up(error, started, failures)
                await asyncio.sleep(self._backoff(failures))
                continue
            token = fetched.get_security_token()
            key = AccessKey(
                fetched.get_access_key_id(),
                SecretStr(fetched.get_access_key_secret()),
                SecretStr(token) if token else None,
            )
            expires_at = fetched.get_expiration()
            now = self._clock()
            held = self._held = hold(key, expires_at, now)
            log.info(
                "ccc_credentials_refreshed",
                auth=self._mode,
                expires_in_s=None if expires_at is None else round(expires_at - now),
            )
            return held

    def _provider_or_build(self) -> Provider:
        if self._provider is None:
            try:
                self._provider = self._build()
            except Exception as error:
                # Settings the library refuses (with ValueError, mostly) will not mend: no retry.
                raise CredentialsUnavailableError(
                    f"ccc.auth {self._mode!r}: the credential provider refused its settings: "
                    f"{_describe(error)}"
                ) from error
        return self._provider

    def _wait_or_give_up(self, error: Exception, started: float, failures: int) -> None:
        """Log a failed refresh, or raise once no valid credential has been held for the
        retry budget (counted from the later of the first failure and the expiry)."""
        held = self._held
        since = started if held is None else max(started, held.usable_until)
        if self._clock() - since >= self._retry_s:
            raise CredentialsUnavailableError(
                f"ccc.auth {self._mode!r}: no valid credential for {self._retry_s:g} s, "
                f"after {failures} failed refreshes: {_describe(error)}"
            ) from error
        log.warning(
            "ccc_credentials_refresh_failed",
            auth=self._mode,
            failures=failures,
            error=_describe(error),
        )

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._backoff_max_s, self._backoff_initial_s * 2 ** (failures - 1))
        return random.uniform(0, ceiling)  # noqa: S311 - full jitter, not cryptography


def _describe(error: BaseException) -> str:
    # One line: the service's last words are one line, and the library's messages quote
    # whole response bodies.
    return " ".join(f"{type(error).__name__}: {error}".split())


def provider_for(settings: CccSettings) -> Provider:
    """The library's provider for a refreshable auth mode (settings.credentials() checked
    what the mode needs)."""
    # Imported here: a quarter of a second, paid only by the modes that use it.
    from alibabacloud_credentials import provider as alibaba  # noqa: PLC0415
    from alibabacloud_credentials.http import HttpOptions  # noqa: PLC0415

    _quiet_library_log()
    http = HttpOptions(
        connect_timeout=int(settings.connect_timeout_s * 1000),
        read_timeout=int(settings.read_timeout_s * 1000),
    )
    sts_endpoint = settings.sts_endpoint or None  # None: the library's (sts.aliyuncs.com)
    session = {
        "role_arn": settings.role_arn,
        "role_session_name": settings.role_session_name,
        "duration_seconds": settings.role_session_duration_s,
        "sts_endpoint": sts_endpoint,
        "http_options": http,
    }
    if settings.auth == "ram_role_arn":
        secret = settings.access_key_secret
        key = {
            "access_key_id": settings.access_key_id,
            "access_key_secret": None if secret is None else secret.get_secret_value(),
        }
        base: Any
        if settings.security_token is not None:
            base = alibaba.StaticSTSCredentialsProvider(
                **key,
                security_token=settings.security_token.get_secret_value(),
            )
        else:
            base = alibaba.StaticAKCredentialsProvider(**key)
        provider: Provider = alibaba.RamRoleArnCredentialsProvider(
            credentials_provider=base, **session
        )
    elif settings.auth == "oidc_role_arn":
        provider = alibaba.OIDCRoleArnCredentialsProvider(
            oidc_provider_arn=settings.oidc_provider_arn,
            oidc_token_file_path=str(settings.oidc_token_file),
            **session,
        )
    elif settings.auth == "ecs_ram_role":
        # No refresh thread of the library's own: ProviderCredentials is the only refresher.
        provider = alibaba.EcsRamRoleCredentialsProvider(
            role_name=settings.role_name, async_update_enabled=False, http_options=http
        )
    elif settings.auth == "default":
        provider = alibaba.DefaultCredentialsProvider()
    else:
        raise ValueError(f"ccc.auth {settings.auth!r} has no credential provider")
    return provider


def _quiet_library_log() -> None:
    """The library gives its `credentials` logger stderr handlers of its own, which print
    plain text beside the service's JSON lines: without them its records go the way of every
    other library's (service/logs.py)."""
    library = logging.getLogger("credentials")
    for handler in list(library.handlers):
        library.removeHandler(handler)
