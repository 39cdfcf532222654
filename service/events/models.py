"""The events ccc-bridge publishes: CloudEvents 1.0 envelopes with versioned, typed `data`.

Outbound models forbid unknown fields, so a typo is a bug found in tests, not a field a
consumer silently misses. Field names are snake_case; times are RFC 3339 UTC.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
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


class AgentStateChanged(EventData):
    """An agent's real-time state changed (from ListAgentStates), or, with `snapshot`, the
    state each agent was in when polling started: `snapshot` events are observations, so
    their id includes `observed_at`; change events are facts and their id does not."""

    event_type = "com.aliyun.ccc.agent.state.changed"
    topic = "agent_states"
    subject_field = "agent_id"

    agent_id: str
    login_name: str | None
    agent_name: str | None
    state: str
    previous_state: str | None  # None on a snapshot, and "Offline" for an agent that logged in
    state_since: UtcTime
    observed_at: UtcTime
    snapshot: bool = False
    skill_group_ids: list[str] = Field(default_factory=list)


class AgentStateLogged(EventData):
    """One entry of ListAgentStateLogs: exact times, every transition."""

    event_type = "com.aliyun.ccc.agent.state.logged"
    topic = "agent_states"
    subject_field = "agent_id"

    agent_id: str
    state: str
    state_code: str | None
    state_time: UtcTime
    contact_id: str | None
    connect_id: str | None
    counter_party: str | None
    skill_group_ids: list[str]


class CallAgent(Outbound):
    agent_id: str
    satisfaction: str | None
    feedback: str | None


class SkillGroupRef(Outbound):
    skill_group_id: str
    skill_group_name: str | None


class Recording(Outbound):
    file_name: str
    agent_id: str | None
    agent_name: str | None
    start_time: UtcTime | None
    duration_s: int | None
    file_description: str | None


class CallRecordData(EventData):
    """A call detail record (ListCallDetailRecords), published once it is queryable."""

    event_type = "com.aliyun.ccc.call.record"
    topic = "calls"
    subject_field = "contact_id"

    contact_id: str
    contact_type: str | None
    contact_disposition: str | None
    calling_number: str | None
    called_number: str | None
    start_time: UtcTime
    duration_s: int | None
    agents: list[CallAgent]
    agent_names: list[str]
    skill_groups: list[SkillGroupRef]
    satisfaction: int | None
    satisfaction_desc: str | None
    recordings: list[Recording]


class CallEventData(EventData):
    """One step of a call (ListCallEventDetailByContactId), `seq` counting from 1."""

    event_type = "com.aliyun.ccc.call.event"
    topic = "calls"
    subject_field = "contact_id"

    contact_id: str
    seq: int
    event: str | None
    status: str | None
    time: str | None  # CCC gives this one as text in its own format; kept verbatim
    agent_name: str | None
    skill_group: str | None
    call_mode: str | None
    duration_s: int | None


class SkillGroupState(EventData):
    """A real-time snapshot of one skill group (ListSkillGroupStates)."""

    event_type = "com.aliyun.ccc.skillgroup.state"
    topic = "skillgroups"
    subject_field = "skill_group_id"

    skill_group_id: str
    skill_group_name: str | None
    logged_in_agents: int
    ready_agents: int
    talking_agents: int
    working_agents: int
    breaking_agents: int
    waiting_calls: int
    longest_call_s: int
    observed_at: UtcTime


EVENT_TYPES: tuple[type[EventData], ...] = (
    AgentStateChanged,
    AgentStateLogged,
    CallRecordData,
    CallEventData,
    SkillGroupState,
)


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
