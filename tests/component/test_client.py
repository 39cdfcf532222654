"""The client against the real emulator over HTTP: retries, faults, limits, paging, auth."""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import SecretStr

from service.ccc.client import CccClient
from service.ccc.errors import (
    CccAuthError,
    CccRequestError,
    CccServerError,
    CccServiceUnavailableError,
    CccThrottledError,
    CccTimeoutError,
    CccTransportError,
)
from service.ccc.settings import CccSettings, RateLimitSettings, RetrySettings
from service.emulator.config import (
    client_settings,
)
from service.emulator.server import EmulatorServer
from tests.inspection import codes, eventually, fault, inspect

INSTANCE = "ccc-a"
RETRY = RetrySettings(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05)


def settings(url: str, **overrides: Any) -> CccSettings:
    """Quick retries and no rate limit, unless a test says otherwise."""
    defaults: dict[str, Any] = {
        "retry": RETRY,
        "rate_limits": RateLimitSettings.off(),
    }
    return client_settings(url, **(defaults | overrides))


@pytest.fixture
async def client(emulator: EmulatorServer) -> AsyncIterator[CccClient]:
    async with CccClient(settings(emulator.url, read_timeout_s=0.5)) as ccc:
        yield ccc


async def calls_to(emulator: EmulatorServer, callee: str) -> list[dict[str, Any]]:
    """The calls the emulator placed to `callee`: each one a side effect in CCC."""
    return [c for c in await inspect(emulator, "calls") if c["callee"] == callee]


def dial(callee: str = "13900000001") -> dict[str, Any]:
    return {
        "InstanceId": INSTANCE,
        "Caller": "02150000000",
        "Callee": callee,
        "RoutPoint": "flow-1",
        "AnswerMode": 0,
    }


async def test_throttled_side_effect_is_retried_and_honours_retry_after(
    emulator: EmulatorServer, client: CccClient
) -> None:
    await fault(emulator, action="DialEx", throttle_rate=1.0)
    with pytest.raises(CccThrottledError) as info:
        await client.call("DialEx", dial())
    assert info.value.attempts == RETRY.max_attempts
    assert info.value.retry_after is not None
    assert await codes(emulator, "DialEx") == ["Throttling.User"] * RETRY.max_attempts
    assert not [c for c in await inspect(emulator, "calls") if c["action"] == "DialEx"]
    stamps = [r["at"] for r in await inspect(emulator, "requests") if r["action"] == "DialEx"]
    gaps = [_seconds(b) - _seconds(a) for a, b in itertools.pairwise(stamps)]
    # The emulator asks for 200 ms; our own backoff is capped at 50 ms here.
    assert all(gap >= info.value.retry_after * 0.9 for gap in gaps)


async def test_server_errors_retry_reads_but_never_side_effects(
    emulator: EmulatorServer, client: CccClient
) -> None:
    """No source says CCC did not act when it answers a 5xx, 503 included: a side effect is
    sent once and its outcome left unknown."""
    await fault(emulator, action="*", error_rate=1.0)
    with pytest.raises(CccServerError) as read:
        await client.call("GetInstance", {"InstanceId": INSTANCE})
    assert read.value.attempts == RETRY.max_attempts
    answers: list[str] = []
    # The emulator answers 503 or 500 at random: call until both were met.
    while {"ServiceUnavailable", "InternalError"} - set(answers):
        with pytest.raises(CccServerError) as effect:
            await client.call("DialEx", dial())
        assert (effect.value.attempts, effect.value.acted) == (1, None)
        unavailable = effect.value.code == "ServiceUnavailable"
        assert isinstance(effect.value, CccServiceUnavailableError) is unavailable
        answers.append(effect.value.code)
        assert await codes(emulator, "DialEx") == answers  # each call sent once
        assert len(answers) < 20, answers
    assert client.reachable.is_set(), "a 5xx is an answer: commands need not wait for CCC"


