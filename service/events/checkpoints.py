"""What the checkpoints topic holds, read and written by an operator (`ccc-bridge checkpoints`,
`ccc-bridge backfill`): the keys, a readable line per checkpoint, and the value a reset
writes. Pure: the commands do the Kafka I/O.

Keys: `{instance}:calls` and `{instance}:agent-state-logs` are the live pollers'
(service/events/pollers.py); `{instance}:backfill:{stream}:{from_ms}:{to_ms}` is a backfill's
progress, a key of its own so a backfill never moves the live ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from service.cloudevents import from_ms
from service.events.core import BUCKET_MS, CallBook, CallsCursor
from service.events.tracking import Tracker

Stream = Literal["calls", "agent-state-logs"]
STREAMS: tuple[Stream, ...] = get_args(Stream)
BACKFILL = "backfill"


def shown(at_ms: int) -> str:
    """A CCC time as operators read it: RFC 3339 UTC, to the second."""
    return from_ms(at_ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def unit(stream: str) -> str:
    """What a backfill of `stream` counts."""
    return "calls" if stream == "calls" else "state-log entries"


def live_key(instance_id: str, stream: Stream) -> str:
    return f"{instance_id}:{stream}"


def backfill_key(instance_id: str, stream: Stream, span: tuple[int, int]) -> str:
    return f"{instance_id}:{BACKFILL}:{stream}:{span[0]}:{span[1]}"


class BackfillProgress(BaseModel):
    """A backfill's checkpoint: its span is done up to `done_ms`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    done_ms: int
    published: int = 0  # calls or state-log entries published so far


@dataclass(frozen=True)
class Position:
    """One checkpoint as `checkpoints show` prints it."""

    instance_id: str
    stream: str
    detail: str


def position(key: str, value: Mapping[str, Any]) -> Position:
    """What the checkpoint under `key` says; a value this service did not write says so."""
    instance_id, _, stream = key.partition(":")
    try:
        if stream == "calls":
            return Position(instance_id, stream, _calls(CallsCursor.model_validate(value)))
        if stream == "agent-state-logs":
            return Position(instance_id, stream, _state_logs(value))
        kind, *rest = stream.split(":")
        if kind == BACKFILL and len(rest) == 3 and rest[0] in STREAMS:
            span = (int(rest[1]), int(rest[2]))
            name = f"{BACKFILL} {rest[0]} {shown(span[0])}..{shown(span[1])}"
            return Position(instance_id, name, _backfill(span, value, rest[0]))
    except (ValidationError, ValueError, KeyError, TypeError, AttributeError):
        return Position(instance_id, stream, "unreadable (not written by this version)")
    return Position(instance_id, stream, "unknown stream")


def _calls(cursor: CallsCursor) -> str:
    counted = sum(seen for _, _, seen in cursor.cells)
    return f"polled to {shown(cursor.watermark_ms)}, {counted} records counted in the look-back"


def _state_logs(value: Mapping[str, Any]) -> str:
    watermark, net = int(value["watermark_ms"]), int(value.get("net_ms", value["watermark_ms"]))
    behind: Mapping[str, Any] = value.get("behind_ms", {})
    line = f"most agents done to {shown(watermark)}, events looked at to {shown(net)}"
    if behind:
        furthest = watermark - max(int(lag) for lag in behind.values())
        line += f", {len(behind)} agents behind (the furthest at {shown(furthest)})"
    return line


def _backfill(span: tuple[int, int], value: Mapping[str, Any], stream: str) -> str:
    progress = BackfillProgress.model_validate(value)
    if progress.done_ms >= span[1]:
        state = "complete"
    else:
        share = (progress.done_ms - span[0]) / max(1, span[1] - span[0])
        state = f"done to {shown(progress.done_ms)} ({share:.0%})"
    return f"{state}, {progress.published} {unit(stream)} published"


def reset_value(stream: Stream, saved: Mapping[str, Any] | None, to_ms: int) -> dict[str, Any]:
    """The checkpoint that makes the live stream go on from `to_ms`.

    calls: the poller always reads its look-back again; what it published from `to_ms` on is
    forgotten, so it comes again (same ids). agent-state-logs: every agent, and the net that
    looks for changes, start at `to_ms`: earlier goes back (published again, same ids), later
    skips what lies between."""
    if stream == "calls":
        book = CallBook(CallsCursor.model_validate(saved) if saved else None)
        book.rewind(to_ms // BUCKET_MS)
        return book.cursor(to_ms).model_dump(exclude_none=True)
    tracker = Tracker(unlisted_ms=0, spacing_s=0)  # neither is part of a checkpoint
    tracker.load(None, to_ms)  # as a first start from `to_ms` would
    return tracker.checkpoint()
