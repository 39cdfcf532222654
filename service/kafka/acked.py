"""Waiting out Kafka: an attempt repeated with backoff until it succeeds or the caller is
asked to stop. Pollers, command workers and webhook dispatchers hold their records here while
Kafka is away, so nothing is lost and memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from service.kafka.producer import PublishError

log = structlog.get_logger(__name__)

MAX_RETRY_BACKOFF_S = 5.0


async def until_acked(send: Callable[[], Awaitable[None]], stop: asyncio.Event) -> bool:
    """Send (events or a checkpoint) until Kafka acknowledged it; False if asked to stop
    first. Meanwhile its caller waits here (a poller does not poll): memory stays bounded."""
    return await retried(send, stop, (PublishError,), "publish_failed")


async def retried(
    attempt: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    errors: tuple[type[Exception], ...],
    event: str,
) -> bool:
    """Run `attempt` until it succeeds, logging `event` and backing off (up to 5 s) after each
    of `errors`; False if asked to stop first."""
    delay = 0.2
    while True:
        try:
            await attempt()
        except errors as error:
            log.warning(event, error=str(error), retry_s=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                return False
            delay = min(delay * 2, MAX_RETRY_BACKOFF_S)
        else:
            return True
