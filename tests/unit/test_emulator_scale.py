"""The emulator at scale: retention bounds every history, quiesce winds the centre down, and
the requests log is bounded by count and by size. A frozen clock moved by hand drives it."""

from __future__ import annotations

from typing import Any

import pytest

from service.emulator.config import EmulatorConfig, SimClock
from service.emulator.gateway import RequestsLog
from service.emulator.model import OFFLINE
from service.emulator.sim import BusinessError, Simulation
from tests.unit.test_sim import START_MS, ms

INSTANCE = "ccc-demo"
HOUR_S = 3600
RETENTION_S = 2 * HOUR_S
MINUTE_MS = 60_000


def run(sim: Simulation, clock: SimClock, seconds: float) -> None:
    clock.advance(seconds)
    sim.advance()


def make_sim(agents: int = 10) -> tuple[Simulation, SimClock]:
    clock = SimClock(start_ms=START_MS, monotonic=lambda: 0.0)
    config = EmulatorConfig(instances=(INSTANCE,), agents=agents, seed=4, retention_s=RETENTION_S)
    return Simulation(config, clock), clock


def held(sim: Simulation) -> dict[str, int]:
    """What the simulation holds in memory, structure by structure."""
    inst = sim.instance(INSTANCE)
    return {
        "history": len(sim._history),
        "calls logged": len(sim._calls),
        "records arrived": len(sim._cdrs),
        "calls": len(inst.calls),
        "records": len(inst.records),
        "state logs": sum(len(a.log) for a in inst.agents.values()),
        "agent events": sum(len(a.events) for a in inst.agents.values()),
    }


def oldest(sim: Simulation) -> dict[str, int]:
    """The time of the oldest item each structure trimmed once a minute holds."""
    inst = sim.instance(INSTANCE)
    return {
        "history": sim._history[0][0],
        "calls logged": sim._calls[0].start_ms,
        "records arrived": sim._cdrs[0].start_ms,  # in arrival order: trimmed from its head
        "calls": min(c.start_ms for c in inst.calls.values()),
        "records": inst.records[0].start_ms,
    }


def test_every_history_keeps_the_retention_and_no_more() -> None:
    sim, clock = make_sim()
    run(sim, clock, 4 * HOUR_S)
    at_four = held(sim)
    run(sim, clock, 4 * HOUR_S)
    at_eight = held(sim)

    # Each holds two hours' worth at four hours and at eight: bounded, not growing.
    for name, size in at_eight.items():
        assert 0.75 * at_four[name] < size < 1.25 * at_four[name], (name, at_four, at_eight)
    # Trimmed once a simulated minute: nothing older than the cutoff, less that minute.
    cutoff = sim.now - RETENTION_S * 1000
    assert all(at >= cutoff - MINUTE_MS for at in oldest(sim).values()), (cutoff, oldest(sim))
    # An agent's own log and events: as they last grew, when its state last changed.
    for agent in sim.instance(INSTANCE).agents.values():
        kept_from = agent.since_ms - RETENTION_S * 1000
        assert agent.log[0][0] >= kept_from
        assert agent.events[0][0] >= kept_from


def test_the_inspection_api_shows_nothing_older_than_the_retention() -> None:
    sim, clock = make_sim()
    run(sim, clock, 3 * HOUR_S + 30)  # half a minute past a trim: the cutoff is exact anyway
    cutoff = sim.now - RETENTION_S * 1000

    history = sim.agent_state_history()
    calls = sim.calls()
    records = sim.call_history()

    assert min(ms(h["at"]) for h in history) >= cutoff
    assert min(ms(c["at"]) for c in calls) >= cutoff
    assert min(r["record"]["StartTime"] for r in records) >= cutoff
    assert max(ms(h["at"]) for h in history) > cutoff + (RETENTION_S - 60) * 1000


def test_queries_for_windows_past_the_retention_answer_as_if_nothing_happened() -> None:
    sim, clock = make_sim()
    run(sim, clock, 20 * 60)
    inst = sim.instance(INSTANCE)
    agent = next(a for a in inst.agents.values() if a.log)
    early = [inst.records[0].contact_id, sim.calls()[0]["contact_id"]]
    window = {"StartTime": START_MS, "EndTime": START_MS + 20 * MINUTE_MS}
    paging = {"InstanceId": INSTANCE, "PageNumber": 1, "PageSize": 100}
    logs = {**paging, "RamId": agent.ram_id, **window}
    events = {"InstanceId": INSTANCE, "RamId": [agent.ram_id], "StartTime": START_MS}
    events["StopTime"] = START_MS + 20 * MINUTE_MS - 1
    records = {**paging, "StartTime": START_MS, "StopTime": START_MS + 20 * MINUTE_MS}

    def answers() -> tuple[int, int, int]:
        return (
            sim.handle("ListAgentStateLogs", logs)["AgentStateLogPage"]["TotalCount"],
            len(sim.handle("ListAgentEvents", events)["AgentEventList"]["AgentEvent"]),
            sim.handle("ListCallDetailRecords", records)["CallDetailRecords"]["TotalCount"],
        )

    assert all(answers())
    run(sim, clock, RETENTION_S)

    assert answers() == (0, 0, 0)
    for contact_id in early:
        with pytest.raises(BusinessError) as caught:
            sim.handle(
                "ListCallEventDetailByContactId", {"InstanceId": INSTANCE, "ContactId": contact_id}
            )
        assert caught.value.code == "NotExists.ContactId"


