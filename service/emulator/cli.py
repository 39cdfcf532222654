"""`ccc-bridge emulator`: the CCC API emulator on its own, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys

from service.emulator.config import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    EmulatorConfig,
)
from service.emulator.server import EmulatorServer

ACCESS_KEY_ID_ENV = "CCC_EMULATOR_ACCESS_KEY_ID"
ACCESS_KEY_SECRET_ENV = "CCC_EMULATOR_ACCESS_KEY_SECRET"  # noqa: S105 - a variable's name
EXIT_STARTUP_FAILED = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="run the CCC 2017-07-05 API emulator",
        description="Serve a simulated CCC contact centre over the CCC 2017-07-05 RPC API, "
        "with fault injection and an inspection API under /_emulator/.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (0: any)")
    parser.add_argument(
        "--instance",
        dest="instances",
        action="append",
        metavar="ID",
        help="a simulated CCC instance id (repeatable; default: ccc-demo)",
    )
    parser.add_argument("--agents", type=_non_negative_int, default=10, help="agents per instance")
    parser.add_argument(
        "--access-key-id", help=f"accepted AccessKeyId (default: ${ACCESS_KEY_ID_ENV}, or built-in)"
    )
    parser.add_argument(
        "--access-key-secret",
        help=f"its AccessKeySecret (default: ${ACCESS_KEY_SECRET_ENV}, or built-in)",
    )
    parser.add_argument(
        "--bearer-token",
        dest="bearer_tokens",
        action="append",
        metavar="TOKEN",
        help="an accepted bearer token (repeatable)",
    )
    parser.add_argument(
        "--sts-duration-s",
        type=_positive_int,
        help="lifetime of the keys its STS (AssumeRole, AssumeRoleWithOIDC) issues, whatever "
        "DurationSeconds asks (default: as asked, 900 at least); shorter than Alibaba allows, "
        "to watch clients refresh",
    )
    parser.add_argument(
        "--oidc-token",
        dest="oidc_tokens",
        action="append",
        metavar="TOKEN",
        help="an OIDC token AssumeRoleWithOIDC accepts (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulation and faults")
    parser.add_argument(
        "--speed", type=_positive_float, default=1.0, help="simulated seconds per real second"
    )
    add_listing_arguments(parser, quiet_agents=0)
    parser.add_argument(
        "--other-states-rate",
        type=_share,
        default=0.0,
        help="share of answered calls whose agent passes through a state beyond the six "
        "(Conference, HelpRequested, Help) (default 0)",
    )
    parser.add_argument(
        "--shuffle-rows",
        action="store_true",
        help="list ListAgentStates rows in a new order on every call (the order is undocumented)",
    )
    parser.add_argument(
        "--retention-s",
        type=_positive_float,
        default=EmulatorConfig.retention_s,
        help="simulated seconds of history kept (state logs, events, calls, records); older "
        "history is forgotten, so memory stays bounded (default 7200)",
    )
    parser.set_defaults(func=run)


def add_listing_arguments(parser: argparse.ArgumentParser, *, quiet_agents: int) -> None:
    """What decides who ListAgentStates lists: shared with `ccc-bridge demo`."""
    parser.add_argument(
        "--active-window-s",
        type=_positive_float,
        default=EmulatorConfig.active_window_s,
        help="ListAgentStates lists agents whose state changed within this many simulated "
        "seconds (default 14400: CCC's 4 hours)",
    )
    parser.add_argument(
        "--quiet-agents",
        type=_non_negative_int,
        default=quiet_agents,
        help="agents per instance that stay Ready and take no calls, so they drop out of "
        f"ListAgentStates after the active window (default {quiet_agents})",
    )


async def run(args: argparse.Namespace) -> int:
    config, credentials = _config(args)
    server = EmulatorServer(config)
    try:
        await server.start()
    except OSError as error:
        in_use = error.errno == errno.EADDRINUSE
        reason = "the port is already in use" if in_use else error.strerror or str(error)
        sys.stderr.write(
            f"ccc-bridge emulator: cannot listen on {config.host}:{config.port}: {reason}\n"
        )
        return EXIT_STARTUP_FAILED
    try:
        await _serve_until_signalled(
            f"ccc-emulator ready url={server.url} instances={','.join(config.instances)} "
            f"agents={config.agents} credentials={credentials}\n"
        )
    finally:
        await server.stop()
    return 0


async def _serve_until_signalled(ready_line: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        # Announced only once a signal can stop us cleanly.
        sys.stdout.write(ready_line)
        sys.stdout.flush()
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _config(args: argparse.Namespace) -> tuple[EmulatorConfig, str]:
    """The configuration, and where its credentials came from (never the secret itself)."""
    env_key_id = os.environ.get(ACCESS_KEY_ID_ENV)
    if args.access_key_id:
        key_id, source = args.access_key_id, "--access-key-id flag"
    elif env_key_id:
        key_id, source = env_key_id, "environment"
    else:
        key_id, source = DEFAULT_ACCESS_KEY_ID, "built-in development key"
    secret = (
        args.access_key_secret or os.environ.get(ACCESS_KEY_SECRET_ENV) or DEFAULT_ACCESS_KEY_SECRET
    )
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        instances=tuple(args.instances or ("ccc-demo",)),
        agents=args.agents,
        seed=args.seed,
        speed=args.speed,
        access_keys={key_id: secret},
        bearer_tokens=frozenset(args.bearer_tokens or ()),
        sts_duration_s=args.sts_duration_s,
        oidc_tokens=frozenset(args.oidc_tokens or ()),
        active_window_s=args.active_window_s,
        quiet_agents=args.quiet_agents,
        other_states_rate=args.other_states_rate,
        shuffle_rows=args.shuffle_rows,
        retention_s=args.retention_s,
    )
    return config, f"{source} ({key_id})"


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {value}")
    return value
