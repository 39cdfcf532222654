"""`ccc-bridge`: one console script, a subcommand per job (PRODUCT.md section 1)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import get_args

from service import (
    app,
    backfill,
    broker,
    checkpoints,
    config_check,
    demo,
    dlq,
    schemas,
    send,
    tail,
    topics,
)
from service.console import log_options, tune_gc
from service.emulator import cli as emulator_cli
from service.logs import configure_logging
from service.settings import LogSettings
from service.version import service_version


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """`--log-level`/`--log-format`, before the subcommand or after it. Absent unless given
    (SUPPRESS), so a subcommand's parser leaves a value given before it alone, and settings
    apply where neither was given."""
    parser.add_argument(
        "--log-level",
        choices=get_args(LogSettings.model_fields["level"].annotation),
        default=argparse.SUPPRESS,
        help="default: log.level (info; warning for demo, whose screen is the event view)",
    )
    parser.add_argument(
        "--log-format",
        choices=get_args(LogSettings.model_fields["format"].annotation),
        default=argparse.SUPPRESS,
        help="default: log.format (auto: console on a terminal, JSON otherwise)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccc-bridge",
        description="Alibaba Cloud Call Center (CCC 2017-07-05) to Kafka bridge.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {service_version()}")
    add_log_arguments(parser)
    parser.set_defaults(default_log_level="info")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    app.add_parser(subcommands)
    emulator_cli.add_parser(subcommands)
    demo.add_parser(subcommands)
    broker.add_parser(subcommands)
    topics.add_parser(subcommands)
    send.add_parser(subcommands)
    tail.add_parser(subcommands)
    schemas.add_parser(subcommands)
    backfill.add_parser(subcommands)
    checkpoints.add_parser(subcommands)
    dlq.add_parser(subcommands)
    config_check.add_parser(subcommands)
    for subcommand in _nested(parser):
        add_log_arguments(subcommand)
    return parser


def _nested(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand's parser, and theirs (`checkpoints show`), so the log options go
    after any of them."""
    found = []
    for action in parser._actions:  # noqa: SLF001 - argparse lists subcommands only here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - and by this type
            for child in action.choices.values():
                found += [child, *_nested(child)]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(*log_options(args))  # until a command's settings are loaded
    tune_gc()  # for the long-running subcommands; about 35 ms beside a second of imports
    try:
        code: int = asyncio.run(args.func(args))
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
