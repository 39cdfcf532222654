"""Fuzzing the command consumer: arbitrary bytes and near-valid commands on the three command
topics, against the real worker (the service in-process, the embedded broker, the emulator).

Whatever comes in, every message is answered (a result or a DLQ record naming its topic,
partition and offset), no answer comes from the worker's own safety net, a command id is
executed at most once, and the worker keeps running. The service starts once per test;
hypothesis draws a batch of messages per example.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from service.app import run_service
from service.commands.models import KINDS, MAX_METADATA_BYTES, CommandKind
from service.emulator.config import EmulatorConfig
from service.emulator.server import EmulatorServer
from service.kafka.admin import describe_topics
from service.kafka.connection import client_options
from service.kafka.settings import KafkaSettings
from service.kafka.topics import COMMAND_TOPICS
from service.settings import Settings
from tests.inspection import eventually
from tests.integration.commands import Answers, Where
from tests.integration.pipeline import INSTANCE, commands_only

BATCH = 40  # messages per hypothesis example
EXECUTED = {"succeeded", "failed", "indeterminate"}  # CCC was called

# -- what is sent ------------------------------------------------------------------------

Expect = Literal["valid", "expired", "invalid", "either"]


@dataclass(frozen=True)
class Probe:
    """One message to send, and what is known of its fate in advance."""

    kind: CommandKind  # the topic it goes to
    value: bytes | None
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    expect: Expect  # either: it may or may not be a valid command
    command_id: str | None = None  # valid and expired ones: the id the result must carry
    action: str | None = None  # valid ones: the CCC action
    metadata: dict[str, Any] | None = None  # valid ones: copied to the result
    field: str | None = None  # invalid ones, where known: a field the rejection names

    def __repr__(self) -> str:  # values run to hundreds of kB: their start is enough
        value = None if self.value is None else self.value[:40]
        size = None if self.value is None else len(self.value)
        return (
            f"Probe({self.kind!r}, expect={self.expect!r}, field={self.field!r}, "
            f"key={self.key!r}, headers={self.headers!r}, size={size}, value={value!r})"
        )

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:  # hypothesis's printer
        printer.text(repr(self))


@dataclass(frozen=True)
class Body:
    """A valid command of one shape, before it is mutated and encoded."""

    kind: CommandKind
    action: str
    required: tuple[str, ...]
    values: dict[str, Any]


MODEL_FIELDS = {
    "schema_version", "command_id", "instance_id", "expires_at", "metadata", "mode", "caller",
    "callee", "answer_mode", "route_point", "provider", "call_center_number", "config_id",
    "phone_numbers", "template_params", "channel", "contact_id", "contact_type",
    "skill_group_id",
}  # fmt: skip
# Never added as an unknown field: with specversion, a plain command reads as a CloudEvent.
NOT_EXTRA = {*MODEL_FIELDS, "specversion"}
BASE_REQUIRED = ("command_id", "instance_id")

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: Python's json writes and reads them
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
huge_strings = st.builds(
    lambda char, size: char * size,
    st.characters(codec="utf-8"),
    st.integers(min_value=10_000, max_value=50_000),
)
command_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,12}", fullmatch=True)
phones = st.from_regex(r"\+?[0-9]{3,20}", fullmatch=True)
texts = st.text(min_size=1, max_size=30)
metadata = st.dictionaries(st.text(max_size=10), json_values, max_size=3)
future_times = st.sampled_from(
    ["2099-01-01T00:00:00Z", "2099-06-30T23:59:59.5+08:00", "2100-02-28T12:00:00-05:00"]
)


def _optional(**fields: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    return {"expires_at": st.none() | future_times, "metadata": metadata, **fields}


def _body(
    kind: CommandKind, action: str, required: dict[str, st.SearchStrategy[Any]],
    optional: dict[str, st.SearchStrategy[Any]],
) -> st.SearchStrategy[Body]:  # fmt: skip
    base = {"command_id": command_ids, "instance_id": st.just(INSTANCE)}
    return st.fixed_dictionaries({**base, **required}, optional=_optional(**optional)).map(
        lambda values: Body(kind, action, (*BASE_REQUIRED, *required), values)
    )


@st.composite
def dial_ex(draw: st.DrawFn) -> Body:
    answer_mode = draw(st.sampled_from(["ivr", "agent", "skill_group"]))
    route_point = draw(texts)
    if answer_mode == "agent":
        route_point = route_point[:20] + "@" + draw(st.text(max_size=10))
    return draw(
        _body(
            "dial",
            "DialEx",
            {
                "mode": st.just("dial_ex"),
                "caller": phones,
                "callee": phones,
                "answer_mode": st.just(answer_mode),
                "route_point": st.just(route_point),
            },
            {"provider": st.none() | texts},
        )
    )


valid_bodies = st.one_of(
    dial_ex(),
    _body(
        "dial",
        "StartBack2BackCall",
        {"mode": st.just("back_to_back"), "caller": phones, "callee": phones},
        {"call_center_number": st.none() | phones},
    ),
    _body(
        "sms",
        "SendPredefinedShortMessage",
        {
            "config_id": st.integers(min_value=1, max_value=2**63),
            "phone_numbers": st.lists(phones, min_size=1, max_size=3),
        },
        {"template_params": st.dictionaries(st.text(max_size=8), st.text(max_size=35), max_size=3)},
    ),
    _body(
        "appraise",
        "LaunchAppraise",
        {"channel": st.just("voice"), "contact_id": texts},
        {},
    ),
    _body(
        "appraise",
        "LaunchShortMessageAppraise",
        {
            "channel": st.just("sms"),
            "contact_id": texts,
            "contact_type": st.sampled_from(["inbound", "outbound"]),
            "phone_numbers": st.lists(phones, min_size=1, max_size=3),
        },
        {"skill_group_id": st.none() | texts},
    ),
)


def cloud_event(kind: str, data: object) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "fuzz://test",
        "type": f"com.aliyun.ccc.command.{kind}",
        "datacontenttype": "application/json",
        "data": data,
    }


def readable_key(document: object) -> bytes | None:
    """The command id as the Kafka key, where the message has one that could be a key."""
    if isinstance(document, dict) and isinstance(document.get("data"), dict):
        document = document["data"]
    if isinstance(document, dict):
        command_id = document.get("command_id")
        if isinstance(command_id, str) and 0 < len(command_id) <= 200:
            return command_id.encode("utf-8", "surrogatepass")
    return None


Change = tuple[CommandKind, Expect, str | None]  # topic, what to expect, the field named
Mutate = Callable[[st.DrawFn, Body, dict[str, Any]], Change]


def _unchanged(draw: st.DrawFn, body: Body, values: dict[str, Any]) -> Change:
    return body.kind, "valid", None


def _expired(draw: st.DrawFn, body: Body, values: dict[str, Any]) -> Change:
    values["expires_at"] = draw(st.sampled_from(["2000-01-01T00:00:00Z", "2024-02-29T08:00+08:00"]))
    return body.kind, "expired", None


def _huge_metadata(draw: st.DrawFn, body: Body, values: dict[str, Any]) -> Change:
    """Metadata rides on the result: up to MAX_METADATA_BYTES of JSON, not more."""
    values["metadata"] = {"blob": draw(huge_strings), "n": draw(json_values)}
    if len(to_json(values["metadata"])) > MAX_METADATA_BYTES:
        return body.kind, "invalid", "metadata"
    return body.kind, "valid", None


def _removed(draw: st.DrawFn, body: Body, values: dict[str, Any]) -> Change:
    name = draw(st.sampled_from(body.required))
    del values[name]
    return body.kind, "invalid", name


def _extra(draw: st.DrawFn, body: Body, values: dict[str, Any]) -> Change:
    name = draw(st.text(min_size=1, max_size=10).filter(lambda n: n not in NOT_EXTRA))
    values[name] = draw(json_values)
    return body.kind, "invalid", name


def _junk(draw: st.DrawFn, body: Body, values: dict[str, Any]) -> Change:
    values[draw(st.sampled_from(sorted(values)))] = draw(json_values)
    return body.kind, "either", None


def _huge(draw: st.DrawFn, body: Body, values: dict[str, Any]) -> Change:
    """No field of any command takes 10,000 characters (metadata takes anything)."""
    name = draw(st.sampled_from(sorted(values.keys() - {"metadata"})))
    values[name] = draw(huge_strings)
    return body.kind, "invalid", name


def _huge_template(draw: st.DrawFn, body: Body, values: dict[str, Any]) -> Change:
    values["template_params"] = {"p": draw(huge_strings)}
    return body.kind, "invalid", "template_params"  # too long (sms), or not a field (others)


def _wrong_topic(draw: st.DrawFn, body: Body, values: dict[str, Any]) -> Change:
    return draw(st.sampled_from([k for k in KINDS if k != body.kind])), "invalid", None


def _as_is(field_named: str) -> Mutate:
    """Values unchanged: what is wrong is around them (key, CloudEvent)."""
    return lambda _draw, body, _values: (body.kind, "invalid", field_named)


MUTATIONS: dict[str, Mutate] = {
    "none": _unchanged,
    "expired": _expired,
    "huge_metadata": _huge_metadata,
    "remove": _removed,
    "extra": _extra,
    "junk": _junk,
    "huge": _huge,
    "huge_template": _huge_template,
    "wrong_topic": _wrong_topic,
    "wrong_key": _as_is("key"),
    "wrong_event_type": _as_is("type"),
    "bad_event_data": _as_is("data"),
}


def _document(draw: st.DrawFn, kind: CommandKind, values: dict[str, Any], mutation: str) -> Any:
    if mutation == "wrong_event_type":
        return cloud_event(draw(st.text(max_size=30).filter(lambda t: t != kind)), values)
    if mutation == "bad_event_data":
        return cloud_event(kind, draw(json_values.filter(lambda v: not isinstance(v, dict))))
    return cloud_event(kind, values) if draw(st.booleans()) else values


@st.composite
def near_valid(draw: st.DrawFn) -> Probe:
    """A valid command, possibly with one thing wrong, plain or as a CloudEvent."""
    body = draw(valid_bodies)
    values = dict(body.values)
    mutation = draw(st.sampled_from(sorted(MUTATIONS)))
    kind, expect, named = MUTATIONS[mutation](draw, body, values)
    document = _document(draw, kind, values, mutation)
    key = readable_key(document)
    if mutation == "wrong_key":
        key = draw(st.none() | st.binary(max_size=20).filter(lambda k: k != key))
    elif key is None:
        key = draw(st.none() | st.binary(max_size=20))
    sure = expect in {"valid", "expired"}
    return Probe(
        kind=kind,
        value=json.dumps(document).encode(),
        key=key,
        headers=draw(headers),
        expect=expect,
        command_id=values["command_id"] if sure else None,
        action=body.action if sure else None,
        metadata=values.get("metadata", {}) if sure else None,
        field=named,
    )


headers = st.lists(st.tuples(st.text(max_size=10), st.binary(max_size=20)), max_size=2).map(tuple)
kinds = st.sampled_from(KINDS)


@st.composite
def junk(draw: st.DrawFn) -> Probe:
    """Not a command at all: raw bytes, JSON that is no object, a tombstone, random objects."""
    choice = draw(st.sampled_from(["bytes", "json", "object", "tombstone", "event"]))
    field_named: str | None = None
    value: bytes | None
    if choice == "bytes":
        value = draw(st.binary(max_size=200))
    elif choice == "json":
        value = json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
    elif choice == "object":
        value = json.dumps(
            draw(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
        ).encode()
    elif choice == "event":
        kind = draw(kinds)
        value = json.dumps(cloud_event(kind, draw(json_values))).encode()
    else:
        value, field_named = None, ""
    return Probe(
        kind=draw(kinds),
        value=value,
        # A record needs a key or a value: a tombstone has a key.
        key=draw(st.binary(max_size=20) if value is None else st.none() | st.binary(max_size=20)),
        headers=draw(headers),
        expect="invalid",
        field=field_named,
    )


probes = st.one_of(near_valid(), near_valid(), junk())

# -- the service and what it answers -----------------------------------------------------


@dataclass
class Running:
    settings: Settings
    service: asyncio.Task[None]
    answers: Answers
    producer: AIOKafkaProducer

    def __repr__(self) -> str:  # hypothesis prints its arguments; the answers run to MBs
        return f"Running(topics={self.settings.topics.prefix!r}, service={self.service!r})"

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:
        printer.text(repr(self))


@pytest.fixture
async def running(kafka_settings: KafkaSettings) -> AsyncIterator[Running]:
    config = EmulatorConfig(instances=(INSTANCE,), agents=5, seed=5, speed=1)
    async with EmulatorServer(config) as emulator:
        settings = commands_only(emulator, kafka_settings.bootstrap_servers)
        stop, ready = asyncio.Event(), asyncio.Event()
        service = asyncio.create_task(run_service(settings, stop, on_ready=ready.set))
        started = asyncio.create_task(ready.wait())
        await asyncio.wait([service, started], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if service.done():
            service.result()  # its startup error
        assert ready.is_set(), "the service did not start"  # the topics exist from here on
        topics = settings.topics
        outputs = [topics.name("command_results"), topics.name("command_dlq")]
        found = await describe_topics(settings.kafka, outputs)
        consumer = AIOKafkaConsumer(**client_options(settings.kafka), enable_auto_commit=False)
        producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all")
        await consumer.start()
        await producer.start()
        try:
            partitions = [
                TopicPartition(name, p) for name in outputs for p in range(found[name].partitions)
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            yield Running(settings, service, Answers(consumer, outputs[0]), producer)
        finally:
            await producer.stop()
            await consumer.stop()
            stop.set()
            await asyncio.wait([service])  # how it ended is for the test to check (alive)
            if not service.cancelled():
                service.exception()  # retrieved here; alive() reports it in the test


async def send(running: Running, probes: list[Probe]) -> dict[tuple[str, int, int], Probe]:
    """Each probe on its topic, by where it landed."""
    topics = running.settings.topics
    futures = [
        await running.producer.send(
            topics.name(COMMAND_TOPICS[probe.kind]),
            probe.value,
            key=probe.key,
            headers=list(probe.headers),
        )
        for probe in probes
    ]
    landed = await asyncio.gather(*futures)
    return {
        (m.topic, m.partition, m.offset): probe for m, probe in zip(landed, probes, strict=True)
    }


def alive(running: Running) -> None:
    """The service, and so its command worker, still runs: with no pollers, the worker is
    the only task of its task group, and it ending (by an error or not) ends the service."""
    service = running.service
    if service.done():
        error = None if service.cancelled() else service.exception()
        pytest.fail(f"the service stopped: {error!r}")


def finite(value: Any) -> Any:
    """`value` as the result carries it: NaN and the infinities become null in JSON out."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


