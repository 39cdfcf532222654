"""`ccc-bridge backfill` and `ccc-bridge checkpoints show|reset` against the embedded broker
and the emulator over HTTP, as an operator runs them.

The emulator holds two simulated days of history (its clock started two days back and
jumped to now; the simulation catches up). The live service polls the recent span; a
backfill of both days, into topics of its own, must then give the very event ids the live
pollers gave for the span both read, and everything the emulator recorded besides.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from service.broker import EmbeddedBroker
from service.cloudevents import from_ms
from service.emulator.config import EmulatorConfig, SimClock
from service.emulator.server import EmulatorServer
from service.events.checkpoints import live_key, shown
from service.events.tracking import Tracker
from service.kafka.consumer import read_to_end
from service.settings import Settings
from tests.inspection import eventually
from tests.integration.events import (
    Message,
    by_type,
    missing_calls,
    missing_transitions,
    ms,
    read_events,
)
from tests.integration.kafka_io import (
    SECRET_ENV,
    read_line,
    run_cli,
    start_cli,
    stop_cli,
    write_config,
)
from tests.integration.pipeline import INSTANCE, in_process, service_settings

DAY_MS = 86_400_000
LOGGED = "com.aliyun.ccc.agent.state.logged"
RECORD = "com.aliyun.ccc.call.record"
STEP = "com.aliyun.ccc.call.event"
# Three agents over two days at CCC's own pace: about 5,500 state changes and 1,300 calls.
CENTRE = EmulatorConfig(
    instances=(INSTANCE,), agents=3, seed=3, inbound_calls_per_minute=1.0, retention_s=3 * 86_400
)


def two_days_old() -> EmulatorServer:
    """The centre, begun two days (and a minute) ago by our clock, which it keeps to: a span
    that ends at its now is not in the future for the commands."""
    clock = SimClock(start_ms=int(time.time() * 1000) - 2 * DAY_MS - 60_000)
    emulator = EmulatorServer(CENTRE, clock)  # its centre opens at the clock's start
    clock.advance(2 * DAY_MS / 1000)
    return emulator


def rfc3339(at_ms: int) -> str:
    return from_ms(at_ms).isoformat()


async def cli(settings: Settings, config: Path, *args: str) -> tuple[int, str, str]:
    await write_config(settings, config)
    return await run_cli(*args, "--config", str(config), env=SECRET_ENV)


async def checkpoints(settings: Settings) -> dict[str, dict[str, object]]:
    """The latest value of each key in the checkpoints topic."""
    topic = settings.topics.name("checkpoints")
    latest = {}
    for record in await read_to_end(settings.kafka, [topic]):
        latest[(record.key or b"").decode()] = json.loads(record.value or b"null")
    return latest


def ids(messages: Iterable[Message]) -> set[str]:
    return {m.event["id"] for m in messages}


def logged_in(messages: list[Message], span: tuple[int, int]) -> set[str]:
    return ids(
        m
        for m in by_type(messages, LOGGED)
        if span[0] <= ms(m.event["data"]["state_time"]) < span[1]
    )


def of_contacts(messages: list[Message], contacts: set[str]) -> set[str]:
    calls = [*by_type(messages, RECORD), *by_type(messages, STEP)]
    return ids(m for m in calls if m.event["data"]["contact_id"] in contacts)


async def test_a_backfill_of_two_days_gives_the_live_pollers_ids(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    async with two_days_old() as emulator:
        began = emulator.clock.now_ms() - 2 * DAY_MS
        live = service_settings(emulator, broker.bootstrap_servers)
        started = emulator.clock.now_ms()
        # What the live pollers read first: an hour of state logs (agent_state_logs_backfill_s)
        # and half an hour of call records (calls_lookback_s), each less a margin.
        logs_from, calls_from = started - 3_595_000, started - 1_740_000
        async with in_process(live):
            until = emulator.clock.now_ms() - 3000
            history = [h for h in emulator.sim.agent_state_history() if ms(h["at"]) >= logs_from]
            recent = {
                c["contact_id"]
                for c in emulator.sim.call_history()
                if int(c["record"]["StartTime"]) >= calls_from and ms(c["available_at"]) <= until
            }
            published: list[Message] = []

            async def caught_up() -> bool:
                nonlocal published
                published = await read_events(live.kafka, live.topics)
                done = {m.event["data"]["contact_id"] for m in by_type(published, RECORD)}
                return not missing_transitions(history, published, until) and recent <= done

            await eventually(caught_up, deadline_s=20)

        backfilled = service_settings(emulator, broker.bootstrap_servers)  # topics of its own
        config = tmp_path / "backfill.yaml"
        span = ("--from", rfc3339(began), "--to", rfc3339(until))
        code, out, err = await cli(
            backfilled, config, "backfill", "--instance", INSTANCE, "--stream", "calls", *span
        )
        assert (code, err) == (0, ""), err
        assert out.endswith(" calls published\n")
        await _stopped_then_resumed(backfilled, config, span)

        messages = await read_events(backfilled.kafka, backfilled.topics)
        assert not missing_transitions(emulator.sim.agent_state_history(), messages, until)
        assert not missing_calls(emulator.sim.call_history(), messages, until)
        overlap = (logs_from, until)
        assert logged_in(published, overlap) == logged_in(messages, overlap) != set()
        assert of_contacts(published, recent) == of_contacts(messages, recent) != set()
        # Its progress under keys of its own; no live checkpoint written.
        keys = set(await checkpoints(backfilled))
        assert keys == {
            f"{INSTANCE}:backfill:{stream}:{began}:{until}"
            for stream in ("calls", "agent-state-logs")
        }

        code, out, _ = await cli(live, config, "checkpoints", "show")
        assert code == 0
        lines = out.splitlines()
        assert [line.split("  ")[:2] for line in lines] == [
            [INSTANCE, "agent-state-logs"],
            [INSTANCE, "calls"],
        ]
        assert "most agents done to 20" in lines[0]
        assert "polled to 20" in lines[1]
        code, out, _ = await cli(backfilled, config, "checkpoints", "show")
        assert code == 0
        assert [line.split("  ")[2].split(",")[0] for line in out.splitlines()] == ["complete"] * 2


async def _stopped_then_resumed(settings: Settings, config: Path, span: tuple[str, ...]) -> None:
    """A state-log backfill held to 10 CCC calls a second, stopped by SIGINT once it saved
    progress, then resumed at full speed: every entry published once per saved window."""
    args = ("backfill", "--instance", INSTANCE, "--stream", "agent-state-logs", *span)
    slow = SECRET_ENV | {"CCC_BRIDGE_CCC__RATE_LIMITS__TOTAL_PER_S": "10"}
    process = await start_cli(*args, "--config", str(config), env=slow)

    async def progressed() -> bool:
        return any(":backfill:agent-state-logs:" in key for key in await checkpoints(settings))

    await eventually(progressed, deadline_s=20)
    assert await stop_cli(process, signal.SIGINT) == 130
    assert "; run the same command to resume" in await read_line(process.stdout)

    code, out, err = await run_cli(*args, "--config", str(config), env=SECRET_ENV)
    assert (code, err) == (0, ""), err
    resumed, complete = out.splitlines()
    assert ": resuming from 20" in resumed
    [progress] = [v for k, v in (await checkpoints(settings)).items() if "agent-state" in k]
    entries = by_type(await read_events(settings.kafka, settings.topics), LOGGED)
    assert progress["published"] == len(ids(entries))  # a window cut short counts once
    assert complete.endswith(f" {len(ids(entries))} state-log entries published")


async def test_checkpoints_reset_moves_one_unless_a_replica_holds_it(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    async with two_days_old() as emulator:
        settings = service_settings(emulator, broker.bootstrap_servers)
        pollers = settings.pollers.model_copy(
            update={"split": "group", "group_id": f"pollers-{uuid.uuid4().hex[:8]}"}
        )
        grouped = settings.model_copy(update={"pollers": pollers})
        config = tmp_path / "reset.yaml"
        back = emulator.clock.now_ms() - 3 * 3_600_000
        reset = ("checkpoints", "reset", "--instance", INSTANCE, "--to", rfc3339(back))
        key = live_key(INSTANCE, "agent-state-logs")

        code, _, err = await cli(settings, config, *reset, "--stream", "calls")
        assert code == 1
        assert "pollers.split is none" in err

        async with in_process(grouped):

            async def joined() -> bool:
                return key in await checkpoints(grouped)

            await eventually(joined, deadline_s=20)
            code, _, err = await cli(grouped, config, *reset, "--stream", "agent-state-logs")
            assert code == 1
            assert f"the poller group {pollers.group_id} is Stable with members" in err
            code, out, err = await cli(
                grouped, config, *reset, "--stream", "agent-state-logs", "--force"
            )
            assert code == 0
            assert out.startswith(f"{key}: was most agents done to 20")
            assert "overwrites this at its next save" in err

        # The embedded broker keeps a member that left in the group's description, so the
        # free case is a group nobody joined (Kafka empties it when the last one leaves).
        free = pollers.model_copy(update={"group_id": f"free-{uuid.uuid4().hex[:8]}"})
        code, out, err = await cli(
            settings.model_copy(update={"pollers": free}),
            config,
            *reset,
            "--stream",
            "agent-state-logs",
        )
        assert (code, err) == (0, ""), err
        assert out.endswith(
            f"; now most agents done to {shown(back)}, events looked at to {shown(back)}\n"
        )
        saved = (await checkpoints(settings))[key]
        tracker = Tracker(unlisted_ms=0, spacing_s=0)
        tracker.load(saved, 0)
        assert tracker.position_ms == back

        # The pollers accept it: the live service reads state logs again from there.
        history = [h for h in emulator.sim.agent_state_history() if ms(h["at"]) >= back + 1000]
        async with in_process(settings):
            until = emulator.clock.now_ms() - 3000
            await eventually(partial(_published, settings, history, until, back), deadline_s=20)


async def _published(
    settings: Settings, history: list[dict[str, object]], until: int, back: int
) -> bool:
    messages = await read_events(settings.kafka, settings.topics)
    return not missing_transitions(history, messages, until) and bool(
        logged_in(messages, (back, back + 3_600_000))
    )
