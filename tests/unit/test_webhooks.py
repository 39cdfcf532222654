"""Webhooks without I/O: Standard Webhooks signatures (the spec's own vector and verifier),
secrets that never show, type filters, how answers are judged, the backoff, one delivery's
attempts against a fake endpoint, dead letters and per-key order."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError
from tenacity import AsyncRetrying, RetryCallState

from service.kafka.dead_letters import keep
from service.kafka.records import Record
from service.schemas import MESSAGES, json_schema
from service.settings import Settings, load_settings
from service.validation import field_errors
from service.webhooks.core import (
    WEBHOOK_DEAD_LETTER,
    Answer,
    Backoff,
    EventRef,
    Outcome,
    UnreadableEventError,
    WebhookDeadLetter,
    dead_letter,
    deliver,
    read_event,
    retry_after_s,
)
from service.webhooks.dispatcher import GuardedResolver, RefusedAddressError
from service.webhooks.filters import check_pattern, matches
from service.webhooks.hosts import HostPolicy
from service.webhooks.settings import WebhookEndpoint, WebhookSettings
from service.webhooks.signing import decode_secret, signature, signed_headers

# The Standard Webhooks reference libraries' own test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
BODY = b'{"specversion":"1.0","id":"e-1","type":"com.aliyun.ccc.call.record"}'
EVENT = EventRef("e-1", "com.aliyun.ccc.call.record")


def endpoint(**changes: object) -> WebhookEndpoint:
    fields: dict[str, object] = {
        "name": "crm",
        "url": "https://hooks.example.com/ccc",
        "secret": SECRET,
        "max_attempts": 4,
        "backoff_initial_s": 0.001,
        "backoff_max_s": 0.002,
    }
    return WebhookEndpoint.model_validate(fields | changes)


# -- signatures and secrets -----------------------------------------------------------------


def test_signature_is_the_spec_vector() -> None:
    key = decode_secret(SPEC_SECRET)
    assert signature(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_a_secret_may_leave_its_base64_padding_off() -> None:
    padded = "whsec_" + base64.b64encode(b"k" * 25).decode()
    assert padded.endswith("=")
    assert decode_secret(padded.rstrip("=")) == decode_secret(padded) == b"k" * 25


def test_the_reference_verifier_accepts_our_headers_and_only_for_this_body() -> None:
    now = int(time.time())
    headers = signed_headers(decode_secret(SECRET), "e-1", now, BODY)
    assert headers["webhook-id"] == "e-1"
    assert headers["webhook-timestamp"] == str(now)
    assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace(b"e-1", b"e-2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, {**headers, "webhook-id": "e-2"})


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_not*base64!", "valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 random bytes, not 5"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "not 65"),
    ],
)
def test_a_bad_secret_is_refused_without_showing_it(secret: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as refused:
        decode_secret(secret)
    assert secret.removeprefix("whsec_") not in str(refused.value)
    with pytest.raises(ValidationError) as invalid:
        Settings(webhooks={"endpoints": [{"name": "a", "url": "http://x/", "secret": secret}]})
    # What `ccc-bridge run` prints for a bad configuration: field and reason, no input.
    shown = field_errors(invalid.value)
    assert shown.startswith("webhooks.endpoints.0.secret: Value error")
    assert why in shown
    assert secret not in shown
    with pytest.raises(ValidationError) as alone:
        WebhookEndpoint(name="a", url="http://x/", secret=secret)
    assert secret not in str(alone.value)


def test_settings_never_show_a_secret() -> None:
    settings = Settings(webhooks=WebhookSettings(endpoints=[endpoint()]))
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())
    assert SECRET not in settings.model_dump_json()


def test_endpoints_come_as_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CCC_BRIDGE_SECRETS_DIR", str(tmp_path))
    document = [{"name": "crm", "url": "https://crm.example.com/hook", "secret": SECRET}]
    monkeypatch.setenv("CCC_BRIDGE_WEBHOOKS__ENDPOINTS", json.dumps(document))
    monkeypatch.setenv("CCC_BRIDGE_WEBHOOKS__START_FROM", "earliest")
    webhooks = load_settings().webhooks
    assert [e.name for e in webhooks.endpoints] == ["crm"]
    assert webhooks.endpoints[0].secret.get_secret_value() == SECRET
    assert webhooks.start_from == "earliest"


def test_endpoint_names_are_plain_and_distinct() -> None:
    with pytest.raises(ValidationError, match="crm repeated"):
        WebhookSettings(endpoints=[endpoint(), endpoint(url="https://other.example.com/")])
    with pytest.raises(ValidationError, match="name"):
        endpoint(name="crm hooks")


# -- where an endpoint may point ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://100.100.100.200/latest/meta-data/", "Alibaba Cloud's metadata service"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://127.1.2.3/hook", "loopback"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://0.0.0.0:8080/hook", "unspecified"),
        ("http://localhost:8080/hook", "loopback"),
        ("https://api.LOCALHOST./hook", "loopback"),
    ],
)
def test_an_internal_address_is_refused_unless_named(url: str, why: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(webhooks={"endpoints": [endpoint(url=url)]})
    shown = field_errors(refused.value)
    assert shown.startswith("webhooks: Value error, endpoint crm: ")
    assert why in shown
    assert "webhooks.allow_internal_hosts" in shown
    host = (endpoint(url=url).url.host or "").strip("[]")
    named = WebhookSettings(endpoints=[endpoint(url=url)], allow_internal_hosts=[host.upper()])
    assert named.endpoints[0].url.host


def test_a_network_named_allows_the_addresses_in_it() -> None:
    hook = endpoint(url="http://169.254.170.2/v2/credentials")
    assert WebhookSettings(endpoints=[hook], allow_internal_hosts=["169.254.170.0/24"]).endpoints
    with pytest.raises(ValidationError, match="link-local"):
        WebhookSettings(endpoints=[hook], allow_internal_hosts=["169.254.169.0/24"])


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/ccc", "http://10.0.0.5/hook", "http://192.168.1.9/hook"]
)
def test_public_and_private_network_addresses_are_allowed(url: str) -> None:
    assert WebhookSettings(endpoints=[endpoint(url=url)]).endpoints[0].url.host


@pytest.mark.parametrize("entry", ["", "a host", "http://x/", "10.0.0.0/33"])
def test_an_allow_entry_must_be_a_host_an_address_or_a_network(entry: str) -> None:
    with pytest.raises(ValidationError, match=r"allow_internal_hosts\.0"):
        WebhookSettings(allow_internal_hosts=[entry])


class Resolver(AbstractResolver):
    """Answers every name with the addresses given."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    metadata = GuardedResolver(HostPolicy(), Resolver("169.254.169.254"))
    with pytest.raises(
        RefusedAddressError, match=r"rebind\.example resolves to 169\.254\.169\.254"
    ):
        await metadata.resolve("rebind.example", 80)
    mixed = GuardedResolver(HostPolicy(), Resolver("127.0.0.1", "203.0.113.7"))
    assert [r["host"] for r in await mixed.resolve("mixed.example", 80)] == ["203.0.113.7"]
    named = GuardedResolver(HostPolicy.allowing(["Rebind.Example"]), Resolver("169.254.169.254"))
    assert [r["host"] for r in await named.resolve("rebind.example", 80)] == ["169.254.169.254"]


