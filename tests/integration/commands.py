"""Mixed command traffic for the command pipeline's integration tests.

What is sent: valid commands of every shape, each identifiable in the emulator by a mark of
its own (the callee of a call, the numbers of an SMS, the contact id of a survey), second
copies of some of them (the same bytes under the same key, as a producer's retry or a
replay delivers them), and invalid messages of the kinds users get wrong. What answered
them: every result and DLQ record, by the message (topic, partition, offset) it answers.
What CCC did: the emulator's own record of each mark.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from service.ccc.client import CccClient
from service.ccc.settings import CccSettings
from service.commands.models import CommandKind
from service.emulator.server import EmulatorServer
from service.kafka.admin import describe_topics
from service.kafka.connection import client_options
from service.kafka.topics import COMMAND_TOPICS
from service.settings import Settings
from tests.inspection import fault, inspect
from tests.integration.pipeline import INSTANCE

# The actions with a side effect in CCC, and the request parameter naming a command's mark.
MARK_PARAMS = {
    "DialEx": "Callee",
    "StartBack2BackCall": "Callee",
    "SendPredefinedShortMessage": "PhoneNumbers",
    "LaunchAppraise": "Acid",
    "LaunchShortMessageAppraise": "Acid",
}
EXECUTED = frozenset({"succeeded", "failed", "indeterminate"})  # CCC was called
SERVER_ERRORS = frozenset({"InternalError", "ServiceUnavailable"})  # the emulator's 5xx codes
Where = tuple[str, int, int]  # topic, partition, offset
Role = Literal["first", "copy", "invalid"]


@dataclass(frozen=True)
class Message:
    """One Kafka message to send, and what is known of its fate in advance."""

    kind: CommandKind
    key: bytes | None
    value: bytes
    role: Role
    command_id: str | None  # the id its result must carry; None: no result, only a DLQ record
    mark: str | None  # what the emulator would show of it, were it executed
    action: str | None = None  # a valid command's CCC action
    field: str | None = None  # an invalid one's: a field its rejection must name

    def __repr__(self) -> str:
        return f"Message({self.role} {self.kind} {self.command_id!r} mark={self.mark!r})"


class Numbers:
    """Phone numbers no other message of the test uses."""

    def __init__(self, prefix: str = "139") -> None:
        self._prefix = prefix
        self._next = 0

    def __call__(self) -> str:
        self._next += 1
        return f"{self._prefix}{self._next:08d}"


def _wrapped(kind: CommandKind, body: dict[str, Any], as_event: bool) -> bytes:
    """The command as plain JSON, or as the data of a structured CloudEvent."""
    document: dict[str, Any] = body
    if as_event:
        document = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "crm://integration-test",
            "type": f"com.aliyun.ccc.command.{kind}",
            "datacontenttype": "application/json",
            "data": body,
        }
    return json.dumps(document).encode()


def dial_ex(command_id: str, callee: str) -> dict[str, Any]:
    """A valid DialEx command: an IVR call from the instance's number to `callee`."""
    return {
        "command_id": command_id,
        "instance_id": INSTANCE,
        "mode": "dial_ex",
        "caller": "02180000000",
        "callee": callee,
        "answer_mode": "ivr",
        "route_point": "ivr-welcome",
    }


def _valid(
    shape: int, command_id: str, number: Numbers, acids: list[str]
) -> tuple[CommandKind, dict[str, Any], str, str]:
    """A valid command of one of five shapes: kind, body, action and mark."""
    base: dict[str, Any] = {
        "command_id": command_id,
        "instance_id": INSTANCE,
        "metadata": {"crm": command_id},
    }
    if shape == 0:
        callee = number()
        return "dial", {**base, **dial_ex(command_id, callee)}, "DialEx", callee
    if shape == 1:
        callee = number()
        body = {**base, "mode": "back_to_back", "caller": number(), "callee": callee}
        return "dial", body, "StartBack2BackCall", callee
    if shape == 2:
        phones = [number(), number()]
        body = {
            **base,
            "config_id": 1,
            "phone_numbers": phones,
            "template_params": {"name": "x" * 35},  # the longest allowed by default
        }
        return "sms", body, "SendPredefinedShortMessage", ",".join(phones)
    acid = acids.pop()
    if shape == 3:
        body = {**base, "channel": "voice", "contact_id": acid}
        return "appraise", body, "LaunchAppraise", acid
    body = {
        **base,
        "channel": "sms",
        "contact_id": acid,
        "contact_type": "outbound",
        "phone_numbers": [number()],
    }
    return "appraise", body, "LaunchShortMessageAppraise", acid


