"""The at-most-once decision as a table: every ledger state, this message or another, before
and after the command's deadline. No broker, no CCC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.commands.decision import (
    Decision,
    Duplicate,
    Execute,
    Expired,
    Interrupted,
    Replay,
    decide,
    interrupted,
)
from service.commands.ledger import Entry
from service.commands.models import CommandSource, DialEx
from tests.samples import command_result

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
THIS = CommandSource(topic="ccc.commands.dial", partition=0, offset=7)
OTHER = CommandSource(topic="ccc.commands.dial", partition=0, offset=9)
RAN = command_result(source=THIS)  # the result of THIS message's execution
STARTED = Entry(state="started", source=THIS, action="DialEx")
DONE = Entry(state="done", source=THIS, action="DialEx", result=RAN)


def dial(expires_at: datetime | None = None) -> DialEx:
    return DialEx(
        command_id="c-1",
        instance_id="ccc-demo",
        mode="dial_ex",
        caller="02180000000",
        callee="13900000000",
        answer_mode="ivr",
        route_point="ivr-1",
        expires_at=expires_at,
    )


PAST = NOW - timedelta(seconds=1)
FUTURE = NOW + timedelta(seconds=1)
SENT_MS = int((NOW - timedelta(seconds=60)).timestamp() * 1000)  # its Kafka timestamp

# (ledger entry, this message, expires_at, default expiry, what is decided)
TABLE: list[tuple[Entry | None, CommandSource, datetime | None, float | None, Decision]] = [
    (None, THIS, None, None, Execute()),
    (None, THIS, FUTURE, None, Execute()),
    (None, THIS, PAST, None, Expired()),
    (None, THIS, NOW, None, Expired()),  # the deadline itself is too late
    (None, THIS, None, 61.0, Execute()),  # sent 60 s ago, expires after 61
    (None, THIS, None, 60.0, Expired()),
    (None, THIS, FUTURE, 1.0, Execute()),  # its own deadline wins over the default
    (DONE, THIS, None, None, Replay(RAN)),
    (DONE, THIS, PAST, None, Replay(RAN)),  # ran before it expired: the same result again
    (DONE, OTHER, None, None, Duplicate(RAN.outcome())),
    (DONE, OTHER, PAST, 1.0, Duplicate(RAN.outcome())),  # a late copy still says duplicate
    (STARTED, THIS, None, None, Interrupted("DialEx")),
    (STARTED, THIS, PAST, None, Interrupted("DialEx")),
    (STARTED, OTHER, None, None, Duplicate(interrupted("DialEx", NOW))),
]


@pytest.mark.parametrize(("entry", "source", "expires_at", "default_s", "expected"), TABLE)
def test_the_decision_table(
    entry: Entry | None,
    source: CommandSource,
    expires_at: datetime | None,
    default_s: float | None,
    expected: Decision,
) -> None:
    decided = decide(
        entry, dial(expires_at), source, timestamp_ms=SENT_MS, now=NOW, default_expiry_s=default_s
    )
    assert decided == expected


def test_without_a_kafka_timestamp_the_default_expiry_cannot_apply() -> None:
    decided = decide(None, dial(), THIS, timestamp_ms=None, now=NOW, default_expiry_s=0.001)
    assert decided == Execute()


def test_an_interrupted_call_is_indeterminate_and_says_ccc_may_have_acted() -> None:
    outcome = interrupted("SendPredefinedShortMessage", NOW)
    assert outcome.status == "indeterminate"
    assert outcome.action == "SendPredefinedShortMessage"
    assert outcome.attempts == 1
    assert outcome.error is not None
    assert outcome.error.code == "Interrupted"
    assert outcome.completed_at == NOW
