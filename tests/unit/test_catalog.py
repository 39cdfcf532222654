"""The action catalogue: packaged copy, typed models, wire encoding both ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from scripts.build_catalog import build, render
from service.ccc.catalog import (
    CccRequest,
    UnknownActionError,
    WireError,
    is_read_only,
    load_catalog,
    snake_case,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "ccc-api" / "actions.json"
PACKAGED = Path(__file__).resolve().parents[2] / "service" / "ccc" / "actions.json"
CATALOG = load_catalog()


def test_packaged_catalogue_is_the_seed_actions_of_the_shared_facts() -> None:
    source = json.loads(SHARED.read_text(encoding="utf-8"))
    seeds = {a["action"] for a in source["actions"] if a["seed"]}
    assert len(seeds) == 89
    assert set(CATALOG.actions) == seeds
    assert PACKAGED.read_text(encoding="utf-8") == render(build(source))


def test_every_action_builds_request_and_response_models() -> None:
    for spec in CATALOG:
        assert spec.request_model.__name__ == f"{spec.name}Request"
        assert spec.response_model.__name__ == f"{spec.name}Response"


@pytest.mark.parametrize(
    ("wire", "snake"),
    [
        ("RealTimeAgentState", "real_time_agent_state"),
        ("HttpStatusCode", "http_status_code"),
        ("TURNServerList", "turn_server_list"),
        ("CallsServiceLevel20", "calls_service_level20"),
    ],
)
def test_snake_case(wire: str, snake: str) -> None:
    assert snake_case(wire) == snake


def test_side_effects_are_not_read_only() -> None:
    effects = {"DialEx", "StartBack2BackCall", "SendPredefinedShortMessage", "LaunchAppraise"}
    effects |= {"LaunchShortMessageAppraise", "CreateUser", "ModifyUser", "RemoveUsers"}
    effects |= {"AddPhoneNumber", "DeleteSkillGroup", "AssignUsers", "PublishContactFlowVersion"}
    effects |= {"ResetUserStatus"}
    assert not any(is_read_only(a) for a in effects)
    assert all(is_read_only(a) for a in ("ListAgentStates", "GetInstance", "FindUsers"))


def test_response_keeps_wrappers_and_gives_plain_list() -> None:
    spec = CATALOG["ListAgentStates"]
    body = {
        "RequestId": "r",
        "Success": True,
        "Data": {
            "TotalCount": 7,
            "PageNumber": 2,
            "PageSize": 5,
            "List": {
                "RealTimeAgentState": [{"AgentId": "1", "State": "Ready", "StateDuration": 9}]
            },
        },
    }
    response = spec.response_model.model_validate(body)
    wrapped = response.data.list.real_time_agent_state
    assert wrapped[0].agent_id == "1"
    assert response.items() == wrapped
    assert response.items()[0].state_duration == "9"  # a string in 2017, whatever arrives
    assert response.page() == (7, 2, 5)


def test_plain_array_list_and_unpaged_action() -> None:
    spec = CATALOG["ListTrunkProviders"]
    response = spec.response_model.model_validate({"TrunkProviders": [{"ProviderName": "p"}]})
    assert [p.provider_name for p in response.items()] == ["p"]
    assert response.page() is None
    assert not spec.paged
    assert CATALOG["ListCallDetailRecords"].paged


def test_request_accepts_snake_and_wire_names_and_refuses_typos() -> None:
    spec = CATALOG["DialEx"]
    by_snake = spec.request(
        {"instance_id": "i", "caller": "1", "callee": "2", "rout_point": "f", "answer_mode": 0}
    )
    by_wire = spec.request(
        {"InstanceId": "i", "Caller": "1", "Callee": "2", "RoutPoint": "f", "AnswerMode": 0}
    )
    assert spec.to_wire(by_snake) == spec.to_wire(by_wire)
    with pytest.raises(ValidationError) as info:
        spec.request({"InstanceId": "i", "Caller": "1", "Callee": "2", "RoutePoint": "f"})
    text = str(info.value)
    assert "RoutePoint" in text
    assert "Extra inputs are not permitted" in text
    assert "RoutPoint" in text
    assert "Field required" in text


def test_request_model_of_another_action_is_refused() -> None:
    other = CATALOG["GetInstance"].request({"InstanceId": "i"})
    with pytest.raises(TypeError, match="not a DialEx request"):
        CATALOG["DialEx"].request(other)


def test_wire_encoding_of_lists_booleans_and_json_strings() -> None:
    sms = CATALOG["SendPredefinedShortMessage"]
    wire = sms.to_wire(
        sms.request(
            {
                "InstanceId": "i",
                "ConfigId": 3,
                "PhoneNumbers": ["13900000000", "13900000001"],
                "TemplateParam": {"name": "张三"},
            }
        )
    )
    assert wire == {
        "InstanceId": "i",
        "ConfigId": "3",
        "PhoneNumbers": "13900000000,13900000001",
        "TemplateParam": '{"name":"张三"}',
    }
    phones = CATALOG["ListPhoneNumbers"]
    assert (
        phones.to_wire(phones.request({"InstanceId": "i", "OutboundOnly": True}))["OutboundOnly"]
        == "true"
    )
    sms_config = CATALOG["GetSmsConfig"]
    assert sms_config.to_wire(sms_config.request({"InstanceId": "i", "Scenario": [1, 3]})) == {
        "InstanceId": "i",
        "Scenario.1": "1",
        "Scenario.2": "3",
    }


def test_from_wire_names_missing_and_malformed_parameters() -> None:
    spec = CATALOG["ListAgentStateLogs"]
    with pytest.raises(WireError) as missing:
        spec.from_wire({"InstanceId": "i", "RamId": "1", "StartTime": "1", "PageNumber": "1"})
    assert missing.value.missing
    assert missing.value.param in {"EndTime", "PageSize"}
    with pytest.raises(WireError) as malformed:
        spec.from_wire(
            {
                "InstanceId": "i",
                "RamId": "x1",
                "StartTime": "1",
                "EndTime": "2",
                "PageNumber": "1",
                "PageSize": "1",
            }
        )
    assert malformed.value.param == "RamId"
    assert "integer" in malformed.value.reason
    assert not malformed.value.missing


def test_from_wire_reads_booleans_in_any_case_and_lists_in_index_order() -> None:
    phones = CATALOG["ListPhoneNumbers"]
    assert phones.from_wire({"InstanceId": "i", "OutboundOnly": "True"})["OutboundOnly"] is True
    assert phones.from_wire({"InstanceId": "i", "OutboundOnly": "FALSE"})["OutboundOnly"] is False
    with pytest.raises(WireError, match="OutboundOnly"):
        phones.from_wire({"InstanceId": "i", "OutboundOnly": "yes"})
    events = CATALOG["ListAgentEvents"]
    parsed = events.from_wire({"InstanceId": "i", "RamId.2": "b", "RamId.1": "a", "RamId.10": "c"})
    assert parsed["RamId"] == ["a", "b", "c"]


def test_unknown_action_names_itself() -> None:
    with pytest.raises(UnknownActionError) as info:
        CATALOG["ListAgentState"]
    assert str(info.value) == "unknown CCC 2017-07-05 action 'ListAgentState'"


_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters=","), max_size=20
)


@given(
    ram_ids=st.lists(_TEXT, min_size=1, max_size=12),
    events=st.lists(_TEXT, max_size=3),
    start=st.integers(min_value=0, max_value=2**53),
)
def test_wire_round_trip(ram_ids: list[str], events: list[str], start: int) -> None:
    spec = CATALOG["ListAgentEvents"]
    values: dict[str, Any] = {"InstanceId": "i", "RamId": ram_ids, "StartTime": start}
    if events:
        values["Event"] = events
    request: CccRequest = spec.request(values)
    assert spec.from_wire(spec.to_wire(request)) == values
