"""Waiting out Kafka: an attempt repeated with backoff until it succeeds or the caller is
asked to stop. Pollers, command workers and webhook dispatchers hold their records here while
Kafka is away, so nothing is lost and memory stays bounded; dead letters too, made to fit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

import structlog

from service.kafka.dead_letters import SMALLER_ROOM, Letter, keep, letter_key
from service.kafka.producer import OutRecord, PublishError, RecordTooLargeError
from service.kafka.records import Record

log = structlog.get_logger(__name__)

MAX_RETRY_BACKOFF_S = 5.0


async def until_acked(send: Callable[[], Awaitable[None]], stop: asyncio.Event) -> bool:
    """Send (events or a checkpoint) until Kafka acknowledged it; False if asked to stop
    first. Meanwhile its caller waits here (a poller does not poll): memory stays bounded.
    A record too large is never tried again: RecordTooLargeError is the caller's to answer."""
    return await retried(send, stop, (PublishError,), "publish_failed", unless=RecordTooLargeError)


async def retried(
    attempt: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    errors: tuple[type[Exception], ...],
    event: str,
    *,
    unless: type[Exception] | None = None,
) -> bool:
    """Run `attempt` until it succeeds, logging `event` and backing off (up to 5 s) after each
    of `errors` (but `unless`, raised at once); False if asked to stop first."""
    delay = 0.2
    while True:
        try:
            await attempt()
        except errors as error:
            if unless is not None and isinstance(error, unless):
                raise
            log.warning(event, error=str(error), retry_s=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                return False
            delay = min(delay * 2, MAX_RETRY_BACKOFF_S)
        else:
            return True


class Sink(Protocol):
    async def send_all(self, records: Sequence[OutRecord]) -> None: ...
    def room(self, key: bytes | None) -> int: ...


async def send_dead_letter(
    sink: Sink, topic: str, record: Record, letter: Letter, halt: asyncio.Event
) -> bool:
    """The letter for `record`, keeping what fits of it, until Kafka acknowledged it; False
    if halted first. A letter the broker refuses for its size goes again with little of the
    record's bytes: a RecordTooLargeError then means a broker limit too small to serve."""
    key = letter_key(record)
    room = sink.room(key)
    bare = letter(keep(record, 0), "whole").model_dump_json().encode()
    # Keeping bytes only shortens `cut`, so the rest never grows past the bare letter's.
    value = bare
    if room > len(bare):
        value = letter(keep(record, room - len(bare)), "whole").model_dump_json().encode()
    try:
        return await until_acked(partial(sink.send_all, [OutRecord(topic, key, value)]), halt)
    except RecordTooLargeError:
        smaller = letter(keep(record, SMALLER_ROOM), "smaller").model_dump_json().encode()
        return await until_acked(partial(sink.send_all, [OutRecord(topic, key, smaller)]), halt)
