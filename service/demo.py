"""`ccc-bridge demo`: the embedded default, all on loopback.

Starts the embedded Kafka-compatible broker, the CCC emulator with a simulated contact
centre, and the service polling it, then shows what reaches Kafka, one line per event:
agents changing state, finished calls, skill-group snapshots, and the results of a sample
dial and SMS command sent every half minute. Ctrl-C stops all three.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
from functools import partial
from typing import Any

from service.app import run_service
from service.broker import BrokerError, EmbeddedBroker
from service.commands.models import CommandKind, CommandResult
from service.console import (
    StartupError,
    quiet_kafka_logs,
    say,
    startup_failed,
    stop_on_signals,
)
from service.emulator.cli import add_listing_arguments
from service.emulator.config import (
    EmulatorConfig,
    client_settings,
)
from service.emulator.server import EmulatorServer
from service.events.models import AgentStateChanged, CallRecordData, SkillGroupState
from service.kafka.acked import until_acked
from service.kafka.producer import OutRecord, Producer
from service.kafka.settings import KafkaSettings
from service.kafka.topics import COMMAND_TOPICS, SHOWN_TOPICS
from service.settings import HttpSettings, PollerSettings, Settings
from service.tail import follow

INSTANCE = "ccc-demo"
# What a person watching wants: who is doing what, and how calls went. The state log and
# each call's steps are on the same topics, for consumers, but would drown the view.
SHOWN = {
    AgentStateChanged.event_type,
    CallRecordData.event_type,
    SkillGroupState.event_type,
    CommandResult.event_type,
}
SAMPLE_EVERY_S = 30.0
# Sample commands: an outbound call answered by an IVR flow, and an SMS from the emulator's
# first SMS config; the numbers are the emulator's, reaching nobody.
SAMPLES: tuple[tuple[CommandKind, dict[str, Any]], ...] = (
    (
        "dial",
        {
            "mode": "dial_ex",
            "caller": "02106000001",
            "callee": "13900000000",
            "answer_mode": "ivr",
            "route_point": "demo-flow",
        },
    ),
    ("sms", {"config_id": 1, "phone_numbers": ["13900000000"], "template_params": {"n": "1"}}),
)


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "demo",
        help="run broker, emulator and service together and show the events live",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--agents", type=int, default=12, help="simulated agents (default 12)")
    parser.add_argument(
        "--speed", type=float, default=10.0, help="simulated seconds per second (default 10)"
    )
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    # Two quiet agents: with a short --active-window-s, the 4-hour rule shows within minutes.
    add_listing_arguments(parser, quiet_agents=2)
    parser.set_defaults(func=run, default_log_level="warning")


def demo_settings(emulator: EmulatorServer, broker: EmbeddedBroker) -> Settings:
    return Settings(
        ccc=client_settings(emulator.url, instances=[INSTANCE]),
        kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
        http=HttpSettings(host="127.0.0.1", port=0),  # on a laptop 8080 may be taken
        pollers=PollerSettings(
            split="none",  # one process: events from the first second, no group to join first
            agent_states_interval_s=1.0,
            agent_state_logs_interval_s=2.0,
            calls_interval_s=2.0,
            skill_groups_interval_s=15.0,
        ),
    )


async def run(args: argparse.Namespace) -> int:
    config = EmulatorConfig(
        instances=(INSTANCE,),
        agents=args.agents,
        seed=args.seed,
        speed=args.speed,
        active_window_s=args.active_window_s,
        quiet_agents=args.quiet_agents,
    )
    stop = asyncio.Event()
    try:
        with stop_on_signals(stop), quiet_kafka_logs():
            async with EmbeddedBroker() as broker, EmulatorServer(config) as emulator:
                settings = demo_settings(emulator, broker)
                say(f"broker   {broker.bootstrap_servers} (embedded, in memory)")
                say(
                    f"emulator {emulator.url}: {INSTANCE}, {args.agents} agents "
                    f"({args.quiet_agents} quiet: unlisted by CCC {args.active_window_s:g} s "
                    f"after their last change, never shown as logged out), x{args.speed}"
                )
                await _show(settings, stop)
    except (StartupError, BrokerError, OSError) as error:
        return startup_failed("demo", error)
    say("stopped")
    return 0


async def _show(settings: Settings, stop: asyncio.Event) -> None:
    """The service and a viewer of its topics, until Ctrl-C (or one of them fails)."""
    started = asyncio.Event()
    service = asyncio.create_task(run_service(settings, stop, on_ready=started.set))
    ready = asyncio.create_task(started.wait())
    await asyncio.wait({service, ready}, return_when=asyncio.FIRST_COMPLETED)
    if service.done():
        ready.cancel()
        await service  # raises why it could not start
        return
    say("service  polling CCC, publishing to Kafka, executing commands; Ctrl-C stops everything")
    say(
        f"send one: CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS={settings.kafka.bootstrap_servers} "
        f"./dev.sh run send sms --instance {INSTANCE} --config-id 1 --phone 13900000001 --wait\n"
    )
    topics = [settings.topics.name(topic) for topic in SHOWN_TOPICS]
    samples = asyncio.create_task(_send_samples(settings, stop))
    try:
        await follow(settings.kafka, topics, from_beginning=True, stop=stop, emit=say, only=SHOWN)
    finally:
        stop.set()
        samples.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await samples
            await service


async def _send_samples(settings: Settings, stop: asyncio.Event) -> None:
    producer = Producer(settings.kafka)
    await producer.start()
    try:
        for number in itertools.count(1):
            if stop.is_set():
                break
            kind, fields = SAMPLES[number % len(SAMPLES)]
            command_id = f"demo-{kind}-{number}"
            body = {"command_id": command_id, "instance_id": INSTANCE, **fields}
            topic = settings.topics.name(COMMAND_TOPICS[kind])
            record = OutRecord(topic, command_id.encode(), json.dumps(body).encode())
            await until_acked(partial(producer.send_all, [record]), stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=SAMPLE_EVERY_S / len(SAMPLES))
    finally:
        await producer.stop()
