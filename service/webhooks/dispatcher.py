"""The webhook dispatcher: for each configured endpoint, a Kafka consumer group of its own
over the event topics and the command results, and an aiohttp session of its own, so a
slow or dead endpoint holds up neither the others nor anything else in the service.

Each record, in the order of its key (different keys at once):
1. a value that is not a CloudEvent goes to the webhook DLQ with the reason;
2. an event whose type the endpoint's `event_types` do not match is skipped;
3. the rest are POSTed as they are on Kafka (content type application/cloudevents+json,
   CloudEvents' structured mode over HTTP), signed the Standard Webhooks way, and retried
   on 5xx, 408, 429, timeouts and failed connections with jittered backoff;
4. an event refused (another 4xx) or still failing after the last attempt goes to the
   webhook DLQ; once delivered or once Kafka acknowledged its dead letter, its offset may
   be committed, never past an event still being tried.

At least once: on SIGTERM or when partitions are revoked, no new attempt starts, requests
in flight finish (each within `timeout_s`) and what is done is committed; the rest is sent
again after the restart or by the partition's next owner, with the same webhook-id.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Self

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from service.cloudevents import CONTENT_TYPE
from service.kafka.acked import Sink, send_dead_letter
from service.kafka.consumer import Consumer, Subscription
from service.kafka.dead_letters import KeptRecord, Size
from service.kafka.records import Record
from service.kafka.settings import KafkaSettings, TopicSettings
from service.kafka.topics import EVENT_TOPICS
from service.metrics import WEBHOOK_DELIVERIES, WEBHOOK_DELIVERY_SECONDS, WEBHOOK_LAG
from service.webhooks.core import (
    Answer,
    EventRef,
    Outcome,
    UnreadableEventError,
    WebhookDeadLetter,
    dead_letter,
    deliver,
    read_event,
    retry_after_s,
)
from service.webhooks.filters import matches
from service.webhooks.hosts import HostPolicy
from service.webhooks.settings import WebhookEndpoint, WebhookSettings
from service.webhooks.signing import decode_secret

log = structlog.get_logger(__name__)

# Everything a webhook can carry: the events, and the results of commands.
WEBHOOK_TOPICS = (*EVENT_TOPICS, "command_results")
HEADERS = {"Content-Type": CONTENT_TYPE, "User-Agent": "ccc-bridge"}
MAX_ANSWER_TEXT = 256  # of a failing answer's body, kept for the log and the dead letter


class RefusedAddressError(OSError):
    """A hostname resolved only to refused addresses; aiohttp reports it as a connection
    failure (ClientConnectorDNSError, showing `strerror`), so the delivery is retried (DNS
    may change), then dead-lettered with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EACCES, reason)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, leaving out the addresses `policy` refuses."""

    def __init__(self, policy: HostPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [each for each in found if self._policy.refusal(host, each["host"]) is None]
        if not kept:
            refused = ", ".join(sorted({each["host"] for each in found}))
            why = self._policy.refusal(host, found[0]["host"]) if found else "no address"
            raise RefusedAddressError(
                f"{host} resolves to {refused}: {why}; webhooks.allow_internal_hosts may name it"
            )
        return kept

    async def close(self) -> None:
        await self._inner.close()


class HttpPoster:
    """One endpoint's HTTP client: at most `concurrency` requests at once (the pool is as
    big, so the timeout never counts a wait for a connection), each within `timeout_s`,
    redirects not followed (a redirect could lead where `hosts` refuses to go), connecting
    only to addresses `hosts` allows."""

    def __init__(self, endpoint: WebhookEndpoint, hosts: HostPolicy) -> None:
        self._url = str(endpoint.url)
        self._timeout_s = endpoint.timeout_s
        self._concurrency = endpoint.concurrency
        self._hosts = hosts
        self._slots = asyncio.Semaphore(endpoint.concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            connector=aiohttp.TCPConnector(
                limit=self._concurrency, resolver=GuardedResolver(self._hosts)
            ),
            headers=HEADERS,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __call__(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        if self._session is None:
            raise RuntimeError("HttpPoster used outside `async with`")
        async with self._slots:
            try:
                async with self._session.post(
                    self._url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    text = "" if 200 <= response.status < 300 else await _start_of(response)
                    return Answer(
                        status=response.status,
                        retry_after_s=retry_after_s(
                            response.headers.get("Retry-After"), datetime.now(UTC)
                        ),
                        text=text,
                    )
            except TimeoutError:
                return Answer(error=f"no answer within {self._timeout_s:g} s")
            except aiohttp.ClientError as error:  # refused, reset, bad TLS, ...
                return Answer(error=f"{type(error).__name__}: {error}")


async def _start_of(response: aiohttp.ClientResponse) -> str:
    start = await response.content.read(MAX_ANSWER_TEXT)
    return " ".join(start.decode(errors="replace").split())


class EndpointDispatcher:
    def __init__(
        self,
        endpoint: WebhookEndpoint,
        webhooks: WebhookSettings,
        kafka: KafkaSettings,
        topics: TopicSettings,
        sink: Sink,
    ) -> None:
        self._endpoint = endpoint
        self._sink = sink
        self._secret_key = decode_secret(endpoint.secret.get_secret_value())
        self._dlq = topics.name("webhook_dlq")
        self._post = HttpPoster(endpoint, webhooks.host_policy)
        self._log = log.bind(endpoint=endpoint.name)
        subscription = Subscription(
            tuple(topics.name(topic) for topic in WEBHOOK_TOPICS),
            group_id=webhooks.group_prefix + endpoint.name,
            start_from=webhooks.start_from,
            session_timeout_ms=webhooks.session_timeout_ms,
            fetch_max_wait_ms=webhooks.fetch_max_wait_ms,
            max_in_flight=endpoint.max_in_flight,
            commit_interval_s=webhooks.commit_interval_s,
        )
        gauge = WEBHOOK_LAG.labels(endpoint.name)
        self._consumer = Consumer(
            kafka,
            subscription,
            self._handle,
            name=f"webhook:{endpoint.name}",
            on_lag=lambda lag: gauge.set(sum(lag.values())),
        )

    def assignment_problem(self) -> str | None:
        """None while this member of the endpoint's group holds its assignment."""
        return self._consumer.assignment_problem()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop`; then what is in flight ends (see the module's docstring)."""
        async with self._post:
            await self._consumer.run(stop)

    async def _handle(self, record: Record) -> bool:
        # The halt of the assignment this record came in: set on revocation and at stop.
        halt = self._consumer.halt
        if record.defect is not None:
            return await self._dead_letter(record, halt, f"unreadable record: {record.defect}")
        try:
            event = read_event(record.value)
        except UnreadableEventError as error:
            return await self._dead_letter(record, halt, f"not a CloudEvent: {error}")
        if not matches(self._endpoint.event_types, event.type):
            return True
        return await self._deliver(record, event, halt)

    async def _deliver(self, record: Record, event: EventRef, halt: asyncio.Event) -> bool:
        try:
            outcome = await deliver(
                self._post,
                event,
                body=record.value or b"",
                secret_key=self._secret_key,
                endpoint=self._endpoint,
                halt=halt,
                on_retry=partial(self._retrying, event),
            )
        except Exception as error:  # noqa: BLE001 - a bug must not stop the endpoint: logged, dead-lettered
            self._log.exception("webhook_failed_internally", event_id=event.id)
            return await self._dead_letter(record, halt, f"internal error: {error!r}", event)
        if outcome.result == "halted":
            return False  # uncommitted: sent again after the restart, or by the next owner
        if outcome.result == "failed":
            return await self._dead_letter(record, halt, outcome.reason(), event, outcome)
        name = self._endpoint.name
        WEBHOOK_DELIVERIES.labels(name, "delivered").inc()
        if record.timestamp_ms is not None:
            age_s = time.time() - record.timestamp_ms / 1000
            WEBHOOK_DELIVERY_SECONDS.labels(name).observe(max(age_s, 0.0))
        self._log.debug("webhook_delivered", event_id=event.id, attempts=outcome.attempts)
        return True

    def _retrying(self, event: EventRef, answer: Answer, attempt: int, wait_s: float) -> None:
        WEBHOOK_DELIVERIES.labels(self._endpoint.name, "retried").inc()
        self._log.debug(
            "webhook_retry",
            event_id=event.id,
            attempt=attempt,
            answer=answer.describe(),
            retry_in_s=round(wait_s, 3),
        )

    async def _dead_letter(
        self,
        record: Record,
        halt: asyncio.Event,
        reason: str,
        event: EventRef | None = None,
        outcome: Outcome | None = None,
    ) -> bool:
        """The dead letter, keyed as the event was; done once Kafka has it."""
        name = self._endpoint.name
        at = datetime.now(UTC)

        def letter(kept: KeptRecord, _: Size) -> WebhookDeadLetter:
            return dead_letter(name, record, reason, event=event, outcome=outcome, at=at, kept=kept)

        if not await send_dead_letter(self._sink, self._dlq, record, letter, halt):
            return False  # halted with Kafka away: the event is read again, and judged again
        WEBHOOK_DELIVERIES.labels(name, "dead_lettered").inc()
        self._log.warning(
            "webhook_dead_lettered",
            event_id=None if event is None else event.id,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )
        return True


async def run_webhooks(  # noqa: PLR0913 - three settings sections, where to, when, and who is told
    webhooks: WebhookSettings,
    kafka: KafkaSettings,
    topics: TopicSettings,
    sink: Sink,
    stop: asyncio.Event,
    *,
    report: Callable[[str, Callable[[], str | None]], None] | None = None,
) -> None:
    """A dispatcher per configured endpoint until `stop`; with none configured, returns.
    `report` is told each endpoint's consumer (`webhook:<name>`) and its assignment."""
    async with asyncio.TaskGroup() as group:
        for endpoint in webhooks.endpoints:
            dispatcher = EndpointDispatcher(endpoint, webhooks, kafka, topics, sink)
            if report is not None:
                report(f"webhook:{endpoint.name}", dispatcher.assignment_problem)
            group.create_task(dispatcher.run(stop))
