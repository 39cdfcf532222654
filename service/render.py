"""One readable line per CloudEvent, so a person sees at a glance what the contact centre is
doing: `HH:MM:SS instance kind subject what`, times in local time. Pure: a parsed event in,
a line out; a malformed event still gets the generic line, never an exception."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from service.commands.models import CommandResult
from service.events.models import (
    AgentStateChanged,
    AgentStateLogged,
    CallEventData,
    CallRecordData,
    SkillGroupState,
)

Data = Mapping[str, Any]


def render(event: Mapping[str, Any]) -> str:
    renderer = _RENDERERS.get(str(event.get("type")))
    data = event.get("data")
    if renderer is not None and isinstance(data, Mapping):
        try:
            kind, subject, text = renderer(data)
        except (KeyError, TypeError, ValueError):
            pass  # not the shape its type promises: shown generically below
        else:
            return _line(event, kind, str(subject), text)  # str: a JSON value may be any type
    return _line(event, "?", str(event.get("subject", "")), str(event.get("type", "")))


def _line(event: Mapping[str, Any], kind: str, subject: str, text: str) -> str:
    return f"{_clock(event.get('time'))} {_instance(event)} {kind:<6} {subject:<10} {text}"


def _instance(event: Mapping[str, Any]) -> str:
    data = event.get("data")
    if isinstance(data, Mapping) and data.get("instance_id"):
        return str(data["instance_id"])
    return str(event.get("source", "?")).rsplit("/", 1)[-1]  # ccc://{region}/{instance}


def _clock(value: object) -> str:
    """HH:MM:SS in local time of an RFC 3339 time; anything else as it came."""
    if not isinstance(value, str):
        return "--:--:--"
    try:
        return datetime.fromisoformat(value).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return value


def _words(*parts: object) -> str:
    return " ".join(str(part) for part in parts if part not in (None, "", []))


def _agent_changed(data: Data) -> tuple[str, str, str]:
    who = data.get("login_name") or data["agent_id"]
    if data.get("snapshot"):
        return "agent", who, f"is {data['state']} (since {_clock(data['state_since'])})"
    return "agent", who, f"{data.get('previous_state') or '?'} -> {data['state']}"


def _agent_logged(data: Data) -> tuple[str, str, str]:
    contact = f"(contact {data['contact_id']})" if data.get("contact_id") else None
    return "log", data["agent_id"], _words(data["state"], "at", _clock(data["state_time"]), contact)


def _call_record(data: Data) -> tuple[str, str, str]:
    duration = None if data.get("duration_s") is None else f"{data['duration_s']}s"
    parties = f"{data.get('calling_number') or '?'} -> {data.get('called_number') or '?'}"
    names = data.get("agent_names") or []
    agents = f"agents {', '.join(names)}" if names else None
    text = _words(
        data.get("contact_type"), data.get("contact_disposition"), duration, parties, agents
    )
    return "call", data["contact_id"], text


def _call_event(data: Data) -> tuple[str, str, str]:
    agent = f"agent {data['agent_name']}" if data.get("agent_name") else None
    group = f"group {data['skill_group']}" if data.get("skill_group") else None
    text = _words(f"#{data['seq']}", data.get("event"), data.get("status"), agent, group)
    return "event", data["contact_id"], text


def _skill_group(data: Data) -> tuple[str, str, str]:
    counts = " ".join(
        f"{label} {int(data[field])}"
        for label, field in (
            ("ready", "ready_agents"),
            ("talking", "talking_agents"),
            ("working", "working_agents"),
            ("break", "breaking_agents"),
            ("waiting", "waiting_calls"),
        )
    )
    text = f"{counts} (logged in {int(data['logged_in_agents'])})"
    return "group", data.get("skill_group_name") or data["skill_group_id"], text


def _command_result(data: Data) -> tuple[str, str, str]:
    error = data.get("error") or {}
    original = data.get("original") or {}
    text = _words(
        data["kind"],
        data["status"],
        f"(original {original['status']})" if original else None,
        data.get("action"),
        data.get("task_id")
        or data.get("biz_id")
        or original.get("task_id")
        or original.get("biz_id"),
        f"{error.get('code')}: {error.get('message')}" if error else None,
    )
    return "result", data["command_id"], text


_RENDERERS: dict[str, Callable[[Data], tuple[str, str, str]]] = {
    CommandResult.event_type: _command_result,
    AgentStateChanged.event_type: _agent_changed,
    AgentStateLogged.event_type: _agent_logged,
    CallRecordData.event_type: _call_record,
    CallEventData.event_type: _call_event,
    SkillGroupState.event_type: _skill_group,
}
