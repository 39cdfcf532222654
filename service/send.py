"""`ccc-bridge send dial|sms|appraise ...`: produce one command and, with `--wait`, print
its result. The flags are the command's JSON fields (PRODUCT.md section 3) with dashes."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from service.commands.models import (
    Command,
    CommandKind,
    CommandResult,
    InvalidCommandError,
    Limits,
    validate_command,
)
from service.console import (
    StartupError,
    add_config_argument,
    kafka_failure,
    quiet_kafka_logs,
    say,
    settings_from,
    startup_failed,
)
from service.kafka.consumer import Consumer, Subscription
from service.kafka.producer import OutRecord, Producer, partition_for
from service.kafka.records import Record
from service.kafka.topics import COMMAND_TOPICS
from service.render import render
from service.settings import Settings

EXIT_NOT_SUCCEEDED = 1
EXIT_NO_RESULT = 3


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "send",
        help="produce one command (dial, sms, appraise); --wait prints its result",
        description="Produce one command to its topic, keyed by its command id.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    dial = _kind(kinds, "dial", "an outbound call (DialEx) or a back-to-back call")
    dial.add_argument(
        "--mode",
        choices=["dial_ex", "back_to_back"],
        default="dial_ex",
        help="dial_ex (DialEx, default) or back_to_back (StartBack2BackCall)",
    )
    dial.add_argument("--caller", required=True, help="the calling number")
    dial.add_argument("--callee", required=True, help="the number called")
    dial.add_argument("--answer-mode", choices=["ivr", "agent", "skill_group"], help="dial_ex")
    dial.add_argument("--route-point", help="dial_ex: flow id, ram_id@domain or skill group id")
    dial.add_argument("--provider", help="dial_ex: the outbound carrier")
    dial.add_argument("--call-center-number", help="back_to_back: the instance's number to use")
    sms = _kind(kinds, "sms", "a predefined SMS (SendPredefinedShortMessage)")
    sms.add_argument("--config-id", type=int, required=True, help="the SMS config id")
    sms.add_argument(
        "--phone", action="append", default=[], dest="phone_numbers", help="a number; repeat it"
    )
    sms.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        dest="template_params",
        help="a template parameter; repeat it",
    )
    appraise = _kind(kinds, "appraise", "a satisfaction survey (voice or SMS)")
    appraise.add_argument(
        "--channel", choices=["voice", "sms"], default="voice", help="default: voice"
    )
    appraise.add_argument("--contact-id", required=True, help="the call to survey")
    appraise.add_argument("--contact-type", choices=["inbound", "outbound"], help="sms channel")
    appraise.add_argument("--phone", action="append", dest="phone_numbers", help="sms channel")
    appraise.add_argument("--skill-group-id", help="sms channel")


def _kind(
    kinds: argparse._SubParsersAction[argparse.ArgumentParser], kind: str, what: str
) -> argparse.ArgumentParser:
    parser = kinds.add_parser(kind, help=what, description=f"Send {what}.")
    parser.add_argument("--instance", required=True, dest="instance_id", help="CCC instance id")
    parser.add_argument("--command-id", help="the idempotency key (default: a new uuid)")
    parser.add_argument("--expires-in", type=float, metavar="SECONDS", help="expire after this")
    parser.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="returned in the result as it was; repeat it",
    )
    parser.add_argument("--wait", action="store_true", help="print the result when it comes")
    parser.add_argument("--timeout", type=float, default=30.0, help="--wait at most this, s")
    add_config_argument(parser)
    parser.set_defaults(func=run)
    return parser


def command_body(kind: CommandKind, args: argparse.Namespace) -> dict[str, Any]:
    """The command's JSON fields from the flags given (absent flags stay absent)."""
    skip = {"kind", "func", "config", "wait", "timeout", "expires_in", "command", "log_level"}
    skip |= {"log_format", "default_log_level"}
    body = {
        name: value
        for name, value in vars(args).items()
        if name not in skip and value is not None and value != []
    }
    body["command_id"] = args.command_id or str(uuid.uuid4())
    for name, flag in (("metadata", "--metadata"), ("template_params", "--param")):
        if name in body:
            body[name] = dict(_pair(item, flag) for item in body[name])
    if args.expires_in is not None:
        body["expires_at"] = (datetime.now(UTC) + timedelta(seconds=args.expires_in)).isoformat()
    if kind == "sms" and "phone_numbers" not in body:
        body["phone_numbers"] = []  # so validation names the empty list
    return body


