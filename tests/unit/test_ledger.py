"""The ledger in memory: entries past the ledger's retention are dropped while running,
nothing within it is ever dropped, and a ledger over its budget says so."""

from __future__ import annotations

from structlog.testing import capture_logs

from service.commands.ledger import Entry, Ledger
from service.commands.models import CommandSource
from service.kafka.producer import OutRecord
from service.kafka.settings import KafkaSettings

RETENTION_MS = 100_000


class Producer:
    """Acknowledges everything at once."""

    def __init__(self) -> None:
        self.sent: list[OutRecord] = []

    async def send_all(self, records: list[OutRecord]) -> None:
        self.sent += records


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def entry(partition: int = 0) -> Entry:
    source = CommandSource(topic="ccc.commands.dial", partition=partition, offset=1)
    return Entry(state="started", source=source, action="DialEx")


def ledger(clock: Clock, warn_bytes: int = 1 << 30, retention_ms: int = RETENTION_MS) -> Ledger:
    return Ledger(
        Producer(),  # type: ignore[arg-type] # only send_all is used
        KafkaSettings(),
        "ccc.bridge.ledger",
        retention_ms=retention_ms,
        warn_bytes=warn_bytes,
        clock=clock,
    )


async def test_entries_past_retention_are_dropped_while_running() -> None:
    clock = Clock()
    kept = ledger(clock)
    await kept.write("old", entry(0))
    clock.now += 50
    await kept.write("newer", entry(1))
    await kept.write("rewritten", entry(0))
    clock.now += 40
    await kept.write("old-again-later", entry(0))
    await kept.write("rewritten", entry(0))  # written again: remembered from now
    clock.now += 60  # "old" is 150 s old, "newer" 100 s: both past 100 s
    assert kept.get(0, "old") is None
    assert kept.get(1, "newer") is None
    assert kept.get(0, "rewritten") == entry(0)
    assert kept.get(0, "old-again-later") == entry(0)
    assert kept.size() == 2


async def test_with_retention_forever_nothing_is_dropped() -> None:
    clock = Clock()
    kept = ledger(clock, retention_ms=-1)
    await kept.write("c-1", entry())
    clock.now += 10 * 365 * 24 * 3600
    assert kept.get(0, "c-1") == entry()


async def test_over_budget_it_warns_once_and_forgets_nothing() -> None:
    clock = Clock()
    kept = ledger(clock, warn_bytes=2_000)
    with capture_logs() as logs:
        for n in range(20):
            await kept.write(f"c-{n}", entry())
        assert [kept.get(0, f"c-{n}") is not None for n in range(20)] == [True] * 20
        clock.now += RETENTION_MS / 1000 + 1
        assert kept.get(0, "c-0") is None
    events = [log["event"] for log in logs]
    assert events == ["ledger_over_budget", "ledger_within_budget"]
    assert logs[0]["warn_bytes"] == 2_000
