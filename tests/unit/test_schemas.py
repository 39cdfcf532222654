"""`ccc-bridge schemas`: valid JSON Schemas that accept real events and reject broken ones, and
an AsyncAPI 3.0 document whose channels, messages and references hold together."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# jsonschema ships no type information (types-jsonschema is not a dependency).
from jsonschema import (  # type: ignore[import-untyped]
    Draft7Validator,
    Draft202012Validator,
    ValidationError,
)
from pydantic import TypeAdapter
from pydantic_core import core_schema

from service.ccc.catalog import load_catalog
from service.cli import build_parser
from service.cloudevents import CONTENT_TYPE, dataschema
from service.events.models import EVENT_TYPES
from service.kafka.settings import KafkaSettings, TopicSettings
from service.kafka.topics import COMMAND_TOPICS, EVENT_TOPICS, OUTPUT_TOPICS
from service.schemas import ASYNCAPI_SCHEMA_FORMAT, MESSAGES, AsyncApiSchema, write_schemas
from service.settings import Settings
from tests import samples

SETTINGS = Settings(
    kafka=KafkaSettings(bootstrap_servers="kafka-1:9092"), topics=TopicSettings(prefix="acme.")
)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("schemas") / "out"
    write_schemas(out, SETTINGS)
    return out


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def test_a_schema_file_per_message_an_asyncapi_and_an_openapi_document(written: Path) -> None:
    expected = {f"{data_type.event_type}.json" for data_type in EVENT_TYPES}
    expected |= {"asyncapi.json", "openapi.json"}
    commands = {f"com.aliyun.ccc.command.{kind}.json" for kind in ("dial", "sms", "appraise")}
    results = {"com.aliyun.ccc.command.result.json", "com.aliyun.ccc.command.dlq.json"}
    results.add("com.aliyun.ccc.webhook.dlq.json")
    assert {path.name for path in written.iterdir()} == expected | commands | results


DIAL = {
    "command_id": "c-1",
    "instance_id": "ccc-1",
    "mode": "dial_ex",
    "caller": "02180000000",
    "callee": "13900000000",
    "answer_mode": "ivr",
    "route_point": "flow-1",
    "expires_at": "2026-11-24T10:00:00Z",
    "metadata": {"crm": 42},
}


def test_command_schema_takes_the_documented_example_and_refuses_a_bad_one(written: Path) -> None:
    schema = load(written / "com.aliyun.ccc.command.dial.json")
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    validator.validate(DIAL)
    validator.validate({"command_id": "c-2", "instance_id": "ccc-1", "mode": "back_to_back",
                        "caller": "13900000001", "callee": "13900000002"})  # fmt: skip
    for broken in (
        {**DIAL, "callee": "not-a-number"},
        {**DIAL, "calle": "1"},
        {**DIAL, "mode": "x"},
    ):
        with pytest.raises(ValidationError):
            validator.validate(broken)


@pytest.mark.parametrize("event", samples.every_type(), ids=lambda event: event.type)
def test_schema_is_valid_and_accepts_its_event_only_whole(written: Path, event: Any) -> None:
    schema = load(written / f"{event.type}.json")
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == event.dataschema == dataschema(type(event.data))
    assert schema["title"] == event.type
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    serialized = json.loads(event.model_dump_json())
    validator.validate(serialized)

    without_data = {key: value for key, value in serialized.items() if key != "data"}
    with pytest.raises(ValidationError, match="'data' is a required property"):
        validator.validate(without_data)
    other_type = {**serialized, "type": "com.aliyun.ccc.something.else"}
    with pytest.raises(ValidationError):
        validator.validate(other_type)
    data_field = min(serialized["data"].keys() - {"instance_id"})
    broken_data = {**serialized, "data": {**serialized["data"], data_field: {"not": "valid"}}}
    with pytest.raises(ValidationError):
        validator.validate(broken_data)


def test_every_schema_accepts_the_snapshot_variant(written: Path) -> None:
    event = samples.enveloped(samples.agent_changed(snapshot=True))
    schema = load(written / f"{event.type}.json")
    Draft202012Validator(schema).validate(json.loads(event.model_dump_json()))


@pytest.fixture(scope="module")
def asyncapi(written: Path) -> dict[str, Any]:
    return load(written / "asyncapi.json")


def test_asyncapi_has_a_channel_per_topic(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["servers"]["kafka"] == {
        "host": "kafka-1:9092",
        "protocol": "kafka",
        "description": "The configured Kafka bootstrap servers.",
    }
    addresses = {channel["address"] for channel in asyncapi["channels"].values()}
    topics = (*EVENT_TOPICS, *COMMAND_TOPICS.values(), *OUTPUT_TOPICS)
    assert addresses == {SETTINGS.topics.name(topic) for topic in topics}


def test_asyncapi_has_a_message_per_event_type_on_its_topic(asyncapi: dict[str, Any]) -> None:
    messages = asyncapi["components"]["messages"]
    assert set(messages) == {message.name for message in MESSAGES}
    for data_type in EVENT_TYPES:
        message = messages[data_type.event_type]
        assert message["contentType"] == CONTENT_TYPE
        assert message["headers"]["properties"]["content-type"]["const"] == CONTENT_TYPE
        channel = asyncapi["channels"][data_type.topic]
        assert data_type.event_type in channel["messages"]
        assert channel["address"] == SETTINGS.topics.name(data_type.topic)
    keys = {
        name: message["bindings"]["kafka"]["key"]["description"]
        for name, message in messages.items()
    }
    assert keys["com.aliyun.ccc.agent.state.changed"] == "{instanceId}:{agentId}"
    assert keys["com.aliyun.ccc.call.record"] == "{instanceId}:{contactId}"
    assert keys["com.aliyun.ccc.skillgroup.state"] == "{instanceId}:{skillGroupId}"
    assert keys["com.aliyun.ccc.command.dial"] == "{commandId}"
    assert keys["com.aliyun.ccc.command.result"] == "{commandId}"
    assert messages["com.aliyun.ccc.command.dial"]["contentType"] == "application/json"


@pytest.mark.parametrize("action", ["send", "receive"])
def test_asyncapi_operations_send_and_receive_every_message(
    asyncapi: dict[str, Any], action: str
) -> None:
    named = [
        ref["$ref"].rsplit("/", 1)[-1]
        for operation in asyncapi["operations"].values()
        if operation["action"] == action
        for ref in operation["messages"]
    ]
    assert sorted(named) == sorted(m.name for m in MESSAGES if m.action == action)
    assert named


def test_command_writes_into_the_given_directory(tmp_path: Path) -> None:
    args = build_parser().parse_args(["schemas", "--out", str(tmp_path / "new")])
    assert asyncio.run(args.func(args)) == 0
    assert len(list((tmp_path / "new").glob("*.json"))) == len(MESSAGES) + 2  # + AsyncAPI, OpenAPI


def objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in the document, nested ones too."""
    if isinstance(node, dict):
        yield node
        node = list(node.values())
    if isinstance(node, list):
        for value in node:
            yield from objects(value)


