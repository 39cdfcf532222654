"""The state-log tracker: which agents to read, from what the listings and the net show."""

from __future__ import annotations

import json

from service.events.tracking import MARGIN_MS, REWIND_FLOOR_MS, Tracker, rewound

T0 = 1_790_000_000_000
SPACING_S = 20.0


def tracker(*agents: str, listings: bool = True) -> Tracker:
    tracked = Tracker(unlisted_ms=30_000, spacing_s=SPACING_S, listings=listings)
    tracked.load(None, T0)
    tracked.sync(agents)
    return tracked


def seen(since_ms: int, at_ms: int) -> tuple[int, int]:
    """A listing's row as the tracker takes it: when its state began, when it was read."""
    return (since_ms, at_ms)


def due(tracked: Tracker, end_ms: int, now: float = 0.0) -> list[str]:
    tracked.advance(end_ms)
    return [agent for agent, _ in tracked.due(end_ms, now)]


def test_a_new_state_is_read_once_and_an_unchanged_agent_never() -> None:
    tracked = tracker("a", "b")
    at = T0 + 10_000
    # Both in their state since before the start: nothing to read, both done to the listing.
    tracked.listing(
        at,
        {"a": seen(T0 - 60_000, at), "b": seen(T0 - 60_000, at)},
        complete=True,
    )
    assert due(tracked, at) == []
    at2 = at + 5_000
    tracked.listing(
        at2,
        {"a": seen(at2 - 1_000, at2), "b": seen(T0 - 60_000, at2)},
        complete=True,
    )
    assert due(tracked, at2 + 3_000) == ["a"]
    tracked.read("a", at2 + 3_000, now=0.0)
    assert due(tracked, at2 + 3_000) == []
    # b moved up with its listings, minus the margin for whole-second durations.
    assert tracked.checkpoint()["watermark_ms"] >= at2 - MARGIN_MS


def test_a_round_trip_to_the_same_state_shows_in_its_duration() -> None:
    tracked = tracker("a")
    at = T0 + 10_000
    tracked.listing(at, {"a": seen(T0 - 60_000, at)}, complete=True)
    assert due(tracked, at) == []
    at2 = at + 10_000
    # Ready -> Busy -> Ready between two listings: same state, but it began after the last.
    tracked.listing(at2, {"a": seen(at2 - 2_000, at2)}, complete=True)
    assert due(tracked, at2 + MARGIN_MS) == ["a"]


def test_a_changed_agent_is_read_at_most_once_per_spacing() -> None:
    tracked = tracker("a")
    at = T0 + 10_000
    tracked.listing(at, {"a": seen(at - 1_000, at)}, complete=True)
    assert due(tracked, at + MARGIN_MS, now=100.0) == ["a"]
    tracked.read("a", at + MARGIN_MS, now=100.0)
    at2 = at + 4_000
    tracked.listing(at2, {"a": seen(at2 - 1_000, at2)}, complete=True)
    assert due(tracked, at2 + MARGIN_MS, now=100.0 + SPACING_S / 2) == []
    assert due(tracked, at2 + MARGIN_MS, now=100.0 + SPACING_S) == ["a"]


def test_an_agent_gone_from_a_complete_listing_is_read_but_not_from_an_incomplete_one() -> None:
    tracked = tracker("a", "b")
    at = T0 + 10_000
    both = {"a": seen(T0 - 60_000, at), "b": seen(T0 - 60_000, at)}
    tracked.listing(at, both, complete=True)
    at2 = at + 2_000
    tracked.listing(at2, {"a": seen(T0 - 60_000, at2)}, complete=False)
    assert due(tracked, at2 + MARGIN_MS) == []  # maybe on a page that moved
    at3 = at2 + 2_000
    tracked.listing(at3, {"a": seen(T0 - 60_000, at3)}, complete=True)
    assert due(tracked, at3 + MARGIN_MS) == ["b"]


def test_an_unlisted_agent_moves_only_as_far_as_the_net_looked_and_its_events_count() -> None:
    tracked = tracker("a")
    at = T0 + 10_000
    tracked.listing(at, {}, complete=True)  # never listed: quiet for 4 hours, or logged out
    tracked.net_ms = T0 + 5_000
    assert due(tracked, at) == []
    assert tracked.checkpoint()["watermark_ms"] == T0 + 5_000
    # A login and logout between two listings: only the net sees it.
    tracked.event("a", T0 + 7_000)
    tracked.net_ms = at
    assert due(tracked, at) == ["a"]
    assert tracked.due(at, 0.0) == [("a", T0 + 5_000)]  # read from where it was done


