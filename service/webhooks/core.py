"""The delivery of one event to one endpoint, without Kafka or aiohttp: which records are
events, how an answer is judged, how long to wait before trying again, the dead letter
after the last attempt, and per-key order. The dispatcher plugs the adapters in."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Annotated, Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

from service.cloudevents import Outbound, UtcTime, capped, event_id
from service.kafka.dead_letters import KeptRecord
from service.kafka.records import Record
from service.webhooks.settings import WebhookEndpoint
from service.webhooks.signing import signed_headers

WEBHOOK_DEAD_LETTER = "com.aliyun.ccc.webhook.dlq"
# Tried again besides every 5xx: the receiver timed out, or asked us to slow down.
RETRIED_STATUSES = frozenset({408, 429})
MAX_ID_LENGTH = 256  # a header value, not a document
MAX_TYPE_LENGTH = 256  # CloudEvents types are reverse-DNS names
MAX_REASON = 1024  # characters of a dead letter's reason

Verdict = Literal["delivered", "retry", "refused"]


class UnreadableEventError(ValueError):
    """A record that is not a CloudEvent that can be sent; the message says why."""


@dataclass(frozen=True, slots=True)
class EventRef:
    """What delivery needs to know of an event besides its bytes."""

    id: str
    type: str


def read_event(value: bytes | None) -> EventRef:
    """The CloudEvents id and type of a record's value (UnreadableEventError if none)."""
    if value is None:
        raise UnreadableEventError("no value (a tombstone)")
    try:
        document = json.loads(value)
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, or nested too deep
        raise UnreadableEventError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise UnreadableEventError("not a JSON object")
    identifier, event_type = document.get("id"), document.get("type")
    # The id goes into a header as it is: no line breaks, nothing a header cannot carry.
    if (
        not isinstance(identifier, str)
        or not 0 < len(identifier) <= MAX_ID_LENGTH
        or not (identifier.isascii() and identifier.isprintable())
    ):
        raise UnreadableEventError(
            f"no CloudEvents id usable as webhook-id (printable ASCII, 1 to {MAX_ID_LENGTH})"
        )
    if not isinstance(event_type, str) or not 0 < len(event_type) <= MAX_TYPE_LENGTH:
        raise UnreadableEventError(f"no CloudEvents type (1 to {MAX_TYPE_LENGTH} characters)")
    return EventRef(identifier, event_type)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: an HTTP status, or the transport error that came instead."""

    status: int | None = None
    error: str | None = None  # a timeout or a connection that failed, when no status
    retry_after_s: float | None = None
    text: str = ""  # the start of a failing answer's body: what the receiver objects to

    @property
    def verdict(self) -> Verdict:
        if self.status is None:
            return "retry"  # timeouts and connection errors: the endpoint may be back soon
        if 200 <= self.status < 300:
            return "delivered"
        if self.status >= 500 or self.status in RETRIED_STATUSES:
            return "retry"
        # Other 4xx will not change by asking again. 3xx too: redirects are not followed,
        # the configured URL is the only place events go.
        return "refused"

    def describe(self) -> str:
        if self.status is None:
            return self.error or "no answer"
        return f"HTTP {self.status}: {self.text}" if self.text else f"HTTP {self.status}"


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """The wait a Retry-After header asks for: delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: the backoff alone decides
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