def test_a_window_across_the_cutoff_answers_only_what_is_retained() -> None:
    sim, clock = make_sim()
    run(sim, clock, 3 * HOUR_S + 59)  # 59 s past a trim: items a little older are still held
    cutoff = sim.now - RETENTION_S * 1000
    inst = sim.instance(INSTANCE)
    agents = list(inst.agents.values())
    assert inst.records[0].start_ms < cutoff
    assert any(a.log[0][0] < cutoff for a in agents)
    assert any(a.events[0][0] < cutoff for a in agents)
    paging = {"InstanceId": INSTANCE, "PageNumber": 1, "PageSize": 100}
    around = {"StartTime": cutoff - HOUR_S * 1000, "EndTime": cutoff + HOUR_S * 1000}

    logs = [
        entry["StateTime"]
        for a in agents
        for entry in sim.handle("ListAgentStateLogs", {**paging, **around, "RamId": a.ram_id})[
            "AgentStateLogPage"
        ]["List"]
    ]
    events = sim.handle(
        "ListAgentEvents",
        {
            "InstanceId": INSTANCE,
            "RamId": [a.ram_id for a in agents],
            "StartTime": cutoff - 30 * MINUTE_MS,
            "StopTime": cutoff + 29 * MINUTE_MS,
        },
    )["AgentEventList"]["AgentEvent"]
    records = sim.handle(
        "ListCallDetailRecords",
        {**paging, "StartTime": around["StartTime"], "StopTime": around["EndTime"]},
    )["CallDetailRecords"]

    assert logs
    assert min(logs) >= cutoff
    assert events
    assert min(e["EventTime"] for e in events) >= cutoff
    assert records["List"]["CallDetailRecord"][0]["StartTime"] >= cutoff  # the oldest first
    retained = [c for c in inst.records if cutoff <= c.start_ms < around["EndTime"]]
    assert records["TotalCount"] == len(retained)


def test_quiesce_logs_every_agent_out_and_starts_no_more_calls() -> None:
    sim, clock = make_sim(agents=30)
    run(sim, clock, 30 * 60)
    on_calls = {
        a["agent_id"] for a in sim.agents() if a["state"] not in {"Ready", "Break", OFFLINE}
    }
    assert on_calls, "no agent was on a call: the test shows nothing"
    before = len(sim.agent_state_history())

    quiesced_at = sim.quiesce()

    # The free ones log out at once, as transitions to Offline.
    right_away = sim.agent_state_history()[before:]
    assert {h["state"] for h in right_away} == {OFFLINE}
    assert {h["previous_state"] for h in right_away} <= {"Ready", "Break"}
    run(sim, clock, 30 * 60)  # longer than any call, its after-call work and record delay
    settled = sim.agent_state_history(), sim.call_history(), sim.calls()
    run(sim, clock, HOUR_S)

    assert quiesced_at == ms(right_away[0]["at"]) == sim.quiesce()  # asking again: no change
    assert {a["state"] for a in sim.agents()} == {OFFLINE}
    assert (sim.agent_state_history(), sim.call_history(), sim.calls()) == settled
    assert all(ms(c["at"]) < quiesced_at for c in sim.calls())
    # The agents on calls finished them normally, then logged out.
    last: dict[str, dict[str, Any]] = {}
    for change in sim.agent_state_history():
        last[change["agent_id"]] = change
    assert all(last[a]["previous_state"] in {"ACW", "Dialing"} for a in on_calls), last
    listed = sim.handle("ListAgentStates", {"InstanceId": INSTANCE})["Data"]
    assert listed["TotalCount"] == 0


def test_requests_log_drops_the_oldest_past_its_count_or_its_size() -> None:
    by_count = RequestsLog(max_entries=2, max_chars=1000)
    for n in range(3):
        by_count.add(("at", f"Action=A{n}", "", "OK", 1, 10))
    by_size = RequestsLog(max_entries=100, max_chars=30)
    for n in range(3):
        by_size.add(("at", f"Action=B{n}", "RamId.1=123", "OK", 1, 10))  # 20 characters each

    assert [e["action"] for e in by_count.listing()] == ["A1", "A2"]
    assert [e["action"] for e in by_size.listing()] == ["B2"]
    assert by_size.listing()[0]["params"] == {"Action": "B2", "RamId.1": "123"}
