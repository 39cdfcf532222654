"""The OpenAPI 3.1 document of the HTTP surface, served on /openapi.json and written by
`ccc-bridge schemas`. Bodies come from the same pydantic models the handlers use, so the
document cannot drift from the code."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import TypeAdapter

from service.commands.ingress import Accepted, ApiError, CommandStatus
from service.commands.models import (
    COMMAND_TYPE,
    KINDS,
    Appraise,
    CommandId,
    CommandKind,
    Dial,
    Sms,
)
from service.version import service_version

COMPONENT_REF = "#/components/schemas/{model}"
_BODIES: dict[CommandKind, Any] = {"dial": Dial, "sms": Sms, "appraise": Appraise}
_KEY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]  # either will do


def openapi_document() -> dict[str, Any]:
    named: list[tuple[str, Any]] = [
        *((f"{kind.title()}Command", model) for kind, model in _BODIES.items()),
        ("Accepted", Accepted),
        ("ApiError", ApiError),
        ("CommandStatus", CommandStatus),
    ]
    mode: Literal["validation"] = "validation"  # request bodies: what is accepted
    inputs = [(name, mode, TypeAdapter(model)) for name, model in named]
    schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=COMPONENT_REF)
    components = dict(definitions.get("$defs", {}))
    for (name, _), schema in schemas.items():
        components.setdefault(name, schema)
    paths: dict[str, Any] = {
        "/livez": {"get": _probe("The process is alive.", "Always 200 while it runs.")},
        "/readyz": {
            "get": _probe(
                "Whether to send traffic here.",
                "200 while Kafka and CCC answer and the consumers hold their assignment; "
                "503 naming what fails otherwise, and from the start of shutdown.",
                not_ready=True,
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format).",
                "responses": {"200": {"description": "The metrics.", "content": _TEXT}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.1.", "content": _ANY_JSON}},
            }
        },
        **{f"/v1/commands/{kind}": {"post": _post(kind)} for kind in KINDS},
        "/v1/commands/{command_id}": {"get": _get()},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ccc-bridge",
            "version": service_version(),
            "description": "Commands to Alibaba Cloud Call Center over HTTP, and the "
            "service's health and metrics.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_ANY_JSON = {"application/json": {"schema": {"type": "object"}}}


def _json(model: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": COMPONENT_REF.format(model=model)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("ApiError")}


def _probe(summary: str, description: str, *, not_ready: bool = False) -> dict[str, Any]:
    responses = {"200": {"description": description, "content": _ANY_JSON}}
    if not_ready:
        responses["503"] = {"description": "Not ready: `failing` names why.", "content": _ANY_JSON}
    return {"summary": summary, "responses": responses}


def _post(kind: CommandKind) -> dict[str, Any]:
    return {
        "summary": f"Send a {kind} command.",
        "description": "Validated as on the Kafka topic, then produced to it, keyed by "
        f"command_id: plain JSON, or a CloudEvent of type {COMMAND_TYPE.format(kind=kind)} "
        "with the command as its data. 202 once Kafka acknowledged it.",
        "operationId": f"send_{kind}",
        "security": _KEY,
        "requestBody": {"required": True, "content": _json(f"{kind.title()}Command")},
        "responses": {
            "202": {
                "description": "Kafka took it; GET its status_url for its outcome.",
                "headers": {"Location": {"schema": {"type": "string"}}},
                "content": _json("Accepted"),
            },
            "400": _error("Not a valid command: `fields` names each bad field and why."),
            "401": _error("No valid API key."),
            "413": _error("The body is larger than http.max_body_bytes."),
            "503": _error("Kafka did not acknowledge in time: sending again is safe."),
        },
    }


def _get() -> dict[str, Any]:
    return {
        "summary": "A command's ledger state and result.",
        "operationId": "command_status",
        "security": _KEY,
        "parameters": [
            {
                "name": "command_id",
                "in": "path",
                "required": True,
                "description": "percent-encoded, as status_url and Location give it",
                "schema": TypeAdapter(CommandId).json_schema(),
            }
        ],
        "responses": {
            "200": {"description": "What is known of it.", "content": _json("CommandStatus")},
            "401": _error("No valid API key."),
            "404": _error("Nothing known of this command id."),
            "503": _error("Still reading the ledger after a start."),
        },
    }