# -- the test ----------------------------------------------------------------------------


@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.generate],  # no shrinking: each example costs seconds; the report names it
    database=None,  # each run is against a fresh service: replaying old examples means nothing
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one service for all examples, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(probes, min_size=BATCH, max_size=BATCH))
async def test_every_message_is_answered_and_the_worker_keeps_running(
    running: Running, batch: list[Probe]
) -> None:
    sent = await send(running, batch)
    answers = running.answers

    async def all_answered() -> bool:
        await answers.poll()
        alive(running)
        return all(answered(answers, where) for where in sent)

    await eventually(all_answered, deadline_s=30)

    kinds = {running.settings.topics.name(COMMAND_TOPICS[k]): k for k in KINDS}
    for where, probe in sent.items():
        results = answers.results.get(where, [])
        dead = answers.dead.get(where, [])
        context = f"{probe} -> results {results}, dlq {dead}"
        assert len({r["id"] for r in results}) <= 1, context  # one result per message
        assert len(dead) <= 1, context
        for result in results:
            assert result["type"] == "com.aliyun.ccc.command.result"
            assert result["data"]["kind"] == kinds[where[0]] == probe.kind
            assert result["subject"] == result["data"]["command_id"]
        if dead:
            _check_dead_letter(probe, dead[0], results)
        else:
            assert results, context
            assert results[0]["data"]["status"] != "rejected", context
        if probe.expect in {"valid", "expired"}:
            _check_command_result(probe, results, dead)
        elif probe.expect == "invalid":
            assert dead, context
    _check_at_most_once(answers.all_results())
    alive(running)