def test_asyncapi_references_all_resolve_inside_the_document(asyncapi: dict[str, Any]) -> None:
    found = [o["$ref"] for o in objects(asyncapi) if isinstance(o.get("$ref"), str)]
    assert found
    for ref in found:
        assert ref.startswith("#/"), ref
        node: Any = asyncapi
        for part in ref[2:].split("/"):
            node = node[part]
        assert isinstance(node, dict), ref


def payload_validator(asyncapi: dict[str, Any], name: str) -> Any:
    """A draft-07 validator of the message's payload: AsyncAPI's Schema Object is draft-07 with
    a few keywords more, which draft-07 validators ignore."""
    payload = asyncapi["components"]["messages"][name]["payload"]
    assert payload["schemaFormat"] == ASYNCAPI_SCHEMA_FORMAT
    schema = {**payload["schema"], "components": asyncapi["components"]}
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def test_asyncapi_payload_validates_real_messages(asyncapi: dict[str, Any]) -> None:
    """The component schemas, with their shared definitions, still validate messages."""
    result = samples.enveloped(samples.command_result())
    for message in (*samples.every_type(), result):
        serialized = json.loads(message.model_dump_json())
        payload_validator(asyncapi, message.type).validate(serialized)
    dial = payload_validator(asyncapi, "com.aliyun.ccc.command.dial")
    dial.validate(DIAL)
    with pytest.raises(ValidationError):
        dial.validate({**DIAL, "mode": "x"})