async def test_side_effects_on_5xx_are_retried_only_when_the_settings_opt_in(
    emulator: EmulatorServer,
) -> None:
    """Opted in, a side effect is retried on a 5xx. CCC may have acted on that attempt, so
    the call's error says so even when the last answer was a throttle."""
    opted_in = RETRY.model_copy(update={"side_effects_on_server_errors": True})
    await fault(emulator, action="DialEx", throttle_rate=0.5, error_rate=1.0)
    async with CccClient(settings(emulator.url, retry=opted_in)) as ccc:
        for _ in range(20):
            before = len(await codes(emulator, "DialEx"))
            with pytest.raises((CccServerError, CccThrottledError)) as info:
                await ccc.call("DialEx", dial())
            seen = (await codes(emulator, "DialEx"))[before:]
            # Every answer was worth a retry, so every attempt was made.
            assert info.value.attempts == len(seen) == RETRY.max_attempts, seen
            assert seen[-1] == info.value.code
            only_throttled = set(seen) == {"Throttling.User"}
            assert (info.value.acted is False) is only_throttled, seen
            if isinstance(info.value, CccThrottledError) and not only_throttled:
                return  # the case that matters was met
    pytest.fail("no call was throttled last after a 5xx: the case went untested")


async def test_dial_that_timed_out_after_sending_is_not_retried(
    emulator: EmulatorServer, client: CccClient
) -> None:
    await fault(emulator, action="DialEx", latency_ms=1500)
    with pytest.raises(CccTimeoutError) as info:
        await client.call("DialEx", dial("13900000077"))
    assert info.value.attempts == 1
    assert info.value.acted is None

    async def executed_once() -> bool:
        calls = await calls_to(emulator, "13900000077")
        assert len(calls) <= 1
        return len(calls) == 1

    await eventually(executed_once)
    assert await codes(emulator, "DialEx") == ["OK"]


async def test_read_that_timed_out_is_retried(emulator: EmulatorServer, client: CccClient) -> None:
    await fault(emulator, action="GetInstance", latency_ms=1500)
    with pytest.raises(CccTimeoutError) as info:
        await client.call("GetInstance", {"InstanceId": INSTANCE})
    assert info.value.attempts == RETRY.max_attempts


async def test_lost_response_of_a_side_effect_is_not_retried(
    emulator: EmulatorServer, client: CccClient
) -> None:
    await fault(emulator, action="DialEx", drop_rate=1.0)
    with pytest.raises(CccTransportError) as info:
        await client.call("DialEx", dial("13900000078"))
    assert info.value.sent
    assert info.value.attempts == 1
    assert len(await calls_to(emulator, "13900000078")) == 1


async def test_connection_refused_is_retried_even_for_side_effects() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with CccClient(settings(f"http://127.0.0.1:{port}")) as ccc:
        with pytest.raises(CccTransportError) as info:
            await ccc.call("DialEx", dial())
    assert not info.value.sent
    assert info.value.acted is False
    assert info.value.attempts == RETRY.max_attempts
    assert not ccc.reachable.is_set()  # no answer: commands wait, the health check asks
    assert ccc.lost.is_set()


async def test_intermittent_throttling_recovers(emulator: EmulatorServer) -> None:
    await fault(emulator, action="ListRoles", throttle_rate=0.5)
    patient = RetrySettings(max_attempts=12, backoff_initial_s=0.001, backoff_max_s=0.002)
    async with CccClient(settings(emulator.url, retry=patient)) as ccc:
        for _ in range(10):
            roles = await ccc.call("ListRoles", {"InstanceId": INSTANCE})
            assert roles.items()
    assert "Throttling.User" in await codes(emulator, "ListRoles")


async def test_business_and_auth_errors_are_not_retried(
    emulator: EmulatorServer, client: CccClient
) -> None:
    with pytest.raises(CccRequestError) as missing:
        await client.call("GetInstance", {"InstanceId": "no-such-instance"})
    assert missing.value.code == "NotExists.InstanceId"
    assert missing.value.attempts == 1
    assert missing.value.request_id
    wrong = settings(emulator.url, access_key_secret=SecretStr("not-the-secret"))
    async with CccClient(wrong) as ccc:
        with pytest.raises(CccAuthError) as auth:
            await ccc.call("GetInstance", {"InstanceId": INSTANCE})
    assert auth.value.code == "SignatureDoesNotMatch"
    assert auth.value.attempts == 1
    assert "not-the-secret" not in str(auth.value)


