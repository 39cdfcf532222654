"""Commands over HTTP (PRODUCT.md section 5): `POST /v1/commands/{kind}` validates a command
as the Kafka path does and produces it to its topic; `GET /v1/commands/{command_id}` tells
its ledger state and result.

A 202 means Kafka acknowledged the command, nothing more: the worker that owns its
partition executes it like any other. A 503 may hide a command Kafka did take after all;
sending it again with the same `command_id` is safe, the ledger answers `duplicate`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import structlog
from aiohttp import web
from pydantic import Field

from service.cloudevents import Outbound
from service.commands.ledger import Entry
from service.commands.models import (
    KINDS,
    CommandKind,
    CommandResult,
    FieldError,
    InvalidCommandError,
    Limits,
    parse_command,
)
from service.kafka.consumer import Consumer, Subscription
from service.kafka.producer import OutRecord, PublishError, RecordTooLargeError
from service.kafka.records import Record
from service.kafka.topics import COMMAND_TOPICS
from service.metrics import HTTP_COMMANDS
from service.settings import Settings

log = structlog.get_logger(__name__)

JSON = "application/json"


class ApiError(Outbound):
    """Every 4xx and 5xx body of /v1/commands."""

    status: int
    error: str  # a short code: unauthorized, invalid_command, too_large, kafka_unavailable...
    message: str
    fields: list[FieldError] = Field(default_factory=list)  # invalid_command: each bad field


class Accepted(Outbound):
    command_id: str
    kind: CommandKind
    topic: str
    status_url: str


class CommandStatus(Outbound):
    """What this replica has read of a command id: its ledger entry and its result."""

    command_id: str
    # queued: on its command topic, not begun; running: CCC is being called; done: answered.
    state: Literal["queued", "running", "done"]
    # The ledger's: `started` before the CCC call, `done` after. None for a command never
    # executed (rejected, expired) or not begun.
    ledger_state: Literal["started", "done"] | None
    action: str | None  # the CCC action called, if any
    # The outcome of its execution (the ledger's), else the latest result on the results
    # topic (rejected, expired); None until it is done.
    result: CommandResult | None


@dataclass(slots=True)
class _Known:
    """What the view keeps of one command id: what status() needs, the result as JSON."""

    ledger_state: Literal["started", "done"] | None = None
    action: str | None = None
    result_seen: bool = False  # anything on the results topic, readable or not
    # The ledger's result once an entry was read (a repeat's `duplicate` result says less
    # than the original), else the latest on the results topic.
    result: bytes | None = None

    def cost(self, command_id: str) -> int:
        return len(command_id) + len(self.result or b"") + ENTRY_OVERHEAD_BYTES


# Bytes an id kept costs besides its id and result: the entry, its dict slot, the str
# headers. tracemalloc measured about 280 (tests/unit/test_ingress.py holds it below this).
ENTRY_OVERHEAD_BYTES = 400


class StatusView:
    """The command, ledger and results topics tailed from their beginning, keeping for the
    newest command ids (at most `status_entries`, and `status_max_bytes` of them) whether a
    command was seen, its ledger state and action, and its result as compact JSON: any
    replica can answer a GET, whichever worker ran the command. Memory, measured: about
    0.65 KB an id whose result has no metadata, and 1 KB more per KB of metadata (up to
    64 KiB of it)."""

    def __init__(self, settings: Settings) -> None:
        commands = [settings.topics.name(topic) for topic in COMMAND_TOPICS.values()]
        self._ledger_topic = settings.topics.name("ledger")
        self._results_topic = settings.topics.name("command_results")
        self._max_entries = settings.http.status_entries
        self._max_bytes = settings.http.status_max_bytes
        self._known: OrderedDict[str, _Known] = OrderedDict()  # oldest first
        self._bytes = 0
        subscription = Subscription(
            (*commands, self._ledger_topic, self._results_topic),
            start_from="earliest",
            ordered_by=None,  # only taking note: in the fetch loop, in offset order
        )
        self._consumer = Consumer(settings.kafka, subscription, self._take, name="status")

    @property
    def caught_up(self) -> asyncio.Event:
        """Set once everything there was at the start has been read."""
        return self._consumer.caught_up

    async def run(self, stop: asyncio.Event) -> None:
        await self._consumer.run(stop)

    async def _take(self, record: Record) -> bool:
        key = record.key
        if key is None:
            return True
        command_id = key.decode(errors="replace")
        known = self._known.pop(command_id, None)
        if known is None:
            known = _Known()
        else:
            self._bytes -= known.cost(command_id)
        if record.topic == self._ledger_topic:
            entry = None if record.value is None else _entry_of(record.value)
            if entry is not None:
                known.ledger_state, known.action = entry.state, entry.action
                known.result = None if entry.result is None else _compact(entry.result)
        elif record.topic == self._results_topic:
            known.result_seen = True
            if known.ledger_state is None:
                result = None if record.value is None else _result_of(record.value)
                known.result = None if result is None else _compact(result)
        self._known[command_id] = known  # newest last
        self._bytes += known.cost(command_id)
        while len(self._known) > self._max_entries or self._bytes > self._max_bytes:
            oldest, dropped = self._known.popitem(last=False)
            self._bytes -= dropped.cost(oldest)
        return True

    def status(self, command_id: str) -> CommandStatus | None:
        known = self._known.get(command_id)
        if known is None:
            return None
        state: Literal["queued", "running", "done"] = "queued"
        if known.ledger_state == "started":
            state = "running"
        elif known.result_seen or known.ledger_state is not None:
            state = "done"
        result = None if known.result is None else CommandResult.model_validate_json(known.result)
        return CommandStatus(
            command_id=command_id,
            state=state,
            ledger_state=known.ledger_state,
            action=known.action,
            result=result,
        )


def _compact(result: CommandResult) -> bytes:
    return result.model_dump_json(exclude_defaults=True).encode()


def _entry_of(value: bytes) -> Entry | None:
    try:
        return Entry.model_validate_json(value)
    except ValueError:  # not written by this service: nothing to tell
        return None


def _result_of(event: bytes) -> CommandResult | None:
    try:
        return CommandResult.model_validate(json.loads(event)["data"])
    except (ValueError, KeyError, TypeError, RecursionError):  # not written by this service
        return None


class CommandIngress:
    """The handlers of /v1/commands."""

    def __init__(
        self,
        settings: Settings,
        send_all: Callable[[list[OutRecord]], Awaitable[None]],
        view: StatusView,
    ) -> None:
        self._settings = settings
        self._send_all = send_all
        self._view = view
        self._instances = frozenset(settings.ccc.instances)
        self._limits = Limits.of(settings.commands)
        self._keys = [key.get_secret_value().encode() for key in settings.http.api_keys]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/commands/{kind}", self.post),
            web.get("/v1/commands/{command_id}", self.get),
        ]

    async def post(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in KINDS:  # said here, not by the router, which would answer 405
            return _error(404, "unknown_kind", f"no command kind {kind!r}: one of {KINDS}")
        answer = await self._post(request, kind)
        HTTP_COMMANDS.labels(kind, str(answer.status)).inc()
        return answer

    async def _post(self, request: web.Request, kind: CommandKind) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            command = parse_command(kind, body, self._instances, self._limits)
        except InvalidCommandError as invalid:
            return _error(400, "invalid_command", str(invalid), invalid.errors)
        topic = self._settings.topics.name(COMMAND_TOPICS[kind])
        value = command.model_dump_json(exclude_defaults=True).encode()
        record = OutRecord(topic, command.command_id.encode(), value)
        try:
            await asyncio.wait_for(self._send_all([record]), self._settings.http.produce_timeout_s)
        except RecordTooLargeError as error:
            return _error(413, "too_large", str(error))
        except (TimeoutError, PublishError) as error:
            log.warning("http_command_not_acknowledged", kind=kind, error=repr(error))
            message = (
                "Kafka did not acknowledge the command; it may still arrive: send it again "
                "with the same command_id, which is safe"
            )
            return _error(503, "kafka_unavailable", message, retry_after_s=5)
        status_url = status_path(command.command_id)
        accepted = Accepted(
            command_id=command.command_id, kind=kind, topic=topic, status_url=status_url
        )
        return web.Response(
            status=202,
            body=accepted.model_dump_json(),
            content_type=JSON,
            headers={"Location": status_url},
        )

    async def _body(self, request: web.Request) -> bytes | web.Response:
        """The body, or the answer when it is too large, too slow or cut off."""
        http = self._settings.http
        try:
            async with asyncio.timeout(http.body_timeout_s):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "too_large", f"the body is larger than {http.max_body_bytes} bytes")
        except TimeoutError:
            answer = _error(408, "too_slow", f"the body took longer than {http.body_timeout_s:g} s")
            answer.force_close()  # the rest of the body may still be on its way
            return answer
        except ConnectionError:
            # The client went away mid-body: nobody to answer, and no bug to trace.
            log.debug("http_client_gone", path=request.path)
            return _error(400, "incomplete", "the connection closed before the body ended")

    async def get(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        command_id = request.match_info["command_id"]
        status = self._view.status(command_id)
        if status is not None:
            return web.Response(body=status.model_dump_json(), content_type=JSON)
        if not self._view.caught_up.is_set():
            message = "still reading the ledger since the start; ask again shortly"
            return _error(503, "catching_up", message, retry_after_s=1)
        message = (
            f"nothing read of command id {command_id!r}: never sent, or older than the "
            f"{self._settings.http.status_entries} newest ids kept"
        )
        return _error(404, "unknown_command", message)

    def _refused(self, request: web.Request) -> web.Response | None:
        """401 unless the request carries a configured key. Every key is compared, in
        constant time, so timing tells nothing about any of them."""
        given = request.headers.get("X-API-Key", "")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = token.strip()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(key, given.encode())
        if matched and given:  # settings refuse empty keys; never let one match regardless
            return None
        message = (
            "give an API key as 'Authorization: Bearer <key>' or 'X-API-Key'"
            if self._keys
            else "no API key is configured (http.api_keys): command ingress is off"
        )
        answer = _error(401, "unauthorized", message)
        answer.headers["WWW-Authenticate"] = 'Bearer realm="ccc-bridge"'
        return answer


def status_path(command_id: str) -> str:
    """Where GET tells a command's status: the id percent-encoded, `/`, `%`, `?` and `#`
    included, so it stays one path segment (the router decodes it back)."""
    return "/v1/commands/" + quote(command_id, safe="")


def _error(
    status: int,
    error: str,
    message: str,
    fields: list[FieldError] | None = None,
    *,
    retry_after_s: int | None = None,
) -> web.Response:
    body = ApiError(status=status, error=error, message=message, fields=fields or [])
    answer = web.Response(status=status, body=body.model_dump_json(), content_type=JSON)
    if retry_after_s is not None:
        answer.headers["Retry-After"] = str(retry_after_s)
    return answer
