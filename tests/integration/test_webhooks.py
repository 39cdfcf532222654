"""The webhook dispatcher against the real embedded broker and real HTTP receivers on
loopback: every request checked by the Standard Webhooks reference verifier, type filters,
per-key order, retries after injected 500s and 429s, a dead endpoint that does not hold up a
healthy one, dead letters, at least once across a stop and a restart, and the wiring into
`ccc-bridge run` with its /metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from prometheus_client import REGISTRY

from service.broker import EmbeddedBroker
from service.cloudevents import CloudEvent, EventData, envelope, event_id
from service.emulator.server import EmulatorServer
from service.kafka.admin import ensure_topics
from service.kafka.consumer import read_to_end
from service.kafka.producer import Producer
from service.kafka.settings import KafkaSettings, TopicSettings
from service.schemas import MESSAGES, json_schema
from service.settings import CommandSettings, HttpSettings, Settings
from service.webhooks.core import WEBHOOK_DEAD_LETTER
from service.webhooks.dispatcher import HttpPoster, run_webhooks
from service.webhooks.hosts import HostPolicy
from service.webhooks.settings import WebhookEndpoint, WebhookSettings
from tests import samples
from tests.inspection import eventually
from tests.integration.kafka_io import produce, produce_events
from tests.integration.pipeline import free_port, in_process, service_settings
from tests.integration.webhooks import LOOPBACK, Receiver, endpoint, new_secret

CHANGED = "com.aliyun.ccc.agent.state.changed"
DEAD_LETTER_SCHEMA = Draft202012Validator(
    json_schema(next(m for m in MESSAGES if m.name == WEBHOOK_DEAD_LETTER))
)


def with_webhooks(
    kafka: KafkaSettings, topics: TopicSettings, *endpoints: WebhookEndpoint
) -> Settings:
    return Settings(
        kafka=kafka,
        topics=topics,
        webhooks=WebhookSettings(
            endpoints=list(endpoints),
            allow_internal_hosts=LOOPBACK,
            group_prefix=f"wh-{uuid.uuid4().hex[:8]}-",  # a fresh group per test run
            start_from="earliest",
            fetch_max_wait_ms=20,
            commit_interval_s=0.1,
            # The embedded broker numbers a group's first generation 0, and aiokafka sends no
            # LeaveGroup from generation 0: a restarted member waits this out.
            session_timeout_ms=3000,
        ),
    )


@asynccontextmanager
async def dispatching(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """The dispatchers of every endpoint, as `ccc-bridge run` runs them; stopped on the way
    out, which must end them cleanly."""
    producer = Producer(settings.kafka)
    await producer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_webhooks(settings.webhooks, settings.kafka, settings.topics, producer, stop)
    )
    try:
        yield task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=30)
        finally:
            await producer.stop()


def tagged(data: EventData, tag: str, *parts: object) -> CloudEvent[EventData]:
    return envelope(
        data, event_id=event_id(tag, data.event_type, *parts), region="cn-shanghai", time=samples.AT
    )


def call_steps(tag: str, contact: str, count: int) -> list[CloudEvent[EventData]]:
    step = samples.call_event()
    return [
        tagged(step.model_copy(update={"contact_id": contact, "seq": seq}), tag, contact, seq)
        for seq in range(1, count + 1)
    ]


def call_records(tag: str, count: int) -> list[CloudEvent[EventData]]:
    record = samples.call_record()
    return [tagged(record.model_copy(update={"contact_id": f"r{i}"}), tag, i) for i in range(count)]


def agent_changes(tag: str, count: int) -> list[CloudEvent[EventData]]:
    change = samples.agent_changed()
    return [
        tagged(change.model_copy(update={"agent_id": f"agent-{i}"}), tag, i) for i in range(count)
    ]


async def publish(settings: Settings, events: list[CloudEvent[EventData]]) -> dict[str, bytes]:
    """Produced as the service does, on each event's topic; the exact bytes by event id."""
    by_topic: defaultdict[str, list[CloudEvent[EventData]]] = defaultdict(list)
    for event in events:
        by_topic[settings.topics.name(event.data.topic)].append(event)
    for topic, batch in by_topic.items():
        await produce_events(settings.kafka, topic, batch)
    return {event.id: event.model_dump_json().encode() for event in events}


async def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    records = await read_to_end(settings.kafka, [settings.topics.name("webhook_dlq")])
    letters = [json.loads(record.value or b"") for record in records]
    for letter in letters:
        DEAD_LETTER_SCHEMA.validate(letter)
    return letters


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def outcomes(endpoint_name: str) -> dict[str, float]:
    return {
        outcome: metric(
            "ccc_bridge_webhook_deliveries_total", endpoint=endpoint_name, outcome=outcome
        )
        for outcome in ("delivered", "retried", "dead_lettered")
    }


