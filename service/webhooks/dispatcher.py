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
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from service.cloudevents import CONTENT_TYPE
from service.kafka.acked import until_acked
from service.kafka.connection import client_options
from service.kafka.offsets import Offsets
from service.kafka.producer import OutRecord
from service.kafka.settings import KafkaSettings, TopicSettings
from service.kafka.topics import EVENT_TOPICS
from service.metrics import WEBHOOK_DELIVERIES, WEBHOOK_DELIVERY_SECONDS, WEBHOOK_LAG
from service.webhooks.core import (
    Answer,
    EventRef,
    KeyedTasks,
    Outcome,
    Source,
    UnreadableEventError,
    dead_letter,
    deliver,
    read_event,
    retry_after_s,
)
from service.webhooks.filters import matches
from service.webhooks.settings import WebhookEndpoint, WebhookSettings
from service.webhooks.signing import decode_secret

log = structlog.get_logger(__name__)

# Everything a webhook can carry: the events, and the results of commands.
WEBHOOK_TOPICS = (*EVENT_TOPICS, "command_results")
HEADERS = {"Content-Type": CONTENT_TYPE, "User-Agent": "ccc-bridge"}
MAX_ANSWER_TEXT = 256  # of a failing answer's body, kept for the log and the dead letter
FETCH_TIMEOUT_MS = 200  # how soon the loop sees `stop` while nothing arrives


class DeadLetterSink(Protocol):
    async def send_all(self, records: Sequence[OutRecord]) -> None: ...


