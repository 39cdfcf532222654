"""Plain aiokafka and process helpers for the integration tests: produce events as the
publisher does, read a topic back, run `python -m service ...` (`ccc-bridge run` as an
operator starts it among them), wait on conditions."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from service.cloudevents import CONTENT_TYPE, CloudEvent, EventData
from service.emulator.config import DEFAULT_ACCESS_KEY_SECRET
from service.kafka.connection import client_options
from service.kafka.settings import KafkaSettings
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 20.0
SECRET_ENV = {"CCC_BRIDGE_CCC__ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET}


async def produce(
    kafka: KafkaSettings, topic: str, messages: Sequence[tuple[str | None, bytes]]
) -> None:
    async with AIOKafkaProducer(**client_options(kafka), acks="all") as producer:
        for key, value in messages:
            await producer.send_and_wait(
                topic,
                value,
                key=None if key is None else key.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )


async def produce_events(
    kafka: KafkaSettings, topic: str, events: Sequence[CloudEvent[EventData]]
) -> None:
    await produce(
        kafka, topic, [(event.data.key(), event.model_dump_json().encode()) for event in events]
    )


async def read_values(kafka: KafkaSettings, topic: str, count: int) -> list[bytes]:
    """The first `count` values of `topic`, from the beginning."""
    consumer = AIOKafkaConsumer(
        topic, **client_options(kafka), group_id=None, auto_offset_reset="earliest"
    )
    values: list[bytes] = []
    async with consumer:
        async with asyncio.timeout(DEADLINE_S):
            async for record in consumer:
                values.append(record.value)
                if len(values) == count:
                    return values
    return values


def cli_env(extra: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


async def start_cli(*args: str, env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        cwd=ROOT,
        env=cli_env(env or {}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_cli(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run to the end: exit code, stdout, stderr."""
    process = await start_cli(*args, env=env)
    async with asyncio.timeout(DEADLINE_S):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def read_line(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    async with asyncio.timeout(DEADLINE_S):
        return (await stream.readline()).decode().rstrip("\n")


async def stop_cli(process: asyncio.subprocess.Process, signum: int) -> int:
    """Signal the command and wait for its exit code."""
    process.send_signal(signum)
    async with asyncio.timeout(DEADLINE_S):
        return await process.wait()


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def write_config(settings: Settings, config: Path) -> None:
    """`settings` as an operator's config file: all but the secret, given as `SECRET_ENV`."""
    document = settings.model_dump(mode="json", exclude={"ccc": {"access_key_secret"}})
    await asyncio.to_thread(config.write_text, yaml.safe_dump(document), encoding="utf-8")


async def start_worker(settings: Settings, config: Path, log: Path) -> asyncio.subprocess.Process:
    """`ccc-bridge run` as an operator starts it: a config file, the secret in the env, its
    JSON log lines (info: partition assignments, commands executed) in `log`."""
    await write_config(settings, config)
    env = cli_env(SECRET_ENV)
    with log.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            "--log-level",
            "info",
            "--log-format",
            "json",
            "run",
            "--config",
            str(config),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )


async def stop_worker(process: asyncio.subprocess.Process) -> int:
    """SIGTERM, as Kubernetes stops it (SIGKILL if it is still there 30 s later); its exit code."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode
