"""The pollers' publisher: an event larger than Kafka takes is left out, told and counted,
and the rest go on; the command worker's still hears of it (it cuts a result to fit)."""

from __future__ import annotations

import json

import pytest

from service.cloudevents import Emitted
from service.events.publisher import EventPublisher
from service.kafka.producer import RecordTooLargeError
from service.kafka.settings import TopicSettings
from service.metrics import EVENTS_TOO_LARGE
from tests.samples import AT, INSTANCE, REGION, call_record
from tests.unit.test_dead_letters import FakeSink

ROOM = 4000


def events() -> list[Emitted]:
    """A call record, one whose agent names run to 10 KB (CCC sets their length), another."""
    huge = call_record().model_copy(update={"agent_names": ["x" * 10_000]})
    return [
        Emitted("small-1", AT, call_record()),
        Emitted("huge", AT, huge),
        Emitted("small-2", AT, call_record()),
    ]


def sink() -> FakeSink:
    """Refuses what is over its room, as the producer does before sending."""
    return FakeSink(room=ROOM, broker_limit=ROOM)


async def test_an_event_too_large_is_left_out_and_the_rest_are_published() -> None:
    published = sink()
    too_large = EVENTS_TOO_LARGE.labels("com.aliyun.ccc.call.record", INSTANCE)
    before = too_large._value.get()
    publisher = EventPublisher(published, TopicSettings(), REGION, skip_too_large=True)
    await publisher.publish(events())
    ids = [json.loads(record.value)["id"] for record in published.sent]
    assert ids == ["small-1", "small-2"]
    assert too_large._value.get() == before + 1


async def test_without_skipping_the_caller_hears_of_it() -> None:
    publisher = EventPublisher(sink(), TopicSettings(), REGION)
    with pytest.raises(RecordTooLargeError):
        await publisher.publish(events())
