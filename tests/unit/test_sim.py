"""The simulated contact centre, driven by a frozen clock that the tests move by hand."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from service.ccc.catalog import load_catalog
from service.emulator.config import EmulatorConfig, SimClock
from service.emulator.sim import BusinessError, Simulation
from tests.params import HOUR_MS, first_user, valid_params
from tests.shape import assert_shape, shape_errors

CATALOG = load_catalog()
COMMON = {"RequestId", "Success", "Code", "Message", "HttpStatusCode"}
INSTANCE = "ccc-demo"
START_MS = 1_790_000_000_000  # 2026-09-21T14:13:20Z


def frozen_clock() -> SimClock:
    return SimClock(speed=1.0, start_ms=START_MS, monotonic=lambda: 0.0)


def make_sim(
    *, seed: int = 1, agents: int = 10, minutes: float = 10
) -> tuple[Simulation, SimClock]:
    clock = frozen_clock()
    sim = Simulation(EmulatorConfig(instances=(INSTANCE,), agents=agents, seed=seed), clock)
    clock.advance(minutes * 60)
    sim.advance()
    return sim, clock


def ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def business_error(sim: Simulation, action: str, params: dict[str, Any]) -> BusinessError:
    with pytest.raises(BusinessError) as caught:
        sim.handle(action, params)
    return caught.value


# -- shapes


@pytest.mark.parametrize("action", sorted(CATALOG.actions))
def test_every_action_answers_exactly_its_catalogue_shape(action: str) -> None:
    sim, _ = make_sim()
    shape = {k: v for k, v in CATALOG[action].response.items() if k not in COMMON}
    assert_shape(sim.handle(action, valid_params(sim, action, instance=INSTANCE)), shape)


def test_shape_checker_names_the_path_of_every_mismatch() -> None:
    shape = {"Data": {"List": {"Item": [{"Id": "string", "N": "integer", "On": "boolean"}]}}}
    good = {"Data": {"List": {"Item": [{"Id": "a", "N": 1, "On": True}]}}}
    assert shape_errors(good, shape) == []
    bad = {"Data": {"List": {"Item": [{"Id": 1, "N": True, "Extra": 0}]}}}
    assert shape_errors(bad, shape) == [
        "$.Data.List.Item[0].On: missing",
        "$.Data.List.Item[0].Extra: not in the shape",
        "$.Data.List.Item[0].Id: expected string, got int 1",
        "$.Data.List.Item[0].N: expected integer, got bool True",
    ]
    assert shape_errors({"Data": {"List": {"Item": {}}}}, shape) == [
        "$.Data.List.Item: expected a list, got dict"
    ]


def test_synthesised_paged_answers_honour_the_page_asked_for() -> None:
    sim, _ = make_sim()
    params = {"InstanceId": INSTANCE, "PageNumber": 1, "PageSize": 1}
    page = sim.handle("ListIvrTrackingDetail", params)["IvrTrackingDetails"]
    assert (page["PageNumber"], page["PageSize"]) == (1, 1)
    assert len(page["List"]["IvrTrackingDetail"]) == min(1, page["TotalCount"])
    assert sim.handle("ListIvrTrackingDetail", params) == sim.handle(
        "ListIvrTrackingDetail", params
    )


# -- dynamics


def test_same_seed_and_clock_give_the_same_history_and_another_seed_does_not() -> None:
    first, _ = make_sim(seed=5)
    second, _ = make_sim(seed=5)
    other, _ = make_sim(seed=6)
    assert first.agent_state_history() == second.agent_state_history()
    assert first.call_history() == second.call_history()
    assert first.calls() == second.calls()
    assert first.agent_state_history() != other.agent_state_history()


def test_agents_move_through_several_states_over_ten_minutes() -> None:
    sim, _ = make_sim()
    reached = Counter(h["state"] for h in sim.agent_state_history())
    assert {"Ready", "Ringing", "Talking", "ACW", "Break"} <= set(reached)
    assert all(h["previous_state"] != h["state"] for h in sim.agent_state_history())


def test_every_transition_starts_from_the_state_the_agent_was_in() -> None:
    sim, _ = make_sim(minutes=30)
    current: dict[str, str] = {}
    for change in sim.agent_state_history():
        assert change["previous_state"] == current.get(change["agent_id"], "Offline")
        current[change["agent_id"]] = change["state"]
    assert {a["agent_id"]: a["state"] for a in sim.agents()} == current


def test_agent_states_and_their_logs_and_events_agree() -> None:
    sim, _ = make_sim()
    agent = sim.agents()[0]
    now = sim.now
    logs = sim.handle(
        "ListAgentStateLogs",
        {
            "InstanceId": INSTANCE,
            "RamId": int(agent["agent_id"]),
            "StartTime": now - HOUR_MS,
            "EndTime": now + 1,
            "PageNumber": 1,
            "PageSize": 100,
        },
    )["AgentStateLogPage"]
    history = [h for h in sim.agent_state_history() if h["agent_id"] == agent["agent_id"]]
    assert [e["State"] for e in logs["List"]] == [h["state"] for h in history]
    assert [e["StateTime"] for e in logs["List"]] == [ms(h["at"]) for h in history]
    assert logs["TotalCount"] == len(history)
    events = sim.handle("ListAgentEvents", {"InstanceId": INSTANCE, "RamId": [agent["agent_id"]]})
    labels = [e["Event"] for e in events["AgentEventList"]["AgentEvent"]]
    assert labels[:2] == ["签入", "等待"]  # the first login: check-in, then ready
    assert labels.count("签入") == sum(1 for h in history if h["previous_state"] == "Offline")


def test_a_call_record_is_queryable_only_from_its_available_at() -> None:
    sim, clock = make_sim(minutes=1)
    sim.handle(
        "StartBack2BackCall",
        {"InstanceId": INSTANCE, "Caller": "13900000000", "Callee": "13900000001"},
    )
    contact_id = sim.calls()[-1]["contact_id"]
    query = {
        "InstanceId": INSTANCE,
        "ContactId": contact_id,
        "StartTime": START_MS,
        "PageNumber": 1,
        "PageSize": 10,
    }
    seen_at = None
    for _ in range(400):
        clock.advance(1)
        listed = sim.handle("ListCallDetailRecords", query)["CallDetailRecords"]["List"]
        in_history = [c for c in sim.call_history() if c["contact_id"] == contact_id]
        assert bool(listed["CallDetailRecord"]) == bool(in_history)
        if in_history:
            seen_at = sim.now
            break
    assert seen_at is not None, "the record never arrived"
    entry = in_history[0]
    record = listed["CallDetailRecord"][0]
    assert entry["record"] == record
    assert record["ContactType"] == "Back2Back"
    ended_no_earlier_than = record["StartTime"] + record["Duration"] * 1000
    available_at = ms(entry["available_at"])
    assert 2000 <= available_at - ended_no_earlier_than < 9000
    assert available_at <= seen_at < available_at + 1000


def test_call_records_filter_order_and_window() -> None:
    sim, _ = make_sim()
    base = {"InstanceId": INSTANCE, "StartTime": START_MS, "PageNumber": 1, "PageSize": 100}
    ascending = sim.handle("ListCallDetailRecords", base)["CallDetailRecords"]
    records = ascending["List"]["CallDetailRecord"]
    assert ascending["TotalCount"] == len(records) == len(sim.call_history())
    assert [r["StartTime"] for r in records] == sorted(r["StartTime"] for r in records)
    descending = sim.handle("ListCallDetailRecords", {**base, "OrderBy": "DESC"})
    assert descending["CallDetailRecords"]["List"]["CallDetailRecord"] == records[::-1]
    abandoned = sim.handle(
        "ListCallDetailRecords", {**base, "ContactDisposition": "AbandonedInQueue"}
    )["CallDetailRecords"]["List"]["CallDetailRecord"]
    assert abandoned == [r for r in records if r["ContactDisposition"] == "AbandonedInQueue"]
    middle = records[len(records) // 2]["StartTime"]
    later = sim.handle("ListRecentCallRecords", {**base, "StartTime": middle})["CallDetailRecords"]
    assert later["TotalCount"] == sum(1 for r in records if r["StartTime"] >= middle)


def test_inbound_calls_record_their_events_in_order() -> None:
    sim, _ = make_sim()
    inbound = next(c for c in sim.call_history() if c["record"]["ContactType"] == "Inbound")
    detail = sim.handle(
        "ListCallEventDetailByContactId",
        {"InstanceId": INSTANCE, "ContactId": inbound["contact_id"]},
    )["Data"]
    events = [e["Event"] for e in detail["Events"]["CallEventDetail"]]
    assert events[:2] == ["Incoming", "EnterQueue"]
    assert events[-1] in {"Released", "Abandoned"}
    assert detail["ReleaseReason"] == inbound["record"]["ContactDisposition"]


# -- errors and limits


def test_state_log_window_over_two_hours_is_refused() -> None:
    sim, _ = make_sim(minutes=1)
    ram_id = int(first_user(sim, INSTANCE)["RamId"])
    params = {"InstanceId": INSTANCE, "RamId": ram_id, "PageNumber": 1, "PageSize": 10}
    ok = {**params, "StartTime": sim.now - 2 * HOUR_MS, "EndTime": sim.now}
    assert sim.handle("ListAgentStateLogs", ok)["AgentStateLogPage"]["TotalCount"] >= 1
    error = business_error(
        sim, "ListAgentStateLogs", {**ok, "StartTime": sim.now - 2 * HOUR_MS - 1}
    )
    assert (error.status, error.code) == (400, "Parameter.Maximum")
    assert "StartTime" in error.message
    assert "EndTime" in error.message


def test_agent_event_window_of_an_hour_or_more_is_refused() -> None:
    sim, _ = make_sim(minutes=1)
    params = {
        "InstanceId": INSTANCE,
        "RamId": [first_user(sim, INSTANCE)["RamId"]],
        "StopTime": sim.now,
    }
    sim.handle("ListAgentEvents", {**params, "StartTime": sim.now - HOUR_MS + 1})
    error = business_error(sim, "ListAgentEvents", {**params, "StartTime": sim.now - HOUR_MS})
    assert (error.status, error.code) == (400, "Parameter.Maximum")
    assert "StopTime" in error.message


def test_page_size_over_one_hundred_is_refused() -> None:
    sim, _ = make_sim(minutes=0)
    sim.handle("ListAgentStates", {"InstanceId": INSTANCE, "PageSize": 100})
    error = business_error(sim, "ListAgentStates", {"InstanceId": INSTANCE, "PageSize": 101})
    assert (error.status, error.code) == (400, "Parameter.Maximum")
    assert "PageSize" in error.message


def test_unknown_instance_is_not_found() -> None:
    sim, _ = make_sim(minutes=0)
    error = business_error(sim, "ListAgentStates", {"InstanceId": "ccc-nowhere"})
    assert (error.status, error.code) == (404, "NotExists.InstanceId")
    assert "ccc-nowhere" in error.message


def test_agent_state_pages_cover_every_logged_in_agent_exactly_once() -> None:
    sim, _ = make_sim(agents=250, minutes=5)
    seen: list[str] = []
    page_number = 1
    while True:
        data = sim.handle(
            "ListAgentStates", {"InstanceId": INSTANCE, "PageNumber": page_number, "PageSize": 100}
        )["Data"]
        rows = data["List"]["RealTimeAgentState"]
        if not rows:
            break
        seen += [r["AgentId"] for r in rows]
        page_number += 1
    logged_in = {a["agent_id"]: a["state"] for a in sim.agents() if a["state"] != "Offline"}
    assert len(seen) == len(set(seen)) == data["TotalCount"] == len(logged_in)
    assert set(seen) == set(logged_in)
    assert page_number == 4  # 2 or 3 full pages of 100, then an empty one
    talking = sim.handle(
        "ListAgentStates", {"InstanceId": INSTANCE, "State": "Talking", "PageSize": 100}
    )["Data"]
    assert talking["TotalCount"] == Counter(logged_in.values())["Talking"]


def listed(sim: Simulation) -> list[dict[str, Any]]:
    params = {"InstanceId": INSTANCE, "PageSize": 100}
    rows: list[dict[str, Any]] = sim.handle("ListAgentStates", params)["Data"]["List"][
        "RealTimeAgentState"
    ]
    return rows


def test_an_agent_quiet_for_four_hours_leaves_the_listing_but_stays_logged_in() -> None:
    clock = frozen_clock()
    config = EmulatorConfig(instances=(INSTANCE,), agents=10, seed=3, quiet_agents=2)
    sim = Simulation(config, clock)
    clock.advance(120)  # everyone logged in
    quiet = {a.ram_id for a in sim.instance(INSTANCE).agents.values() if a.quiet}
    assert len(quiet) == 2
    assert quiet <= {row["AgentId"] for row in listed(sim)}
    clock.advance(4 * 3600 - 200)  # under 4 hours since any of them logged in (within 60 s)
    assert quiet <= {row["AgentId"] for row in listed(sim)}, "changed within 4 hours: listed"
    clock.advance(200)
    rows = listed(sim)
    assert not quiet & {row["AgentId"] for row in rows}
    assert len(rows) > 0, "the busy ones are still listed"
    real_time = sim.handle("ListRealTimeAgent", {"InstanceId": INSTANCE})["Data"]["User"]
    assert {u["RamId"]: u["State"] for u in real_time if u["RamId"] in quiet} == dict.fromkeys(
        quiet, "Ready"
    )
    inspected = {a["agent_id"]: a["state"] for a in sim.agents() if a["agent_id"] in quiet}
    assert inspected == dict.fromkeys(quiet, "Ready")


def test_a_shorter_active_window_and_a_logout() -> None:
    clock = frozen_clock()
    config = EmulatorConfig(
        instances=(INSTANCE,), agents=4, seed=3, quiet_agents=4, active_window_s=600
    )
    sim = Simulation(config, clock)
    clock.advance(700)
    assert listed(sim) == []
    agent = next(iter(sim.instance(INSTANCE).agents.values()))
    sim.log_out(INSTANCE, agent.ram_id)
    assert listed(sim) == [], "a logged-out agent is not listed either"
    events = sim.handle(
        "ListAgentEvents",
        {
            "InstanceId": INSTANCE,
            "RamId": [agent.ram_id],
            "StartTime": sim.now - 1000,
            "StopTime": sim.now + 1,
        },
    )["AgentEventList"]["AgentEvent"]
    assert [e["Event"] for e in events] == ["签出"]


def test_states_beyond_the_six_show_when_asked_for() -> None:
    clock = frozen_clock()
    config = EmulatorConfig(instances=(INSTANCE,), agents=20, seed=5, other_states_rate=1.0)
    sim = Simulation(config, clock)
    seen: Counter[str] = Counter()
    for _ in range(120):
        clock.advance(10)
        seen.update(row["State"] for row in listed(sim))
    assert {"Conference", "HelpRequested", "Help"} & set(seen), seen
    plain = Simulation(EmulatorConfig(instances=(INSTANCE,), agents=20, seed=5), frozen_clock())
    assert plain.agent_state_history() == [], "the default centre is unchanged: drawn on demand"


def test_rows_come_in_a_new_order_on_each_call_when_shuffled() -> None:
    clock = frozen_clock()
    config = EmulatorConfig(instances=(INSTANCE,), agents=30, seed=3, shuffle_rows=True)
    sim = Simulation(config, clock)
    clock.advance(120)
    first, second = [r["AgentId"] for r in listed(sim)], [r["AgentId"] for r in listed(sim)]
    assert sorted(first) == sorted(second)
    assert first != second
    steady = Simulation(EmulatorConfig(instances=(INSTANCE,), agents=30, seed=3), clock)
    assert [r["AgentId"] for r in listed(steady)] == [r["AgentId"] for r in listed(steady)]


def test_skill_group_counters_match_the_agents_states() -> None:
    sim, _ = make_sim(agents=40)
    groups = sim.handle("ListSkillGroupStates", {"InstanceId": INSTANCE})["Data"]["List"]
    for group in groups["RealTimeSkillGroupState"]:
        agents = sim.handle(
            "ListAgentStates",
            {"InstanceId": INSTANCE, "SkillGroupId": group["SkillGroupId"], "PageSize": 100},
        )["Data"]["List"]["RealTimeAgentState"]
        states = Counter(a["State"] for a in agents)
        assert group["LoggedInAgents"] == len(agents)
        assert group["ReadyAgents"] == states["Ready"]
        assert group["TalkingAgents"] == states["Talking"]
        assert group["WorkingAgents"] == states["ACW"]
        assert group["BreakingAgents"] == states["Break"]


# -- side effects


def test_dial_ex_records_the_call_and_returns_its_task_id() -> None:
    sim, clock = make_sim(minutes=1)
    agent = first_user(sim, INSTANCE)
    route = f"{agent['RamId']}@{INSTANCE}"
    params = {
        "InstanceId": INSTANCE,
        "Caller": "02106000001",
        "Callee": "13900000000",
        "RoutPoint": route,
        "AnswerMode": 1,
    }
    reply = sim.handle("DialEx", params)
    call = sim.calls()[-1]
    assert call["task_id"] == reply["TaskId"]
    assert reply["TaskId"].startswith("task-")
    assert (call["action"], call["caller"], call["callee"]) == (
        "DialEx",
        "02106000001",
        "13900000000",
    )
    assert call["params"] == params
    clock.advance(600)
    records = [c for c in sim.call_history() if c["contact_id"] == call["contact_id"]]
    assert [r["record"]["ContactType"] for r in records] == ["Outbound"]


@pytest.mark.parametrize(
    ("params", "status", "code", "named"),
    [
        ({"AnswerMode": 1, "RoutPoint": "123@elsewhere"}, 400, "Parameter.Invalid", "RoutPoint"),
        ({"AnswerMode": 2, "RoutPoint": "skg-99"}, 404, "NotExists.SkillGroupId", "RoutPoint"),
        ({"AnswerMode": 7}, 400, "Parameter.Invalid", "AnswerMode"),
        ({"Callee": "not-a-number"}, 400, "Parameter.Invalid", "Callee"),
    ],
)
def test_dial_ex_refuses_bad_routes_and_numbers(
    params: dict[str, Any], status: int, code: str, named: str
) -> None:
    sim, _ = make_sim(minutes=0)
    base = {
        "InstanceId": INSTANCE,
        "Caller": "02106000001",
        "Callee": "13900000000",
        "RoutPoint": "flow-1",
        "AnswerMode": 0,
    }
    error = business_error(sim, "DialEx", {**base, **params})
    assert (error.status, error.code) == (status, code)
    assert named in error.message
    assert sim.calls() == []


def test_sms_is_recorded_with_its_parsed_template_param() -> None:
    sim, _ = make_sim(minutes=0)
    params = {"InstanceId": INSTANCE, "ConfigId": 1, "PhoneNumbers": "13900000000,+8613900000001"}
    reply = sim.handle("SendPredefinedShortMessage", {**params, "TemplateParam": '{"name": "Li"}'})
    assert sim.sms() == [
        {
            "at": "2026-09-21T14:13:20.000Z",
            "instance_id": INSTANCE,
            "biz_id": reply["BizId"],
            "config_id": 1,
            "phone_numbers": ["13900000000", "+8613900000001"],
            "template_param": {"name": "Li"},
        }
    ]
    bad_json = business_error(sim, "SendPredefinedShortMessage", {**params, "TemplateParam": "{"})
    assert (bad_json.status, bad_json.code) == (400, "Parameter.Invalid")
    assert "TemplateParam" in bad_json.message
    unknown = business_error(sim, "SendPredefinedShortMessage", {**params, "ConfigId": 9})
    assert (unknown.status, unknown.code) == (404, "NotExists.ConfigId")
    assert len(sim.sms()) == 1


def test_appraisals_are_recorded_for_known_contacts_only() -> None:
    sim, _ = make_sim()
    contact_id = sim.call_history()[0]["contact_id"]
    sim.handle("LaunchAppraise", {"InstanceId": INSTANCE, "Acid": contact_id})
    sim.handle(
        "LaunchShortMessageAppraise",
        {
            "InstanceId": INSTANCE,
            "Acid": contact_id,
            "ContactType": 0,
            "PhoneNumbers": "13900000000",
        },
    )
    assert [(a["action"], a["acid"], a["phone_numbers"]) for a in sim.appraisals()] == [
        ("LaunchAppraise", contact_id, []),
        ("LaunchShortMessageAppraise", contact_id, ["13900000000"]),
    ]
    error = business_error(sim, "LaunchAppraise", {"InstanceId": INSTANCE, "Acid": "42"})
    assert (error.status, error.code) == (404, "NotExists.Acid")
    assert len(sim.appraisals()) == 2


# -- configuration


def test_created_and_removed_users_show_in_list_users() -> None:
    sim, clock = make_sim(minutes=0)
    create = {
        "InstanceId": INSTANCE,
        "LoginName": "newbie",
        "DisplayName": "New Bie",
        "Email": "newbie@example.com",
        "RoleId": [f"Agent@{INSTANCE}"],
        "SkillGroupId": ["skg-2"],
        "SkillLevel": [7],
    }
    user_id = sim.handle("CreateUser", create)["UserId"]
    listing = {"InstanceId": INSTANCE, "PageNumber": 1, "PageSize": 100}
    users = sim.handle("ListUsers", listing)["Users"]
    assert users["TotalCount"] == 11
    created = next(u for u in users["List"]["User"] if u["UserId"] == user_id)
    assert created["Detail"]["LoginName"] == "newbie"
    assert [
        (s["Skill"]["SkillGroupId"], s["Level"]) for s in created["SkillLevels"]["SkillLevel"]
    ] == [("skg-2", 7)]
    duplicate = business_error(sim, "CreateUser", create)
    assert (duplicate.status, duplicate.code) == (409, "AlreadyExists.UserName")
    clock.advance(120)
    assert any(a["login_name"] == "newbie" and a["state"] != "Offline" for a in sim.agents())
    sim.handle("RemoveUsers", {"InstanceId": INSTANCE, "UserId": [user_id]})
    users = sim.handle("ListUsers", listing)["Users"]
    assert users["TotalCount"] == 10
    assert user_id not in {u["UserId"] for u in users["List"]["User"]}
    gone = business_error(sim, "GetUser", {"InstanceId": INSTANCE, "UserId": user_id})
    assert (gone.status, gone.code) == (404, "NotExists.UserId")
    assert sim.agent_state_history()[-1]["state"] == "Offline"


def test_skill_group_changes_show_in_listings() -> None:
    sim, _ = make_sim(minutes=0)
    user_id = first_user(sim, INSTANCE)["UserId"]
    group_id = sim.handle(
        "CreateSkillGroup",
        {"InstanceId": INSTANCE, "Name": "VIP", "UserId": [user_id], "SkillLevel": [3]},
    )["SkillGroupId"]
    groups = sim.handle("ListSkillGroups", {"InstanceId": INSTANCE})["SkillGroups"]["SkillGroup"]
    assert {"SkillGroupId": group_id, "SkillGroupName": "VIP", "UserCount": 1}.items() <= next(
        g for g in groups if g["SkillGroupId"] == group_id
    ).items()
    of_user = sim.handle("ListSkillGroupsOfUser", {"InstanceId": INSTANCE, "UserId": user_id})
    assert group_id in {s["Skill"]["SkillGroupId"] for s in of_user["SkillLevels"]["SkillLevel"]}
    sim.handle("DeleteSkillGroup", {"InstanceId": INSTANCE, "SkillGroupId": group_id})
    of_user = sim.handle("ListSkillGroupsOfUser", {"InstanceId": INSTANCE, "UserId": user_id})
    assert group_id not in {
        s["Skill"]["SkillGroupId"] for s in of_user["SkillLevels"]["SkillLevel"]
    }
    error = business_error(sim, "ListUsersOfSkillGroup", {**_paging(), "SkillGroupId": group_id})
    assert (error.status, error.code) == (404, "NotExists.SkillGroupId")


def _paging() -> dict[str, Any]:
    return {"InstanceId": INSTANCE, "PageNumber": 1, "PageSize": 10}


def test_find_users_matches_login_and_display_names() -> None:
    sim, _ = make_sim(minutes=0)
    found = sim.handle("FindUsers", {**_paging(), "Criteria": "AGENT00"})["Users"]
    assert found["TotalCount"] == 9  # agent001 .. agent009
    assert sim.handle("FindUsers", {**_paging(), "Criteria": "nobody"})["Users"]["TotalCount"] == 0