# -- which events an endpoint gets ----------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "com.aliyun.ccc.call.record", True),
        (["com.aliyun.ccc.call.record"], "com.aliyun.ccc.call.record", True),
        (["com.aliyun.ccc.call.record"], "com.aliyun.ccc.call.event", False),
        (["com.aliyun.ccc.call.*"], "com.aliyun.ccc.call.event", True),
        (["com.aliyun.ccc.call.*"], "com.aliyun.ccc.callback", False),
        (["com.aliyun.ccc.call.*"], "com.aliyun.ccc.call", False),
        (["com.aliyun.ccc.*"], "com.aliyun.ccc.agent.state.changed", True),
        (
            ["com.aliyun.ccc.agent.*", "com.aliyun.ccc.command.result"],
            "com.aliyun.ccc.command.result",
            True,
        ),
        (
            ["com.aliyun.ccc.agent.*", "com.aliyun.ccc.command.result"],
            "com.aliyun.ccc.call.record",
            False,
        ),
    ],
)
def test_filters(patterns: list[str], event_type: str, expected: bool) -> None:
    assert matches(patterns, event_type) is expected


@pytest.mark.parametrize("pattern", ["com.*.call", "com.aliyun*", ".*", "", "a b", "**"])
def test_a_pattern_that_is_not_one_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="use '\\*', an exact event type, or a prefix"):
        check_pattern(pattern)
    with pytest.raises(ValidationError, match="event_types"):
        endpoint(event_types=[pattern])