class HttpPoster:
    """One endpoint's HTTP client: at most `concurrency` requests at once (the pool is as
    big, so the timeout never counts a wait for a connection), each within `timeout_s`,
    redirects not followed."""

    def __init__(self, endpoint: WebhookEndpoint) -> None:
        self._url = str(endpoint.url)
        self._timeout_s = endpoint.timeout_s
        self._concurrency = endpoint.concurrency
        self._slots = asyncio.Semaphore(endpoint.concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            connector=aiohttp.TCPConnector(limit=self._concurrency),
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


class EndpointDispatcher(ConsumerRebalanceListener):  # type: ignore[misc] # untyped base
    def __init__(
        self,
        endpoint: WebhookEndpoint,
        webhooks: WebhookSettings,
        kafka: KafkaSettings,
        topics: TopicSettings,
        sink: DeadLetterSink,
    ) -> None:
        self._endpoint = endpoint
        self._webhooks = webhooks
        self._kafka = kafka
        self._sink = sink
        self._secret_key = decode_secret(endpoint.secret.get_secret_value())
        self._topics = [topics.name(topic) for topic in WEBHOOK_TOPICS]
        self._dlq = topics.name("webhook_dlq")
        self._post = HttpPoster(endpoint)
        self._offsets = Offsets()
        self._tasks = KeyedTasks()
        # Set to end the deliveries of the current assignment (stop, or a revoke); each
        # assignment gets a new one.
        self._halt = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._log = log.bind(endpoint=endpoint.name)

    @property
    def group_id(self) -> str:
        return self._webhooks.group_prefix + self._endpoint.name

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop`; then what is in flight ends (see the module's docstring)."""
        webhooks = self._webhooks
        consumer = self._consumer = AIOKafkaConsumer(
            **client_options(self._kafka),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=webhooks.start_from,
            session_timeout_ms=webhooks.session_timeout_ms,
            heartbeat_interval_ms=webhooks.session_timeout_ms // 3,
            fetch_max_wait_ms=webhooks.fetch_max_wait_ms,
        )
        consumer.subscribe(self._topics, listener=self)
        async with self._post:
            interval_s = webhooks.commit_interval_s
            # Apart: asking for end offsets (a rebalance may hold it up) never delays commits.
            committer = asyncio.create_task(_every(interval_s, self._commit))
            gauge = asyncio.create_task(_every(interval_s, self._measure_lag))
            try:
                await consumer.start()
                while not stop.is_set():
                    room = self._endpoint.max_in_flight - len(self._tasks)
                    # Paused rather than not asked: fetching on keeps this member in its
                    # group however long the endpoint takes (max_poll_interval_ms).
                    if room <= 0:
                        consumer.pause(*consumer.assignment())
                    elif consumer.paused():
                        consumer.resume(*consumer.paused())
                    batches = await consumer.getmany(
                        timeout_ms=FETCH_TIMEOUT_MS, max_records=max(room, 1)
                    )
                    # No await from here to the end of the batch: no rebalance comes between.
                    for tp, records in batches.items():
                        for record in records:
                            self._dispatch(tp, record)
                self._halt.set()
                await self._tasks.drain()
                await self._commit()
            finally:
                # Only when cancelled (the service is going down on an error) is anything
                # left here: it is uncommitted, so it is sent again after the restart.
                committer.cancel()
                gauge.cancel()
                await self._tasks.cancel()
                await asyncio.gather(committer, gauge, return_exceptions=True)
                await consumer.stop()

    def _dispatch(self, tp: TopicPartition, record: Any) -> None:
        self._offsets.begin(tp, record.offset)
        source = Source(
            tp.topic, tp.partition, record.offset, record.timestamp, record.key, record.value
        )
        halt = self._halt
        try:
            event = read_event(record.value)
        except UnreadableEventError as error:
            reason = f"not a CloudEvent: {error}"
            self._tasks.start((tp, record.key), partial(self._dead_letter, source, halt, reason))
            return
        if not matches(self._endpoint.event_types, event.type):
            self._offsets.end(tp, record.offset)
            return
        self._tasks.start((tp, record.key), partial(self._deliver, source, event, halt))

    async def _deliver(self, source: Source, event: EventRef, halt: asyncio.Event) -> None:
        try:
            outcome = await deliver(
                self._post,
                event,
                body=source.value or b"",
                secret_key=self._secret_key,
                endpoint=self._endpoint,
                halt=halt,
                on_retry=partial(self._retrying, event),
            )
        except Exception as error:  # noqa: BLE001 - a bug must not stop the endpoint: logged, dead-lettered
            self._log.exception("webhook_failed_internally", event_id=event.id)
            await self._dead_letter(source, halt, f"internal error: {error!r}", event)
            return
        if outcome.result == "halted":
            return  # uncommitted: sent again after the restart, or by the next owner
        if outcome.result == "failed":
            await self._dead_letter(source, halt, outcome.reason(), event, outcome)
            return
        name = self._endpoint.name
        WEBHOOK_DELIVERIES.labels(name, "delivered").inc()
        if source.timestamp_ms is not None:
            age_s = time.time() - source.timestamp_ms / 1000
            WEBHOOK_DELIVERY_SECONDS.labels(name).observe(max(age_s, 0.0))
        self._log.debug("webhook_delivered", event_id=event.id, attempts=outcome.attempts)
        self._offsets.end(TopicPartition(source.topic, source.partition), source.offset)

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
        source: Source,
        halt: asyncio.Event,
        reason: str,
        event: EventRef | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        """The dead letter, keyed as the event was; the offset is done once Kafka has it."""
        name = self._endpoint.name
        letter = dead_letter(
            name, source, reason, event=event, outcome=outcome, at=datetime.now(UTC)
        )
        record = OutRecord(self._dlq, source.key, letter.model_dump_json().encode())
        if not await until_acked(partial(self._sink.send_all, [record]), halt):
            return  # halted with Kafka away: the event is read again, and judged again
        WEBHOOK_DELIVERIES.labels(name, "dead_lettered").inc()
        self._log.warning(
            "webhook_dead_lettered",
            event_id=letter.event_id,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            reason=reason,
        )
        self._offsets.end(TopicPartition(source.topic, source.partition), source.offset)

    # -- commits, lag and rebalances -------------------------------------------------

    async def _commit(self) -> None:
        async with self._commit_lock:
            positions = self._offsets.committable()
            if not positions or self._consumer is None:
                return
            try:
                await self._consumer.commit(positions)
            except KafkaError as error:
                # The next commit tries again; meanwhile a restart would only repeat
                # deliveries, which receivers drop by webhook-id.
                self._log.warning("webhook_commit_failed", error=str(error))
            else:
                self._offsets.committed |= positions

    async def _measure_lag(self) -> None:
        """End offsets, asked of the broker: while fetching is paused (the endpoint is
        behind by max_in_flight), the fetches' highwater marks would stand still."""
        consumer = self._consumer
        if consumer is None or not consumer.assignment():
            return
        try:
            ends = await consumer.end_offsets(list(consumer.assignment()))
            behind = 0
            for tp, end in ends.items():
                # The first event not done: the lowest in hand, else the next to fetch.
                pending = self._offsets.pending.get(tp)
                first = min(pending) if pending else self._offsets.next.get(tp)
                if first is None:
                    first = await consumer.position(tp)
                behind += max(end - first, 0)
        except KafkaError:  # a rebalance meanwhile (IllegalStateError): next time
            return
        WEBHOOK_LAG.labels(self._endpoint.name).set(behind)

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Nothing new is attempted; what is in flight ends and is committed while this
        # member still owns it. The next assignment's deliveries get a new halt.
        self._halt.set()
        await self._tasks.drain()
        await self._commit()
        self._offsets.forget(revoked)
        self._halt = asyncio.Event()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._log.info(
            "webhook_partitions_assigned",
            group_id=self.group_id,
            partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
        )


async def _every(interval_s: float, work: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await work()


async def run_webhooks(
    webhooks: WebhookSettings,
    kafka: KafkaSettings,
    topics: TopicSettings,
    sink: DeadLetterSink,
    stop: asyncio.Event,
) -> None:
    """A dispatcher per configured endpoint until `stop`; with none configured, returns."""
    async with asyncio.TaskGroup() as group:
        for endpoint in webhooks.endpoints:
            dispatcher = EndpointDispatcher(endpoint, webhooks, kafka, topics, sink)
            group.create_task(dispatcher.run(stop))