class Backoff:
    """Full-jitter exponential backoff, never sooner than a Retry-After asked, which is
    honoured up to `max_s`: a receiver cannot park an event, and its key, for hours."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._jitter = wait_random_exponential(multiplier=initial_s, max=max_s)
        self._max_s = max_s

    def __call__(self, state: RetryCallState) -> float:
        delay: float = self._jitter(state)
        answer = _last_answer(state)
        if answer is not None and answer.retry_after_s is not None:
            return max(delay, min(answer.retry_after_s, self._max_s))
        return delay


def _last_answer(state: RetryCallState) -> Answer | None:
    if state.outcome is None or state.outcome.failed:
        return None
    answer: Answer | None = state.outcome.result()
    return answer


@dataclass(frozen=True, slots=True)
class Outcome:
    # delivered: a 2xx; failed: refused, or no 2xx by the last attempt; halted: stopped
    # before the end, so the event is left to be read again.
    result: Literal["delivered", "failed", "halted"]
    attempts: int
    last: Answer | None  # None: halted before the first attempt

    def reason(self) -> str:
        last = self.last.describe() if self.last is not None else "no attempt"
        if self.last is not None and self.last.verdict == "refused":
            return f"the endpoint refused it, not retried: {last}"
        return f"no success in {self.attempts} attempts, the last: {last}"


Post = Callable[[bytes, Mapping[str, str]], Awaitable[Answer]]
OnRetry = Callable[[Answer, int, float], None]  # the answer, its attempt, the wait before the next


async def deliver(  # noqa: PLR0913 - what one delivery needs, by keyword
    post: Post,
    event: EventRef,
    *,
    body: bytes,
    secret_key: bytes,
    endpoint: WebhookEndpoint,
    halt: asyncio.Event,
    on_retry: OnRetry | None = None,
) -> Outcome:
    """POST `body` signed with `secret_key` until a 2xx, a refusal or the last attempt.
    Once `halt` is set (stopping, or the partition went to another member), no attempt
    starts and a backoff wait ends at once: the event is left for whoever reads it next."""
    answers: list[Answer] = []

    async def attempt() -> Answer | None:
        if halt.is_set():
            return None
        # Signed afresh each time: webhook-timestamp is the attempt's, so receivers that
        # refuse old timestamps (the spec's replay window) still take a late retry.
        answer = await post(body, signed_headers(secret_key, event.id, int(time.time()), body))
        answers.append(answer)
        return answer

    def retrying(state: RetryCallState) -> None:
        if on_retry is not None and state.next_action is not None:
            on_retry(answers[-1], state.attempt_number, state.next_action.sleep)

    retry = AsyncRetrying(
        stop=stop_after_attempt(endpoint.max_attempts),
        wait=Backoff(endpoint.backoff_initial_s, endpoint.backoff_max_s),
        retry=retry_if_result(lambda answer: answer is not None and answer.verdict == "retry"),
        sleep=partial(_pause, halt),
        before_sleep=retrying,
        retry_error_callback=_last_answer,  # the last attempt failed too: its answer
    )
    last: Answer | None = await retry(attempt)
    if last is None:
        return Outcome("halted", len(answers), answers[-1] if answers else None)
    result: Literal["delivered", "failed"] = (
        "delivered" if last.verdict == "delivered" else "failed"
    )
    return Outcome(result, len(answers), last)


async def _pause(halt: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(halt.wait(), seconds)


class WebhookDeadLetter(Outbound):
    """An event a webhook endpoint did not take: refused (a 4xx other than 408 and 429), not
    delivered by the last attempt, or not a CloudEvent at all. The record is kept (its bytes
    cut to fit one Kafka record, `record.cut` says), so it can be sent again as it was."""

    dlq_id: str  # the same for the same endpoint and record, however often it is written
    endpoint: str  # the configured name; never its URL or secret
    reason: Annotated[str, capped(MAX_REASON)]
    event_id: str | None
    event_type: str | None
    attempts: int  # HTTP requests made; 0 for a record that is not a CloudEvent
    last_status: int | None  # the last answer's HTTP status; None: a timeout or no connection
    last_error: str | None  # the last answer described, e.g. "HTTP 503" or the timeout
    dead_at: UtcTime
    record: KeptRecord


def dead_letter(  # noqa: PLR0913 - the letter's facts, by keyword
    endpoint: str,
    record: Record,
    reason: str,
    *,
    event: EventRef | None,
    outcome: Outcome | None,
    at: datetime,
    kept: KeptRecord,
) -> WebhookDeadLetter:
    last = outcome.last if outcome is not None else None
    return WebhookDeadLetter(
        dlq_id=event_id(
            WEBHOOK_DEAD_LETTER, endpoint, record.topic, record.partition, record.offset
        ),
        endpoint=endpoint,
        reason=reason,
        event_id=event.id if event is not None else None,
        event_type=event.type if event is not None else None,
        attempts=outcome.attempts if outcome is not None else 0,
        last_status=last.status if last is not None else None,
        last_error=last.describe() if last is not None else None,
        dead_at=at,
        record=kept,
    )


def replayable(letter: WebhookDeadLetter) -> tuple[bool, str]:
    """Whether sending the event again could end otherwise, and why (not)."""
    if letter.event_id is None:
        return False, "not a CloudEvent: sent again, it fails the same way"
    if letter.attempts == 0:  # a CloudEvent no request was made for: a bug of ours
        return True, "an internal error"
    if letter.last_status is None or Answer(letter.last_status).verdict == "retry":
        return True, "the endpoint was down or failing"
    return False, f"the endpoint refused it (HTTP {letter.last_status}): it would refuse it again"
