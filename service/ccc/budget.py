"""One CCC call budget per process, shared by every caller, by priority.

Each HTTP attempt names its stream (`calling_as`, held in a context variable, so a poll
loop's tasks inherit it). Two gates, both served strictly by priority, FIFO within one:

- the total cap (`ccc.rate_limits.total_per_s`, optional): a token bucket of one second's
  worth of calls, refilled at that rate, that every stream shares;
- the pollers' rate (every stream but commands), AIMD on `Throttling*` answers: off until
  CCC throttles, then halved from the pollers' recent call rate at each throttle, and
  raised again by a fixed step per second until it reaches its ceiling, where it is lifted.

Commands go first in the total bucket and never wait for the pollers' rate. Waiters sleep on
one loop timer set for the moment the first of them can go: nothing spins.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import MappingProxyType

from service.metrics import CCC_BUDGET_WAIT_SECONDS, CCC_POLLER_RATE_LIMIT, CCC_STREAM_CALLS

# Stream -> priority, 0 first: a command is someone waiting; a state change outranks the
# histories, which can be read again later; a backfill (`ccc-bridge backfill`) reads a past
# nobody waits for.
STREAMS: Mapping[str, int] = MappingProxyType(
    {
        "commands": 0,
        "agent_states": 1,
        "calls": 2,
        "agent_state_logs": 3,
        "skill_groups": 4,
        "directory": 4,
        "backfill": 5,
    }
)
COMMANDS = "commands"
PRIORITIES = max(STREAMS.values()) + 1

FLOOR_PER_S = 1.0  # the pollers' rate is never cut below this (or below the total cap)
RATE_WINDOW_S = 2.0  # the pollers' call rate, when first throttled, is measured over this
STEP_SHARE = 0.05  # recovery per second: this share of the ceiling, at least 1 call/s
TOLERANCE = 1e-9  # of a token

_stream: ContextVar[str] = ContextVar("ccc_stream", default=COMMANDS)


def calling_as(stream: str) -> None:
    """CCC calls of the current task, and of the tasks it creates from now on, are `stream`'s."""
    if stream not in STREAMS:
        raise ValueError(f"unknown CCC stream {stream!r}; one of {', '.join(STREAMS)}")
    _stream.set(stream)


def current_stream() -> str:
    """The stream calls are made for here; unset means commands (and CLI calls): first."""
    return _stream.get()


class _Bucket:
    """Tokens refilled at `rate` per second, up to one second's worth (at least one)."""

    def __init__(self, rate: float, now: float, *, tokens: float | None = None) -> None:
        self.rate = rate
        self.tokens = self.capacity if tokens is None else tokens
        self._at = now

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate)

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def due(self) -> float:
        """Seconds until a token is there. A hair short counts as there: a timer set for
        the moment a token is due must find it, not sleep again for rounding."""
        short = 1.0 - self.tokens
        return 0.0 if short <= TOLERANCE else short / self.rate


class PollerRate:
    """The pollers' AIMD limit. Halved at each throttle, from the lower of the limit and
    the pollers' measured rate (a limit the pollers do not reach would slow nothing); then
    up by max(1, 5 % of the ceiling) per second. The ceiling is the total cap or, without
    one, twice the measured rate when first throttled; there the limit is lifted."""

    def __init__(self, total_per_s: float | None) -> None:
        self._total = total_per_s
        self._floor = FLOOR_PER_S if total_per_s is None else min(FLOOR_PER_S, total_per_s)
        self._ceiling = math.inf
        self._cut: tuple[float, float] | None = None  # (rate, when) of the latest cut

    @property
    def cut_at(self) -> float | None:
        return None if self._cut is None else self._cut[1]

    def at(self, now: float) -> float | None:
        """The limit in calls per second; None while off."""
        if self._cut is None:
            return None
        rate, when = self._cut
        rate += max(1.0, STEP_SHARE * self._ceiling) * (now - when)
        return rate if rate < self._ceiling else None

    def cut(self, now: float, measured: float) -> float:
        limit = self.at(now)
        if limit is None:
            self._ceiling = self._total or 2 * max(measured, FLOOR_PER_S)
            limit = math.inf
        rate = max(self._floor, min(limit, measured) / 2)
        self._cut = (rate, now)
        return rate


