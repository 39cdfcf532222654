"""What `checkpoints show` prints of each checkpoint, the values `checkpoints reset` writes
(ones the pollers load), and the times the operator's commands accept."""

from __future__ import annotations

import argparse

import pytest

from service.console import instant
from service.events.checkpoints import backfill_key, position, reset_value
from service.events.core import BUCKET_MS, CallBook, CallsCursor
from service.events.tracking import Tracker

AT = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def test_times_need_an_offset() -> None:
    assert instant("2024-05-01T00:00:00Z") == AT
    assert instant("2024-05-01T08:00:00+08:00") == AT
    assert instant("2024-05-01T00:00:00.250Z") == AT + 250
    with pytest.raises(argparse.ArgumentTypeError, match="no offset"):
        instant("2024-05-01T00:00:00")
    with pytest.raises(argparse.ArgumentTypeError, match="not an RFC 3339 time"):
        instant("yesterday")


def test_positions_read_as_times() -> None:
    calls = position("ccc-a:calls", {"watermark_ms": AT, "cells": [[1, 0, 3], [2, 1, 2]]})
    assert (calls.instance_id, calls.stream) == ("ccc-a", "calls")
    assert calls.detail == "polled to 2024-05-01T00:00:00Z, 5 records counted in the look-back"
    logs = position(
        "ccc-a:agent-state-logs",
        {"watermark_ms": AT, "net_ms": AT + 60_000, "behind_ms": {"1": 5_000, "2": 3_600_000}},
    )
    assert logs.detail == (
        "most agents done to 2024-05-01T00:00:00Z, events looked at to 2024-05-01T00:01:00Z, "
        "2 agents behind (the furthest at 2024-04-30T23:00:00Z)"
    )
    key = backfill_key("ccc-a", "calls", (AT, AT + 4 * 3_600_000))
    half = position(key, {"done_ms": AT + 3_600_000, "published": 7})
    assert half.stream == "backfill calls 2024-05-01T00:00:00Z..2024-05-01T04:00:00Z"
    assert half.detail == "done to 2024-05-01T01:00:00Z (25%), 7 calls published"
    assert position(key, {"done_ms": AT + 4 * 3_600_000}).detail.startswith("complete, 0 calls")


def test_a_value_this_service_did_not_write_says_so() -> None:
    assert position("ccc-a:calls", {"cells": []}).detail.startswith("unreadable")
    assert position("ccc-a:agent-state-logs", {}).detail.startswith("unreadable")
    assert position("ccc-a:backfill:calls:x:y", {"done_ms": 1}).detail.startswith("unreadable")
    assert position("ccc-a:skill_groups", {}).detail == "unknown stream"


def test_a_calls_reset_forgets_what_was_published_from_then_on() -> None:
    minute = AT // BUCKET_MS
    saved = CallsCursor(watermark_ms=AT + 600_000, cells=[(minute, 0, 2), (minute + 5, 1, 3)])
    value = reset_value("calls", saved.model_dump(), AT + 5 * BUCKET_MS)
    cursor = CallsCursor.model_validate(value)  # as the calls poller loads it
    assert cursor == CallsCursor(watermark_ms=AT + 5 * BUCKET_MS, cells=[(minute, 0, 2)])
    assert CallBook(cursor).known(minute, minute + 10) == 2
    assert reset_value("calls", None, AT) == {"watermark_ms": AT, "cells": []}


def test_a_state_log_reset_starts_every_agent_there() -> None:
    tracker = Tracker(unlisted_ms=60_000, spacing_s=1.0)
    tracker.load(reset_value("agent-state-logs", {"watermark_ms": AT * 2}, AT), 0)
    tracker.sync(["1", "2"])
    assert tracker.position_ms == AT
    assert tracker.checkpoint() == {"watermark_ms": AT, "net_ms": AT, "behind_ms": {}}
