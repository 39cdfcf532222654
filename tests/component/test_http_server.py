"""The HTTP server over real sockets: slow and idle clients are cut off by the header and
body timeouts, connections past the cap are refused, clients going away log no traceback,
and with an admin port the probes and metrics listen there alone."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import aiohttp
from pydantic import SecretStr

from service.ccc.settings import CccSettings
from service.commands.ingress import CommandIngress, StatusView
from service.kafka.producer import OutRecord
from service.settings import HttpSettings, Settings
from service.web import Readiness, serving
from tests.inspection import eventually
from tests.integration.pipeline import free_port

KEY = "a-key-long-enough-0123456789"
TIMEOUT_S = 0.5
DIAL = (
    b'{"command_id": "c-1", "instance_id": "ccc-1", "mode": "dial_ex", "caller": "02180000000",'
    b' "callee": "13900000000", "answer_mode": "ivr", "route_point": "ivr-1"}'
)


def settings(**http: object) -> Settings:
    fields = {
        "host": "127.0.0.1",
        "port": 0,
        "api_keys": [SecretStr(KEY)],
        "header_timeout_s": TIMEOUT_S,
        "body_timeout_s": TIMEOUT_S,
    }
    return Settings(
        ccc=CccSettings(instances=["ccc-1"]), http=HttpSettings.model_validate(fields | http)
    )


async def acknowledge(records: list[OutRecord]) -> None:
    del records  # Kafka is not what is tested here


@asynccontextmanager
async def served(config: Settings) -> AsyncIterator[int]:
    ingress = CommandIngress(config, acknowledge, StatusView(config))
    readiness = Readiness(asyncio.Event())
    async with serving(config.http, readiness, ingress.routes()) as port:
        yield port


@contextmanager
def tracebacks() -> Iterator[list[logging.LogRecord]]:
    """Records with a traceback that aiohttp logs meanwhile."""
    found: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info is not None:
                found.append(record)

    handler = Keep()
    logger = logging.getLogger("aiohttp")
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


async def connect(port: int, sent: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    await writer.drain()
    return reader, writer


HEAD_START = b"POST /v1/commands/dial HTTP/1.1\r\nHost: bridge\r\n"  # the head never ends
BODY_START = (
    b"POST /v1/commands/dial HTTP/1.1\r\nHost: bridge\r\nAuthorization: Bearer "
    + KEY.encode()
    + b"\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(DIAL)).encode()
    + b"\r\n\r\n"
    + DIAL[:20]  # the body never ends
)


async def test_slow_heads_and_bodies_are_cut_off_by_the_timeouts_without_tracebacks() -> None:
    with tracebacks() as logged:
        async with served(settings(max_connections=1000)) as port:
            started = time.monotonic()
            heads = [await connect(port, HEAD_START) for _ in range(150)]
            idle = [await connect(port, b"") for _ in range(150)]
            bodies = [await connect(port, BODY_START) for _ in range(150)]
            gone = [await connect(port, BODY_START) for _ in range(50)]
            for _, writer in gone:  # the client goes away mid-body
                writer.close()
            deadline_s = TIMEOUT_S + 5  # the timeout, and the time to close 500 connections
            for reader, _ in heads + idle:
                assert await asyncio.wait_for(reader.read(), deadline_s) == b""
            for reader, _ in bodies:
                answer = await asyncio.wait_for(reader.read(), deadline_s)
                assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
                assert b'"error":"too_slow"' in answer
            assert time.monotonic() - started < deadline_s + 5
            for _, writer in heads + idle + bodies:
                writer.close()
            assert await get_status(port, "/livez") == 200  # served as ever afterwards
    assert logged == []


async def test_connections_past_the_cap_are_refused_until_some_close() -> None:
    async with served(settings(max_connections=20, header_timeout_s=60)) as port:
        held = [await connect(port, b"") for _ in range(20)]
        reader, writer = await connect(port, b"GET /livez HTTP/1.1\r\nHost: bridge\r\n\r\n")
        refused = await asyncio.wait_for(reader.read(), 5)
        assert refused.startswith(b"HTTP/1.1 503 "), refused
        writer.close()
        for _, each in held[:5]:
            each.close()

        async def served_again() -> bool:
            async with aiohttp.ClientSession() as http:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/livez") as answer:
                        return answer.status == 200
                except aiohttp.ClientError:  # refused: the server has not seen them go yet
                    return False

        await eventually(served_again, deadline_s=5)
        for _, each in held[5:]:
            each.close()


async def get_status(port: int, path: str) -> int:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}{path}", headers=headers) as answer,
    ):
        return answer.status


ADMIN_PATHS = ("/livez", "/readyz", "/metrics")
API_PATHS = ("/openapi.json", "/v1/commands/c-1")


async def test_with_an_admin_port_probes_and_metrics_listen_there_alone() -> None:
    admin = free_port()
    async with served(settings(admin_port=admin)) as port:
        assert port != admin
        assert [await get_status(admin, path) for path in ADMIN_PATHS] == [200, 200, 200]
        assert [await get_status(admin, path) for path in API_PATHS] == [404, 404]
        assert [await get_status(port, path) for path in ADMIN_PATHS] == [404, 404, 404]
        # The status view has not caught up: 503 is the command API answering.
        assert [await get_status(port, path) for path in API_PATHS] == [200, 503]


async def test_without_an_admin_port_everything_is_on_one() -> None:
    async with served(settings()) as port:
        statuses = [await get_status(port, path) for path in ADMIN_PATHS + API_PATHS]
        assert statuses == [200, 200, 200, 200, 503]
