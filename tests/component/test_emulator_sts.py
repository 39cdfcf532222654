"""The emulator's STS (issue 14) and the client over it: keys from AssumeRole sign CCC
calls until they expire, then CCC refuses them as Alibaba does; the client renews a refused
token and signs the call again, once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from pydantic import SecretStr

from service.ccc.client import CccClient
from service.ccc.credentials import StaticCredentials, provider_for
from service.ccc.errors import CccAuthError
from service.ccc.settings import CccSettings
from service.ccc.signing import AccessKey, Credentials
from service.emulator.config import EmulatorConfig, client_settings
from service.emulator.server import EmulatorServer
from tests.inspection import codes, eventually, inspect

ROLE = "acs:ram::1234567890123456:role/ccc-bridge"
INSTANCE = {"InstanceId": "ccc-demo"}


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(EmulatorConfig(sts_duration_s=2)) as server:
        yield server


def on_role(emulator: EmulatorServer) -> CccSettings:
    return client_settings(
        emulator.url,
        auth="ram_role_arn",
        role_arn=ROLE,
        sts_endpoint=emulator.url,
        role_session_duration_s=900,
    )


async def expired_key(emulator: EmulatorServer) -> AccessKey:
    """A key of the emulator's STS, once it has expired."""
    fetched = await provider_for(on_role(emulator)).get_credentials_async()
    key = AccessKey(
        fetched.get_access_key_id(),
        SecretStr(fetched.get_access_key_secret()),
        SecretStr(fetched.get_security_token()),
    )

    expires_at: float = fetched.get_expiration()

    async def expired() -> bool:
        return time.time() >= expires_at

    await eventually(expired, deadline_s=5)
    return key


async def test_an_expired_sts_key_is_refused_as_alibaba_refuses_it(
    emulator: EmulatorServer,
) -> None:
    key = await expired_key(emulator)
    async with CccClient(on_role(emulator)) as client:
        client._credentials = StaticCredentials(key)
        with pytest.raises(CccAuthError) as refused:
            await client.call("GetInstance", INSTANCE)
    assert (refused.value.code, refused.value.http_status) == ("InvalidSecurityToken.Expired", 400)
    assert refused.value.message == "Specified SecurityToken is expired."
    assert await codes(emulator, "GetInstance") == ["InvalidSecurityToken.Expired"]


@dataclass
class ExpiredFirst:
    """Hands out an expired key, then the fresh one it is asked to renew it with."""

    expired: AccessKey
    fresh: Credentials
    renewed: int = 0

    async def get(self) -> Credentials:
        return self.expired

    async def renew(self, refused: Credentials) -> Credentials | None:
        assert refused is self.expired
        self.renewed += 1
        return self.fresh

    async def aclose(self) -> None:
        return None


async def test_a_refused_token_is_renewed_and_the_call_signed_again_once(
    emulator: EmulatorServer,
) -> None:
    settings = on_role(emulator)
    expired = await expired_key(emulator)
    async with CccClient(settings) as client:
        source = ExpiredFirst(expired, await settings.credentials().get())
        client._credentials = source
        await client.call("GetInstance", INSTANCE)
        assert source.renewed == 1
        source.fresh = expired  # renewed into another expired key: refused for good
        with pytest.raises(CccAuthError, match=r"InvalidSecurityToken\.Expired"):
            await client.call("GetInstance", INSTANCE)
    assert source.renewed == 2
    assert await codes(emulator, "GetInstance") == [
        "InvalidSecurityToken.Expired",
        "OK",
        "InvalidSecurityToken.Expired",
        "InvalidSecurityToken.Expired",
    ]


async def test_assume_role_with_oidc_takes_only_known_tokens_and_never_logs_them(
    emulator: EmulatorServer,
) -> None:
    params = {
        "Version": "2015-04-01",
        "Action": "AssumeRoleWithOIDC",
        "RoleArn": ROLE,
        "OIDCProviderArn": "acs:ram::1234567890123456:oidc-provider/c1",
        "OIDCToken": "not-a-token-it-knows",
        "RoleSessionName": "ccc-bridge",
    }
    async with aiohttp.ClientSession() as session, session.get(emulator.url, params=params) as r:
        body = await r.json()
        assert (r.status, body["Code"]) == (401, "AuthenticationFail.OIDCToken.Invalid")
    logged = [r for r in await inspect(emulator, "requests") if r["action"] == params["Action"]]
    assert len(logged) == 1
    assert "OIDCToken" not in logged[0]["params"]
    assert logged[0]["params"]["RoleArn"] == ROLE


async def test_assume_role_is_signed_like_any_call(emulator: EmulatorServer) -> None:
    params = {"Version": "2015-04-01", "Action": "AssumeRole", "RoleArn": ROLE}
    async with aiohttp.ClientSession() as session, session.get(emulator.url, params=params) as r:
        assert r.status == 400
        assert (await r.json())["Code"] == "InvalidTimeStamp.Format"  # unsigned: refused first
