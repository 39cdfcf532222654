"""The service's own HTTP surface (PRODUCT.md section 5): /livez, /readyz, /metrics, the
command endpoints (service/commands/ingress.py) and /openapi.json describing them all.

/livez answers 200 while the process runs. /readyz answers 200 only while Kafka answers,
CCC has answered recently and the command consumers hold their assignment, and 503 with
what fails otherwise, and from the moment shutdown begins. A probe loop keeps the Kafka and
CCC checks fresh when no traffic does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.ccc.errors import CccError
from service.console import StartupError
from service.openapi import openapi_document
from service.settings import HttpSettings

log = structlog.get_logger(__name__)

Check = Callable[[], str | None]  # None when fine, else why not


@dataclass
class Readiness:
    """The checks /readyz runs, by name; a stopping service is never ready."""

    stop: asyncio.Event
    checks: dict[str, Check] = field(default_factory=dict)

    def problems(self) -> dict[str, str]:
        found = {name: why for name, check in self.checks.items() if (why := check()) is not None}
        if self.stop.is_set():
            found["shutdown"] = "the service is stopping"
        return found


class Probe:
    """The latest result of a periodic check: fine, or why not."""

    def __init__(self, first: str) -> None:
        self.problem: str | None = first

    def __call__(self) -> str | None:
        return self.problem


@dataclass
class Probes:
    """Kafka and CCC, asked every `probe_interval_s`: Kafka for metadata, CCC for an instance
    when nothing else asked it within `ccc_fresh_s`."""

    kafka_reachable: Callable[[], Awaitable[bool]]
    ccc_answered_at: Callable[[], float | None]
    ask_ccc: Callable[[], Awaitable[object]]
    # Why writes would go to partitions Kafka does not have; None when none would.
    partition_problem: Callable[[], Awaitable[str | None]]
    kafka: Probe = field(default_factory=lambda: Probe("not checked yet"))
    ccc: Probe = field(default_factory=lambda: Probe("not checked yet"))
    partitions: Probe = field(default_factory=lambda: Probe("not checked yet"))

    async def run(self, settings: HttpSettings, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                ok = await asyncio.wait_for(self.kafka_reachable(), settings.probe_timeout_s)
            except Exception as error:  # noqa: BLE001 - whatever it is, Kafka is not ready
                self.kafka.problem = f"Kafka did not answer: {error!r}"
            else:
                self.kafka.problem = None if ok else "Kafka did not answer a metadata request"
            if self.kafka.problem is None:
                await self._check_partitions(settings)
            answered = self.ccc_answered_at()
            if answered is None or time.monotonic() - answered > settings.ccc_fresh_s:
                try:
                    await asyncio.wait_for(self.ask_ccc(), settings.probe_timeout_s)
                except (TimeoutError, CccError) as error:
                    self.ccc.problem = f"CCC did not answer: {error!r}"
                else:
                    self.ccc.problem = None
            else:
                self.ccc.problem = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.probe_interval_s)

    async def _check_partitions(self, settings: HttpSettings) -> None:
        try:
            problem = await asyncio.wait_for(self.partition_problem(), settings.probe_timeout_s)
        except Exception as error:  # noqa: BLE001 - whatever it is, the counts are unknown
            problem = f"partition counts not read: {error!r}"
        if problem is not None and problem != self.partitions.problem:
            log.error("kafka_partitions_mismatch", problem=problem)
        elif problem is None and self.partitions.problem not in (None, "not checked yet"):
            log.info("kafka_partitions_agree")
        self.partitions.problem = problem


def application(
    readiness: Readiness, settings: HttpSettings, routes: Sequence[web.RouteDef] = ()
) -> web.Application:
    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        problems = readiness.problems()
        if problems:
            return web.json_response({"status": "not ready", "failing": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    app = web.Application(client_max_size=settings.max_body_bytes)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_routes(routes)
    return app


@asynccontextmanager
async def serving(
    settings: HttpSettings, readiness: Readiness, routes: Sequence[web.RouteDef] = ()
) -> AsyncIterator[int]:
    """The HTTP server, listening until the block ends; yields its port."""
    runner = web.AppRunner(application(readiness, settings, routes), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as error:
            where = f"{settings.host}:{settings.port}"
            raise StartupError(f"cannot listen on {where}: {error.strerror}") from error
        port: int = runner.addresses[0][1]
        log.info("http_listening", host=settings.host, port=port)
        yield port
    finally:
        await runner.cleanup()
