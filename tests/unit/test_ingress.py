"""The HTTP command endpoints' own logic, served by aiohttp's test server with a recording
stand-in for Kafka: authentication, validation, size limits, Kafka's refusal, status
answers, and the OpenAPI document matching the routes. The path through the real broker
and worker is tests/integration/test_ingress.py."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from pydantic import SecretStr
from yarl import URL

from service.ccc.settings import CccSettings
from service.commands.ingress import ENTRY_OVERHEAD_BYTES, CommandIngress, StatusView
from service.commands.ledger import Entry
from service.commands.models import KINDS, CommandResult, CommandSource
from service.kafka.producer import OutRecord, PublishError
from service.kafka.records import Record
from service.openapi import openapi_document
from service.settings import HttpSettings, Settings
from service.web import Readiness, application

KEY = "secret-key-1-0123456789"
OTHER_KEY = "other-key-0123456789"
DIAL = {
    "command_id": "c-1",
    "instance_id": "ccc-1",
    "mode": "dial_ex",
    "caller": "02180000000",
    "callee": "13900000000",
    "answer_mode": "ivr",
    "route_point": "ivr-1",
}
SETTINGS = Settings(
    ccc=CccSettings(instances=["ccc-1"]),
    http=HttpSettings(api_keys=[SecretStr(KEY), SecretStr(OTHER_KEY)], max_body_bytes=2048),
)


class Kafka:
    """Records what would be produced; `fail` makes the next sends fail or hang."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.fail: Exception | None = None
        self.hang = False

    async def send_all(self, records: list[OutRecord]) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail
        self.records += records


Serve = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    clients: list[TestClient[Any, Any]] = []

    async def start(
        settings: Settings = SETTINGS, kafka: Kafka | None = None, view: StatusView | None = None
    ) -> TestClient[Any, Any]:
        ingress = CommandIngress(
            settings, (kafka or Kafka()).send_all, view or StatusView(settings)
        )
        app = application(Readiness(asyncio.Event()), settings.http, ingress.routes())
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "give an API key"),
        (bearer("wrong"), "give an API key"),
        (bearer(KEY + "x"), "give an API key"),
        ({"X-API-Key": "wrong"}, "give an API key"),
        ({"Authorization": f"Basic {KEY}"}, "give an API key"),
    ],
)
async def test_without_a_configured_key_the_answer_is_401(
    serve: Serve, headers: dict[str, str], why: str
) -> None:
    kafka = Kafka()
    client = await serve(kafka=kafka)
    for method, path in (("POST", "/v1/commands/dial"), ("GET", "/v1/commands/c-1")):
        answer = await client.request(method, path, json=DIAL, headers=headers)
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        body = await answer.json()
        assert body["error"] == "unauthorized"
        assert why in body["message"]
        assert KEY not in await answer.text()
    assert kafka.records == []


async def test_an_empty_key_never_matches_a_request_without_one(serve: Serve) -> None:
    """Settings refuse an empty key; were one let through, a request with no credentials
    must still be refused."""
    kafka = Kafka()
    http = HttpSettings.model_construct(api_keys=[SecretStr("")], max_body_bytes=2048)
    client = await serve(SETTINGS.model_copy(update={"http": http}), kafka=kafka)
    for headers in ({}, bearer(""), {"X-API-Key": ""}):
        answer = await client.post("/v1/commands/dial", json=DIAL, headers=headers)
        assert answer.status == 401, headers
    assert kafka.records == []


async def test_with_no_key_configured_ingress_is_off_and_says_so(serve: Serve) -> None:
    settings = SETTINGS.model_copy(update={"http": HttpSettings()})
    client = await serve(settings)
    answer = await client.post("/v1/commands/dial", json=DIAL, headers=bearer())
    assert answer.status == 401
    assert "no API key is configured (http.api_keys)" in (await answer.json())["message"]