def test_without_listings_the_net_alone_moves_every_agent() -> None:
    tracked = tracker("a", "b", listings=False)
    tracked.net_ms = T0 + 60_000
    tracked.event("b", T0 + 30_000)
    assert due(tracked, T0 + 60_000) == ["b"]
    tracked.read("b", T0 + 60_000, now=0.0)
    assert tracked.checkpoint()["watermark_ms"] == T0 + 60_000


def test_the_checkpoint_keeps_agents_behind_the_median_and_a_restart_resumes_each() -> None:
    tracked = tracker("a", "b", "c")
    at = T0 + 50_000 + MARGIN_MS
    tracked.listing(at, {a: seen(T0 - 60_000, at) for a in ("a", "b", "c")}, complete=True)
    tracked.event("c", T0 + 1_000)
    tracked.net_ms = T0 + 50_000
    tracked.advance(T0 + 50_000)
    saved = json.loads(json.dumps(tracked.checkpoint()))
    assert saved["watermark_ms"] == T0 + 50_000
    assert saved["behind_ms"] == {"c": 50_000}  # c has a change not read yet
    assert tracked.behind_ms(T0 + 60_000) == 60_000

    restarted = Tracker(unlisted_ms=30_000, spacing_s=SPACING_S)
    restarted.load(saved, T0 + 99_000)
    restarted.sync(["a", "b", "c", "d"])
    # After a restart the first listing decides; with none yet the rows cannot tell.
    at = T0 + 70_000
    rows = {agent: seen(T0 - 60_000, at) for agent in ("a", "b", "c", "d")}
    restarted.net_ms = T0 + 50_000
    restarted.suspect(["c"], T0 + 50_000)  # what the restart's net would find for c
    restarted.listing(at, rows, complete=True)
    assert restarted.due(at, 0.0) == [("c", T0)]
    assert due(restarted, at) == ["c"]


def test_a_state_the_last_read_covered_is_not_read_again() -> None:
    tracked = tracker("a")
    at = T0 + 10_000
    tracked.listing(at, {"a": seen(at - 1_000, at)}, complete=True)
    tracked.listing(at + 2_000, {"a": seen(at - 1_000, at + 2_000)}, complete=True)  # same spell
    # Due once the read can cover the change: it began at most MARGIN_MS after its estimate.
    assert due(tracked, at - 1_000 + MARGIN_MS - 1) == []
    end = at - 1_000 + MARGIN_MS
    assert due(tracked, end) == ["a"]
    tracked.read("a", end + 1_000, now=0.0)
    # Listed again in the same spell, its start now read: nothing, whatever the spacing.
    tracked.listing(at + 4_000, {"a": seen(at - 1_000, at + 4_000)}, complete=True)
    assert due(tracked, at + 4_000, now=1_000.0) == []
    # A new spell that began after the read's end is a change.
    tracked.listing(at + 6_000, {"a": seen(end + 1_500, at + 6_000)}, complete=True)
    assert due(tracked, at + 6_000, now=1_000.0) == ["a"]


def test_a_clock_behind_what_is_done_reads_again_from_before_the_jump() -> None:
    tracked = tracker("a")
    at = T0 + 3_600_000
    tracked.listing(at, {"a": seen(T0 - 60_000, at)}, complete=True)
    assert due(tracked, at) == []
    assert rewound(tracked.position_ms, at - MARGIN_MS, age_s=1.0) is None  # a second's skew
    # CCC's clock is back at T0 + 10 s, its checkpoint two hours old on ours.
    now = T0 + 10_000
    again = rewound(tracked.position_ms, now, age_s=7200.0)
    assert again == now - 7_200_000 - MARGIN_MS
    # However recent the checkpoint, at least the floor is read again.
    assert rewound(tracked.position_ms, now, age_s=1.0) == now - REWIND_FLOOR_MS - MARGIN_MS
    tracked.rewind(now - 60_000)
    assert tracked.position_ms == now - 60_000
    # A state begun after the jump (before what was done) is read again, from the rewind.
    tracked.listing(now, {"a": seen(now - 5_000, now)}, complete=True)
    assert tracked.due(now + MARGIN_MS, 0.0) == [("a", now - 60_000)]
