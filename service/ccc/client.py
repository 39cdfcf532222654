"""Async client for every CCC 2017-07-05 action in the catalogue.

One pooled aiohttp session with explicit timeouts; requests signed in one place; per-action
client-side rate limits under one call budget that serves commands first and slows the
pollers when CCC throttles (service/ccc/budget.py); retries with jittered exponential
backoff that honour the server's retry-after hint and never repeat a side effect unless CCC
provably did not act (throttled, or the request never left), or the settings opt in to
repeating it on a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self

import aiohttp
import structlog
from aiolimiter import AsyncLimiter
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from yarl import URL

from service.ccc.budget import Budget, current_stream
from service.ccc.catalog import (
    API_VERSION,
    ActionSpec,
    Catalog,
    CccRequest,
    CccResponse,
    load_catalog,
)
from service.ccc.credentials import CredentialsUnavailableError
from service.ccc.errors import (
    TOKEN_REFUSED_CODES,
    CccAuthError,
    CccCredentialsError,
    CccError,
    CccServerError,
    CccThrottledError,
    CccTimeoutError,
    CccTransportError,
    error_from_response,
)
from service.ccc.settings import CccSettings, RetrySettings
from service.ccc.signing import Credentials, authorize, form_encode
from service.metrics import CCC_CALL_SECONDS, CCC_CALLS

log = structlog.get_logger(__name__)

HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
    "User-Agent": "ccc-bridge",
}
MAX_PAGE_SIZE = 100


def should_retry(
    error: BaseException, *, read_only: bool, side_effects_on_server_errors: bool = False
) -> bool:
    """Reads retry whatever may pass; side effects only where CCC provably did not act, and
    on a 5xx (whose effect is unknown) only when the settings opt in."""
    if not isinstance(error, CccError):
        return False
    if read_only:
        return error.retriable
    return error.safe_to_repeat or (
        side_effects_on_server_errors and isinstance(error, CccServerError)
    )


class Backoff:
    """Full-jitter exponential backoff, but never sooner than the server asked."""

    def __init__(self, settings: RetrySettings) -> None:
        self._jitter = wait_random_exponential(
            multiplier=settings.backoff_initial_s, max=settings.backoff_max_s
        )

    def __call__(self, state: RetryCallState) -> float:
        delay = self._jitter(state)
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, CccThrottledError) and error.retry_after is not None:
            return max(delay, error.retry_after)
        return delay


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: `x-acs-retry-after` is in milliseconds, `Retry-After` in seconds."""
    for name, scale in (("x-acs-retry-after", 1000.0), ("Retry-After", 1.0)):
        value = headers.get(name)
        if value:
            try:
                seconds = float(value) / scale
            except ValueError:
                continue
            if seconds > 0:
                return seconds
    return None