def answered(answers: Answers, where: Where) -> bool:
    """A result, or a DLQ record and (when it names a command id) the rejected result that
    follows it."""
    if where in answers.results:
        return True
    dead = answers.dead.get(where) or []
    return bool(dead) and dead[0]["command_id"] is None


def _check_dead_letter(probe: Probe, letter: dict[str, Any], results: list[dict[str, Any]]) -> None:
    context = f"{probe} -> {letter}"
    assert letter["errors"], context
    assert not letter["reason"].startswith("message: internal error"), context  # a bug caught
    # The record whole, or the start of its value when the letter would not fit a message.
    record = letter["record"]
    assert record["key_base64"] == b64(probe.key), context
    assert record["value_bytes"] == (None if probe.value is None else len(probe.value))
    if probe.value is None:
        assert record["value_base64"] is None
    else:
        kept = base64.b64decode(record["value_base64"])
        assert probe.value.startswith(kept), context
        assert ("value" in record["cut"]) == (kept != probe.value), context
    headers = [[b64(name.encode()), b64(value)] for name, value in probe.headers]
    assert record["headers_base64"] == headers, context
    if probe.field is not None:
        assert probe.field in [e["field"] for e in letter["errors"]], context
    # A rejection readable enough to have a command id is answered under it too.
    if letter["command_id"] is None:
        assert not results, context
    else:
        assert [r["data"]["status"] for r in results] == ["rejected"], context
        data = results[0]["data"]
        assert data["command_id"] == letter["command_id"]
        assert data["error"]["code"] == "InvalidCommand"
        assert data["error"]["fields"] == letter["errors"]