# -- records, answers and the backoff --------------------------------------------------------


def test_events_are_read_for_their_id_and_type() -> None:
    assert read_event(BODY) == EVENT


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "tombstone"),
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "t"}', "no CloudEvents id"),
        (b'{"id": "a\\r\\nx-evil: 1", "type": "t"}', "no CloudEvents id"),
        (b'{"id": "", "type": "t"}', "no CloudEvents id"),
        (b'{"id": "e-1", "type": 3}', "no CloudEvents type"),
    ],
)
def test_a_record_that_is_not_an_event_says_why(value: bytes | None, why: str) -> None:
    with pytest.raises(UnreadableEventError, match=why):
        read_event(value)


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (Answer(status=200), "delivered"),
        (Answer(status=204), "delivered"),
        (Answer(status=500), "retry"),
        (Answer(status=503), "retry"),
        (Answer(status=429), "retry"),
        (Answer(status=408), "retry"),
        (Answer(error="no answer within 10 s"), "retry"),
        (Answer(status=400), "refused"),
        (Answer(status=401), "refused"),
        (Answer(status=410), "refused"),
        (Answer(status=301), "refused"),
    ],
)
def test_answers_are_judged(answer: Answer, verdict: str) -> None:
    assert answer.verdict == verdict


def test_retry_after_takes_seconds_or_a_date() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_s(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert retry_after_s("soon", now) is None
    assert retry_after_s(None, now) is None


def after_attempt(number: int, answer: Answer) -> RetryCallState:
    state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = number
    state.set_result(answer)
    return state


def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.5, max_s=8.0)
    for number, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)):
        waits = [backoff(after_attempt(number, Answer(status=503))) for _ in range(300)]
        assert all(0 <= wait <= ceiling for wait in waits), (number, max(waits))
        assert max(waits) > ceiling / 2, "jittered over the whole range"
        assert min(waits) < ceiling / 2


def test_backoff_honours_retry_after_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.01, max_s=30.0)
    assert 5.0 <= backoff(after_attempt(1, Answer(status=429, retry_after_s=5))) <= 5.01
    assert backoff(after_attempt(1, Answer(status=429, retry_after_s=3600))) == 30.0


# -- one delivery against a fake endpoint ----------------------------------------------------