@pytest.mark.parametrize("headers", [bearer(), bearer(OTHER_KEY), {"X-API-Key": KEY}])
async def test_a_valid_command_is_produced_keyed_by_its_id_and_answered_202(
    serve: Serve, headers: dict[str, str]
) -> None:
    kafka = Kafka()
    client = await serve(kafka=kafka)
    answer = await client.post("/v1/commands/dial", json=DIAL, headers=headers)
    assert answer.status == 202
    assert answer.headers["Location"] == "/v1/commands/c-1"
    assert await answer.json() == {
        "command_id": "c-1",
        "kind": "dial",
        "topic": "ccc.commands.dial",
        "status_url": "/v1/commands/c-1",
    }
    [record] = kafka.records
    assert (record.topic, record.key) == ("ccc.commands.dial", b"c-1")
    assert json.loads(record.value or b"") == DIAL


async def test_a_cloudevent_is_taken_as_on_the_topic(serve: Serve) -> None:
    kafka = Kafka()
    client = await serve(kafka=kafka)
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "crm",
        "type": "com.aliyun.ccc.command.dial",
        "data": DIAL,
    }
    answer = await client.post("/v1/commands/dial", json=event, headers=bearer())
    assert answer.status == 202
    assert json.loads(kafka.records[0].value or b"") == DIAL


@pytest.mark.parametrize(
    ("kind", "body", "field", "reason"),
    [
        ("dial", DIAL | {"callee": "12-34"}, "callee", "phone number"),
        ("dial", DIAL | {"instance_id": "ccc-9"}, "instance_id", "unknown instance 'ccc-9'"),
        ("dial", {k: v for k, v in DIAL.items() if k != "route_point"}, "route_point", "ivr"),
        ("sms", DIAL, "config_id", "Field required"),
        ("appraise", {"command_id": "c", "instance_id": "ccc-1"}, "channel", ""),
        ("dial", "not json", "", "not JSON"),
    ],
)
async def test_an_invalid_command_is_400_naming_the_field_and_never_produced(
    serve: Serve, kind: str, body: object, field: str, reason: str
) -> None:
    kafka = Kafka()
    client = await serve(kafka=kafka)
    raw = body if isinstance(body, str) else json.dumps(body)
    answer = await client.post(f"/v1/commands/{kind}", data=raw, headers=bearer())
    assert answer.status == 400
    found = await answer.json()
    assert found["error"] == "invalid_command"
    assert any(e["field"] == field and reason in e["reason"] for e in found["fields"]), found
    assert kafka.records == []


@pytest.mark.parametrize("command_id", ["c\x00", "c\r\nX-Injected: 1", "c\x1f", "c\x7f", "c\u00e9"])
async def test_a_command_id_outside_visible_ascii_is_400_and_never_produced(
    serve: Serve, command_id: str
) -> None:
    kafka = Kafka()
    client = await serve(kafka=kafka)
    answer = await client.post(
        "/v1/commands/dial", json=DIAL | {"command_id": command_id}, headers=bearer()
    )
    assert answer.status == 400
    found = await answer.json()
    assert [e["field"] for e in found["fields"]] == ["command_id"]
    assert kafka.records == []


async def test_the_status_url_percent_encodes_the_id_and_leads_to_its_status(
    serve: Serve,
) -> None:
    kafka = Kafka()
    view = StatusView(SETTINGS)
    client = await serve(kafka=kafka, view=view)
    command_id = "crm/7?x=%41#1"
    answer = await client.post(
        "/v1/commands/dial", json=DIAL | {"command_id": command_id}, headers=bearer()
    )
    assert answer.status == 202
    url = "/v1/commands/crm%2F7%3Fx%3D%2541%231"
    assert answer.headers["Location"] == url
    assert (await answer.json())["status_url"] == url
    await feed(view, "commands.dial", kafka.records[0].value, key=command_id)
    found = await client.get(URL(url, encoded=True), headers=bearer())
    assert (found.status, (await found.json())["command_id"]) == (200, command_id)


async def test_a_body_over_the_limit_is_413(serve: Serve) -> None:
    kafka = Kafka()
    client = await serve(kafka=kafka)
    big = DIAL | {"metadata": {"note": "x" * 4096}}
    answer = await client.post("/v1/commands/dial", json=big, headers=bearer())
    assert answer.status == 413
    assert (await answer.json())["message"] == "the body is larger than 2048 bytes"
    assert kafka.records == []


