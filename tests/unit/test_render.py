"""render: one readable line per CloudEvent, by type, in local time; never an exception."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.cloudevents import EventData
from service.commands.models import CommandError
from service.events.models import EVENT_TYPES
from service.render import render
from tests import samples


@pytest.fixture(autouse=True)
def shanghai_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC+8, so a line in UTC would show."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def line(data: EventData) -> str:
    return render(samples.enveloped(data).model_dump(mode="json"))


def test_state_change_names_the_agent_by_login_and_both_states() -> None:
    assert line(samples.agent_changed()) == "20:00:01 ccc-demo agent  agent003   Ready -> Talking"


def test_snapshot_says_the_state_and_since_when() -> None:
    assert (
        line(samples.agent_changed(snapshot=True))
        == "20:00:01 ccc-demo agent  agent003   is Ready (since 19:58:02)"
    )


def test_state_log_entry() -> None:
    assert (
        line(samples.agent_logged())
        == "20:00:01 ccc-demo log    2233445566 Talking at 19:58:02 (contact 1000000012)"
    )


def test_call_record() -> None:
    assert line(samples.call_record()) == (
        "20:00:01 ccc-demo call   1000000012 Inbound Success 94s 13800000000 -> 02180000000 "
        "agents Wei Wang"
    )


def test_call_record_leaves_out_what_is_unknown() -> None:
    record = samples.call_record().model_copy(
        update={"contact_disposition": None, "duration_s": None, "agent_names": []}
    )
    assert line(record) == "20:00:01 ccc-demo call   1000000012 Inbound 13800000000 -> 02180000000"


def test_call_event() -> None:
    assert (
        line(samples.call_event())
        == "20:00:01 ccc-demo event  1000000012 #3 Talking Connected agent Wei Wang group Sales"
    )


def test_skill_group() -> None:
    assert line(samples.skill_group()) == (
        "20:00:01 ccc-demo group  Sales      ready 3 talking 5 working 1 break 1 waiting 1 "
        "(logged in 10)"
    )


def test_command_result_names_the_command_status_and_ids() -> None:
    assert line(samples.command_result()) == (
        "20:00:01 ccc-demo result c-1        dial succeeded DialEx task-1"
    )


def test_failed_and_duplicate_results_say_why() -> None:
    failed = samples.command_result(
        status="failed",
        task_id=None,
        error=CommandError(code="NotExists.SkillGroupId", message="no such group"),
    )
    assert line(failed).endswith("dial failed DialEx NotExists.SkillGroupId: no such group")
    original = samples.command_result().outcome()
    duplicate = samples.command_result(
        status="duplicate", action=None, request_id=None, task_id=None, original=original
    )
    assert line(duplicate).endswith("dial duplicate (original succeeded) task-1")


def test_every_event_type_has_its_own_line() -> None:
    kinds = {line(event.data).split()[2] for event in samples.every_type()}
    assert len(kinds) == len(EVENT_TYPES)
    assert "?" not in kinds


def test_unknown_type_shows_type_and_subject() -> None:
    event = {
        "type": "com.example.other",
        "source": "ccc://cn-shanghai/ccc-x",
        "subject": "thing-1",
        "time": "2026-11-24T04:00:00Z",
        "data": {},
    }
    assert render(event) == "12:00:00 ccc-x ?      thing-1    com.example.other"


@pytest.mark.parametrize(
    "data",
    [
        {"instance_id": "ccc-demo"},  # the type's fields are missing
        {"instance_id": "ccc-demo", "agent_id": "2233445566"},  # no state
        "not an object",
    ],
)
def test_malformed_event_of_a_known_type_falls_back(data: Any) -> None:
    event = samples.enveloped(samples.agent_changed()).model_dump(mode="json")
    rendered = render({**event, "data": data})
    assert rendered.endswith(f"?      {event['subject']} {event['type']}")


def test_skill_group_with_counts_that_are_not_numbers_falls_back() -> None:
    event = samples.enveloped(samples.skill_group()).model_dump(mode="json")
    event["data"]["ready_agents"] = "many"
    assert render(event).endswith(f"?      sg-sales   {event['type']}")


def test_missing_or_odd_time_does_not_raise() -> None:
    assert render({"type": "x", "time": "yesterday"}).startswith("yesterday ? ")
    assert render({}).startswith("--:--:-- ? ")