# Keywords of JSON Schema 2019-09 and 2020-12 that a draft-07 reader would silently ignore.
NEWER_KEYWORDS = {"$defs", "prefixItems", "dependentRequired", "dependentSchemas"}
NEWER_KEYWORDS |= {"unevaluatedItems", "unevaluatedProperties", "minContains", "maxContains"}
NEWER_KEYWORDS |= {"$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary"}


def test_asyncapi_schemas_are_draft_07(asyncapi: dict[str, Any]) -> None:
    used = {key for o in objects(asyncapi["components"]["schemas"]) for key in o}
    assert not used & NEWER_KEYWORDS
    dial = asyncapi["components"]["schemas"]["com.aliyun.ccc.command.dial"]
    assert dial["discriminator"] == "mode"  # AsyncAPI's: the property's name
    appraise = asyncapi["components"]["schemas"]["com.aliyun.ccc.command.appraise"]
    assert appraise["discriminator"] == "channel"


def test_asyncapi_tuples_are_draft_07_items() -> None:
    schema = TypeAdapter(tuple[str, int | None]).json_schema(schema_generator=AsyncApiSchema)
    assert "prefixItems" not in schema
    validator = Draft7Validator(schema)
    validator.validate(["a", None])
    for broken in (["a"], [1, None], ["a", "b"]):
        with pytest.raises(ValidationError):
            validator.validate(broken)
    # tuple[str, *tuple[int, ...]]: pydantic has no annotation for it, only the core schema.
    string, integer = core_schema.str_schema(), core_schema.int_schema()
    variadic = core_schema.tuple_schema([string, integer], variadic_item_index=1)
    rest = Draft7Validator(AsyncApiSchema().generate(variadic))
    rest.validate(["a", 1, 2])
    with pytest.raises(ValidationError):
        rest.validate(["a", 1, "b"])


def test_asyncapi_commands_reply_with_their_result(asyncapi: dict[str, Any]) -> None:
    """Each command operation replies on the results channel, correlated by command_id."""
    results = asyncapi["channels"]["command_results"]
    result_ref = "#/channels/command_results/messages/com.aliyun.ccc.command.result"
    assert "com.aliyun.ccc.command.result" in results["messages"]
    receiving = [op for op in asyncapi["operations"].values() if op["action"] == "receive"]
    assert len(receiving) == len(COMMAND_TOPICS)
    for operation in receiving:
        assert operation["reply"] == {
            "channel": {"$ref": "#/channels/command_results"},
            "messages": [{"$ref": result_ref}],
        }
        assert operation["summary"].endswith(
            f"answers each on {SETTINGS.topics.name('command_results')}."
        )

    def correlated(name: str, payload: dict[str, Any]) -> Any:
        location = asyncapi["components"]["messages"][name]["correlationId"]["location"]
        prefix, _, pointer = location.partition("#/")
        assert prefix == "$message.payload"
        for part in pointer.split("/"):
            payload = payload[part]
        return payload

    result = json.loads(
        samples.enveloped(samples.command_result(command_id="c-9")).model_dump_json()
    )
    assert correlated("com.aliyun.ccc.command.result", result) == "c-9"
    assert correlated("com.aliyun.ccc.command.dial", DIAL) == DIAL["command_id"]


def test_summaries_are_one_plain_line_naming_ccc_actions_not_our_code(
    asyncapi: dict[str, Any],
) -> None:
    actions = set(load_catalog().actions)
    for name, message in asyncapi["components"]["messages"].items():
        summary = message["summary"]
        assert summary.endswith("."), summary
        assert not re.search(r"`|\s\s|\n", summary), summary
        assert name not in summary
        # A CamelCase word is a CCC action (DialEx), never one of our classes (BackToBack).
        camel = set(re.findall(r"\b[A-Z][a-z0-9]+[A-Z]\w*", summary))
        assert camel <= actions, (summary, camel - actions)
        assert message["description"] not in ("", name)  # the docstring it comes from
