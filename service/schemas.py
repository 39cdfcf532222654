"""`ccc-bridge schemas`: the JSON Schema (draft 2020-12) of every message ccc-bridge
publishes, and one AsyncAPI 3.0 document of its topics. Generated from the pydantic models,
so the published contract cannot drift from the code. Messages are a table (`MESSAGES`):
a new message kind is a row, not new code.

AsyncAPI 3.0 names draft-07, not 2020-12, among the JSON Schema versions tools must read, and
its own Schema Object is a draft-07 superset: the document's payloads are written in that
format (`AsyncApiSchema`) and say so, while the standalone files stay draft 2020-12.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from service.cloudevents import CONTENT_TYPE, CloudEvent, EventData, dataschema
from service.commands.dead_letters import DEAD_LETTER, DeadLetter
from service.commands.models import (
    COMMAND_MODELS,
    COMMAND_TYPE,
    Appraise,
    CommandKind,
    CommandResult,
    Dial,
    Sms,
)
from service.console import StartupError, add_config_argument, say, settings_from, startup_failed
from service.events.models import EVENT_TYPES
from service.kafka.topics import COMMAND_TOPICS
from service.openapi import openapi_document
from service.settings import Settings
from service.version import service_version
from service.webhooks.core import WEBHOOK_DEAD_LETTER, WebhookDeadLetter

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
ASYNCAPI_SCHEMA_FORMAT = f"application/vnd.aai.asyncapi+json;version={ASYNCAPI_VERSION}"
KAFKA_BINDING_VERSION = "0.5.0"
LOCAL_REF = "#/$defs/{model}"
COMPONENT_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Message:
    """One kind of message on a topic: its schema, where it goes and how it is keyed."""

    name: str  # the CloudEvents type
    schema_id: str
    model: Any  # a pydantic model, or an annotated union of them
    topic: str  # a TopicSettings field
    key: str  # how the Kafka key is made
    action: Literal["send", "receive"]  # what the bridge does with it
    summary: str  # one line of plain text
    description: str  # CommonMark
    cloud_event: bool = True  # False: plain JSON
    # Where the command id is (a JSON pointer into the payload), and what the bridge answers a
    # received message with: AsyncAPI's correlation id and reply.
    correlation: str | None = None
    reply: Message | None = None


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


def _prose(model: type[BaseModel]) -> str:
    """The model's docstring on one line (a message's description); its name when run with
    -OO, which strips docstrings."""
    return " ".join((model.__doc__ or model.__name__).split())


def _lead(model: type[BaseModel]) -> str:
    """The docstring's first clause without code spans: summaries are plain text."""
    return re.split(r"[.:](?:\s|$)", _prose(model), maxsplit=1)[0].replace("`", "")


def _event(
    data_type: type[EventData], key: str | None = None, correlation: str | None = None
) -> Message:
    return Message(
        name=data_type.event_type,
        schema_id=dataschema(data_type),
        model=CloudEvent[data_type],  # type: ignore[valid-type] # a model per row, at runtime
        topic=data_type.topic,
        key=key or f"{{instanceId}}:{{{_camel(data_type.subject_field)}}}",
        action="send",
        summary=f"{_lead(data_type)}.",
        description=_prose(data_type),
        correlation=correlation,
    )


COMMAND_RESULT = _event(CommandResult, key="{commandId}", correlation="/data/command_id")


def _command(kind: CommandKind, model: Any) -> Message:
    name = COMMAND_TYPE.format(kind=kind)
    first, *others = (_lead(variant) for variant in COMMAND_MODELS[kind])
    variants = " ".join(_prose(variant) for variant in COMMAND_MODELS[kind])
    return Message(
        name=name,
        schema_id=f"urn:ccc-bridge:schema:{name}:v1",
        model=model,
        topic=COMMAND_TOPICS[kind],
        key="{commandId}",
        action="receive",
        summary=", or ".join([first, *(lead[0].lower() + lead[1:] for lead in others)]) + ".",
        description=f"Plain JSON, or the `data` of a CloudEvent of type {name}. {variants}",
        cloud_event=False,
        correlation="/command_id",
        reply=COMMAND_RESULT,
    )


def _dead_letter(name: str, model: type[BaseModel], topic: str, key: str) -> Message:
    return Message(
        name=name,
        schema_id=f"urn:ccc-bridge:schema:{name}:v1",
        model=model,
        topic=topic,
        key=key,
        action="send",
        summary=f"{_lead(model)}.",
        description=_prose(model),
        cloud_event=False,
    )


MESSAGES: tuple[Message, ...] = (
    *(_event(data_type) for data_type in EVENT_TYPES),
    COMMAND_RESULT,
    _command("dial", Dial),
    _command("sms", Sms),
    _command("appraise", Appraise),
    _dead_letter(DEAD_LETTER, DeadLetter, "command_dlq", "the rejected message's own key"),
    _dead_letter(WEBHOOK_DEAD_LETTER, WebhookDeadLetter, "webhook_dlq", "the event's own key"),
)


class AsyncApiSchema(GenerateJsonSchema):
    """AsyncAPI 3.0's Schema Object: draft-07, whose `discriminator` is the property's name
    (pydantic writes OpenAPI's object) and which has no `prefixItems` (tuples)."""

    def tagged_union_schema(self, schema: core_schema.TaggedUnionSchema) -> JsonSchemaValue:
        generated = super().tagged_union_schema(schema)
        if "discriminator" in generated:
            generated["discriminator"] = generated["discriminator"]["propertyName"]
        return generated

    def tuple_schema(self, schema: core_schema.TupleSchema) -> JsonSchemaValue:
        generated = super().tuple_schema(schema)
        if "prefixItems" in generated:
            rest = generated.pop("items", None)
            generated["items"] = generated.pop("prefixItems")
            if rest is not None:
                generated["additionalItems"] = rest
        return generated


