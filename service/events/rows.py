"""The CCC rows the pollers read, as the client's response models give them (built from
service/ccc/actions.json): every scalar may be omitted, so it is `X | None`; numbers declared
"integer" arrive as int, and "string" ones as str even where CCC sends a number. Only what
the pollers read is declared; tests/unit/test_rows.py holds each Protocol to its model.

Read-only properties, so the client's models and the tests' frozen fakes both conform.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class AgentStateRow(Protocol):
    """ListAgentStates: Data.List.RealTimeAgentState[]."""

    @property
    def agent_id(self) -> str | None: ...
    @property
    def login_name(self) -> str | None: ...
    @property
    def agent_name(self) -> str | None: ...
    @property
    def state(self) -> str | None: ...
    @property
    def state_duration(self) -> str | None: ...  # seconds, as text


class AgentEventRow(Protocol):
    """ListAgentEvents: AgentEventList.AgentEvent[]."""

    @property
    def event(self) -> str | None: ...  # a Chinese label, e.g. 签出 check-out
    @property
    def event_time(self) -> int | None: ...  # epoch ms
    @property
    def ram_id(self) -> int | None: ...  # an integer here, though a string elsewhere


class AgentStateLogEntry(Protocol):
    """ListAgentStateLogs: AgentStateLogPage.List[]."""

    @property
    def state(self) -> str | None: ...
    @property
    def state_code(self) -> str | None: ...
    @property
    def state_time(self) -> int | None: ...  # epoch ms
    @property
    def contact_id(self) -> str | None: ...
    @property
    def connect_id(self) -> str | None: ...
    @property
    def counter_party(self) -> str | None: ...
    @property
    def skill_group_ids(self) -> str | None: ...  # comma-separated


class CallDetailAgentRow(Protocol):
    @property
    def agent_id(self) -> str | None: ...
    @property
    def satisfaction(self) -> str | None: ...
    @property
    def feedback(self) -> str | None: ...


class CallDetailAgents(Protocol):
    @property
    def call_detail_agent(self) -> Sequence[CallDetailAgentRow]: ...


class RecordingRow(Protocol):
    @property
    def file_name(self) -> str | None: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def agent_name(self) -> str | None: ...
    @property
    def start_time(self) -> int | None: ...  # epoch ms
    @property
    def duration(self) -> int | None: ...  # seconds
    @property
    def file_description(self) -> str | None: ...


class Recordings(Protocol):
    @property
    def recording(self) -> Sequence[RecordingRow]: ...


class CallDetailRecordRow(Protocol):
    """ListCallDetailRecords: CallDetailRecords.List.CallDetailRecord[]."""

    @property
    def contact_id(self) -> str | None: ...
    @property
    def contact_type(self) -> str | None: ...
    @property
    def contact_disposition(self) -> str | None: ...
    @property
    def calling_number(self) -> str | None: ...
    @property
    def called_number(self) -> str | None: ...
    @property
    def start_time(self) -> int | None: ...  # epoch ms
    @property
    def duration(self) -> int | None: ...  # seconds
    @property
    def agents(self) -> CallDetailAgents | None: ...
    @property
    def agent_names(self) -> str | None: ...  # comma-separated
    @property
    def skill_group_id_list(self) -> str | None: ...  # comma-separated
    @property
    def skill_group_names(self) -> str | None: ...  # comma-separated, in the ids' order
    @property
    def satisfaction(self) -> int | None: ...
    @property
    def satisfaction_desc(self) -> str | None: ...
    @property
    def recordings(self) -> Recordings | None: ...


class CallEventDetailData(Protocol):
    @property
    def skill_group(self) -> str | None: ...


class CallEventRow(Protocol):
    """ListCallEventDetailByContactId: Data.Events.CallEventDetail[]."""

    @property
    def event(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...
    @property
    def time_stamp(self) -> str | None: ...
    @property
    def agent_name(self) -> str | None: ...
    @property
    def call_mode(self) -> str | None: ...
    @property
    def duration(self) -> int | None: ...  # seconds
    @property
    def detail_data(self) -> CallEventDetailData | None: ...


class SkillGroupStateRow(Protocol):
    """ListSkillGroupStates: Data.List.RealTimeSkillGroupState[]."""

    @property
    def skill_group_id(self) -> str | None: ...
    @property
    def skill_group_name(self) -> str | None: ...
    @property
    def logged_in_agents(self) -> int | None: ...
    @property
    def ready_agents(self) -> int | None: ...
    @property
    def talking_agents(self) -> int | None: ...
    @property
    def working_agents(self) -> int | None: ...
    @property
    def breaking_agents(self) -> int | None: ...
    @property
    def waiting_calls(self) -> int | None: ...
    @property
    def longest_call(self) -> int | None: ...  # seconds


class Skill(Protocol):
    @property
    def skill_group_id(self) -> str | None: ...


class SkillLevelRow(Protocol):
    @property
    def skill(self) -> Skill | None: ...


class SkillLevels(Protocol):
    @property
    def skill_level(self) -> Sequence[SkillLevelRow]: ...


class UserRow(Protocol):
    """ListUsers: Users.List.User[]."""

    @property
    def ram_id(self) -> str | None: ...
    @property
    def skill_levels(self) -> SkillLevels | None: ...


def required(value: str | None, field: str) -> str:
    """A field an event cannot go without (an id, a state): a row that lacks it is refused,
    as the event's model refuses it."""
    if value is None:
        raise ValueError(f"a CCC row without {field}")
    return value
