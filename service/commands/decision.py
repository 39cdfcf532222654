"""The at-most-once decision: what to do with one valid command message, given what the
ledger holds for its command id and the clock. Pure: no Kafka, no CCC, no clock of its own.

| ledger entry for the id             | this message is...        | decision      |
|-------------------------------------|---------------------------|---------------|
| none, and the command expired       | -                         | Expired       |
| none                                | -                         | Execute       |
| done                                | the one that ran it       | Replay        |
| done                                | another                   | Duplicate     |
| started (no outcome: a crash mid-call) | the one that started it | Interrupted   |
| started                             | another                   | Duplicate     |

Replay and Interrupted answer a message read again after a crash: the first with the result
already in the ledger, the second with `indeterminate`, since CCC may or may not have acted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.commands.ledger import Entry
from service.commands.models import Command, CommandError, CommandResult, CommandSource, Outcome


@dataclass(frozen=True, slots=True)
class Execute:
    """Never seen: write `started`, call CCC, write `done`, publish the result."""


@dataclass(frozen=True, slots=True)
class Expired:
    """Never seen and past its deadline: answered `expired`, CCC not called."""


@dataclass(frozen=True, slots=True)
class Replay:
    """This very message ran, and its result is in the ledger: publish it again, same id."""

    result: CommandResult


@dataclass(frozen=True, slots=True)
class Interrupted:
    """This very message was mid-call when its worker died: answered `indeterminate`."""

    action: str | None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Another message of the same command id ran (or is running): answered `duplicate`,
    with what is known of the original's outcome."""

    original: Outcome


Decision = Execute | Expired | Replay | Interrupted | Duplicate


def decide(  # noqa: PLR0913 - the facts the decision rests on, by keyword
    entry: Entry | None,
    command: Command,
    source: CommandSource,
    *,
    timestamp_ms: int | None,
    now: datetime,
    default_expiry_s: float | None,
) -> Decision:
    """`timestamp_ms` is the message's Kafka timestamp: commands without `expires_at` expire
    `default_expiry_s` after it (never, when that is None)."""
    if entry is None:
        if _expired(command, timestamp_ms, now, default_expiry_s):
            return Expired()
        return Execute()
    if entry.result is not None:
        if entry.result.source == source:
            return Replay(entry.result)
        return Duplicate(entry.result.outcome())
    if entry.source == source:
        return Interrupted(entry.action)
    return Duplicate(interrupted(entry.action, now))


def interrupted(action: str | None, at: datetime) -> Outcome:
    """The outcome of a call cut off by a crash: nobody can tell whether CCC acted."""
    return Outcome(
        status="indeterminate",
        action=action,
        error=CommandError(
            code="Interrupted",
            message="the worker stopped during the CCC call: CCC may or may not have acted",
        ),
        attempts=1,
        completed_at=at,
    )


def _expired(
    command: Command, timestamp_ms: int | None, now: datetime, default_expiry_s: float | None
) -> bool:
    deadline = command.expires_at
    if deadline is None and default_expiry_s is not None and timestamp_ms is not None:
        deadline = datetime.fromtimestamp(timestamp_ms / 1000, UTC) + timedelta(
            seconds=default_expiry_s
        )
    return deadline is not None and deadline <= now