def _check_command_result(
    probe: Probe, results: list[dict[str, Any]], dead: list[dict[str, Any]]
) -> None:
    context = f"{probe} -> results {results}, dlq {dead}"
    assert not dead, context
    assert len(results) == 1, context
    data = results[0]["data"]
    assert (data["command_id"], data["instance_id"]) == (probe.command_id, INSTANCE), context
    assert data["metadata"] == finite(probe.metadata), context
    if probe.expect == "expired":
        assert data["status"] in {"expired", "duplicate"}, context
    else:
        assert data["status"] in {"succeeded", "failed", "duplicate"}, context
    if data["status"] in EXECUTED:
        assert data["action"] == probe.action, context
        assert data["attempts"] >= 1, context
        assert data["request_id"], context  # CCC answered, either way
        assert (data["error"] is None) == (data["status"] == "succeeded"), context
    elif data["status"] == "expired":
        assert (data["action"], data["attempts"], data["error"]["code"]) == (None, 0, "Expired")


def _check_at_most_once(results: list[dict[str, Any]]) -> None:
    """Each command id reaches CCC once; a repeat is a duplicate carrying the first outcome."""
    executed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for data in results:
        if data["status"] in EXECUTED:
            executed[data["command_id"]].append(data)
    assert all(len(found) == 1 for found in executed.values()), executed
    for data in results:
        if data["status"] == "duplicate":
            (first,) = executed[data["command_id"]]
            original = data["original"]
            assert original["status"] == first["status"], data
            assert (original["action"], original["request_id"]) == (
                first["action"],
                first["request_id"],
            ), data


