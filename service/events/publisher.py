"""Publishing the pollers' and command workers' events to Kafka as CloudEvents, and the
checkpoints that say where each poller resumes. Both ride the service's one producer."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import structlog

from service.cloudevents import Emitted, envelope
from service.kafka.acked import Sink
from service.kafka.consumer import read_to_end
from service.kafka.producer import OutRecord, Producer, partition_for
from service.kafka.settings import KafkaSettings, TopicSettings
from service.metrics import EVENTS_PUBLISHED, EVENTS_TOO_LARGE

log = structlog.get_logger(__name__)


class EventPublisher:
    """Events as CloudEvents JSON, keyed so per-agent / per-call order holds.

    With `skip_too_large` (the pollers' and backfill's), an event larger than Kafka takes
    (kafka.max_record_bytes; CCC decides how long its values are) is left out, logged as
    event_too_large and counted, and the rest go on: no retry would ever fit it, and a
    stream stopped by it would stop again at each restart. Without it (command results,
    which the worker cuts down to fit) the whole call raises RecordTooLargeError."""

    def __init__(
        self,
        producer: Sink,
        topics: TopicSettings,
        region: str,
        *,
        skip_too_large: bool = False,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._topic_names: dict[str, str] = {}
        self._region = region
        self._skip_too_large = skip_too_large

    def record(self, event: Emitted) -> OutRecord:
        cloud_event = envelope(event.data, event_id=event.id, region=self._region, time=event.time)
        topic = self._topic_names.get(event.data.topic)
        if topic is None:
            topic = self._topic_names[event.data.topic] = self._topics.name(event.data.topic)
        return OutRecord(topic, event.data.key().encode(), cloud_event.model_dump_json().encode())

    async def publish(self, events: Sequence[Emitted]) -> None:
        pairs = [(event, self.record(event)) for event in events]
        if self._skip_too_large:
            pairs = [(event, record) for event, record in pairs if self._fits(event, record)]
        await self._producer.send_all([record for _, record in pairs])
        for (event_type, instance), count in Counter(
            (event.data.event_type, event.data.instance_id or "-") for event, _ in pairs
        ).items():
            EVENTS_PUBLISHED.labels(event_type, instance).inc(count)

    def _fits(self, event: Emitted, record: OutRecord) -> bool:
        room = self._producer.room(record.key)
        if len(record.value) <= room:
            return True
        instance = event.data.instance_id or "-"
        EVENTS_TOO_LARGE.labels(event.data.event_type, instance).inc()
        log.error(
            "event_too_large",
            event_id=event.id,
            type=event.data.event_type,
            ccc_instance=instance,
            bytes=len(record.value),
            room=room,
        )
        return False


class CheckpointStore:
    """Checkpoints in a compacted topic, keyed `{instance}:{stream}`; the latest one wins.

    Those of an instance are read when this process starts polling it, at start or when a
    rebalance hands it over from another replica, which moved them meanwhile. Only the
    partitions holding the keys are read (the topic holds one live record per key, and
    brokers that do not compact, like the embedded one, only make that read longer).
    """

    def __init__(self, producer: Producer, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self._producer = producer
        self._kafka = kafka
        self._topic = topics.name("checkpoints")
        self._latest: dict[str, dict[str, Any]] = {}
        self._written_s: dict[str, float] = {}  # when each was written, on the writer's clock

    def get(self, key: str) -> Mapping[str, Any] | None:
        return self._latest.get(key)

    def age_s(self, key: str) -> float:
        """Seconds since the checkpoint of `key` was written (0 if there is none)."""
        written = self._written_s.get(key)
        return 0.0 if written is None else max(0.0, time.time() - written)

    async def save(self, key: str, value: Mapping[str, Any]) -> None:
        payload = json.dumps(value, separators=(",", ":")).encode()
        await self._producer.send_all([OutRecord(self._topic, key.encode(), payload)])
        self._latest[key] = dict(value)
        self._written_s[key] = time.time()

    async def load(self, keys: Collection[str]) -> None:
        """The latest checkpoint of each of `keys` as Kafka has it now (KafkaError if it
        cannot be read)."""
        wanted = {key.encode() for key in keys}
        if not wanted:
            return
        partitions = await self._producer.partitions_for(self._topic)
        holding = {partition_for(key, partitions) for key in wanted}
        found: dict[str, dict[str, Any]] = {}
        written: dict[str, float] = {}
        for record in await read_to_end(self._kafka, [self._topic], holding):
            if record.key in wanted and record.value is not None:
                key = record.key.decode()
                try:
                    found[key] = json.loads(record.value)  # later ones win
                except (ValueError, RecursionError):
                    # Not written by this service: the one before it stands.
                    log.warning("checkpoint_unreadable", key=key, offset=record.offset)
                    continue
                if record.timestamp_ms is not None:
                    # The producer's CreateTime: a checkpoint's age says how long CCC's clock
                    # may have gone unwatched (service/events/tracking.py rewound).
                    written[key] = record.timestamp_ms / 1000
        for key in keys:  # what Kafka lacks is not kept either: it is the truth
            self._latest.pop(key, None)
            self._written_s.pop(key, None)
        self._latest |= found
        self._written_s |= written
