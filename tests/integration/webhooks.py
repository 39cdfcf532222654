"""A webhook receiver as a user would write one, and endpoints quick to retry and give up, for
the integration tests that push events over HTTP."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from service.webhooks.settings import WebhookEndpoint


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class Delivery:
    id: str
    type: str
    body: bytes
    headers: Mapping[str, str]


class Receiver:
    """A webhook receiver on loopback, as a user would write one: it verifies every request
    with the reference library and answers 204, or what `script` says for an event's first
    attempts, 503 while `down`; with `hang`, it never answers."""

    def __init__(
        self,
        secret: str,
        script: Mapping[str, list[tuple[int, dict[str, str]]]] | None = None,
        *,
        hang: bool = False,
    ) -> None:
        self.secret = secret
        self.script = {event: list(answers) for event, answers in (script or {}).items()}
        self.hang = hang
        self.down = False
        self.attempts: Counter[str] = Counter()  # by webhook-id
        self.attempt_times: defaultdict[str, list[float]] = defaultdict(list)
        self.delivered: list[Delivery] = []  # answered 2xx, in the order they came
        self.forged: list[str] = []  # requests the verifier refused
        self.url = ""
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        webhook_id = headers.get("webhook-id", "")
        self.attempts[webhook_id] += 1
        self.attempt_times[webhook_id].append(time.monotonic())
        if self.hang:
            await self._release.wait()
            return web.Response(status=503)
        try:
            event = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as error:
            self.forged.append(f"{webhook_id}: {error}")
            return web.Response(status=401)
        if self.down:
            return web.Response(status=503)
        if self.script.get(webhook_id):
            status, answer_headers = self.script[webhook_id].pop(0)
            return web.Response(status=status, headers=answer_headers, text="scripted")
        self.delivered.append(Delivery(event["id"], event["type"], body, headers))
        return web.Response(status=204)

    def ids(self) -> Counter[str]:
        return Counter(delivery.id for delivery in self.delivered)


# Receivers listen on loopback, which webhooks refuse unless the settings name it.
LOOPBACK = ["127.0.0.1"]


def endpoint(name: str, receiver: Receiver, **changes: Any) -> WebhookEndpoint:
    """Quick to retry and to give up, as tests need."""
    fields = {
        "name": name,
        "url": receiver.url,
        "secret": receiver.secret,
        "timeout_s": 2.0,
        "max_attempts": 4,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 2.0,
    }
    return WebhookEndpoint.model_validate(fields | changes)
