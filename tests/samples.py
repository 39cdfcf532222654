"""One realistic event of every type, enveloped as the publisher sends them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from service.cloudevents import CloudEvent, EventData, envelope, event_id
from service.commands.models import CommandResult, CommandSource
from service.events.models import (
    AgentStateChanged,
    AgentStateLogged,
    CallAgent,
    CallEventData,
    CallRecordData,
    SkillGroupRef,
    SkillGroupState,
)

INSTANCE = "ccc-demo"
REGION = "cn-shanghai"
AT = datetime(2026, 11, 24, 12, 0, 1, tzinfo=UTC)
EARLIER = datetime(2026, 11, 24, 11, 58, 2, tzinfo=UTC)


def agent_changed(*, snapshot: bool = False) -> AgentStateChanged:
    return AgentStateChanged(
        instance_id=INSTANCE,
        agent_id="2233445566",
        login_name="agent003",
        agent_name="Wei Wang",
        state="Talking" if not snapshot else "Ready",
        normalized_state="talking" if not snapshot else "ready",
        previous_state=None if snapshot else "Ready",
        state_since=EARLIER,
        observed_at=AT,
        snapshot=snapshot,
        skill_group_ids=["sg-sales"],
    )


def agent_logged() -> AgentStateLogged:
    return AgentStateLogged(
        instance_id=INSTANCE,
        agent_id="2233445566",
        state="Talking",
        normalized_state="talking",
        state_code="TALKING",
        state_time=EARLIER,
        contact_id="1000000012",
        connect_id=None,
        counter_party="13800000000",
        skill_group_ids=["sg-sales"],
    )


def call_record() -> CallRecordData:
    return CallRecordData(
        instance_id=INSTANCE,
        contact_id="1000000012",
        contact_type="Inbound",
        contact_disposition="Success",
        calling_number="13800000000",
        called_number="02180000000",
        start_time=EARLIER,
        duration_s=94,
        agents=[CallAgent(agent_id="2233445566", satisfaction=None, feedback=None)],
        agent_names=["Wei Wang"],
        skill_groups=[SkillGroupRef(skill_group_id="sg-sales", skill_group_name="Sales")],
        satisfaction=None,
        satisfaction_desc=None,
        recordings=[],
    )


def call_event() -> CallEventData:
    return CallEventData(
        instance_id=INSTANCE,
        contact_id="1000000012",
        seq=3,
        event="Talking",
        status="Connected",
        time="2026-11-24 20:00:01",
        agent_name="Wei Wang",
        skill_group="Sales",
        call_mode="Inbound",
        duration_s=12,
    )


def skill_group() -> SkillGroupState:
    return SkillGroupState(
        instance_id=INSTANCE,
        skill_group_id="sg-sales",
        skill_group_name="Sales",
        logged_in_agents=10,
        ready_agents=3,
        talking_agents=5,
        working_agents=1,
        breaking_agents=1,
        waiting_calls=1,
        longest_call_s=40,
        observed_at=AT,
    )


def command_result(**changes: Any) -> CommandResult:
    fields: dict[str, Any] = {
        "instance_id": INSTANCE,
        "command_id": "c-1",
        "kind": "dial",
        "status": "succeeded",
        "action": "DialEx",
        "request_id": "REQ-1",
        "task_id": "task-1",
        "biz_id": None,
        "error": None,
        "attempts": 1,
        "received_at": AT,
        "completed_at": AT,
        "latency_ms": 4.5,
        "metadata": {"crm": "42"},
        "source": CommandSource(topic="ccc.commands.dial", partition=0, offset=7),
    }
    return CommandResult(**(fields | changes))


def enveloped(data: EventData) -> CloudEvent[EventData]:
    return envelope(data, event_id=event_id(data.event_type, data.key()), region=REGION, time=AT)


def every_type() -> list[CloudEvent[EventData]]:
    """One event of each type in EVENT_TYPES, in that order."""
    return [
        enveloped(data)
        for data in (agent_changed(), agent_logged(), call_record(), call_event(), skill_group())
    ]
