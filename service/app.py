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
from collections.abc import Callable
from functools import partial

import structlog
from aiokafka.errors import KafkaError

from service.ccc.client import CccClient
from service.ccc.errors import CccError
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
from service.errors import ConfigError
from service.events.assignment import Pollers
from service.events.publisher import CheckpointStore, EventPublisher
from service.kafka.admin import describe_topics, ensure_topics
from service.kafka.producer import Producer
from service.kafka.topics import COMMAND_TOPICS
from service.settings import Settings
from service.web import Probes, Readiness, serving
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


async def _check_ccc(ccc: CccClient, settings: Settings) -> None:
    if not settings.ccc.instances:
        raise StartupError("no CCC instance to serve: set ccc.instances")
    for instance_id in settings.ccc.instances:
        try:
            await ccc.call("GetInstance", {"InstanceId": instance_id})
        except CccError as error:
            raise StartupError(f"CCC at {settings.ccc.url}: {error}") from error


async def _check_command_topics(settings: Settings) -> None:
    """Ledger entries live on the partition number of their command: the command topics
    and the ledger must agree on how many there are."""
    names = [settings.topics.name(t) for t in (*COMMAND_TOPICS.values(), "ledger")]
    try:
        found = await describe_topics(settings.kafka, names)
    except KafkaError as error:
        raise StartupError(kafka_failure(settings.kafka, error)) from error
    missing = [name for name in names if name not in found]
    if missing:
        raise StartupError(f"missing topics {missing}: create them (ccc-bridge topics --create)")
    counts = {name: found[name].partitions for name in names}
    if len(set(counts.values())) > 1:
        raise StartupError(
            f"the command topics and the ledger need the same number of partitions: {counts}"
        )


async def run_service(
    settings: Settings, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None
) -> None:
    """Poll every configured instance and execute commands until `stop` is set; a cycle in
    progress finishes, and so do commands in flight."""
    try:
        settings.ccc.credentials()
    except ConfigError as error:
        raise StartupError(str(error)) from error
    producer = await _start_kafka(settings)
    try:
        checkpoints = CheckpointStore(producer, settings.kafka, settings.topics)
        publisher = EventPublisher(producer, settings.topics, settings.ccc.region)
        async with CccClient(settings.ccc) as ccc:
            await _check_ccc(ccc, settings)
            if settings.commands.enabled:
                await _check_command_topics(settings)
            probes = Probes(
                kafka_reachable=producer.reachable,
                ccc_answered_at=lambda: ccc.answered_at,
                ask_ccc=partial(ccc.call, "GetInstance", {"InstanceId": settings.ccc.instances[0]}),
            )
            readiness = Readiness(stop, {"kafka": probes.kafka, "ccc": probes.ccc})
            view = StatusView(settings)
            ingress = CommandIngress(settings, producer.send_all, view)
            # Served until everything else has stopped: /readyz says 503 meanwhile.
            async with (
                serving(settings.http, readiness, ingress.routes()),
                asyncio.TaskGroup() as group,
            ):
                group.create_task(probes.run(settings.http, stop))
                if settings.http.api_keys:  # else nobody may ask for a command's status
                    group.create_task(view.run(stop))
                if settings.commands.enabled:
                    worker = CommandWorker(settings, producer, ccc, publisher)
                    readiness.checks["commands"] = worker.assignment_problem
                    group.create_task(worker.run(stop))
                group.create_task(
                    run_webhooks(settings.webhooks, settings.kafka, settings.topics, producer, stop)
                )
                pollers = Pollers(settings, ccc, publisher, checkpoints)
                readiness.checks["pollers"] = pollers.assignment_problem
                group.create_task(pollers.run(stop))
                log.info("service_started", instances=settings.ccc.instances)
                if on_ready is not None:
                    on_ready()
    finally:
        await producer.stop()


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
        with stop_on_signals(stop, again=_exit_now), quiet_kafka_logs() as connected:
            service = asyncio.create_task(run_service(settings, stop, on_ready=connected))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({service, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not service.done():
                return await _within_budget(service, settings.lifecycle.shutdown_budget_s)
            await service
    except StartupError as error:
        return startup_failed("run", error)
    except ExceptionGroup as group:
        # A poller met what a retry cannot mend (credentials revoked, an instance gone):
        # crash-only, the process ends and its supervisor restarts it from the checkpoints.
        failures = group.subgroup(CccError)
        if failures is None:
            raise
        first = failures.exceptions[0]
        sys.stderr.write(f"ccc-bridge run: stopped: {first}\n")
        return 1
    return 0


async def _within_budget(service: asyncio.Task[None], budget_s: float) -> int:
    """Wait for an orderly stop; past the budget, cut it short: exit 1."""
    try:
        await asyncio.wait_for(asyncio.shield(service), budget_s)
    except TimeoutError:
        sys.stderr.write(f"ccc-bridge run: not stopped after {budget_s:g} s; stopping now\n")
        service.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await service
        return 1
    return 0


def _exit_now() -> None:
    """A second SIGINT/SIGTERM: the operator will not wait. Commands cut off mid-call are
    `started` in the ledger and answered `indeterminate` on the next start."""
    sys.stderr.write("ccc-bridge run: second signal, exiting now\n")
    sys.stderr.flush()
    os._exit(EXIT_SECOND_SIGNAL)