async def test_rate_limit_spreads_a_burst(emulator: EmulatorServer) -> None:
    limited = RateLimitSettings(default_per_s=None, per_action={"ListRoles": 20.0})
    async with CccClient(settings(emulator.url, rate_limits=limited)) as ccc:
        started = time.monotonic()
        await asyncio.gather(*(ccc.call("ListRoles", {"InstanceId": INSTANCE}) for _ in range(50)))
        elapsed = time.monotonic() - started
        # A bucket of 20 refilling at 20/s lets 50 calls through no sooner than (50-20)/20 s.
        assert elapsed >= 1.5 * 0.9
    assert len(await codes(emulator, "ListRoles")) == 50


async def test_pagination_covers_every_agent_once(
    emulator: EmulatorServer, client: CccClient
) -> None:
    emulator.clock.advance(300)  # agents log in over the first simulated minutes
    pages = [
        p async for p in client.pages("ListAgentStates", {"InstanceId": INSTANCE}, page_size=5)
    ]
    total = pages[0].page()
    assert total is not None
    assert total[0] > 5  # more than one page
    assert len(pages) == math.ceil(total[0] / 5)
    rows = [row for page in pages for row in page.items()]
    ids = [row.agent_id for row in rows]
    assert len(ids) == len(set(ids)) == total[0]
    streamed = [
        row.agent_id
        async for row in client.iter_items("ListAgentStates", {"InstanceId": INSTANCE}, page_size=5)
    ]
    assert streamed == ids
    with pytest.raises(ValueError, match="GetInstance is not a paged action"):
        [p async for p in client.pages("GetInstance", {"InstanceId": INSTANCE})]


# The conftest emulator knows this bearer token and this STS key with its token.
GOOD_AUTH: dict[str, dict[str, Any]] = {
    "bearer": {"auth": "bearer", "bearer_token": SecretStr("emulator-bearer-token")},
    "sts": {
        "auth": "sts",
        "access_key_id": "sts-access-key",
        "access_key_secret": SecretStr("sts-access-secret"),
        "security_token": SecretStr("sts-security-token"),
    },
}
WRONG_AUTH: dict[str, dict[str, Any]] = {
    "bearer": {"bearer_token": SecretStr("other-token")},
    "sts": {"security_token": SecretStr("other-token")},
}


@pytest.mark.parametrize("mode", sorted(GOOD_AUTH))
async def test_bearer_and_sts_modes(emulator: EmulatorServer, mode: str) -> None:
    async with CccClient(settings(emulator.url, **GOOD_AUTH[mode])) as ccc:
        instance = await ccc.call("GetInstance", {"InstanceId": INSTANCE})
        assert instance.success
    async with CccClient(settings(emulator.url, **(GOOD_AUTH[mode] | WRONG_AUTH[mode]))) as ccc:
        with pytest.raises(CccAuthError) as info:
            await ccc.call("GetInstance", {"InstanceId": INSTANCE})
    assert "other-token" not in str(info.value)
    params = [r["params"] for r in await inspect(emulator, "requests")]
    assert params
    assert not any({"BearerToken", "SecurityToken", "Signature"} & set(p) for p in params)


def _seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


async def test_a_signature_error_never_carries_the_sts_token(emulator: EmulatorServer) -> None:
    wrong_secret = GOOD_AUTH["sts"] | {"access_key_secret": SecretStr("not-the-secret")}
    async with CccClient(settings(emulator.url, **wrong_secret)) as ccc:
        with pytest.raises(CccAuthError) as info:
            await ccc.call("GetInstance", {"InstanceId": INSTANCE})
    assert info.value.code == "SignatureDoesNotMatch"
    assert "server string to sign is:" in str(info.value)
    assert "sts-security-token" not in str(info.value)
