"""What every package publishes: CloudEvents 1.0 envelopes around typed `data`, their
deterministic ids, and the port a publisher implements. The event data classes themselves
live with their producers (service/events/models.py, service/commands/models.py).

Outbound models forbid unknown fields, so a typo is a bug found in tests, not a field a
consumer silently misses. Field names are snake_case; times are RFC 3339 UTC.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Generic, Literal, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    SerializeAsAny,
)

CONTENT_TYPE = "application/cloudevents+json"
# Namespace of every event id: uuid5(ID_NAMESPACE, the fact's canonical text).
ID_NAMESPACE = uuid.UUID("5a1f3b0e-2c47-4c55-9a0e-cc0b71d9e000")


_NAMESPACE_BYTES = ID_NAMESPACE.bytes


def event_id(*parts: object) -> str:
    """A deterministic id: the same CCC fact gives the same id on any replica, any time.

    It is `str(uuid.uuid5(ID_NAMESPACE, "|".join(parts)))` (RFC 4122 section 4.3, a test
    holds the two equal), computed without building a UUID object: half the cost, and ids
    are made once per event (bench/events.py).
    """
    name = "|".join(map(str, parts)).encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    hex_id = digest.hex()
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def _to_utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


# RFC 3339 with a Z, whatever zone a datetime was built in.
UtcTime = Annotated[AwareDatetime, PlainSerializer(_to_utc, return_type=datetime, when_used="json")]


def from_ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


def capped(limit: int) -> AfterValidator:
    """Text cut to `limit` characters, saying how many went: what is published stays within a
    Kafka record however long an input it quotes."""

    def cut(text: str) -> str:
        if len(text) <= limit:
            return text
        return f"{text[:limit]}... [{len(text) - limit} characters cut]"

    return AfterValidator(cut)


class Outbound(BaseModel):
    """Anything we publish: an unknown field is a bug to catch here, not one to ship."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EventData(Outbound):
    """Base of every event's `data`; subclasses set the CloudEvents type and schema version."""

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    topic: ClassVar[str]  # by its TopicSettings name
    subject_field: ClassVar[str]  # what the event is about: the CloudEvents subject

    instance_id: str

    def subject(self) -> str:
        return str(getattr(self, self.subject_field))

    def key(self) -> str:
        """The Kafka key, so per-agent / per-call / per-group order holds."""
        return f"{self.instance_id}:{self.subject()}"


def dataschema(data_type: type[EventData]) -> str:
    return f"urn:ccc-bridge:schema:{data_type.event_type}:v{data_type.schema_version}"


DataT = TypeVar("DataT", bound=EventData)


class CloudEvent(Outbound, Generic[DataT]):
    """A CloudEvents 1.0 structured-mode envelope."""

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str  # ccc://{regionId}/{instanceId}
    type: str
    subject: str
    time: UtcTime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    data: SerializeAsAny[DataT]


# Held here: pydantic caches parametrised generics weakly, and rebuilding this class for
# each event cost more than all the rest of the pipeline (bench/events.py).
AnyCloudEvent = CloudEvent[EventData]


def envelope(
    data: EventData, *, event_id: str, region: str, time: datetime
) -> CloudEvent[EventData]:
    # Built only from `data`, already validated: validating again would cost a fifth of the
    # pipeline's time per event (bench/events.py) and could not fail.
    return AnyCloudEvent.model_construct(
        specversion="1.0",  # given, not defaulted: resolving defaults costs more than the rest
        id=event_id,
        source=f"ccc://{region}/{data.instance_id or '-'}",  # '-': a command without one
        type=data.event_type,
        subject=data.subject(),
        time=time,
        datacontenttype="application/json",
        dataschema=dataschema(type(data)),
        data=data,
    )


@dataclass(frozen=True, slots=True)
class Emitted:
    """An event ready to publish: its id, its time and its data."""

    id: str
    time: datetime
    data: EventData


class Publisher(Protocol):
    """Where pollers and command workers hand their events (service/events/publisher.py)."""

    async def publish(self, events: Sequence[Emitted]) -> None: ...
