"""The embedded broker: `ccc-bridge broker` as a user runs it, and EmbeddedBroker as the tests
and the demo use it. Real Tansu, real aiokafka, no mocks."""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Iterator
from typing import get_args

import pytest

from service.broker import BrokerError, EmbeddedBroker
from service.kafka.producer import OutRecord, Producer
from service.kafka.settings import KafkaSettings
from tests.integration.kafka_io import (
    alive,
    children,
    produce,
    read_line,
    read_values,
    run_cli,
    start_cli,
    stop_cli,
)

# Every value `kafka.compression_type` accepts: null, then the Literal's codecs.
CODECS = [None, *get_args(get_args(KafkaSettings.model_fields["compression_type"].annotation)[0])]
READY = re.compile(r"ccc-broker ready bootstrap=127\.0\.0\.1:(\d+) \(Tansu, in memory\)")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


async def round_trip(bootstrap_servers: str, topic: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap_servers)
    await produce(kafka, topic, [("k", b"hello"), ("k", b"world")])
    assert await read_values(kafka, topic, 2) == [b"hello", b"world"]


@pytest.mark.parametrize("codec", CODECS)
async def test_every_compression_the_settings_accept_is_produced_and_read_back(
    kafka_settings: KafkaSettings, codec: str | None
) -> None:
    """Each codec's library is a dependency: a setting that validates must also run."""
    compressed = kafka_settings.model_copy(update={"compression_type": codec})
    topic, value = f"codec.{codec}", b'{"text": "' + b"compressible " * 50 + b'"}'
    producer = Producer(compressed)
    await producer.start()
    try:
        await producer.send_all([OutRecord(topic, b"k", value)])
    finally:
        await producer.stop()
    assert await read_values(kafka_settings, topic, 1) == [value]


async def test_broker_command_serves_then_stops_on_sigint_leaving_no_process() -> None:
    process = await start_cli("broker", "--port", "0")
    try:
        ready = await read_line(process.stdout)
        match = READY.fullmatch(ready)
        assert match, ready
        (tansu,) = children(process.pid)
        await round_trip(f"127.0.0.1:{match[1]}", "cli.round.trip")
    finally:
        code = await stop_cli(process, signal.SIGINT)
    assert code == 0
    assert not alive(tansu)


async def test_broker_command_stops_on_sigterm() -> None:
    process = await start_cli("broker", "--port", "0")
    assert READY.fullmatch(await read_line(process.stdout))
    (tansu,) = children(process.pid)
    assert await stop_cli(process, signal.SIGTERM) == 0
    assert not alive(tansu)


async def test_broker_command_on_a_taken_port_says_so_in_one_line(taken_port: int) -> None:
    code, out, err = await run_cli("broker", "--port", str(taken_port))
    assert code == 2
    assert out == ""
    assert err == (
        f"ccc-bridge broker: cannot listen on 127.0.0.1:{taken_port}: the port is already in use\n"
    )


@pytest.mark.parametrize(
    ("binary", "cause"),
    [("/bin/false", "exited during startup: no output"), ("/nonexistent/tansu", "CALF_TANSU_BIN")],
)
async def test_broker_command_whose_binary_cannot_run_says_why(binary: str, cause: str) -> None:
    code, out, err = await run_cli("broker", "--port", "0", env={"CALF_TANSU_BIN": binary})
    assert code == 2
    assert out == ""
    assert err.startswith("ccc-bridge broker: ")
    assert cause in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


async def test_restart_keeps_the_port_and_serves_again() -> None:
    async with EmbeddedBroker() as broker:
        port, first = broker.port, broker.pid
        assert first is not None
        await round_trip(broker.bootstrap_servers, "before.restart")
        await broker.restart()
        assert broker.port == port
        assert broker.pid not in (None, first)
        assert not alive(first)
        await round_trip(broker.bootstrap_servers, "after.restart")
        last = broker.pid
    assert last is not None
    assert not alive(last)


async def test_start_and_stop_are_idempotent() -> None:
    broker = EmbeddedBroker()
    await broker.start()
    pid = broker.pid
    await broker.start()
    assert broker.pid == pid
    await broker.stop()
    await broker.stop()
    assert broker.pid is None
    assert pid is not None
    assert not alive(pid)


async def test_a_taken_port_is_named(taken_port: int) -> None:
    with pytest.raises(BrokerError, match=f"127.0.0.1:{taken_port}: the port is already in use"):
        await EmbeddedBroker(taken_port).start()


async def test_session_broker_serves(broker: EmbeddedBroker) -> None:
    await round_trip(broker.bootstrap_servers, "session.round.trip")
