"""Whether CCC answers, for the commands that wait on it, /readyz's body and /metrics.

CCC being down is never fatal: the service starts and serves HTTP ingress, webhooks and
command status without it, commands wait before they begin, and the pollers back off
(service/events/pollers.py). Every call the client makes tells whether CCC answers (a 5xx
is an answer; a failed connection or a timeout is not); from the moment one finds it
unreachable, and whenever none was made for `fresh_s`, GetInstance asks, less often the
longer CCC stays away. What CCC refuses for good (credentials, an instance it does not
know) ends the process, as before: no wait mends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from service.ccc.client import CccClient
from service.ccc.errors import CccError
from service.metrics import CCC_UP

log = structlog.get_logger(__name__)

MAX_PROBE_WAIT_S = 30.0  # while CCC stays away, asked at least this often


class CccHealth:
    def __init__(
        self,
        ccc: CccClient,
        instance_id: str,
        *,
        interval_s: float,
        timeout_s: float,
        fresh_s: float,
    ) -> None:
        self._ccc = ccc
        self._instance_id = instance_id
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._fresh_s = fresh_s
        CCC_UP.set_function(lambda: 1.0 if ccc.reachable.is_set() else 0.0)

    def problem(self) -> str | None:
        """None while CCC answers, else why not (for /readyz)."""
        if self._ccc.reachable.is_set():
            return None
        return self._ccc.unreachable_why or "not asked yet"

    async def wait_up(self, halt: asyncio.Event) -> bool:
        """Until CCC answers (True) or `halt` is set (False)."""
        if not self._ccc.reachable.is_set():
            await _first(self._ccc.reachable, halt)
        return self._ccc.reachable.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        wait_s = self._interval_s
        while not stop.is_set():
            answered = self._ccc.answered_at
            stale = answered is None or time.monotonic() - answered > self._fresh_s
            if stale or not self._ccc.reachable.is_set():
                was_up = self._ccc.reachable.is_set()
                await self._ask()
                if self._ccc.reachable.is_set():
                    wait_s = self._interval_s
                    if not was_up:
                        log.info("ccc_reachable")
                else:
                    if was_up or wait_s == self._interval_s:
                        log.warning("ccc_unreachable", problem=self.problem())
                    wait_s = min(wait_s * 2, MAX_PROBE_WAIT_S)
            await self._pause(stop, wait_s)

    async def _pause(self, stop: asyncio.Event, wait_s: float) -> None:
        """`wait_s`, cut short by a stop or, while CCC answers, by a call that found it
        unreachable: commands wait from that moment, so it is asked again at once."""
        woken = [stop, self._ccc.lost] if self._ccc.reachable.is_set() else [stop]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await _first(*woken)

    async def _ask(self) -> None:
        """GetInstance; a refusal no retry mends is raised."""
        try:
            ask = self._ccc.call("GetInstance", {"InstanceId": self._instance_id})
            await asyncio.wait_for(ask, self._timeout_s)
        except TimeoutError:
            self._ccc.unreachable(f"no answer to GetInstance within {self._timeout_s:g} s")
        except CccError as error:
            if not error.retriable:
                raise


async def _first(*events: asyncio.Event) -> None:
    """Until one of `events` is set."""
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
