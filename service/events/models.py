"""The events the pollers publish: one typed `data` class per CloudEvents type, each
versioned by its schema_version (the envelope is service/cloudevents.py's)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from service.cloudevents import EventData, Outbound, UtcTime

# What consumers can switch on, whatever CCC's label: the six states ListAgentStates filters
# on (and their Chinese labels, FACTS.md section 9), a logout, and `other` for the rest
# (conference, help, and labels nobody here has seen).
NormalizedState = Literal[
    "ready", "break", "acw", "dialing", "ringing", "talking", "offline", "other"
]


class AgentStateChanged(EventData):
    """An agent's real-time state changed (from ListAgentStates), or, with `snapshot`, the
    state each agent was in when polling started: `snapshot` events are observations, so
    their id includes `observed_at`; change events are facts and their id does not. A
    logout (`state` "Offline") is published only on evidence of one: a check-out in
    ListAgentEvents."""

    event_type = "com.aliyun.ccc.agent.state.changed"
    topic = "agent_states"
    subject_field = "agent_id"
    schema_version = 2  # v2: normalized_state; previous_state None when unknown

    agent_id: str
    login_name: str | None
    agent_name: str | None
    state: str  # CCC's own value, verbatim
    normalized_state: NormalizedState
    # None on a snapshot, and for an agent first seen since the service started (back from a
    # quiet spell, or logged in unseen); "Offline" for one seen to log out, now back.
    previous_state: str | None
    state_since: UtcTime
    observed_at: UtcTime
    snapshot: bool = False
    skill_group_ids: list[str] = Field(default_factory=list)


class AgentStateLogged(EventData):
    """One entry of ListAgentStateLogs: exact times, every transition."""

    event_type = "com.aliyun.ccc.agent.state.logged"
    topic = "agent_states"
    subject_field = "agent_id"
    schema_version = 2  # v2: normalized_state

    agent_id: str
    state: str  # CCC's own value, verbatim
    normalized_state: NormalizedState
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
