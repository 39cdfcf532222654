"""Events out, end to end: the emulator over HTTP, the service, the real embedded broker."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from functools import partial
from typing import Any

from service.app import run_service
from service.broker import EmbeddedBroker
from service.cloudevents import CONTENT_TYPE
from service.emulator.server import EmulatorServer
from service.events.models import EVENT_TYPES
from service.settings import (
    Settings,
)
from tests.inspection import eventually
from tests.integration.events import (
    Message,
    by_type,
    conflicting_ids,
    ms,
)
from tests.integration.pipeline import INSTANCE, calls_at_least, complete, service_settings


async def test_every_transition_and_call_record_reaches_kafka_once_per_id(
    broker: EmbeddedBroker, emulator_busy: EmulatorServer
) -> None:
    settings = service_settings(emulator_busy, broker.bootstrap_servers)
    stop = asyncio.Event()
    service = asyncio.create_task(run_service(settings, stop))
    try:
        await eventually(partial(calls_at_least, emulator_busy, 100), deadline_s=90)
        until = emulator_busy.clock.now_ms() - 3000
        messages = await complete(emulator_busy, settings, until)
    finally:
        stop.set()
        await service
    assert len(emulator_busy.sim.agent_state_history()) > 300
    assert not conflicting_ids(messages)
    _check_envelopes(messages, settings)
    _check_order(messages)
    changed = by_type(messages, "com.aliyun.ccc.agent.state.changed")
    assert any(m.event["data"]["snapshot"] for m in changed)
    assert any(not m.event["data"]["snapshot"] for m in changed)
    assert by_type(messages, "com.aliyun.ccc.skillgroup.state")
    assert by_type(messages, "com.aliyun.ccc.call.event")


def _check_envelopes(messages: list[Message], settings: Settings) -> None:
    types = {t.event_type: t for t in EVENT_TYPES}
    for m in messages:
        event = m.event
        data_type = types[event["type"]]
        assert m.headers["content-type"] == CONTENT_TYPE.encode()
        assert m.topic == settings.topics.name(data_type.topic)
        assert event["specversion"] == "1.0"
        assert event["source"] == f"ccc://cn-shanghai/{INSTANCE}"
        assert event["datacontenttype"] == "application/json"
        assert event["time"].endswith("Z")
        assert event["subject"] == event["data"][data_type.subject_field]
        assert m.key == f"{INSTANCE}:{event['subject']}"
        data_type.model_validate(event["data"])  # the published data is the typed model


def _check_order(messages: list[Message]) -> None:
    """Per key, state log entries in time order; per call, its steps in order, then its record."""
    per_key: dict[tuple[str, int], list[Message]] = defaultdict(list)
    for m in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
        per_key[(m.key, m.partition)].append(m)
    for stream in per_key.values():
        logged = [
            ms(m.event["data"]["state_time"]) for m in stream if m.event["type"].endswith("logged")
        ]
        assert logged == sorted(logged)
        steps: list[Any] = [
            m.event for m in stream if m.event["type"].startswith("com.aliyun.ccc.call")
        ]
        if steps:
            first_record = next(i for i, e in enumerate(steps) if e["type"].endswith("record"))
            seqs = [e["data"]["seq"] for e in steps[:first_record]]
            assert seqs == list(range(1, len(seqs) + 1))
