"""CCC away (issue 14): the service starts and stays ready without it, commands posted
meanwhile wait and run once it answers, and /readyz's body and /metrics say so."""

from __future__ import annotations

import uuid
from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from service.broker import EmbeddedBroker
from service.emulator.server import EmulatorServer
from service.settings import CommandSettings, Settings
from tests.inspection import eventually
from tests.integration.pipeline import BUSY, free_port, in_process, service_settings
from tests.integration.test_ingress import call, call_text, with_ingress


def gauge(text: str, name: str) -> float:
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


async def test_the_service_serves_while_ccc_is_away_and_commands_wait_for_it(
    broker: EmbeddedBroker,
) -> None:
    # Nothing listens on the emulator's port until the test starts it.
    emulator = EmulatorServer(replace(BUSY, port=free_port()))
    settings: Settings = with_ingress(service_settings(emulator, broker.bootstrap_servers))
    settings = settings.model_copy(
        update={"commands": CommandSettings(group_id=f"cmd-{uuid.uuid4().hex[:12]}")}
    )
    command_id = f"away-{uuid.uuid4().hex[:8]}"
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    sms = {"command_id": command_id, "instance_id": BUSY.instances[0], "config_id": 1}
    sms["phone_numbers"] = [phone]

    async def ready_without_ccc() -> bool:
        status, body = await call(settings, "GET", "/readyz")
        return status == 200 and "ccc" in body.get("degraded", {})

    async def status_is(state: str) -> bool:
        status, body = await call(settings, "GET", f"/v1/commands/{command_id}")
        return status == 200 and body["state"] == state

    async with in_process(settings) as (_, service):
        await eventually(ready_without_ccc, deadline_s=30)
        assert gauge((await call_text(settings, "/metrics"))[1], "ccc_bridge_ccc_up") == 0
        status, _ = await call(settings, "POST", "/v1/commands/sms", sms)
        assert status == 202
        await eventually(lambda: status_is("queued"), deadline_s=30)
        assert not service.done()

        async with emulator:
            await eventually(lambda: status_is("done"), deadline_s=60)
            _, answer = await call(settings, "GET", f"/v1/commands/{command_id}")
            assert answer["result"]["status"] == "succeeded"
            assert len([sent for sent in emulator.sim.sms() if phone in str(sent)]) == 1
            _, body = await call(settings, "GET", "/readyz")
            assert "degraded" not in body or "ccc" not in body["degraded"]
            assert gauge((await call_text(settings, "/metrics"))[1], "ccc_bridge_ccc_up") == 1
