"""`python -m service.emulator.measure`: what the emulator costs at scale, in one process.

Runs the simulation on a frozen clock moved one simulated minute at a time, printing per
simulated hour the CPU seconds it took, how many full garbage collections ran and the longest
(a pause every answer waits out), the peak RSS and what the histories hold; then times the
handlers a bridge polls (median of --rounds calls each, straight into the simulation, so HTTP
and signing are left out). docs/emulator.md quotes its figures.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from service.emulator.config import EmulatorConfig, SimClock
from service.emulator.sim import Simulation

INSTANCE = "ccc-demo"
START_MS = 1_790_000_000_000  # fixed, so runs compare
MINUTE_S = 60
BATCH = 100  # RamIds per ListAgentEvents, and PageSize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--hours", type=int, default=1, help="simulated hours to run first")
    parser.add_argument("--retention-s", type=float, default=EmulatorConfig.retention_s)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    clock = SimClock(start_ms=START_MS, monotonic=lambda: 0.0)
    config = EmulatorConfig(instances=(INSTANCE,), agents=args.agents, retention_s=args.retention_s)
    sim = Simulation(config, clock)
    pauses = FullCollections()
    gc.callbacks.append(pauses.observe)
    for hour in range(1, args.hours + 1):
        started = time.process_time()
        for _ in range(60):
            clock.advance(MINUTE_S)
            sim.advance()
        count, longest = pauses.take()
        sys.stdout.write(
            f"hour {hour}: {time.process_time() - started:.1f} s CPU, {count} full collections "
            f"(longest {longest:.2f} s), {_held(sim)}\n"
        )
    for name, call in _calls(sim).items():
        sys.stdout.write(f"{name:<60} {_median_ms(call, args.rounds):8.2f} ms\n")


class FullCollections:
    """Full (generation 2) collections, counted and timed by a gc callback."""

    def __init__(self) -> None:
        self._started = 0.0
        self._count = 0
        self._longest = 0.0

    def observe(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._count += 1
            self._longest = max(self._longest, time.perf_counter() - self._started)

    def take(self) -> tuple[int, float]:
        """How many ran since the last take, and the longest in seconds."""
        taken = self._count, self._longest
        self._count, self._longest = 0, 0.0
        return taken


def _held(sim: Simulation) -> str:
    inst = sim.instances[INSTANCE]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    logs = sum(len(a.log) for a in inst.agents.values())
    events = sum(len(a.events) for a in inst.agents.values())
    return (
        f"peak RSS {peak_mb:.0f} MB; kept: {len(inst.calls)} calls, {len(inst.records)} "
        f"records, {logs} state log entries, {events} agent events"
    )


def _calls(sim: Simulation) -> dict[str, Callable[[], object]]:
    inst, now = sim.instances[INSTANCE], sim.now
    ram_ids = [agent.ram_id for agent in inst.agents.values()]
    contact_id = next(reversed(inst.records)).contact_id
    paging = {"PageNumber": 1, "PageSize": BATCH}

    def handle(action: str, **params: Any) -> Callable[[], object]:
        return lambda: sim.handle(action, {"InstanceId": INSTANCE, **params})

    def every_page() -> None:
        pages, total = 0, 1
        while pages * BATCH < total:
            pages += 1
            params = {"InstanceId": INSTANCE, "PageNumber": pages, "PageSize": BATCH}
            total = sim.handle("ListAgentStates", params)["Data"]["TotalCount"]

    return {
        f"ListAgentStates, every page of {BATCH}": every_page,
        f"ListAgentStates, one page of {BATCH}": handle("ListAgentStates", PageSize=BATCH),
        "ListAgentStateLogs, one agent, 2 h": handle(
            "ListAgentStateLogs", RamId=ram_ids[0], StartTime=now - 7_200_000, EndTime=now, **paging
        ),
        f"ListAgentEvents, {BATCH} RamIds, last minute": handle(
            "ListAgentEvents", RamId=ram_ids[:BATCH], StartTime=now - 60_000, StopTime=now
        ),
        f"ListAgentEvents, {BATCH} RamIds, default hour": handle(
            "ListAgentEvents", RamId=ram_ids[:BATCH]
        ),
        f"ListCallDetailRecords, last 2 h, page of {BATCH}": handle(
            "ListCallDetailRecords", StartTime=now - 7_200_000, StopTime=now, **paging
        ),
        f"ListCallDetailRecords, last minute, page of {BATCH}": handle(
            "ListCallDetailRecords", StartTime=now - 60_000, StopTime=now, **paging
        ),
        "ListCallDetailRecords, last 2 h, ContactType=Inbound": handle(
            "ListCallDetailRecords",
            StartTime=now - 7_200_000,
            StopTime=now,
            ContactType="Inbound",
            **paging,
        ),
        "ListCallEventDetailByContactId": handle(
            "ListCallEventDetailByContactId", ContactId=contact_id
        ),
    }


def _median_ms(call: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


if __name__ == "__main__":
    main()
