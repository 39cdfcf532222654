"""`ccc-bridge send` as a user runs it, against the service on the embedded broker and the
emulator: the command lands keyed by its id, `--wait` prints its one result, and a bad
command never reaches Kafka."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from service.emulator.config import EmulatorConfig
from service.emulator.server import EmulatorServer
from service.kafka.consumer import read_to_end
from service.kafka.settings import KafkaSettings
from service.settings import Settings
from tests.inspection import inspect
from tests.integration.kafka_io import run_cli
from tests.integration.pipeline import INSTANCE, commands_only, in_process


@pytest.fixture
async def serving(kafka_settings: KafkaSettings) -> AsyncIterator[tuple[EmulatorServer, Settings]]:
    config = EmulatorConfig(instances=(INSTANCE,), agents=5, seed=3, speed=1)
    async with EmulatorServer(config) as emulator:
        settings = commands_only(emulator, kafka_settings.bootstrap_servers)
        async with in_process(settings):
            yield emulator, settings


def env(settings: Settings) -> dict[str, str]:
    return {
        "CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "CCC_BRIDGE_TOPICS__PREFIX": settings.topics.prefix,
    }


async def test_send_sms_waits_for_and_prints_its_result(
    serving: tuple[EmulatorServer, Settings],
) -> None:
    emulator, settings = serving
    code, out, err = await run_cli(
        "send", "sms", "--instance", INSTANCE, "--command-id", "sms-cli-1", "--config-id", "1",
        "--phone", "13900000077", "--param", "code=1234", "--metadata", "crm=42",
        "--wait", "--timeout", "60",
        env=env(settings),
    )  # fmt: skip
    assert (code, err) == (0, ""), out
    lines = out.splitlines()
    assert lines[0] == f"sent sms command sms-cli-1 to {settings.topics.name('commands_sms')}"
    assert " result sms-cli-1 " in lines[1]
    assert " sms succeeded SendPredefinedShortMessage " in lines[1]
    result = json.loads("\n".join(lines[2:]))
    assert result["metadata"] == {"crm": "42"}
    sent = [
        sms for sms in await inspect(emulator, "sms") if sms["phone_numbers"] == ["13900000077"]
    ]
    assert [sms["biz_id"] for sms in sent] == [result["biz_id"]]
    assert sent[0]["template_param"] == {"code": "1234"}

    records = await read_to_end(settings.kafka, [settings.topics.name("commands_sms")])
    assert [(r.key, json.loads(r.value or b"")["command_id"]) for r in records] == [
        (b"sms-cli-1", "sms-cli-1")
    ]


async def test_send_refuses_a_bad_command_naming_the_field_and_sends_nothing(
    kafka_settings: KafkaSettings,
) -> None:
    settings = Settings(kafka=kafka_settings)
    code, out, err = await run_cli(
        "send", "dial", "--instance", INSTANCE, "--caller", "0218000000x", "--callee", "139",
        "--answer-mode", "agent",
        env=env(settings),
    )  # fmt: skip
    assert (code, out) == (2, "")
    assert err.startswith("ccc-bridge send: invalid command: ")
    assert "caller: '0218000000x' is not a phone number" in err
    assert "route_point: required when answer_mode is agent" in err
    assert await read_to_end(settings.kafka, [settings.topics.name("commands_dial")]) == []