class CccClient:
    def __init__(self, settings: CccSettings, *, catalog: Catalog | None = None) -> None:
        self._settings = settings
        self._catalog = catalog or load_catalog()
        self._credentials = settings.credentials()
        self._url = URL(settings.url + "/")
        self._limiters: dict[str, AsyncLimiter] = {}
        self._budget = Budget(settings.rate_limits.total_per_s)  # one client per process
        self._backoff = Backoff(settings.retry)
        self._session: aiohttp.ClientSession | None = None
        self._server_offset_ms = 0
        self._server_date: str | None = None
        self.answered_at: float | None = None  # monotonic time of CCC's latest good answer
        # Set while CCC answers: cleared by a call that got no answer (the connection failed,
        # or none came in time) until CCC answers another; a 5xx is an answer. Commands wait
        # on it (service/ccc/health.py); `lost` wakes the health check at once.
        self.reachable = asyncio.Event()
        self.lost = asyncio.Event()
        self.unreachable_why: str | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        await self._credentials.aclose()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self._settings.connect_timeout_s,
                sock_read=self._settings.read_timeout_s,
            )
            connector = aiohttp.TCPConnector(limit=self._settings.max_connections)
            self._session = aiohttp.ClientSession(
                timeout=timeout, connector=connector, headers=HEADERS
            )
        return self._session

    def server_time_ms(self) -> int:
        """CCC's clock, from the Date header of its latest answer (to the second, rounded
        down), so time windows follow the server even when the two clocks disagree."""
        return int(time.time() * 1000) + self._server_offset_ms

    def unreachable(self, why: str) -> None:
        """CCC did not answer: `reachable` is clear until it answers a call."""
        self.reachable.clear()
        self.lost.set()
        self.unreachable_why = why

    def _reached(self) -> None:
        self.reachable.set()
        self.lost.clear()
        self.unreachable_why = None

    def _limiter(self, action: str) -> AsyncLimiter | None:
        limits = self._settings.rate_limits
        rate = limits.per_action.get(action, limits.default_per_s)
        if rate is None:
            return None
        limiter = self._limiters.get(action)
        if limiter is None:
            limiter = self._limiters[action] = AsyncLimiter(rate, 1.0)
        return limiter

    async def call(
        self,
        action: str,
        params: Mapping[str, Any] | CccRequest | None = None,
        *,
        on_attempt: Callable[[], None] | None = None,
    ) -> CccResponse:
        """Call one action. `params` takes snake_case or wire names, or a request model.
        `on_attempt` is told of each request sent, retries included."""
        spec = self._catalog[action]
        wire = spec.to_wire(spec.request(params))
        if on_attempt is not None:
            on_attempt()
        try:
            # Most calls succeed at once: only a failure pays for what follows.
            return await self._send(spec, wire)
        except CccError as error:
            first = error
        settings = self._settings.retry
        # Once CCC may have acted on a failed attempt (a side effect is retried after one only
        # when the settings opt in), the call's error says so, however it ends.
        unsure = False

        def retry(error: BaseException) -> bool:
            nonlocal unsure
            unsure = unsure or (isinstance(error, CccError) and error.acted is not False)
            return should_retry(
                error,
                read_only=spec.read_only,
                side_effects_on_server_errors=settings.side_effects_on_server_errors,
            )

        if not retry(first):
            raise first
        pending: CccError | None = first
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.max_attempts),
            wait=self._backoff,
            retry=retry_if_exception(retry),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    # Attempt 1 replays the failure above, so counts, waits and logs stay exact.
                    if pending is not None:
                        replay, pending = pending, None
                        raise replay
                    if on_attempt is not None:
                        on_attempt()
                    return await self._send(spec, wire)
        except CccError as error:
            error.attempts = retrying.statistics["attempt_number"]
            if unsure:
                error.acted = None
            raise
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def pages(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[CccResponse]:
        """Every page of a paged list action, in order, as many as page 1's TotalCount says.

        The pages after the first are asked for a few at a time (`page_concurrency`), so a
        poll of thousands of rows takes a few round trips, not one per page.
        """
        spec = self._catalog[action]
        if not spec.paged:
            raise ValueError(f"{action} is not a paged action")
        request = spec.request({**(params or {}), "PageNumber": 1, "PageSize": page_size})
        first = await self.call(action, request)
        yield first
        total = (first.page() or (0, 0, 0))[0]
        if not first.items():
            return
        slots = asyncio.Semaphore(self._settings.page_concurrency)

        async def fetch(number: int) -> CccResponse:
            async with slots:
                return await self.call(action, request.model_copy(update={"page_number": number}))

        rest = [asyncio.create_task(fetch(n)) for n in range(2, math.ceil(total / page_size) + 1)]
        try:
            for task in rest:
                yield await task
        finally:
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

    async def iter_items(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[Any]:
        """The items of every page, wrappers peeled off."""
        async for page in self.pages(action, params, page_size=page_size):
            for item in page.items():
                yield item

    async def _send(self, spec: ActionSpec, wire: dict[str, str]) -> CccResponse:
        """One request, signed with the credential of the moment. Asked for before the rate
        limits: a wait there longer than what is left of it meets the retry below."""
        try:
            credentials = await self._credentials.get()
        except CredentialsUnavailableError as error:
            raise CccCredentialsError(str(error), action=spec.name) from error
        try:
            return await self._attempt(spec, wire, credentials)
        except CccAuthError as error:
            if error.code not in TOKEN_REFUSED_CODES:
                raise
            # CCC refused the token before acting: signed again with a renewed one, once.
            renewed = await self._credentials.renew(credentials)
            if renewed is None:
                raise
            log.info("ccc_token_renewed", action=spec.name, code=error.code)
            return await self._attempt(spec, wire, renewed)

    async def _attempt(
        self, spec: ActionSpec, wire: dict[str, str], credentials: Credentials
    ) -> CccResponse:
        stream = current_stream()
        granted = await self._budget.acquire(stream)
        limiter = self._limiter(spec.name)
        if limiter is not None:
            await limiter.acquire()
        params = {"Action": spec.name, "Version": API_VERSION, "Format": "JSON", **wire}
        params |= authorize(
            "POST",
            params,
            credentials,
            timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            nonce=uuid.uuid4().hex,
        )
        # Every parameter in the form body: the gateway signs query and body alike, and a
        # fixed URL spares building one per call.
        started = time.monotonic()
        try:
            status, headers, body = await self._post(spec.name, form_encode(params))
            response = self._parse(spec, status, headers, body)
        except CccError as error:
            CCC_CALLS.labels(spec.name, getattr(error, "code", type(error).__name__)).inc()
            if isinstance(error, CccThrottledError):
                self._budget.throttled(stream, error.code, granted)
            if isinstance(error, CccTransportError):
                self.unreachable(str(error))
            else:
                self._reached()  # a refusal or a 5xx is an answer too
            raise
        finally:
            CCC_CALL_SECONDS.labels(spec.name).observe(time.monotonic() - started)
        CCC_CALLS.labels(spec.name, "ok").inc()
        self.answered_at = time.monotonic()
        self._reached()
        return response

    async def _post(self, action: str, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        try:
            async with self._http().post(self._url, data=body) as response:
                self._note_server_time(response.headers.get("Date"))
                return response.status, response.headers, await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            # The connection never opened: nothing reached CCC.
            raise CccTransportError(_describe(error), action=action, sent=False) from error
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise CccTimeoutError("no response in time", action=action) from error
        except aiohttp.ClientError as error:
            raise CccTransportError(_describe(error), action=action, sent=True) from error

    def _note_server_time(self, date: str | None) -> None:
        if date is None or date == self._server_date:
            return  # it changes once a second: parse it only then
        self._server_date = date
        try:
            server = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return
        self._server_offset_ms = int(server.timestamp() * 1000 - time.time() * 1000)

    def _parse(
        self, spec: ActionSpec, status: int, headers: Mapping[str, str], body: bytes
    ) -> CccResponse:
        if status == 200:
            try:
                response = spec.response_model.model_validate_json(body)
            except ValidationError as error:
                # CCC answered, so it may well have acted: never a reason to repeat an effect.
                raise CccTransportError(
                    f"HTTP 200 with a body that does not match the {spec.name} schema: {error}",
                    action=spec.name,
                    sent=True,
                ) from error
            if response.success is not False:
                return response
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            snippet = body[:200].decode("utf-8", "replace")
            raise CccTransportError(
                f"HTTP {status} with a body that is not a JSON object: {snippet!r}",
                action=spec.name,
                sent=True,
            )
        raise error_from_response(spec.name, status, data, retry_after_seconds(headers))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "ccc_call_retry",
        action=getattr(error, "action", None),
        attempt=state.attempt_number,
        error=str(error),
        wait_s=round(state.upcoming_sleep, 3),
    )