async def test_an_unknown_kind_is_404_naming_the_kinds(serve: Serve) -> None:
    client = await serve()
    answer = await client.post("/v1/commands/fax", json=DIAL, headers=bearer())
    assert answer.status == 404
    body = await answer.json()
    assert (body["error"], body["message"]) == (
        "unknown_kind",
        "no command kind 'fax': one of ('dial', 'sms', 'appraise')",
    )


@pytest.mark.parametrize("trouble", ["fails", "hangs"])
async def test_kafka_not_acknowledging_is_503_saying_a_retry_is_safe(
    serve: Serve, trouble: str
) -> None:
    kafka = Kafka()
    if trouble == "fails":
        kafka.fail = PublishError("KafkaTimeoutError: no broker")
    else:
        kafka.hang = True
    settings = SETTINGS.model_copy(
        update={"http": SETTINGS.http.model_copy(update={"produce_timeout_s": 0.05})}
    )
    client = await serve(settings, kafka=kafka)
    answer = await client.post("/v1/commands/dial", json=DIAL, headers=bearer())
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    body = await answer.json()
    assert body["error"] == "kafka_unavailable"
    assert "same command_id" in body["message"]


# -- status --------------------------------------------------------------------------

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SOURCE = CommandSource(topic="ccc.commands.dial", partition=2, offset=7)


def result(status: str, **fields: Any) -> CommandResult:
    return CommandResult(
        instance_id="ccc-1",
        command_id="c-1",
        kind="dial",
        status=status,
        action=fields.get("action", "DialEx"),
        request_id=None,
        task_id=fields.get("task_id"),
        biz_id=None,
        error=None,
        attempts=1,
        received_at=NOW,
        completed_at=NOW,
        latency_ms=1.0,
        metadata={},
        source=SOURCE,
        original=fields.get("original"),
    )


def event(data: CommandResult) -> bytes:
    return json.dumps({"specversion": "1.0", "data": data.model_dump(mode="json")}).encode()


async def feed(view: StatusView, topic: str, value: bytes | None, key: str = "c-1") -> None:
    assert await view._take(Record(f"ccc.{topic}", 0, 0, None, key.encode(), value))


async def status(client: TestClient[Any, Any], command_id: str = "c-1") -> tuple[int, Any]:
    answer = await client.get(f"/v1/commands/{command_id}", headers=bearer())
    return answer.status, await answer.json()


async def test_status_is_503_until_the_view_caught_up_then_404_for_an_unknown_id(
    serve: Serve,
) -> None:
    view = StatusView(SETTINGS)
    client = await serve(view=view)
    code, body = await status(client, "nobody")
    assert (code, body["error"]) == (503, "catching_up")
    view.caught_up.set()
    code, body = await status(client, "nobody")
    assert (code, body["error"]) == (404, "unknown_command")
    assert "'nobody'" in body["message"]


async def test_status_follows_the_ledger_and_keeps_the_original_outcome(serve: Serve) -> None:
    view = StatusView(SETTINGS)
    client = await serve(view=view)
    await feed(view, "commands.dial", json.dumps(DIAL).encode())
    assert await status(client) == (
        200,
        {
            "command_id": "c-1",
            "state": "queued",
            "ledger_state": None,
            "action": None,
            "result": None,
        },
    )
    started = Entry(state="started", source=SOURCE, action="DialEx")
    await feed(view, "bridge.ledger", started.model_dump_json().encode())
    await feed(view, "commands.dial", json.dumps(DIAL).encode())  # sent again meanwhile
    assert await status(client) == (
        200,
        {
            "command_id": "c-1",
            "state": "running",
            "ledger_state": "started",
            "action": "DialEx",
            "result": None,
        },
    )
    done = result("succeeded", task_id="t-9")
    entry = Entry(state="done", source=SOURCE, action="DialEx", result=done)
    await feed(view, "bridge.ledger", entry.model_dump_json().encode())
    await feed(view, "commands.results", event(done))
    repeat = result("duplicate", action=None, original=done.outcome())
    await feed(view, "commands.results", event(repeat))
    code, body = await status(client)
    assert code == 200
    assert (body["state"], body["ledger_state"]) == ("done", "done")
    assert (body["result"]["status"], body["result"]["task_id"]) == ("succeeded", "t-9")