# JSON that Python's json module refuses with an error other than JSONDecodeError.
POISON: list[tuple[CommandKind, bytes]] = [
    # RecursionError: nested deeper than the interpreter's stack
    ("dial", b"[" * 5000 + b"]" * 5000),
    # ValueError: a number of more digits than int() converts (4300)
    ("sms", b'{"command_id": "p-1", "config_id": 1' + b"0" * 5000 + b"}"),
]


async def test_json_that_python_cannot_read_is_dead_lettered_and_the_worker_keeps_running(
    running: Running,
) -> None:
    sent = await send(
        running, [Probe(kind, value, b"poison", (), "invalid", field="") for kind, value in POISON]
    )
    answers = running.answers

    async def all_answered() -> bool:
        await answers.poll()
        alive(running)
        return all(where in answers.dead for where in sent)

    await eventually(all_answered, deadline_s=30)
    for where, probe in sent.items():
        _check_dead_letter(probe, answers.dead[where][0], answers.results.get(where, []))


NESTED = b"[" * 300 + b"]" * 300  # deeper than pydantic writes (its limit is about 255)
UNWRITABLE: list[Probe] = [
    # Valid but for metadata its result could not carry: refused, naming metadata.
    Probe(
        "sms",
        b'{"command_id": "u-1", "instance_id": "ccc-a", "config_id": 1, '
        b'"phone_numbers": ["13900000000"], "metadata": {"a": ' + NESTED + b"}}",
        b"u-1",
        (),
        "invalid",
        field="metadata",
    ),
    # Invalid with a readable id: DLQ record and rejected result, without the metadata.
    Probe(
        "sms",
        b'{"command_id": "u-2", "instance_id": "ccc-a", "metadata": {"a": ' + NESTED + b"}}",
        b"u-2",
        (),
        "invalid",
        field="config_id",
    ),
    # Invalid with a lone surrogate for an id: a DLQ record naming it, and no result.
    Probe("sms", b'{"command_id": "\\ud800"}', b"u-3", (), "invalid", field="command_id"),
]


async def test_values_that_cannot_be_written_back_are_answered_without_the_safety_net(
    running: Running,
) -> None:
    sent = await send(running, UNWRITABLE)
    answers = running.answers

    async def all_answered() -> bool:
        await answers.poll()
        alive(running)
        return all(where in answers.dead and answered(answers, where) for where in sent)

    await eventually(all_answered, deadline_s=30)
    await answers.poll()
    for where, probe in sent.items():
        dead = answers.dead[where]
        assert len(dead) == 1, dead
        _check_dead_letter(probe, dead[0], answers.results.get(where, []))
    alive(running)
