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
from typing import Literal

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.console import StartupError
from service.openapi import openapi_document
from service.settings import HttpSettings

log = structlog.get_logger(__name__)

Check = Callable[[], str | None]  # None when fine, else why not
Serves = Literal["all", "admin", "api"]


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
    readiness: Readiness,
    settings: HttpSettings,
    routes: Sequence[web.RouteDef] = (),
    *,
    serves: Serves = "all",
) -> web.Application:
    """`serves` admin: the probes and /metrics; api: the command routes and /openapi.json."""

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
    if serves != "api":
        app.router.add_get("/livez", livez)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
    if serves != "admin":
        app.router.add_get("/openapi.json", openapi)
        app.router.add_routes(routes)
    return app


@asynccontextmanager
async def serving(
    settings: HttpSettings, readiness: Readiness, routes: Sequence[web.RouteDef] = ()
) -> AsyncIterator[int]:
    """The HTTP server, listening until the block ends; yields the port of the command
    API. With http.admin_port, the probes and /metrics listen there alone."""
    async with contextlib.AsyncExitStack() as stack:
        if settings.admin_port is None:
            yield await stack.enter_async_context(
                _listening(settings, settings.port, application(readiness, settings, routes))
            )
            return
        admin = application(readiness, settings, serves="admin")
        await stack.enter_async_context(_listening(settings, settings.admin_port, admin))
        api = application(readiness, settings, routes, serves="api")
        yield await stack.enter_async_context(_listening(settings, settings.port, api))


@asynccontextmanager
async def _listening(settings: HttpSettings, port: int, app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(
        app,
        access_log=None,
        # aiohttp's idle timer runs from the connection's start and from each answer, and
        # closes a connection still without a whole request head: the header timeout.
        keepalive_timeout=settings.header_timeout_s,
        # After an early answer (401, 408, 413) the rest of a body is read and dropped for
        # this long, so the client gets the answer rather than a reset.
        lingering_time=LINGER_S,
        # A request in progress at shutdown: its body and Kafka's acknowledgement, at most.
        shutdown_timeout=settings.body_timeout_s + settings.produce_timeout_s,
    )
    await runner.setup()
    try:
        if runner.server is None:
            raise RuntimeError("AppRunner.setup() made no server")
        factory = _Capped(runner.server, settings.max_connections)
        loop = asyncio.get_running_loop()
        try:
            listener = await loop.create_server(factory, settings.host, port)
        except OSError as error:
            where = f"{settings.host}:{port}"
            raise StartupError(f"cannot listen on {where}: {error.strerror}") from error
        try:
            bound: int = listener.sockets[0].getsockname()[1]
            paths = sorted({resource.canonical for resource in app.router.resources()})
            log.info("http_listening", host=settings.host, port=bound, paths=paths)
            yield bound
        finally:
            listener.close()
    finally:
        await runner.cleanup()


class _Capped:
    """A listening socket's protocol factory: aiohttp's handler while fewer than `limit`
    connections are open, else one that answers 503 and closes, so slow or stuck clients
    cannot take every file descriptor."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server = server
        self._limit = limit
        self._open = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if self._open >= self._limit:
            log.debug("http_connection_refused", open=self._open, limit=self._limit)
            return _Refused()
        self._open += 1
        return _Counted(self._server(), self._closed)

    def _closed(self) -> None:
        self._open -= 1


class _Counted(asyncio.Protocol):
    """aiohttp's handler as it is, telling when its connection is gone."""

    def __init__(self, inner: asyncio.Protocol, closed: Callable[[], None]) -> None:
        self._inner = inner
        self._closed = closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed()
        self._inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(REFUSAL)
        transport.close()


REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)
LINGER_S = 1.0