class FakeEndpoint:
    """Answers from a script, then 200; keeps every request."""

    def __init__(self, answers: Sequence[Answer] = ()) -> None:
        self.script = list(answers)
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.asked = asyncio.Event()

    async def __call__(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        self.requests.append((body, dict(headers)))
        self.asked.set()
        return self.script.pop(0) if self.script else Answer(status=200)


async def run(
    post: FakeEndpoint, settings: WebhookEndpoint, halt: asyncio.Event | None = None
) -> tuple[Outcome, list[tuple[Answer, int, float]]]:
    retries: list[tuple[Answer, int, float]] = []
    outcome = await deliver(
        post,
        EVENT,
        body=BODY,
        secret_key=decode_secret(SECRET),
        endpoint=settings,
        halt=halt or asyncio.Event(),
        on_retry=lambda answer, attempt, wait_s: retries.append((answer, attempt, wait_s)),
    )
    return outcome, retries


async def test_5xx_and_timeouts_are_retried_each_attempt_signed_anew() -> None:
    post = FakeEndpoint([Answer(status=500), Answer(error="no answer within 1 s")])
    outcome, retries = await run(post, endpoint())
    assert (outcome.result, outcome.attempts, outcome.last) == ("delivered", 3, Answer(status=200))
    assert [(answer.status, attempt) for answer, attempt, _ in retries] == [(500, 1), (None, 2)]
    for body, headers in post.requests:
        assert body == BODY
        assert headers["webhook-id"] == "e-1"
        Webhook(SECRET).verify(body, headers)


async def test_another_4xx_is_not_retried() -> None:
    post = FakeEndpoint([Answer(status=410, text="gone")])
    outcome, retries = await run(post, endpoint())
    assert (outcome.result, outcome.attempts, retries) == ("failed", 1, [])
    assert outcome.reason() == "the endpoint refused it, not retried: HTTP 410: gone"


async def test_after_the_last_attempt_it_fails_with_the_last_answer() -> None:
    post = FakeEndpoint([Answer(status=503)] * 10)
    outcome, retries = await run(post, endpoint(max_attempts=3))
    assert (outcome.result, outcome.attempts, len(retries)) == ("failed", 3, 2)
    assert outcome.reason() == "no success in 3 attempts, the last: HTTP 503"


async def test_a_halt_ends_a_backoff_at_once_and_leaves_the_event() -> None:
    halt = asyncio.Event()
    post = FakeEndpoint([Answer(status=503)] * 10)
    settings = endpoint(backoff_initial_s=60, backoff_max_s=60, max_attempts=10)
    started = time.monotonic()
    delivery = asyncio.create_task(run(post, settings, halt))
    await post.asked.wait()
    halt.set()
    outcome, _ = await delivery
    assert time.monotonic() - started < 1
    assert (outcome.result, outcome.attempts) == ("halted", 1)
    already, _ = await run(FakeEndpoint(), settings, halt)
    assert (already.result, already.attempts, already.last) == ("halted", 0, None)


# -- dead letters -------------------------------------------------------------------------


def test_a_dead_letter_keeps_the_event_whole_and_names_the_endpoint_only() -> None:
    record = Record("ccc.calls", 1, 42, 1_764_000_000_000, b"ccc-1:100", BODY)
    outcome = Outcome("failed", 6, Answer(error="no answer within 10 s"))
    at = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    kept = keep(record, 1 << 20)

    def letter(endpoint: str, event: EventRef | None = EVENT) -> WebhookDeadLetter:
        reason = outcome.reason()
        return dead_letter(endpoint, record, reason, event=event, outcome=outcome, at=at, kept=kept)

    assert letter("crm").dlq_id == letter("crm").dlq_id
    assert letter("crm").dlq_id != letter("erp", None).dlq_id
    document = json.loads(letter("crm").model_dump_json())
    assert document == {
        "dlq_id": letter("crm").dlq_id,
        "endpoint": "crm",
        "reason": "no success in 6 attempts, the last: no answer within 10 s",
        "event_id": "e-1",
        "event_type": "com.aliyun.ccc.call.record",
        "attempts": 6,
        "last_status": None,
        "last_error": "no answer within 10 s",
        "dead_at": "2026-11-24T12:00:00Z",
        "record": {
            "topic": "ccc.calls",
            "partition": 1,
            "offset": 42,
            "timestamp_ms": 1_764_000_000_000,
            "key_base64": base64.b64encode(b"ccc-1:100").decode(),
            "key_bytes": 9,
            "value_base64": base64.b64encode(BODY).decode(),
            "value_bytes": len(BODY),
            "headers_base64": [],
            "headers_count": 0,
            "cut": [],
        },
    }
    schema = next(m for m in MESSAGES if m.name == WEBHOOK_DEAD_LETTER)
    Draft202012Validator(json_schema(schema)).validate(document)
