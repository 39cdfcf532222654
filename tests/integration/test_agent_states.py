"""agent.state.changed against a CCC that behaves as documented, not as is convenient: it lists
only agents active in the last 4 hours, answers pages in a new row order on every call, and
has states beyond the six its filter knows (FACTS.md section 9). The real service, the
embedded broker, the emulator over HTTP."""

from __future__ import annotations

from collections import Counter
from typing import Any

from service.broker import EmbeddedBroker
from service.emulator.config import EmulatorConfig
from service.emulator.model import OTHER_STATES
from service.emulator.server import EmulatorServer
from service.settings import PollerSettings, Settings
from tests.inspection import eventually, inspect
from tests.integration.events import Message, read_events
from tests.integration.pipeline import INSTANCE, in_process, service_settings

CHANGED = "com.aliyun.ccc.agent.state.changed"
QUIET = 3
# Three pages of 100, shuffled on every call: rows move between pages while they are read.
CENTRE = EmulatorConfig(
    instances=(INSTANCE,),
    agents=230,
    seed=11,
    quiet_agents=QUIET,
    other_states_rate=0.5,
    shuffle_rows=True,
    inbound_calls_per_minute=30.0,
)


def states_only(emulator: EmulatorServer, broker: EmbeddedBroker) -> Settings:
    settings = service_settings(emulator, broker.bootstrap_servers)
    pollers = PollerSettings(
        split="none",
        agent_states=True,
        agent_state_logs=False,
        calls=False,
        skill_groups=False,
        agent_states_interval_s=0.2,
        agent_logout_check_s=0.5,
        directory_refresh_s=3600,
    )
    return settings.model_copy(update={"pollers": pollers})


async def changes(settings: Settings) -> list[dict[str, Any]]:
    messages: list[Message] = await read_events(settings.kafka, settings.topics)
    return [m.event["data"] for m in messages if m.event["type"] == CHANGED]


def offline(events: list[dict[str, Any]], agent_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["agent_id"] == agent_id and e["state"] == "Offline"]


async def test_quiet_agents_are_not_logged_out_and_a_real_logout_is_told_once() -> None:
    async with EmbeddedBroker() as broker, EmulatorServer(CENTRE) as emulator:
        emulator.clock.advance(120)  # everyone logged in
        quiet = sorted(a.ram_id for a in emulator.sim.instance(INSTANCE).agents.values() if a.quiet)
        settings = states_only(emulator, broker)
        async with in_process(settings) as (_, service):

            async def all_seen() -> bool:
                assert not service.done(), service
                seen = {e["agent_id"] for e in await changes(settings)}
                return set(quiet) <= seen

            await eventually(all_seen, deadline_s=30)
            # Four hours and a quarter go by: the quiet agents drop out of ListAgentStates,
            # while the others keep working (and some log out and in, for real).
            emulator.clock.advance(4 * 3600 + 900)

            async def looked_for_logouts() -> bool:
                asked = [
                    {value for name, value in r["params"].items() if name.startswith("RamId")}
                    for r in await inspect(emulator, "requests")
                    if r["action"] == "ListAgentEvents"
                ]
                return any(set(quiet) <= ram_ids for ram_ids in asked)

            await eventually(looked_for_logouts, deadline_s=30)
            gone = quiet[0]
            emulator.sim.log_out(INSTANCE, gone)

            async def logout_told() -> bool:
                return bool(offline(await changes(settings), gone))

            await eventually(logout_told, deadline_s=30)
            assert not service.done(), service
        events = await changes(settings)

    # The one that checked out: exactly one logout, and it says when.
    (logout,) = offline(events, gone)
    assert logout["previous_state"] == "Ready"
    assert logout["normalized_state"] == "offline"
    # The ones that sat quiet for four hours: still logged in, as far as anyone is told.
    for agent_id in quiet[1:]:
        theirs = [e for e in events if e["agent_id"] == agent_id]
        assert [e["state"] for e in theirs] == ["Ready"], theirs  # the first snapshot only
    # Nobody is seen to log in unless seen to log out first; nobody is told twice.
    logged_in = [e for e in events if e["previous_state"] == "Offline"]
    told_out = {e["agent_id"] for e in events if e["state"] == "Offline"}
    assert {e["agent_id"] for e in logged_in} <= told_out
    ids = Counter((e["agent_id"], e["state"], e["state_since"]) for e in events)
    assert max(ids.values()) == 1, ids.most_common(3)
    # States beyond the six come through verbatim, normalized as `other`, none dropped.
    others = [e for e in events if e["state"] in OTHER_STATES]
    assert others
    assert {e["normalized_state"] for e in others} == {"other"}
    history = emulator.sim.agent_state_history()
    entered = {(h["agent_id"], h["state"]) for h in history if h["state"] in OTHER_STATES}
    assert {(e["agent_id"], e["state"]) for e in others} <= entered
