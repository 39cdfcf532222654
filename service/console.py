"""What every long-running or Kafka-facing subcommand shares: settings from `--config`,
stop on SIGINT/SIGTERM, the ready line, and startup failures as one line and exit code 2."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import ValidationError

from service.errors import ConfigError
from service.kafka.connection import client_options, connection_problem
from service.kafka.settings import KafkaSettings
from service.logs import configure_logging
from service.settings import LogSettings, Settings, load_settings
from service.validation import field_errors

EXIT_STARTUP_FAILED = 2
SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Young objects collected after this many net allocations, not CPython's 700: every
# command allocates hundreds (tasks, futures, models) that die young anyway.
GC_YOUNG_THRESHOLD = 10_000


class StartupError(Exception):
    """A command cannot start; the message names the cause in one line."""


def tune_gc() -> None:
    """For a process that runs long, once it has imported everything: what exists now
    (modules, models, the CCC catalogue) is left out of every later collection, and
    collections run less often. Untuned, the collector took about 40 of the 320 µs of CPU
    each command cost (bench/commands.py)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML settings over config/default.yaml"
    )


def instant(text: str) -> int:
    """An argument's RFC 3339 / ISO 8601 time, with an offset, as epoch ms. One without an
    offset is refused: CCC instances keep China time, operators often UTC, and a guess would
    shift a span by hours."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time (e.g. 2024-05-01T00:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset: add Z or one like +08:00")
    return int(moment.timestamp() * 1000)


def add_time_argument(parser: argparse.ArgumentParser, flag: str, dest: str, text: str) -> None:
    """A required time (`instant`), in epoch ms under `dest`; `text` is its help."""
    parser.add_argument(flag, dest=dest, required=True, type=instant, metavar="T", help=text)


def add_stream_arguments(
    parser: argparse.ArgumentParser, streams: Sequence[str], stream_help: str
) -> None:
    """`--instance` and `--stream`, both required: a command on one stream of one instance."""
    parser.add_argument("--instance", required=True, metavar="ID", help="the CCC instance id")
    parser.add_argument("--stream", required=True, choices=streams, help=stream_help)


def log_options(args: argparse.Namespace, configured: LogSettings | None = None) -> tuple[str, str]:
    """Level and format: the command line's `--log-level`/`--log-format` (absent unless
    given), else the settings' `log` section once loaded, else the command's default."""
    if configured is None:
        configured = LogSettings(level=args.default_log_level)
    return (
        getattr(args, "log_level", configured.level),
        getattr(args, "log_format", configured.format),
    )


def settings_from(args: argparse.Namespace) -> Settings:
    try:
        settings = load_settings(args.config)
        client_options(settings.kafka)  # TLS files and SASL credentials, before any client
    except ValidationError as error:
        raise StartupError(f"bad configuration: {field_errors(error)}") from error
    except (ConfigError, OSError, TypeError, ValueError) as error:
        raise StartupError(f"bad configuration: {error}") from error
    # `log` applies from here: with the image's entrypoint `ccc-bridge run`, settings are the
    # only way a deployment has to set the level.
    configure_logging(*log_options(args, settings.log))
    return settings


def startup_failed(command: str, cause: object) -> int:
    sys.stderr.write(f"ccc-bridge {command}: {cause}\n")
    sys.stderr.flush()
    return EXIT_STARTUP_FAILED


def kafka_failure(kafka: KafkaSettings, error: KafkaError) -> str:
    if isinstance(error, KafkaConnectionError):
        # aiokafka's error names no cause: a broker that refused TLS or SASL looks unreachable.
        problem = connection_problem(kafka)
        if problem is not None:
            return f"cannot connect to Kafka at {kafka.bootstrap_servers}: {problem}"
        return f"cannot reach Kafka at {kafka.bootstrap_servers} (is the broker running?)"
    return f"Kafka at {kafka.bootstrap_servers}: {error}"


@contextmanager
def quiet_kafka_logs() -> Iterator[Callable[[], None]]:
    """aiokafka logs every failed connection attempt at error level; while a command reports
    an unreachable broker in one line itself, those are noise. Yields a function that ends
    the quiet early, once connected."""
    logger = logging.getLogger("aiokafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)

    def restore() -> None:
        logger.setLevel(previous)

    try:
        yield restore
    finally:
        restore()


def say(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


@contextmanager
def stop_on_signals(
    stop: asyncio.Event, *, again: Callable[[], None] | None = None
) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` while inside, so the command winds down in order; a
    signal once stopping calls `again`, if given."""
    loop = asyncio.get_running_loop()

    def signalled() -> None:
        if stop.is_set() and again is not None:
            again()
        stop.set()

    for signum in SIGNALS:
        loop.add_signal_handler(signum, signalled)
    try:
        yield
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)