def _invalid(variant: int, command_id: str, number: Numbers) -> Message:
    """An invalid message of one of eight kinds a producer gets wrong."""
    callee = number()
    base: dict[str, Any] = {"command_id": command_id, "instance_id": INSTANCE}
    dial = base | {
        "mode": "dial_ex",
        "caller": "02180000000",
        "callee": callee,
        "answer_mode": "ivr",
        "route_point": "ivr-welcome",
    }
    sms = base | {"config_id": 1, "phone_numbers": [callee]}
    kind: CommandKind = "dial"
    key = command_id.encode()
    mark: str | None = callee
    body: dict[str, Any] | None = None
    if variant == 0:  # a caller that is no phone number
        body, field = dial | {"caller": "0218-0000"}, "caller"
    elif variant == 1:  # an instance this service does not serve
        body, field = dial | {"instance_id": "ccc-unknown"}, "instance_id"
    elif variant == 2:  # answer_mode skill_group without the skill group
        body = {k: v for k, v in dial.items() if k != "route_point"}
        body, field = body | {"answer_mode": "skill_group"}, "route_point"
    elif variant == 3:  # an SMS to nobody
        kind, mark = "sms", None
        body, field = sms | {"phone_numbers": []}, "phone_numbers"
    elif variant == 4:  # a template parameter longer than SMS takes
        kind = "sms"
        body, field = sms | {"template_params": {"name": "x" * 36}}, "template_params"
    elif variant == 5:  # a valid command under another key: its copies could split partitions
        key, body, field = b"not-" + key, dial, "key"
    elif variant == 6:  # an id with a control character, which no HTTP header can carry
        command_id += "\x07"
        key, body, field = command_id.encode(), dial | {"command_id": command_id}, "command_id"
    if body is not None:
        value = _wrapped(kind, body, as_event=variant == 1)
        return Message(kind, key, value, "invalid", command_id, mark, field=field)
    # Not JSON at all: no command id to answer under, only the DLQ.
    value = b"\xff\xfe<dial callee='" + callee.encode() + b"'/>"
    return Message("dial", key, value, "invalid", None, callee, field="")


INVALID_VARIANTS = 8


def mixed_commands(count: int, acids: list[str], *, seed: int, tag: str) -> list[Message]:
    """`count` messages in a shuffled order: a fifth invalid, a tenth second copies of valid
    commands (each after its first), the rest valid commands of five shapes in turn; every
    appraisal takes one of `acids` (contact ids of existing calls), each once."""
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    number = Numbers()
    acids = list(acids)
    invalid = count // 5
    copies = count // 10
    firsts = count - invalid - copies
    appraisals = sum(1 for i in range(firsts) if i % 5 >= 3)
    assert len(acids) >= appraisals, f"{appraisals} appraisals need as many contact ids"
    sequence: list[Message] = []
    for i in range(firsts):
        command_id = f"{tag}-c{i}"
        kind, body, action, mark = _valid(i % 5, command_id, number, acids)
        value = _wrapped(kind, body, as_event=i % 3 == 0)
        key = command_id.encode()
        sequence.append(Message(kind, key, value, "first", command_id, mark, action))
    sequence += [_invalid(i % INVALID_VARIANTS, f"{tag}-bad{i}", number) for i in range(invalid)]
    rng.shuffle(sequence)
    repeated = rng.sample([m for m in sequence if m.role == "first"], copies)
    for first in repeated:
        at = rng.randint(sequence.index(first) + 1, len(sequence))
        sequence.insert(at, Message(first.kind, first.key, first.value, "copy", first.command_id,
                                    first.mark, first.action))  # fmt: skip
    return sequence


# -- sending and reading back -----------------------------------------------------------


async def send(settings: Settings, messages: list[Message]) -> dict[Where, Message]:
    """Each message on its command topic, by where it landed."""
    topics = settings.topics
    async with AIOKafkaProducer(**client_options(settings.kafka), acks="all") as producer:
        futures = [
            await producer.send(topics.name(COMMAND_TOPICS[m.kind]), m.value, key=m.key)
            for m in messages
        ]
        landed = await asyncio.gather(*futures)
    return {(r.topic, r.partition, r.offset): m for r, m in zip(landed, messages, strict=True)}


