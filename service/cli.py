"""`ccc-bridge`: one console script, a subcommand per job (PRODUCT.md section 1)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from service import demo
from service.emulator import cli as emulator_cli
from service.logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccc-bridge",
        description="Alibaba Cloud Call Center (CCC 2017-07-05) to Kafka bridge.",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "json", "console"],
        help="auto: console on a terminal, JSON otherwise",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    emulator_cli.add_parser(subcommands)
    demo.add_parser(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        code: int = asyncio.run(args.func(args))
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