def json_schema(message: Message) -> dict[str, Any]:
    """The message's standalone JSON Schema document."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": message.schema_id,
        **_schema(message, LOCAL_REF, GenerateJsonSchema),
    }


def _schema(
    message: Message, ref_template: str, generator: type[GenerateJsonSchema]
) -> dict[str, Any]:
    """The envelope's schema with `type` and `dataschema` pinned to this message."""
    adapter = TypeAdapter(message.model)
    schema = adapter.json_schema(ref_template=ref_template, schema_generator=generator)
    if message.cloud_event:
        schema["properties"]["type"]["const"] = message.name
        schema["properties"]["dataschema"]["const"] = message.schema_id
    return {**schema, "title": message.name, "description": message.description}


def asyncapi(settings: Settings, messages: Iterable[Message] = MESSAGES) -> dict[str, Any]:
    """An AsyncAPI 3.0 document: a channel per topic, an operation per channel and action."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    components: dict[str, Any] = {"messages": {}, "schemas": {}}
    for message in messages:
        channel = channels.setdefault(message.topic, _channel(settings, message.topic))
        channel["messages"][message.name] = {"$ref": f"#/components/messages/{message.name}"}
        operation = operations.setdefault(
            f"{message.action}_{message.topic}", _operation(settings, message)
        )
        operation["messages"].append(_message_ref(message))
        schema = _schema(message, COMPONENT_REF, AsyncApiSchema)
        _merge_definitions(components["schemas"], schema.pop("$defs", {}))
        components["schemas"][message.name] = schema
        components["messages"][message.name] = _message(message)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "ccc-bridge",
            "version": service_version(),
            "description": "Alibaba Cloud Call Center (CCC 2017-07-05) events as CloudEvents "
            "1.0 in structured mode on Kafka.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": settings.kafka.bootstrap_servers,
                "protocol": "kafka",
                "description": "The configured Kafka bootstrap servers.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": components,
    }


def _channel(settings: Settings, topic: str) -> dict[str, Any]:
    topics = settings.topics
    return {
        "address": topics.name(topic),
        "messages": {},
        "bindings": {
            "kafka": {
                "topic": topics.name(topic),
                "partitions": topics.partitions,
                "replicas": topics.replication_factor,
                "topicConfiguration": {"retention.ms": topics.retention_ms},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _operation(settings: Settings, message: Message) -> dict[str, Any]:
    verb = "publishes to" if message.action == "send" else "consumes"
    summary = f"ccc-bridge {verb} {settings.topics.name(message.topic)}"
    operation: dict[str, Any] = {
        "action": message.action,
        "channel": {"$ref": f"#/channels/{message.topic}"},
        "messages": [],
    }
    if message.reply is not None:
        answers = settings.topics.name(message.reply.topic)
        summary = f"{summary} and answers each on {answers}"
        operation["reply"] = {
            "channel": {"$ref": f"#/channels/{message.reply.topic}"},
            "messages": [_message_ref(message.reply)],
        }
    return {**operation, "summary": f"{summary}."}


def _message_ref(message: Message) -> dict[str, str]:
    return {"$ref": f"#/channels/{message.topic}/messages/{message.name}"}


def _message(message: Message) -> dict[str, Any]:
    headers = {
        "type": "object",
        "properties": {"content-type": {"type": "string", "const": CONTENT_TYPE}},
        "required": ["content-type"],
    }
    return {
        "name": message.name,
        "title": message.name,
        "summary": message.summary,
        "description": message.description,
        "contentType": CONTENT_TYPE if message.cloud_event else "application/json",
        **({"headers": headers} if message.cloud_event else {}),
        **({"correlationId": _correlation(message.correlation)} if message.correlation else {}),
        "payload": {
            "schemaFormat": ASYNCAPI_SCHEMA_FORMAT,
            "schema": {"$ref": f"#/components/schemas/{message.name}"},
        },
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": message.key},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _correlation(pointer: str) -> dict[str, str]:
    return {
        "description": "The command's command_id: its result carries the same.",
        "location": f"$message.payload#{pointer}",
    }


def _merge_definitions(into: dict[str, Any], definitions: dict[str, Any]) -> None:
    """Shared models (CallAgent, ...) appear once; two different models of one name are a bug."""
    for name, definition in definitions.items():
        if into.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas are both named {name}")


def write_schemas(
    out: Path, settings: Settings, messages: Sequence[Message] = MESSAGES
) -> list[Path]:
    """Write `<type>.json` per message and `asyncapi.json` into `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    documents = {f"{message.name}.json": json_schema(message) for message in messages}
    documents["asyncapi.json"] = asyncapi(settings, messages)
    documents["openapi.json"] = openapi_document()
    written = []
    for name, document in documents.items():
        path = out / name
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "schemas",
        help="write the JSON Schema of every message and an AsyncAPI document",
        description="Write DIR/<CloudEvents type>.json (JSON Schema, draft 2020-12) for every "
        "message ccc-bridge publishes, DIR/asyncapi.json (AsyncAPI 3.0) of its topics and "
        "DIR/openapi.json (OpenAPI 3.1) of its HTTP surface.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("schemas"), metavar="DIR", help="default: schemas/"
    )
    add_config_argument(parser)
    parser.set_defaults(func=run)


async def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        written = write_schemas(args.out, settings)
    except StartupError as error:
        return startup_failed("schemas", error)
    except OSError as error:
        return startup_failed("schemas", f"cannot write {args.out}: {error.strerror or error}")
    for path in written:
        say(f"wrote {path}")
    return 0