def _pair(item: str, flag: str) -> tuple[str, str]:
    name, equals, value = item.partition("=")
    if not equals or not name:
        raise StartupError(f"{flag} takes NAME=VALUE, got {item!r}")
    return name, value


async def run(args: argparse.Namespace) -> int:
    kind: CommandKind = args.kind
    try:
        settings = settings_from(args)
        try:
            body = command_body(kind, args)
            command = validate_command(kind, body, Limits.of(settings.commands))
        except InvalidCommandError as invalid:
            raise StartupError(f"invalid command: {invalid}") from None
        with quiet_kafka_logs():
            return await _send(settings, kind, command, args)
    except StartupError as error:
        return startup_failed("send", error)


async def _send(
    settings: Settings, kind: CommandKind, command: Command, args: argparse.Namespace
) -> int:
    topic = settings.topics.name(COMMAND_TOPICS[kind])
    key = command.command_id.encode()
    record = OutRecord(topic, key, command.model_dump_json(exclude_defaults=True).encode())
    producer = Producer(settings.kafka)
    try:
        await producer.start()
        if not args.wait:
            await producer.send_all([record])
            say(f"sent {kind} command {command.command_id} to {topic}")
            return 0
        results = settings.topics.name("command_results")
        partition = partition_for(key, await producer.partitions_for(results))
        waiting = _Result(key)
        subscription = Subscription(
            (results,),
            # From the end as it is now, fixed before sending, so the result cannot slip past.
            start_from="latest",
            partitions=frozenset({partition}),
            ordered_by=None,
        )
        consumer = Consumer(
            settings.kafka, subscription, waiting.take, name="send", rebalance=waiting
        )
        reading = asyncio.create_task(consumer.run(waiting.found))
        try:
            await _first(reading, waiting.ready)
            await producer.send_all([record])
            say(f"sent {kind} command {command.command_id} to {topic}")
            await _first(reading, waiting.found, timeout_s=args.timeout)
        finally:
            waiting.found.set()
            await reading
    except KafkaError as error:
        raise StartupError(kafka_failure(settings.kafka, error)) from error
    finally:
        await producer.stop()
    if waiting.result is None:
        sys.stderr.write(f"ccc-bridge send: no result within {args.timeout:g} s\n")
        return EXIT_NO_RESULT
    event, data = waiting.result
    say(render(event))
    say(data.model_dump_json(indent=2))
    return 0 if data.status == "succeeded" else EXIT_NOT_SUCCEEDED


async def _first(
    reading: asyncio.Task[None], event: asyncio.Event, *, timeout_s: float | None = None
) -> None:
    """Until `event` is set, `timeout_s` has passed, or `reading` ended (with its error)."""
    waiting = asyncio.create_task(event.wait())
    try:
        await asyncio.wait(
            {reading, waiting}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiting.cancel()
    if reading.done():
        reading.result()


class _Result:
    """The result of one command id, read from its results partition."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.ready = asyncio.Event()  # reading from the end as it was
        self.found = asyncio.Event()
        self.result: tuple[dict[str, Any], CommandResult] | None = None

    async def assigned(self, partitions: frozenset[TopicPartition]) -> None:  # noqa: ARG002 - the one asked for
        self.ready.set()

    async def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        pass

    async def take(self, record: Record) -> bool:
        if record.key != self._key or record.value is None or self.result is not None:
            return True
        try:
            event = json.loads(record.value)
            self.result = event, CommandResult.model_validate(event["data"])
        except (ValueError, KeyError, TypeError, RecursionError):
            return True  # under its key, but not a result this service wrote: not it
        self.found.set()
        return True
