"""`ccc-bridge send dial|sms|appraise ...`: produce one command and, with `--wait`, print
its result. The flags are the command's JSON fields (PRODUCT.md section 3) with dashes."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from service.commands.models import (
    Command,
    CommandKind,
    CommandResult,
    InvalidCommandError,
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
from service.kafka.connection import client_options
from service.kafka.producer import OutRecord, Producer, partition_for
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
    dial.add_argument("--mode", choices=["dial_ex", "back_to_back"], default="dial_ex")
    dial.add_argument("--caller", required=True, help="the calling number")
    dial.add_argument("--callee", required=True, help="the number called")
    dial.add_argument("--answer-mode", choices=["ivr", "agent", "skill_group"], help="dial_ex")
    dial.add_argument("--route-point", help="dial_ex: flow id, ram_id@domain or skill group id")
    dial.add_argument("--provider", help="dial_ex: the outbound carrier")
    dial.add_argument("--call-center-number", help="back_to_back: the instance's number to use")
    sms = _kind(kinds, "sms", "a predefined SMS (SendPredefinedShortMessage)")
    sms.add_argument("--config-id", type=int, required=True, help="the SMS config id")
    sms.add_argument("--phone", action="append", default=[], dest="phone_numbers")
    sms.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", dest="template_params"
    )
    appraise = _kind(kinds, "appraise", "a satisfaction survey (voice or SMS)")
    appraise.add_argument("--channel", choices=["voice", "sms"], default="voice")
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
    parser.add_argument("--metadata", action="append", default=[], metavar="NAME=VALUE")
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
            command = validate_command(kind, command_body(kind, args))
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
    value = command.model_dump_json(exclude_defaults=True).encode()
    results = settings.topics.name("command_results")
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), enable_auto_commit=False)
    producer = Producer(settings.kafka)
    try:
        await producer.start()
        if args.wait:  # from the end as it is now, so the result cannot slip past
            await consumer.start()
            partitions = sorted(await producer.partitions_for(results))
            where = TopicPartition(results, partition_for(key, partitions))
            consumer.assign([where])
            await consumer.seek_to_end(where)
            await consumer.position(where)
        await producer.send_all([OutRecord(topic, key, value)])
        say(f"sent {kind} command {command.command_id} to {topic}")
        if not args.wait:
            return 0
        result = await _result(consumer, command.command_id, args.timeout)
    except KafkaError as error:
        raise StartupError(kafka_failure(settings.kafka, error)) from error
    finally:
        await consumer.stop()
        await producer.stop()
    if result is None:
        sys.stderr.write(f"ccc-bridge send: no result within {args.timeout:g} s\n")
        return EXIT_NO_RESULT
    event, data = result
    say(render(event))
    say(data.model_dump_json(indent=2))
    return 0 if data.status == "succeeded" else EXIT_NOT_SUCCEEDED


async def _result(
    consumer: AIOKafkaConsumer, command_id: str, timeout_s: float
) -> tuple[dict[str, Any], CommandResult] | None:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        batches = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
        for record in (r for batch in batches.values() for r in batch):
            if record.key != command_id.encode() or record.value is None:
                continue
            event = json.loads(record.value)
            return event, CommandResult.model_validate(event["data"])
    return None
