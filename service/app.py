"""The composition root: builds every adapter from Settings and runs the pollers, the
command worker, the readiness probes and the HTTP server.

One TaskGroup supervises them, crash-only: a poller that cannot go on (bad credentials, a
bug) takes the service down with a non-zero exit, and the checkpoints and the command
ledger make the restart gapless. Transient CCC trouble only skips a cycle; Kafka trouble
pauses publishing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import structlog
from aiokafka.errors import KafkaError

from service.ccc.client import CccClient
from service.ccc.errors import CccError
from service.ccc.health import CccHealth
from service.commands.ingress import CommandIngress, StatusView
from service.commands.worker import CommandWorker
from service.console import (
    StartupError,
    add_config_argument,
    kafka_failure,
    quiet_kafka_logs,
    settings_from,
    startup_failed,
    stop_on_signals,
)
from service.errors import ConfigError, first_cause
from service.events.assignment import Pollers
from service.events.publisher import CheckpointStore, EventPublisher
from service.kafka.admin import describe_topics, ensure_topics
from service.kafka.producer import Producer
from service.kafka.topics import co_partition_problem, co_partitioned
from service.metrics import BUILD, CONSUMER_ASSIGNED
from service.settings import Settings
from service.version import service_version
from service.web import Check, Probes, Readiness, serving
from service.webhooks.dispatcher import run_webhooks

log = structlog.get_logger(__name__)

EXIT_SECOND_SIGNAL = 130


async def _start_kafka(settings: Settings) -> Producer:
    producer = Producer(settings.kafka)
    try:
        await producer.start()
        if settings.topics.create_missing:
            await ensure_topics(settings.kafka, settings.topics)
    except KafkaError as error:
        await producer.stop()
        raise StartupError(kafka_failure(settings.kafka, error)) from error
    return producer


async def _check_command_topics(settings: Settings) -> None:
    """Ledger entries live on the partition number of their command: the command topics
    and the ledger must agree on how many there are."""
    names = co_partitioned(settings.topics)
    try:
        found = await describe_topics(settings.kafka, names)
    except KafkaError as error:
        raise StartupError(kafka_failure(settings.kafka, error)) from error
    missing = [name for name in names if name not in found]
    if missing:
        raise StartupError(f"missing topics {missing}: create them (ccc-bridge topics --create)")
    counts = {name: found[name].partitions for name in names}
    if (problem := co_partition_problem(settings.topics, counts)) is not None:
        raise StartupError(problem)


async def _partition_problem(producer: Producer, settings: Settings) -> str | None:
    """What the producer's metadata says is wrong with the partitions written to: one it wrote
    to that its topic lacks (a topic re-created with fewer, behind the service's back), or
    command topics and a ledger that disagree (a command's entries would go astray)."""
    problems = []
    for topic, numbers in list(producer.unknown_partitions.items()):
        known = await producer.partitions_for(topic)
        if missing := sorted(numbers - set(known)):
            problems.append(f"{topic} has no partition {missing} (it has {len(known)})")
        else:
            del producer.unknown_partitions[topic]
    if settings.commands.enabled:
        names = co_partitioned(settings.topics)
        counts = {name: len(await producer.partitions_for(name)) for name in names}
        if (problem := co_partition_problem(settings.topics, counts)) is not None:
            problems.append(problem)
    return "; ".join(problems) or None


async def run_service(
    settings: Settings, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None
) -> None:
    """Poll every configured instance and execute commands until `stop` is set; a cycle in
    progress finishes, and so do commands in flight."""
    BUILD.info({"version": service_version()})
    if not settings.ccc.instances:
        raise StartupError("no CCC instance to serve: set ccc.instances")
    try:
        settings.ccc.credentials()
    except ConfigError as error:
        raise StartupError(str(error)) from error
    producer = await _start_kafka(settings)
    try:
        checkpoints = CheckpointStore(producer, settings.kafka, settings.topics)
        publisher = EventPublisher(producer, settings.topics, settings.ccc.region)
        async with CccClient(settings.ccc) as ccc:
            # CCC is not asked before serving: webhooks, HTTP ingress and command status work
            # without it, and commands wait for it (service/ccc/health.py).
            if settings.commands.enabled:
                await _check_command_topics(settings)
            probes = Probes(
                kafka_reachable=producer.reachable,
                partition_problem=partial(_partition_problem, producer, settings),
            )
            health = CccHealth(
                ccc,
                settings.ccc.instances[0],
                interval_s=settings.http.probe_interval_s,
                timeout_s=settings.http.probe_timeout_s,
                fresh_s=settings.http.ccc_fresh_s,
            )
            readiness = Readiness(
                stop,
                {"kafka": probes.kafka, "partitions": probes.partitions},
                {"ccc": health.problem},
            )
            view = StatusView(settings)
            ingress = CommandIngress(settings, producer.send_all, view)
            # Served until everything else has stopped: /readyz says 503 meanwhile.
            async with (
                serving(settings.http, readiness, ingress.routes()),
                asyncio.TaskGroup() as group,
            ):
                group.create_task(probes.run(settings.http, stop))
                group.create_task(health.run(stop))
                if settings.http.api_keys:  # else nobody may ask for a command's status
                    group.create_task(view.run(stop))
                if settings.commands.enabled:
                    worker = CommandWorker(settings, producer, ccc, publisher, health.wait_up)
                    report(readiness, "commands", worker.assignment_problem)
                    group.create_task(worker.run(stop))
                webhooks = partial(run_webhooks, settings.webhooks, settings.kafka, settings.topics)
                group.create_task(webhooks(producer, stop, report=partial(report, readiness)))
                events = EventPublisher(
                    producer, settings.topics, settings.ccc.region, skip_too_large=True
                )
                pollers = Pollers(settings, ccc, events, checkpoints)
                report(readiness, "pollers", pollers.assignment_problem)
                group.create_task(pollers.run(stop))
                log.info("service_started", instances=settings.ccc.instances)
                if on_ready is not None:
                    on_ready()
    finally:
        await producer.stop()


def report(readiness: Readiness, consumer: str, problem: Check) -> None:
    """A consumer group member's assignment, in /readyz's body and /metrics."""
    readiness.reports[consumer] = problem
    CONSUMER_ASSIGNED.labels(consumer).set_function(lambda: 0.0 if problem() else 1.0)


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "run",
        help="run the service: poll CCC and publish events to Kafka",
        description="Poll every configured CCC instance and publish its events to Kafka.",
    )
    add_config_argument(parser)
    parser.set_defaults(func=run)


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    try:
        settings = settings_from(args)
    except StartupError as error:
        return startup_failed("run", error)
    with stop_on_signals(stop, again=_exit_now), quiet_kafka_logs() as connected:
        service = partial(run_service, settings, stop, on_ready=connected)
        return await supervised(service, stop, settings.lifecycle.shutdown_budget_s)


async def supervised(
    service: Callable[[], Coroutine[Any, Any, None]], stop: asyncio.Event, budget_s: float
) -> int:
    """Run `service` to its end; the exit code. 0: stopped in order within `budget_s` of
    `stop`. 2: it could not start. 1: anything in it failed, whatever the error (crash-only:
    the supervisor restarts the process, and checkpoints and the ledger make that gapless),
    or it did not stop within the budget. A failure ends with one line naming its cause."""
    task = asyncio.create_task(service())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        await asyncio.wait({task}, timeout=budget_s)
    if not task.done():
        sys.stderr.write(f"ccc-bridge run: not stopped after {budget_s:g} s; stopping now\n")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return 1
    error = None if task.cancelled() else task.exception()
    if error is None:
        return 0
    cause = first_cause(error)
    if isinstance(cause, StartupError):
        return startup_failed("run", cause)
    if isinstance(cause, CccError):
        # What a retry cannot mend (credentials revoked, an instance gone): no bug to trace.
        sys.stderr.write(f"ccc-bridge run: stopped: {cause}\n")
    else:
        log.error("service_failed", exc_info=cause)
        sys.stderr.write(f"ccc-bridge run: stopped: {type(cause).__name__}: {cause}\n")
    return 1


def _exit_now() -> None:
    """A second SIGINT/SIGTERM: the operator will not wait. Commands cut off mid-call are
    `started` in the ledger and answered `indeterminate` on the next start."""
    sys.stderr.write("ccc-bridge run: second signal, exiting now\n")
    sys.stderr.flush()
    os._exit(EXIT_SECOND_SIGNAL)
