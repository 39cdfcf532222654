"""Valid parameters for any catalogue action, taken from a simulation's own state."""

from __future__ import annotations

from typing import Any

from service.ccc.catalog import ParamSpec, load_catalog
from service.emulator.model import wall_text
from service.emulator.sim import Simulation

CATALOG = load_catalog()
HOUR_MS = 3_600_000


def first_user(sim: Simulation, instance: str) -> dict[str, Any]:
    users = sim.handle("ListUsers", {"InstanceId": instance, "PageNumber": 1, "PageSize": 1})
    user: dict[str, Any] = users["Users"]["List"]["User"][0]
    return user


def valid_params(sim: Simulation, action: str, *, instance: str) -> dict[str, Any]:
    """Required parameters only, with values taken from the simulation's own state."""
    user = first_user(sim, instance)
    contact_id = next(c["contact_id"] for c in sim.call_history() if c["instance_id"] == instance)
    now = sim.now
    values: dict[str, Any] = {
        "InstanceId": instance,
        "UserId": user["UserId"],
        "RamId": user["RamId"],
        "RamIdList": user["RamId"],
        "Extension": sim.handle("ListRealTimeAgent", {"InstanceId": instance})["Data"]["User"][0][
            "Dn"
        ],
        "UserRamId": "1234567890123456",
        "SkillGroupId": "skg-1",
        "RoleId": f"Agent@{instance}",
        "ContactId": contact_id,
        "Acid": contact_id,
        "PageNumber": 1,
        "PageSize": 10,
        "StartTime": now - HOUR_MS // 2,
        "EndTime": now,
        "StopTime": now,
        "PhoneNumber": "13900000001",
        "PhoneNumbers": "13900000000",
        "Phone": "13900000002",
        "CandidateNumber": "02106000001",
        "RoutPoint": "flow-1",
        "AnswerMode": 0,
        "ConfigId": 1,
        "Scenario": 1,
        "Usage": "Bidirection",
        "PhoneNumberId": "pn-1",
        "OutboundPhoneNumberId": "pn-1",
        "ContactFlowId": "flow-1",
        "ContactFlowVersionId": "flowver-1",
        "OperationType": 1,
        "ContactType": 0,
        "LoginName": "tester",
        "DisplayName": "Tester",
        "Email": "tester@example.com",
        "Criteria": "agent",
        "Type": "MAIN_FLOW",
        "StartDate": "2026-09-21",
        "EndDate": "2026-09-21",
        "IntervalType": "Day",
        "Year": 2026,
        "Month": 9,
        "OutboundOnly": False,
        "Count": 1,
    }
    return {
        p.name: param_value(p, values.get(p.name)) for p in CATALOG[action].params if p.required
    }


def param_value(param: ParamSpec, value: Any) -> Any:
    kind = param.item_type
    if value is None:
        value = {"string": "13900000000", "boolean": False}.get(kind, 1)
    elif kind == "string" and param.name in {"StartTime", "EndTime"}:
        value = wall_text(int(value))  # report actions take text times
    else:
        value = str(value) if kind == "string" else int(value)
    return [value] if param.repeat_list else value