@dataclass
class Answers:
    """Every result and DLQ record so far, read as they arrive, by the message they answer."""

    consumer: AIOKafkaConsumer
    results_topic: str
    results: dict[Where, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    dead: dict[Where, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    async def poll(self) -> None:
        for records in (await self.consumer.getmany(timeout_ms=100)).values():
            for record in records:
                document = json.loads(record.value)
                if record.topic == self.results_topic:
                    source = document["data"]["source"]
                    where = (source["topic"], source["partition"], source["offset"])
                    self.results[where].append(document)
                else:
                    kept = document["record"]
                    where = (kept["topic"], kept["partition"], kept["offset"])
                    self.dead[where].append(document)

    def all_results(self) -> list[dict[str, Any]]:
        return [result["data"] for found in self.results.values() for result in found]

    def answered(self, sent: dict[Where, Message], times: int = 1) -> bool:
        """Whether each message has its answer (at least `times` copies of it)."""
        return all(
            len(self.dead[w] if m.role == "invalid" else self.results[w]) >= times
            and (m.role != "invalid" or m.command_id is None or len(self.results[w]) >= times)
            for w, m in sent.items()
        )

    def distinct(self) -> dict[str, dict[str, Any]]:
        """Every result by its event id (the last copy of each)."""
        return {r["id"]: r for found in self.results.values() for r in found}


@asynccontextmanager
async def answers(settings: Settings) -> AsyncIterator[Answers]:
    """The results topic and the DLQ, read from their beginning (they must exist)."""
    names = [settings.topics.name("command_results"), settings.topics.name("command_dlq")]
    found = await describe_topics(settings.kafka, names)
    assert set(found) == set(names), found
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(n, p) for n in names for p in range(found[n].partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        yield Answers(consumer, names[0])
    finally:
        await consumer.stop()


# -- the emulator's side ----------------------------------------------------------------


async def seed_calls(emulator: EmulatorServer, ccc: CccSettings, count: int) -> list[str]:
    """Contact ids of `count` calls placed in the emulator (back-to-back calls to numbers
    starting 136, which no command uses), for surveys to be about."""
    number = Numbers("136")
    async with CccClient(ccc) as client:
        await asyncio.gather(
            *(
                client.call(
                    "StartBack2BackCall",
                    {"InstanceId": INSTANCE, "Caller": "02180000000", "Callee": number()},
                )
                for _ in range(count)
            )
        )
    calls = await inspect(emulator, "calls")
    acids = [c["contact_id"] for c in calls if c["callee"].startswith("136")]
    assert len(acids) == count
    return acids


async def command_faults(emulator: EmulatorServer, **spec: float) -> None:
    """The same faults on each action with a side effect, and none on the rest."""
    for action in MARK_PARAMS:
        await fault(emulator, action=action, **spec)


@dataclass
class Effects:
    """What the emulator saw and did, by mark: the codes of each request, in order, and the
    calls, SMS and surveys it recorded."""

    requests: dict[str, list[str]]
    executed: dict[str, list[dict[str, Any]]]

    def codes(self) -> Counter[str]:
        return Counter(code for codes in self.requests.values() for code in codes)


async def effects(emulator: EmulatorServer) -> Effects:
    requests: dict[str, list[str]] = defaultdict(list)
    for request in await inspect(emulator, "requests"):
        param = MARK_PARAMS.get(request["action"])
        if param is not None:
            requests[request["params"].get(param, "")].append(request["code"])
    executed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in await inspect(emulator, "calls"):
        executed[call["callee"]].append(call)
    for sms in await inspect(emulator, "sms"):
        executed[",".join(sms["phone_numbers"])].append(sms)
    for appraisal in await inspect(emulator, "appraisals"):
        executed[appraisal["acid"]].append(appraisal)
    return Effects(requests, executed)


# -- the checks -------------------------------------------------------------------------


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def check_answers(sent: dict[Where, Message], answers: Answers) -> dict[str, dict[str, Any]]:
    """Each message answered exactly once, as its role says; the result data of each first
    copy by command id."""
    assert set(answers.results) | set(answers.dead) <= set(sent), "answers to unsent messages"
    firsts: dict[str, dict[str, Any]] = {}
    for where, message in sent.items():
        results = answers.results.get(where, [])
        dead = answers.dead.get(where, [])
        context = f"{message} at {where}: results {results}, dlq {dead}"
        ids = {r["id"] for r in results}
        assert len(ids) == (0 if message.command_id is None else 1), context
        for result in results:
            data = result["data"]
            assert result["type"] == "com.aliyun.ccc.command.result", context
            assert (result["subject"], data["command_id"]) == (message.command_id,) * 2, context
            assert data["kind"] == message.kind, context  # each went to its kind's topic
            assert data["source"] == dict(zip(("topic", "partition", "offset"), where, strict=True))
        if message.role != "invalid":
            assert not dead, context
            data = results[-1]["data"]
            if message.role == "first":
                assert data["status"] in EXECUTED, context
                assert (data["action"], data["metadata"]) == (
                    message.action,
                    {"crm": message.command_id},
                ), context
                assert message.command_id is not None
                firsts[message.command_id] = data
            else:
                assert data["status"] == "duplicate", context
            continue
        assert len({d["dlq_id"] for d in dead}) == 1, context
        letter = dead[-1]
        assert (letter["record"]["key_base64"], letter["record"]["value_base64"]) == (
            b64(message.key),
            b64(message.value),
        ), context
        assert letter["command_id"] == message.command_id, context
        assert message.field in [e["field"] for e in letter["errors"]], context
        assert not letter["reason"].startswith("message: internal error"), context
        if message.command_id is not None:
            data = results[-1]["data"]
            assert data["status"] == "rejected", context
            assert data["error"]["code"] == "InvalidCommand", context
            assert data["error"]["fields"] == letter["errors"], context
    # A second copy answers with the outcome of the first.
    for where, message in sent.items():
        if message.role == "copy":
            assert message.command_id is not None
            original = answers.results[where][-1]["data"]["original"]
            first = firsts[message.command_id]
            assert original is not None, message
            assert (original["status"], original["action"], original["request_id"]) == (
                first["status"],
                first["action"],
                first["request_id"],
            ), message
    return firsts


def expected_statuses(
    sent: dict[Where, Message], firsts: dict[str, dict[str, Any]]
) -> Counter[str]:
    """How many results of each status the messages must have had, all told."""
    roles = Counter(m.role for m in sent.values())
    rejected = sum(1 for m in sent.values() if m.role == "invalid" and m.command_id is not None)
    statuses = Counter(data["status"] for data in firsts.values())
    assert statuses.total() == roles["first"]
    return statuses + Counter(duplicate=roles["copy"], rejected=rejected)


def check_effects(
    sent: dict[Where, Message],
    firsts: dict[str, dict[str, Any]],
    seen: Effects,
    *,
    seeded: set[str],
) -> None:
    """At most once per command id in CCC, and what the results say of CCC is what it did."""
    valid = {m.mark for m in sent.values() if m.role == "first"}
    invalid = {m.mark for m in sent.values() if m.role == "invalid"} - {None}
    stray = set(seen.executed) - valid - seeded
    assert not stray, f"CCC acted for no command: {stray}"
    assert not invalid & (set(seen.requests) | set(seen.executed)), "an invalid command ran"
    for message in sent.values():
        if message.role != "first":
            continue
        assert message.mark is not None
        assert message.command_id is not None
        data = firsts[message.command_id]
        done = seen.executed.get(message.mark, [])
        codes = seen.requests.get(message.mark, [])
        context = f"{message}: {data}, emulator requests {codes}, effects {done}"
        assert len(done) <= 1, context  # at most once
        assert codes.count("OK") == len(done), context
        interrupted = data["error"] is not None and data["error"]["code"] == "Interrupted"
        if not interrupted:  # the bridge counted what it sent
            assert data["attempts"] == len(codes), context
        # Sent again only after a throttle (a request that never left is not seen here): a
        # 5xx may hide an effect, so it is never repeated.
        assert all(code.startswith("Throttling") for code in codes[:-1]), context
        if data["status"] == "succeeded":
            assert len(done) == 1, context
            assert codes[-1] == "OK", context
            effect = done[0]
            if message.kind == "dial":
                assert effect["task_id"] == data["task_id"] is not None, context
                assert effect["action"] == message.action, context
            elif message.kind == "sms":
                assert effect["biz_id"] == data["biz_id"] is not None, context
            else:
                assert effect["action"] == message.action, context
        elif data["status"] == "failed":
            # CCC refused every attempt: nothing done, and the last refusal reported.
            assert not done, context
            assert codes, context
            assert "OK" not in codes, context
            assert data["error"]["code"] == codes[-1], context
        elif not interrupted:
            # A 5xx: the emulator refuses before acting, but the bridge cannot know that.
            assert data["error"]["code"] == codes[-1] in SERVER_ERRORS, context
            assert not done, context
