"""The service on short-lived STS keys (issue 14): a RAM role (AssumeRole) and RRSA
(AssumeRoleWithOIDC with a token file) through Alibaba's own credential providers, against
the emulator's STS issuing keys that live 3 s. Across several expiries, polling never pauses
and every command sent meanwhile succeeds."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from service.broker import EmbeddedBroker
from service.emulator.config import EmulatorConfig
from service.emulator.server import EmulatorServer
from service.kafka.admin import ensure_topics
from service.kafka.connection import client_options
from service.settings import CommandSettings, Settings
from tests.inspection import eventually, inspect
from tests.integration.commands import Message, Where, answers, dial_ex
from tests.integration.pipeline import INSTANCE, in_process, service_settings

LIFETIME_S = 3
KEYS = 5  # issued, so four expiries pass while the service runs
ROLE_ARN = "acs:ram::1234567890123456:role/ccc-bridge"
OIDC_PROVIDER_ARN = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1234"
OIDC_TOKEN = (
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Y2NjIn0.c2ln"  # a JWT's shape
)
# Agents for the pollers, no inbound calls: the commands' calls alone.
CENTRE = EmulatorConfig(
    instances=(INSTANCE,),
    agents=3,
    seed=5,
    inbound_calls_per_minute=0,
    sts_duration_s=LIFETIME_S,
    oidc_tokens=frozenset({OIDC_TOKEN}),
)
POLL_GAP_MAX_S = 1.5  # ListAgentStates runs every 0.2 s (tests/integration/pipeline.py)
SEND_EVERY_S = 0.1


def on_sts(emulator: EmulatorServer, broker: EmbeddedBroker, auth: str, token: Path) -> Settings:
    settings = service_settings(emulator, broker.bootstrap_servers)
    ccc = settings.ccc.model_copy(
        update={
            "auth": auth,
            "role_arn": ROLE_ARN,
            "oidc_provider_arn": OIDC_PROVIDER_ARN,
            "oidc_token_file": token,
            "sts_endpoint": emulator.url,
            "role_session_duration_s": 900,  # the library's least; the emulator's 3 s win
        }
    )
    commands = CommandSettings(group_id=f"cmd-{uuid.uuid4().hex[:12]}")
    return settings.model_copy(update={"ccc": ccc, "commands": commands})


async def keys_issued(emulator: EmulatorServer) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emulator.url}/_emulator/stats") as response,
    ):
        actions: dict[str, Any] = (await response.json())["actions"]
    return sum(actions.get(name, {}).get("ok", 0) for name in ("AssumeRole", "AssumeRoleWithOIDC"))


async def send_until(settings: Settings, stop: asyncio.Event, sent: dict[Where, Message]) -> None:
    """A DialEx command every SEND_EVERY_S until `stop`, each to a number of its own."""
    topic = settings.topics.name("commands_dial")
    async with AIOKafkaProducer(**client_options(settings.kafka), acks="all") as producer:
        while not stop.is_set():
            command_id = f"sts-{len(sent)}"
            callee = f"13660{len(sent):06d}"
            value = json.dumps(dial_ex(command_id, callee)).encode()
            record = await (await producer.send(topic, value, key=command_id.encode()))
            message = Message("dial", command_id.encode(), value, "first", command_id, callee)
            sent[record.topic, record.partition, record.offset] = message
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SEND_EVERY_S)


def longest_poll_gap_s(requests: list[dict[str, Any]]) -> float:
    times = [
        datetime.fromisoformat(r["at"]).timestamp()
        for r in requests
        if r["action"] == "ListAgentStates" and r["code"] == "OK"
    ]
    assert len(times) > 10, len(times)
    return max(b - a for a, b in itertools.pairwise(times))


@pytest.mark.parametrize("auth", ["ram_role_arn", "oidc_role_arn"])
async def test_short_lived_sts_keys_refresh_with_no_poll_gap_and_no_failed_command(
    auth: str, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(OIDC_TOKEN, encoding="utf-8")
    async with EmulatorServer(CENTRE) as emulator:
        settings = on_sts(emulator, broker, auth, token)
        await ensure_topics(settings.kafka, settings.topics)
        sent: dict[Where, Message] = {}
        stop_sending = asyncio.Event()
        async with in_process(settings) as (_, service), answers(settings) as found:
            sender = asyncio.create_task(send_until(settings, stop_sending, sent))

            async def expired_often() -> bool:
                assert not service.done(), service
                assert not sender.done(), sender
                return await keys_issued(emulator) >= KEYS

            await eventually(expired_often, deadline_s=60)
            stop_sending.set()
            await sender

            async def all_answered() -> bool:
                assert not service.done(), service
                await found.poll()
                return found.answered(sent)

            await eventually(all_answered, deadline_s=30)
            requests = await inspect(emulator, "requests")
    statuses = [r["status"] for r in found.all_results()]
    assert len(statuses) == len(sent) > KEYS * LIFETIME_S
    assert set(statuses) == {"succeeded"}, [
        r for r in found.all_results() if r["status"] != "succeeded"
    ]
    assert longest_poll_gap_s(requests) < POLL_GAP_MAX_S
    # Keys are renewed ahead of expiry. A request held up past its key's margin may still
    # meet an expired token: it is signed again with a renewed one. Fewer than one such
    # refusal per expiry (renewing only when refused would meet at least one each), and no
    # refusal of any other kind.
    refused = [r["code"] for r in requests if r["code"] != "OK"]
    assert set(refused) <= {"InvalidSecurityToken.Expired"}, refused
    assert len(refused) < KEYS - 1, refused