async def test_a_command_never_executed_shows_its_result_alone(serve: Serve) -> None:
    view = StatusView(SETTINGS)
    client = await serve(view=view)
    rejected = result("rejected", action=None)
    await feed(view, "commands.results", event(rejected))
    await feed(view, "commands.results", b"not an event", key="c-2")
    code, body = await status(client)
    assert (code, body["state"], body["ledger_state"]) == (200, "done", None)
    assert body["result"]["status"] == "rejected"
    code, body = await status(client, "c-2")
    assert (code, body["result"]) == (200, None)  # seen, but nothing readable to tell


async def test_bytes_not_written_by_the_service_tell_nothing_and_break_nothing(
    serve: Serve,
) -> None:
    view = StatusView(SETTINGS)
    client = await serve(view=view)
    nested = b"[" * 100_000 + b"]" * 100_000
    for command_id, value in (("d-1", nested), ("d-2", b"\xff\xfe"), ("d-3", b'{"state": 1}')):
        await feed(view, "bridge.ledger", value, key=command_id)
        await feed(view, "commands.results", nested, key=command_id)
        code, body = await status(client, command_id)
        assert (code, body["ledger_state"], body["result"]) == (200, None, None), command_id


async def test_the_view_keeps_the_newest_ids_only() -> None:
    settings = SETTINGS.model_copy(
        update={"http": SETTINGS.http.model_copy(update={"status_entries": 2})}
    )
    view = StatusView(settings)
    entry = Entry(state="started", source=SOURCE).model_dump_json().encode()
    for command_id in ("a", "b", "a", "c"):  # `a` seen again is newer than `b`
        await feed(view, "bridge.ledger", entry, key=command_id)
    assert [view.status(c) is not None for c in ("a", "b", "c")] == [True, False, True]


async def held_per_id(view: StatusView, metadata_bytes: int, count: int) -> float:
    """Bytes the view holds more per id after taking `count` ids' command, ledger entry and
    result (each with that much metadata), as tracemalloc counts them."""
    done = result("succeeded").model_copy(update={"metadata": {"note": "x" * metadata_bytes}})
    command = json.dumps(DIAL).encode()
    entry = Entry(state="done", source=SOURCE, action="DialEx", result=done)
    ledger, results = entry.model_dump_json().encode(), event(done)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(count):
            command_id = f"id-{n:06d}"
            await feed(view, "commands.dial", command, key=command_id)
            await feed(view, "bridge.ledger", ledger, key=command_id)
            await feed(view, "commands.results", results, key=command_id)
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()


async def test_the_view_is_bounded_by_bytes_and_counts_them_honestly() -> None:
    budget = 2 * 1024 * 1024
    http = SETTINGS.http.model_copy(update={"status_max_bytes": budget})
    view = StatusView(SETTINGS.model_copy(update={"http": http}))
    # 300 ids with 60 KB of metadata each would be 18 MB: the oldest go, the newest stay.
    assert await held_per_id(view, 60_000, 300) * 300 < budget * 1.1
    assert view.status("id-000000") is None
    assert view.status("id-000299") is not None
    # What an id is counted as is no less than what it takes.
    small = result("succeeded").model_dump_json(exclude_defaults=True)
    counted = len("id-000000") + len(small) + ENTRY_OVERHEAD_BYTES
    assert await held_per_id(StatusView(SETTINGS), 0, 2000) <= counted


# -- OpenAPI -------------------------------------------------------------------------


async def test_the_served_openapi_document_is_valid_and_covers_every_route(
    serve: Serve,
) -> None:
    client = await serve()
    answer = await client.get("/openapi.json")
    assert answer.status == 200
    document = await answer.json()
    assert document == json.loads(json.dumps(openapi_document()))
    validate(document)
    routes: set[tuple[str, str]] = set()
    for route in client.app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        paths = [path.replace("{kind}", kind) for kind in KINDS] if "{kind}" in path else [path]
        routes |= {(route.method.lower(), each) for each in paths}
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert routes == documented