def moved(before: dict[str, float], endpoint_name: str) -> dict[str, float]:
    return {key: value - before[key] for key, value in outcomes(endpoint_name).items()}


def check_requests(receiver: Receiver, sent: Mapping[str, bytes]) -> None:
    """Every request verified; each delivery the event's exact bytes, its id as webhook-id,
    a timestamp of now, the CloudEvents content type."""
    assert receiver.forged == []
    for delivery in receiver.delivered:
        assert delivery.body == sent[delivery.id]
        assert delivery.headers["webhook-id"] == delivery.id
        assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 60
        assert delivery.headers["Content-Type"] == "application/cloudevents+json"
        assert delivery.headers["webhook-signature"].startswith("v1,")


# -- signed, filtered, in key order, retried ------------------------------------------------


async def test_matching_events_arrive_signed_in_key_order_with_retries_after_500s(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    tag = uuid.uuid4().hex[:8]
    steps = call_steps(tag, "c-ordered", 6)  # one key: must arrive 1, 2, ..., 6
    records = call_records(tag, 3)
    changes = agent_changes(tag, 4)
    results = [tagged(samples.command_result(command_id=f"cmd-{i}"), tag, i) for i in range(2)]
    flaky = [steps[1].id, records[0].id, results[0].id]  # 500 twice, then taken
    throttled = changes[0].id  # 429 with Retry-After: 1, then taken
    refused = changes[1].id  # 410: not retried
    fail_twice: list[tuple[int, dict[str, str]]] = [(500, {}), (500, {})]
    script = {event: list(fail_twice) for event in flaky}
    script[throttled] = [(429, {"Retry-After": "1"})]
    script[refused] = [(410, {})]
    names = {"calls": f"calls-{tag}", "all": f"all-{tag}"}
    before = {name: outcomes(name) for name in names.values()}

    async with (
        Receiver(new_secret()) as calls,
        Receiver(new_secret(), script) as everything,
    ):
        settings = with_webhooks(
            kafka_settings,
            topic_settings,
            endpoint(names["calls"], calls, event_types=["com.aliyun.ccc.call.*"]),
            endpoint(names["all"], everything, event_types=["*"]),
        )
        await ensure_topics(settings.kafka, settings.topics)
        sent = await publish(settings, [*steps, *records, *changes, *results])
        await produce(settings.kafka, settings.topics.name("calls"), [("bad-1", b"\x00not json")])
        call_ids = {event.id for event in [*steps, *records]}
        taken_by_all = set(sent) - {refused}

        async def done() -> bool:
            letters = await dead_letters(settings)
            return (
                set(calls.ids()) == call_ids
                and set(everything.ids()) == taken_by_all
                and (len(letters) == 3)
            )

        async with dispatching(settings) as task:
            await eventually(done, deadline_s=30)
            assert not task.done()
        letters = await dead_letters(settings)

    # (1) Signed and filtered: the calls endpoint got the call types only, each once.
    check_requests(calls, sent)
    check_requests(everything, sent)
    assert calls.ids() == Counter(call_ids)
    assert {d.type for d in calls.delivered} == {
        "com.aliyun.ccc.call.event",
        "com.aliyun.ccc.call.record",
    }
    assert everything.ids() == Counter(taken_by_all)
    # One key's events in their order, at both, although step 2 failed twice at one.
    step_ids = {step.id for step in steps}
    for receiver in (calls, everything):
        seqs = [json.loads(d.body)["data"]["seq"] for d in receiver.delivered if d.id in step_ids]
        assert seqs == [1, 2, 3, 4, 5, 6]
    # (2) Retries: 500s twice then taken; 429 waited for its Retry-After; 410 tried once.
    assert {event: everything.attempts[event] for event in flaky} == dict.fromkeys(flaky, 3)
    first, second = everything.attempt_times[throttled]
    assert second - first >= 0.9
    assert everything.attempts[refused] == 1
    assert moved(before[names["all"]], names["all"]) == {
        "delivered": len(taken_by_all),
        "retried": 2 * len(flaky) + 1,
        "dead_lettered": 2,
    }
    assert moved(before[names["calls"]], names["calls"]) == {
        "delivered": len(call_ids),
        "retried": 0,
        "dead_lettered": 1,
    }
    # Dead letters: the 410 whole, and the record that is no CloudEvent, for each endpoint.
    check_first_letters(letters, names, refused, sent[refused], settings.topics.name("calls"))
    for secret in (calls.secret, everything.secret):
        assert secret.removeprefix("whsec_") not in json.dumps(letters)


def check_first_letters(
    letters: list[dict[str, Any]],
    names: dict[str, str],
    refused: str,
    refused_value: bytes,
    calls_topic: str,
) -> None:
    by_endpoint = {(letter["endpoint"], letter["event_id"]): letter for letter in letters}
    gone = by_endpoint[names["all"], refused]
    assert (gone["attempts"], gone["last_status"], gone["event_type"]) == (1, 410, CHANGED)
    assert gone["reason"] == "the endpoint refused it, not retried: HTTP 410: scripted"
    assert base64.b64decode(gone["record"]["value_base64"]) == refused_value
    assert base64.b64decode(gone["record"]["key_base64"]) == b"ccc-demo:agent-1"
    for name in names.values():
        bad = by_endpoint[name, None]
        assert bad["reason"].startswith("not a CloudEvent: not JSON")
        assert (bad["attempts"], bad["event_type"]) == (0, None)
        assert bad["record"]["topic"] == calls_topic
        assert base64.b64decode(bad["record"]["value_base64"]) == b"\x00not json"


# -- a dead endpoint ------------------------------------------------------------------------


async def test_dead_endpoints_do_not_hold_up_a_healthy_one_and_end_in_the_dlq(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    tag = uuid.uuid4().hex[:8]
    probe, *batch = agent_changes(tag, 13)  # different keys: tried side by side
    names = {"healthy": f"healthy-{tag}", "hung": f"hung-{tag}", "gone": f"gone-{tag}"}
    before = {name: outcomes(name) for name in names.values()}
    secret = new_secret()
    async with Receiver(secret) as healthy, Receiver(secret, hang=True) as hung:
        settings = with_webhooks(
            kafka_settings,
            topic_settings,
            endpoint(names["healthy"], healthy),
            # Never answers: each attempt ends at its 1 s timeout, 3 of them.
            endpoint(names["hung"], hung, timeout_s=1.0, max_attempts=3, concurrency=32),
            # Nothing listens there: every connection is refused.
            endpoint(
                names["gone"], healthy, url=f"http://127.0.0.1:{free_port()}/", max_attempts=2
            ),
        )
        await ensure_topics(settings.kafka, settings.topics)
        sent = await publish(settings, [probe])
        async with dispatching(settings) as task:

            async def all_assigned() -> bool:
                letters = await dead_letters(settings)
                return (
                    probe.id in healthy.ids()
                    and hung.attempts[probe.id] > 0
                    and any(letter["endpoint"] == names["gone"] for letter in letters)
                )

            await eventually(all_assigned, deadline_s=30)
            sent |= await publish(settings, batch)
            batch_ids = {event.id for event in batch}

            async def healthy_has_all() -> bool:
                return batch_ids <= set(healthy.ids())

            await eventually(healthy_has_all, deadline_s=5)
            # Meanwhile the hung endpoint is still at it: no batch event given up yet.
            assert all(hung.attempts[event] < 3 for event in batch_ids)
            letters = await dead_letters(settings)
            assert (
                not {e["event_id"] for e in letters if e["endpoint"] == names["hung"]} & batch_ids
            )

            async def given_up() -> bool:
                return len(await dead_letters(settings)) == 2 * len(sent)

            await eventually(given_up, deadline_s=30)
            assert not task.done()
        letters = await dead_letters(settings)

    check_requests(healthy, sent)
    assert healthy.ids() == Counter(sent.keys())
    assert hung.attempts == Counter(dict.fromkeys(sent, 3))
    by_endpoint = defaultdict(list)
    for letter in letters:
        by_endpoint[letter["endpoint"]].append(letter)
        assert letter["event_type"] == CHANGED
        assert letter["last_status"] is None
        assert letter["record"]["topic"] == settings.topics.name("agent_states")
        assert base64.b64decode(letter["record"]["value_base64"]) == sent[letter["event_id"]]
        assert base64.b64decode(letter["record"]["key_base64"]).startswith(b"ccc-demo:agent-")
    assert set(by_endpoint) == {names["hung"], names["gone"]}
    for name, attempts in ((names["hung"], 3), (names["gone"], 2)):
        assert {letter["event_id"] for letter in by_endpoint[name]} == set(sent)
        assert {letter["attempts"] for letter in by_endpoint[name]} == {attempts}
        assert moved(before[name], name) == {
            "delivered": 0,
            "retried": (attempts - 1) * len(sent),
            "dead_lettered": len(sent),
        }
    for letter in by_endpoint[names["hung"]]:
        assert letter["reason"] == "no success in 3 attempts, the last: no answer within 1 s"
        assert letter["last_error"] == "no answer within 1 s"
    for letter in by_endpoint[names["gone"]]:
        assert letter["last_error"].startswith("ClientConnectorError: Cannot connect to host")
    assert moved(before[names["healthy"]], names["healthy"]) == {
        "delivered": len(sent),
        "retried": 0,
        "dead_lettered": 0,
    }


# -- stop and restart -----------------------------------------------------------------------


async def test_a_stop_ends_backoffs_at_once_and_a_restart_sends_what_was_left(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    tag = uuid.uuid4().hex[:8]
    early, late = agent_changes(tag, 3), call_records(tag, 4)
    async with Receiver(new_secret()) as receiver:
        # Long backoffs: at the stop, the late events are waiting to be tried again.
        hook = endpoint(
            f"restart-{tag}", receiver, max_attempts=10, backoff_initial_s=30, backoff_max_s=30
        )
        settings = with_webhooks(kafka_settings, topic_settings, hook)
        await ensure_topics(settings.kafka, settings.topics)
        sent = await publish(settings, early)
        async with dispatching(settings) as task:

            async def early_taken() -> bool:
                return set(receiver.ids()) == set(sent)

            await eventually(early_taken, deadline_s=30)
            receiver.down = True
            sent |= await publish(settings, late)

            async def late_tried() -> bool:
                return all(receiver.attempts[event.id] for event in late)

            await eventually(late_tried, deadline_s=10)
            stopping = time.monotonic()
        assert task.done()
        assert time.monotonic() - stopping < 5, "a stop does not wait out a 30 s backoff"
        assert await dead_letters(settings) == [], "stopping gives nothing up"

        receiver.down = False
        async with dispatching(settings):

            async def all_taken() -> bool:
                return set(receiver.ids()) == set(sent)

            await eventually(all_taken, deadline_s=30)

    check_requests(receiver, sent)
    # Delivered before the stop and committed: not sent again; the rest sent after.
    assert receiver.ids() == Counter(sent.keys())


# -- in `ccc-bridge run` --------------------------------------------------------------------


async def test_the_service_pushes_its_events_and_shows_webhook_metrics(
    broker: EmbeddedBroker, emulator_busy: EmulatorServer
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with Receiver(new_secret()) as receiver:
        base = service_settings(emulator_busy, broker.bootstrap_servers)
        hook = endpoint(f"service-{tag}", receiver, event_types=[CHANGED])
        settings = base.model_copy(
            update={
                "http": HttpSettings(host="127.0.0.1", port=free_port()),
                "commands": CommandSettings(enabled=False),
                "webhooks": with_webhooks(base.kafka, base.topics, hook).webhooks,
            }
        )
        async with in_process(settings) as (_, service):
            text = ""
            name = f'endpoint="{hook.name}"'
            delivered = f'ccc_bridge_webhook_deliveries_total{{{name},outcome="delivered"}}'
            lag = f"ccc_bridge_webhook_consumer_lag{{{name}}}"

            async def pushed_and_shown() -> bool:
                nonlocal text
                assert not service.done(), service
                url = f"http://127.0.0.1:{settings.http.port}/metrics"
                try:
                    async with aiohttp.ClientSession() as http, http.get(url) as answer:
                        text = await answer.text()
                except aiohttp.ClientConnectionError:
                    return False  # not listening yet
                return len(receiver.delivered) >= 5 and delivered in text and lag in text

            await eventually(pushed_and_shown, deadline_s=45)

    assert receiver.forged == []
    assert {delivery.type for delivery in receiver.delivered} == {CHANGED}
    assert f'ccc_bridge_webhook_delivery_seconds_count{{endpoint="{hook.name}"}}' in text


# -- where webhooks may go ----------------------------------------------------------------


async def test_a_name_resolving_to_loopback_is_refused_at_connect_unless_allowed() -> None:
    """Settings refuse a loopback literal; a hostname is judged by what it resolves to."""
    async with Receiver(new_secret()) as receiver:
        hook = endpoint("rebind", receiver, url=receiver.url.replace("127.0.0.1", "localhost"))
        body, headers = b"{}", {"webhook-id": "msg_1"}
        async with HttpPoster(hook, HostPolicy()) as post:
            refused = await post(body, headers)
        assert refused.status is None
        assert "resolves to 127.0.0.1" in (refused.error or "")
        assert receiver.attempts == Counter()
        async with HttpPoster(hook, HostPolicy.allowing(["127.0.0.0/8"])) as post:
            allowed = await post(body, headers)
        assert allowed.status == 401  # it got there: unsigned, so the receiver refused it
        assert receiver.attempts == Counter({"msg_1": 1})
