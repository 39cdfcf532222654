"""The service's own HTTP surface (PRODUCT.md section 5): /livez, /readyz, /metrics, the
command endpoints (service/commands/ingress.py) and /openapi.json describing them all.

/livez answers 200 while the process runs. /readyz answers 200 while Kafka answers and
the partition counts agree, which is all that serving HTTP needs, and 503 with what fails
otherwise, and from the moment shutdown begins. Its body also tells, without failing,
whether CCC answers and the consumer groups hold their assignment (`degraded`). A probe
loop keeps the Kafka checks fresh when no traffic does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.console import StartupError
from service.openapi import openapi_document
from service.settings import HttpSettings

log = structlog.get_logger(__name__)

Check = Callable[[], str | None]  # None when fine, else why not


@dataclass
class Readiness:
    """The checks /readyz runs, by name; a stopping service is never ready. `reports` are
    told in its body but never make it fail: what serving HTTP does not need (CCC, the
    consumer groups), which would otherwise take every replica out of the Service at once
    during a CCC outage or a long rebalance."""

    stop: asyncio.Event
    checks: dict[str, Check] = field(default_factory=dict)
    reports: dict[str, Check] = field(default_factory=dict)

    def problems(self) -> dict[str, str]:
        found = _failing(self.checks)
        if self.stop.is_set():
            found["shutdown"] = "the service is stopping"
        return found

    def degraded(self) -> dict[str, str]:
        return _failing(self.reports)


def _failing(checks: dict[str, Check]) -> dict[str, str]:
    return {name: why for name, check in checks.items() if (why := check()) is not None}


class Probe:
    """The latest result of a periodic check: fine, or why not."""

    def __init__(self, first: str) -> None:
        self.problem: str | None = first

    def __call__(self) -> str | None:
        return self.problem


@dataclass
class Probes:
    """Kafka, asked for metadata every `probe_interval_s`, and the partition counts."""

    kafka_reachable: Callable[[], Awaitable[bool]]
    # Why writes would go to partitions Kafka does not have; None when none would.
    partition_problem: Callable[[], Awaitable[str | None]]
    kafka: Probe = field(default_factory=lambda: Probe("not checked yet"))
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
        body: dict[str, object] = {"status": "ready"}
        if problems := readiness.problems():
            body = {"status": "not ready", "failing": problems}
        if degraded := readiness.degraded():
            body["degraded"] = degraded
        return web.json_response(body, status=503 if problems else 200)

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
