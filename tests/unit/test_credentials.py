"""Credentials per auth mode (service/ccc/settings.py) and the refresh rules of
service/ccc/credentials.py, with a hand-written provider in place of Alibaba's."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from service.ccc.credentials import (
    CredentialsUnavailableError,
    ProviderCredentials,
    StaticCredentials,
    hold,
    provider_for,
)
from service.ccc.settings import CccSettings
from service.ccc.signing import AccessKey, BearerToken
from service.errors import ConfigError

ROLE = "acs:ram::1234567890123456:role/ccc-bridge"
OIDC_PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1"
KEY = {"access_key_id": "ak", "access_key_secret": SecretStr("sk")}


@pytest.mark.parametrize(
    ("auth", "given", "missing"),
    [
        ("access_key", {}, "ccc.access_key_id, ccc.access_key_secret"),
        ("sts", KEY, "ccc.security_token"),
        ("ram_role_arn", {"access_key_id": "ak"}, "ccc.access_key_secret, ccc.role_arn"),
        ("oidc_role_arn", {"role_arn": ROLE}, "ccc.oidc_provider_arn, ccc.oidc_token_file"),
        ("bearer", KEY, "ccc.bearer_token"),
    ],
)
def test_each_auth_mode_names_the_settings_it_lacks(
    auth: str, given: dict[str, Any], missing: str
) -> None:
    settings = CccSettings(auth=auth, **given)  # loads: commands that never call CCC need none
    with pytest.raises(ConfigError, match=f"^ccc.auth '{auth}' needs {missing}$"):
        settings.credentials()


async def test_static_modes_sign_with_the_settings_and_cannot_renew() -> None:
    key = CccSettings(**KEY).credentials()
    sts = CccSettings(auth="sts", security_token="tok", **KEY).credentials()
    bearer = CccSettings(auth="bearer", bearer_token="bt").credentials()
    assert isinstance(key, StaticCredentials)
    assert isinstance(sts, StaticCredentials)
    assert await key.get() == AccessKey("ak", SecretStr("sk"))
    signed = await sts.get()
    assert isinstance(signed, AccessKey)
    assert signed.security_token == SecretStr("tok")
    assert await sts.renew(signed) is None  # a static STS token expires for good
    assert await bearer.get() == BearerToken(SecretStr("bt"))


def test_refreshable_modes_build_alibabas_providers(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("jwt", encoding="utf-8")
    common: dict[str, Any] = {"role_arn": ROLE, "sts_endpoint": "http://127.0.0.1:1"}
    ram = CccSettings(auth="ram_role_arn", role_session_duration_s=900, **common, **KEY)
    oidc = CccSettings(
        auth="oidc_role_arn", oidc_provider_arn=OIDC_PROVIDER, oidc_token_file=token, **common
    )
    ecs = CccSettings(auth="ecs_ram_role", role_name="ccc-node")
    for settings in (ram, oidc, ecs, CccSettings(auth="default")):
        assert isinstance(settings.credentials(), ProviderCredentials)
    # Provider internals, read to check the wiring: the library offers no getters.
    assumed: Any = provider_for(ram)
    assert type(assumed).__name__ == "RamRoleArnCredentialsProvider"
    assert (assumed._role_arn, assumed._duration_seconds) == (ROLE, 900)
    assert assumed._sts_endpoint == "http://127.0.0.1:1"
    on_sts: Any = provider_for(ram.model_copy(update={"security_token": SecretStr("t")}))
    assert type(on_sts._credentials_provider).__name__ == "StaticSTSCredentialsProvider"
    federated: Any = provider_for(oidc)
    assert type(federated).__name__ == "OIDCRoleArnCredentialsProvider"
    assert federated._oidc_token_file_path == str(token)
    assert federated._oidc_provider_arn == OIDC_PROVIDER
    assert type(provider_for(ecs)).__name__ == "EcsRamRoleCredentialsProvider"


def test_a_missing_oidc_token_file_and_malformed_role_settings_are_refused_by_name(
    tmp_path: Path,
) -> None:
    settings = CccSettings(
        auth="oidc_role_arn",
        role_arn=ROLE,
        oidc_provider_arn=OIDC_PROVIDER,
        oidc_token_file=tmp_path / "absent",
    )
    with pytest.raises(ConfigError, match=r"^ccc\.oidc_token_file: .*absent is not a file$"):
        settings.credentials()
    with pytest.raises(ValidationError) as refused:
        CccSettings(role_arn="ccc-bridge", oidc_provider_arn=ROLE, role_session_duration_s=600)
    names = {str(error["loc"][0]) for error in refused.value.errors()}
    assert names == {"role_arn", "oidc_provider_arn", "role_session_duration_s"}


def test_hour_long_keys_renew_15_minutes_ahead_and_short_ones_after_two_thirds() -> None:
    key = AccessKey("STS.a", SecretStr("s"), SecretStr("t"))
    hour = hold(key, 10_000.0 + 3600, 10_000.0)
    assert hour.refresh_at == 10_000 + 3600 - 900  # when the library refreshes, not before
    assert hour.usable_until == 10_000 + 3600 - 225
    short = hold(key, 103.0, 100.0)
    assert (short.refresh_at, short.usable_until) == (102.0, 102.75)
    chain = hold(key, None, 100.0)  # the default chain hides expiries: asked again each minute
    assert (chain.refresh_at, chain.usable_until) == (160.0, math.inf)


@dataclass
class FakeProvider:
    """Answers with key n (`STS.n`) expiring `lifetime_s` from the clock, or fails while
    `failures` is above 0; holds each answer until `gate` is set."""

    clock: list[float]
    lifetime_s: float = 3600
    failures: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0

    def __post_init__(self) -> None:
        self.gate.set()

    async def get_credentials_async(self) -> Any:
        self.calls += 1
        await self.gate.wait()
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("sts.aliyuncs.com unreachable")
        return Fetched(f"STS.{self.calls}", self.clock[0] + self.lifetime_s)


@dataclass(frozen=True)
class Fetched:
    key_id: str
    expiration: float

    def get_access_key_id(self) -> str:
        return self.key_id

    def get_access_key_secret(self) -> str:
        return "secret-" + self.key_id

    def get_security_token(self) -> str:
        return "token-" + self.key_id

    def get_expiration(self) -> float:
        return self.expiration


def source(provider: FakeProvider, retry_s: float = 30.0) -> ProviderCredentials:
    return ProviderCredentials(
        lambda: provider,
        mode="ram_role_arn",
        retry_s=retry_s,
        backoff_initial_s=0.001,
        backoff_max_s=0.01,
        clock=lambda: provider.clock[0],
    )


async def test_a_due_refresh_runs_beside_calls_that_keep_signing_with_the_valid_key() -> None:
    provider = FakeProvider(clock=[1000.0])
    credentials = source(provider)
    first = await credentials.get()
    assert first.access_key_id == "STS.1"
    provider.clock[0] += 3600 - 900  # due, still valid for 15 minutes
    provider.gate.clear()  # STS answers slowly
    for _ in range(5):
        assert await asyncio.wait_for(credentials.get(), 1) is first
    provider.gate.set()

    async def renewed() -> bool:
        return (await credentials.get()).access_key_id == "STS.2"

    deadline = asyncio.get_running_loop().time() + 5
    while not await renewed():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert provider.calls == 2  # one refresh, however many asked meanwhile
    await credentials.aclose()


async def test_callers_without_a_key_share_one_refresh_that_retries_its_failures() -> None:
    provider = FakeProvider(clock=[1000.0], failures=3)
    credentials = source(provider)
    keys = await asyncio.gather(*(credentials.get() for _ in range(10)))
    assert {key.access_key_id for key in keys} == {"STS.4"}
    assert provider.calls == 4


async def test_a_credential_that_stays_unavailable_ends_with_one_line_naming_the_mode() -> None:
    provider = FakeProvider(clock=[1000.0], failures=10**9)
    credentials = source(provider, retry_s=30)
    getting = asyncio.create_task(credentials.get())
    while provider.calls < 3:  # failing and retrying, within the budget
        assert not getting.done()
        await asyncio.sleep(0.001)
    provider.clock[0] += 30  # still failing once the budget is spent
    with pytest.raises(CredentialsUnavailableError) as ended:
        await asyncio.wait_for(getting, 5)
    message = str(ended.value)
    assert message.startswith("ccc.auth 'ram_role_arn': no valid credential for 30 s")
    assert message.endswith("ConnectionError: sts.aliyuncs.com unreachable")
    assert "\n" not in message


async def test_settings_the_library_refuses_end_at_once() -> None:
    built = 0

    def refuse() -> FakeProvider:
        nonlocal built
        built += 1
        raise ValueError("role_arn or environment variable ALIBABA_CLOUD_ROLE_ARN cannot be empty")

    credentials = ProviderCredentials(
        refuse, mode="oidc_role_arn", retry_s=300, backoff_initial_s=1, backoff_max_s=1
    )
    with pytest.raises(CredentialsUnavailableError, match="refused its settings: ValueError"):
        await asyncio.wait_for(credentials.get(), 1)
    assert built == 1


async def test_a_refused_key_is_renewed_but_a_newer_one_is_kept() -> None:
    provider = FakeProvider(clock=[1000.0])
    credentials = source(provider)
    first = await credentials.get()
    second = await credentials.renew(first)  # CCC refused it: replaced
    assert second.access_key_id == "STS.2"
    assert await credentials.renew(first) is second  # refused late: the newer one stands
    assert provider.calls == 2
