"""Commands over HTTP end to end, on the real embedded broker and the emulator: POST to a
result executed once, the status from the ledger, and 503 while Kafka is away."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
from pydantic import SecretStr

from service.broker import EmbeddedBroker
from service.emulator.server import EmulatorServer
from service.kafka.admin import ensure_topics
from service.settings import CommandSettings, HttpSettings, PollerSettings, Settings
from tests.inspection import eventually, inspect
from tests.integration.commands import dial_ex
from tests.integration.pipeline import (
    commands_only,
    free_port,
    in_process,
    service_settings,
)

KEY = f"key-{uuid.uuid4().hex}"


def with_ingress(settings: Settings) -> Settings:
    http = HttpSettings(
        host="127.0.0.1",
        port=free_port(),
        probe_interval_s=0.2,
        probe_timeout_s=1,
        api_keys=[SecretStr(KEY)],
        produce_timeout_s=1,
    )
    return settings.model_copy(update={"http": http})


async def call(
    settings: Settings, method: str, path: str, body: object = None
) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{settings.http.port}{path}"
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, url, json=body, headers=headers) as answer,
        ):
            return answer.status, await answer.json(content_type=None)
    except aiohttp.ClientConnectionError:
        return 0, {}  # not listening yet


async def call_text(settings: Settings, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{settings.http.port}{path}"
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        return answer.status, await answer.text()


async def ready(settings: Settings) -> bool:
    return (await call(settings, "GET", "/readyz"))[0] == 200


def dial(command_id: str, callee: str) -> dict[str, Any]:
    return dial_ex(command_id, callee) | {"metadata": {"crm": "ticket-7"}}


async def test_a_command_posted_runs_once_and_its_status_tells_the_outcome(
    broker: EmbeddedBroker, emulator_busy: EmulatorServer
) -> None:
    settings = with_ingress(commands_only(emulator_busy, broker.bootstrap_servers))
    command_id = f"http-{uuid.uuid4().hex[:8]}"
    callee = f"139{uuid.uuid4().int % 10**8:08d}"
    async with in_process(settings):
        await eventually(lambda: ready(settings), deadline_s=30)
        status, accepted = await call(
            settings, "POST", "/v1/commands/dial", dial(command_id, callee)
        )
        assert (status, accepted["command_id"]) == (202, command_id)

        found: dict[str, Any] = {}

        async def done() -> bool:
            nonlocal found
            code, found = await call(settings, "GET", accepted["status_url"])
            return code == 200 and found["result"] is not None

        await eventually(done, deadline_s=30)
        assert (found["state"], found["ledger_state"]) == ("done", "done")
        assert found["action"] == "DialEx"
        result = found["result"]
        assert (result["status"], result["metadata"]) == ("succeeded", {"crm": "ticket-7"})
        assert result["task_id"]

        # The same command again: Kafka takes it, the worker answers `duplicate` from the
        # ledger, and the status still tells the original outcome.
        again = await call(settings, "POST", "/v1/commands/dial", dial(command_id, callee))
        assert again[0] == 202

        async def repeated() -> bool:
            _, text = await call_text(settings, "/metrics")
            return 'ccc_bridge_commands_total{kind="dial",status="duplicate"}' in text

        await eventually(repeated, deadline_s=30)
        code, after = await call(settings, "GET", accepted["status_url"])
        assert (code, after["result"]) == (200, result)
    calls = [c for c in await inspect(emulator_busy, "calls") if c["callee"] == callee]
    assert len(calls) == 1
    assert calls[0]["task_id"] == result["task_id"]


async def test_while_kafka_is_away_a_post_is_503_and_then_202_again(
    emulator_busy: EmulatorServer,
) -> None:
    async with EmbeddedBroker() as broker:
        settings = with_ingress(service_settings(emulator_busy, broker.bootstrap_servers))
        quiet = {"pollers": PollerSettings.off(), "commands": CommandSettings(enabled=False)}
        settings = settings.model_copy(update=quiet)
        async with in_process(settings):
            await eventually(lambda: ready(settings), deadline_s=30)
            await broker.stop()
            status, body = await call(
                settings, "POST", "/v1/commands/dial", dial("away-1", "13900000001")
            )
            assert (status, body["error"]) == (503, "kafka_unavailable"), body
            await broker.start()
            await ensure_topics(settings.kafka, settings.topics)

            async def accepted() -> bool:
                command = dial("back-1", "13900000002")
                return (await call(settings, "POST", "/v1/commands/dial", command))[0] == 202

            await eventually(accepted, deadline_s=30)
        assert json.dumps(body).find(KEY) == -1