class Budget:
    """The process's CCC call budget: `acquire(stream)` before each HTTP attempt, and
    `throttled(...)` when CCC answers one with `Throttling*`."""

    def __init__(
        self, total_per_s: float | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        now = clock()
        self._total = None if total_per_s is None else _Bucket(total_per_s, now)
        self._rate = PollerRate(total_per_s)
        self._pollers: _Bucket | None = None  # while the AIMD limit is on
        self._recent: deque[float] = deque()  # when poller calls went, RATE_WINDOW_S back
        self._waiting: list[deque[asyncio.Future[tuple[_Bucket, ...]]]] = [
            deque() for _ in range(PRIORITIES)
        ]
        self._timer: asyncio.TimerHandle | None = None
        CCC_POLLER_RATE_LIMIT.set_function(self.poller_rate)

    def poller_rate(self) -> float:
        """The pollers' AIMD limit in calls per second; +Inf while off."""
        rate = self._rate.at(self._clock())
        return math.inf if rate is None else rate

    async def acquire(self, stream: str) -> float:
        """Wait for `stream`'s turn; the time it was granted, on this budget's clock."""
        try:
            priority = STREAMS[stream]
        except KeyError:
            raise ValueError(f"unknown CCC stream {stream!r}") from None
        asked = self._clock()
        self._refill(asked)
        gates = self._gates(priority)
        queued = any(self._waiting[p] for p in range(priority + 1))
        if not queued and all(gate.due() == 0 for gate in gates):
            self._take(gates, priority, asked)
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting[priority].append(waiter)
            self._dispatch()
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    for gate in waiter.result():  # granted, then cancelled before it ran
                        gate.tokens = min(gate.capacity, gate.tokens + 1)
                else:
                    self._waiting[priority].remove(waiter)
                self._dispatch()
                raise
        granted = self._clock()
        CCC_STREAM_CALLS.labels(stream).inc()
        CCC_BUDGET_WAIT_SECONDS.labels(stream).observe(granted - asked)
        return granted

    def throttled(self, stream: str, code: str, granted_at: float) -> None:
        """CCC answered `code` (a `Throttling*`) to a call `stream` was granted at
        `granted_at`: the pollers slow down.

        A command's throttle slows them too (they yield to it), except `Throttling.Api`,
        a limit of that one action, which no poller calls. An answer to a call granted
        by the latest cut says nothing of the rate since, so it does not cut again.
        """
        if stream == COMMANDS and code == "Throttling.Api":
            return
        cut_at = self._rate.cut_at
        if cut_at is not None and granted_at <= cut_at:
            return
        now = self._clock()
        self._prune(now)
        rate = self._rate.cut(now, len(self._recent) / RATE_WINDOW_S)
        self._pollers = _Bucket(rate, now, tokens=0.0)  # slow down from now on

    def _prune(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - RATE_WINDOW_S:
            self._recent.popleft()

    def _refill(self, now: float) -> None:
        if self._total is not None:
            self._total.refill(now)
        rate = self._rate.at(now)
        if rate is None:
            self._pollers = None
        elif self._pollers is not None:
            self._pollers.refill(now)
            self._pollers.rate = rate

    def _gates(self, priority: int) -> tuple[_Bucket, ...]:
        gates = [self._total] + ([self._pollers] if priority > 0 else [])
        return tuple(gate for gate in gates if gate is not None)

    def _take(self, gates: tuple[_Bucket, ...], priority: int, now: float) -> None:
        for gate in gates:
            gate.tokens -= 1
        if priority > 0:
            self._recent.append(now)
            self._prune(now)

    def _dispatch(self) -> None:
        """Grant every waiter that can go, highest priority first; then sleep until the
        first one left can. Every gate a waiter needs, any waiter behind it needs too (the
        total, and the pollers' rate for every poller), so the first one blocked blocks all."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._clock()
        self._refill(now)
        for priority, waiting in enumerate(self._waiting):
            gates = self._gates(priority)
            while waiting:
                wait = max((gate.due() for gate in gates), default=0.0)
                if wait > 0:
                    loop = asyncio.get_running_loop()
                    self._timer = loop.call_later(wait, self._dispatch)
                    return
                self._take(gates, priority, now)
                waiting.popleft().set_result(gates)
