"""The pure part of the event pipeline: diffs, ids, windows, cursors, conversions."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.ccc.catalog import load_catalog
from service.cloudevents import ID_NAMESPACE, Emitted, envelope, event_id, from_ms
from service.events.core import (
    BUCKET_MS,
    CallBook,
    CallsCursor,
    KnownState,
    Listing,
    call_record_event,
    call_step_events,
    checked_out,
    logout_event,
    normalized,
    skill_group_events,
    state_changes,
    state_log_events,
    windows,
)
from service.events.models import AgentStateChanged, AgentStateLogged

NOW = 1_790_000_000_000
CATALOG = load_catalog()


def diff_agent_states(
    instance_id: str,
    known: dict[str, KnownState] | None,
    rows: list[Any],
    now_ms: int,
    groups: dict[str, list[str]],
) -> tuple[list[Emitted], dict[str, KnownState]]:
    return state_changes(instance_id, known, rows, now_ms, groups)


def row(agent: str, state: str, duration_s: int = 5) -> Any:
    return SimpleNamespace(
        agent_id=agent,
        state=state,
        state_duration=str(duration_s),
        login_name=f"login-{agent}",
        agent_name=f"Name {agent}",
    )


def test_first_poll_is_a_snapshot_of_every_agent() -> None:
    events, known = diff_agent_states("i", None, [row("a", "Ready"), row("b", "Talking")], NOW, {})
    assert [e.data.snapshot for e in events] == [True, True]  # type: ignore[attr-defined]
    assert all(e.data.previous_state is None for e in events)  # type: ignore[attr-defined]
    assert known == {"a": KnownState("Ready", NOW - 5000), "b": KnownState("Talking", NOW - 5000)}
    again, _ = diff_agent_states("i", None, [row("a", "Ready")], NOW + 1, {})
    assert again[0].id != events[0].id  # a snapshot is an observation: a new one, a new id


def test_changes_and_agents_first_seen_from_an_unknown_state() -> None:
    known = {
        "a": KnownState("Ready", NOW - 60_000),
        "b": KnownState("Talking", NOW - 9_000),
        "d": KnownState("Offline", NOW - 90_000),  # seen to check out
    }
    rows = [row("a", "Ready", 60), row("b", "ACW", 2), row("c", "Ready", 1), row("d", "Ready", 3)]
    events, after = diff_agent_states("i", known, rows, NOW, {"b": ["sg-1"]})
    changes = [
        (e.data.agent_id, e.data.previous_state, e.data.state)  # type: ignore[attr-defined]
        for e in events
    ]
    # c was never seen: back from a quiet spell, or logged in unseen. Not called a login.
    assert changes == [("b", "Talking", "ACW"), ("c", None, "Ready"), ("d", "Offline", "Ready")]
    assert not any(e.data.snapshot for e in events)  # type: ignore[attr-defined]
    b = events[0].data
    assert isinstance(b, AgentStateChanged)
    assert b.skill_group_ids == ["sg-1"]
    assert b.state_since == from_ms(NOW - 2000)
    assert b.normalized_state == "acw"
    assert events[0].time == b.state_since
    assert after["a"] == known["a"]  # unchanged agents keep their first estimate
    gone, _ = diff_agent_states("i", after, [row("a", "Ready", 61)], NOW + 1000, {})
    assert gone == [], "absent agents are not thereby logged out"


def test_a_logout_is_read_from_check_outs_in_agent_events() -> None:
    rows = [
        SimpleNamespace(event="签入", event_time=NOW - 50_000, ram_id=7),
        SimpleNamespace(event="签出", event_time=NOW - 40_000, ram_id=7),
        SimpleNamespace(event="签出", event_time=NOW - 30_000, ram_id=7),
        SimpleNamespace(event="小休", event_time=NOW - 20_000, ram_id=8),
        SimpleNamespace(event=" 签出 ", event_time=None, ram_id=9),
    ]
    assert checked_out(rows) == {"7": NOW - 30_000}
    before = KnownState("Break", NOW - 60_000)
    event = logout_event("i", "7", (before, NOW - 30_000), NOW, {"7": ["sg-1"]})
    data = event.data
    assert isinstance(data, AgentStateChanged)
    assert (data.previous_state, data.state, data.normalized_state) == (
        "Break",
        "Offline",
        "offline",
    )
    assert data.state_since == from_ms(NOW - 30_000)
    assert not data.snapshot
    assert event.id == logout_event("i", "7", (before, NOW - 30_000), NOW + 9_000, {}).id


def test_a_listing_adds_up_only_with_one_total_no_repeats_and_every_row() -> None:
    def listing(*pages: tuple[int, list[str]]) -> Listing:
        read = Listing()
        for total, agents in pages:
            read.add((total, 1, 100), [row(a, "Ready") for a in agents])
        return read

    assert listing((3, ["a", "b"]), (3, ["c"])).complete()
    assert not listing((3, ["a", "b"]), (4, ["c"])).complete()  # the total moved
    assert not listing((3, ["a", "b"]), (3, ["b"])).complete()  # one seen twice, one missed
    assert not listing((3, ["a", "b"])).complete()  # a page never asked for
    assert listing((0, [])).complete()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("Ready", "ready"),
        ("等待", "ready"),
        ("BREAK", "break"),
        ("小休", "break"),
        ("ACW", "acw"),
        ("处理", "acw"),
        ("Dialing", "dialing"),
        ("Ringing", "ringing"),
        ("Talking", "talking"),
        ("通话", "talking"),
        ("Offline", "offline"),
        ("会议", "other"),
        ("Conference", "other"),
        ("HelpRequested", "other"),
        ("", "other"),
    ],
)
def test_states_are_normalized_with_other_for_anything_unknown(state: str, expected: str) -> None:
    assert normalized(state) == expected


def test_a_change_has_the_same_id_on_any_observer() -> None:
    known = {"b": KnownState("Talking", NOW - 9_000)}
    first, _ = diff_agent_states("i", known, [row("b", "ACW", 2)], NOW, {})
    # Another replica polls 400 ms later: same change, same second it began.
    second, _ = diff_agent_states("i", known, [row("b", "ACW", 2)], NOW + 400, {})
    assert first[0].id == second[0].id
    other, _ = diff_agent_states("i", known, [row("b", "Ready", 2)], NOW, {})
    assert other[0].id != first[0].id


def test_a_row_without_the_agent_id_is_refused_naming_the_field() -> None:
    nameless = SimpleNamespace(**{**vars(row("a", "Ready")), "agent_id": None})
    with pytest.raises(ValueError, match=r"^a CCC row without AgentId$"):
        state_changes("i", None, [nameless], NOW, {})


def log_entry(at: int, state: str, contact: str = "") -> Any:
    return SimpleNamespace(
        state_time=at,
        state=state,
        state_code="",
        contact_id=contact,
        connect_id=None,
        counter_party="",
        skill_group_ids="sg-1,sg-2",
    )


def test_state_log_entries_keep_order_and_distinct_ids() -> None:
    entries = [log_entry(NOW, "Ready"), log_entry(NOW, "Ringing", "c1"), log_entry(NOW, "Ready")]
    events = state_log_events("i", "a", entries)
    assert len({e.id for e in events}) == 3  # the repeated entry is told apart by its order
    data = events[1].data
    assert isinstance(data, AgentStateLogged)
    assert (data.state, data.contact_id, data.skill_group_ids) == (
        "Ringing",
        "c1",
        ["sg-1", "sg-2"],
    )
    assert [e.id for e in state_log_events("i", "a", entries)] == [e.id for e in events]


@given(
    start=st.integers(0, 10**13),
    length=st.integers(0, 10**7),
    max_ms=st.integers(1000, 10**7),
)
def test_windows_tile_the_range_without_gap_or_overlap(
    start: int, length: int, max_ms: int
) -> None:
    parts = windows(start, start + length, max_ms)
    assert sum(b - a for a, b in parts) == length
    assert all(0 < b - a <= max_ms for a, b in parts)
    assert all(parts[i][1] == parts[i + 1][0] for i in range(len(parts) - 1))
    if parts:
        assert (parts[0][0], parts[-1][1]) == (start, start + length)


def test_windows_refuse_a_zero_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        windows(0, 10, 0)


def cdr(contact: str, start: int, duration_s: int = 30) -> Any:
    return SimpleNamespace(contact_id=contact, start_time=start, duration=duration_s)


def ids(records: list[Any]) -> list[str]:
    return [record.contact_id for record in records]


def test_call_book_publishes_each_contact_once_and_counts_per_minute() -> None:
    book = CallBook()
    minute = NOW // BUCKET_MS
    first = [cdr("c1", NOW), cdr("c2", NOW + 1_000, duration_s=200)]
    assert ids(book.fresh(first)) == ["c1", "c2"]
    assert book.known(minute, minute + 1) == 0  # nothing counts before it is published
    for record in first:
        book.add(record)
    assert book.known(minute, minute + 1) == 2
    late = [*first, cdr("c3", NOW + 2_000)]  # queryable later, in the same minute
    assert ids(book.fresh(late)) == ["c3"]
    book.add(late[2])
    book.add(late[2])  # published twice (a retry) counts once
    assert book.known(minute, minute + 1) == 3
    assert book.known(minute + 1, minute + 2) == 0


def test_call_book_after_a_restart_skips_counted_minutes_and_republishes_grown_ones() -> None:
    before = CallBook()
    quiet = [cdr("q1", NOW), cdr("q2", NOW + 5_000)]
    busy = [cdr("b1", NOW + BUCKET_MS)]
    for record in [*quiet, *busy]:
        before.add(record)
    saved = before.cursor(NOW + 2 * BUCKET_MS).model_dump(exclude_none=True)
    after = CallBook(CallsCursor.model_validate(saved))
    assert after.fresh(quiet) == []  # as many as counted: the same ones
    grown = [*busy, cdr("b2", NOW + BUCKET_MS + 1_000)]
    # Which of the two is new is unknown: both go again, under their deterministic ids.
    assert ids(after.fresh(grown)) == ["b1", "b2"]
    for record in grown:
        after.add(record)
    assert after.fresh([*quiet, *grown]) == []
    assert after.known(NOW // BUCKET_MS, NOW // BUCKET_MS + 2) == 4


def test_call_book_forgets_minutes_that_left_the_look_back() -> None:
    book = CallBook()
    old, new = cdr("old", NOW), cdr("new", NOW + 3 * BUCKET_MS)
    book.add(old)
    book.add(new)
    book.forget(NOW // BUCKET_MS + 1)
    assert book.cursor(NOW).cells == [(NOW // BUCKET_MS + 3, 0, 1)]
    assert ids(book.fresh([old])) == ["old"]  # out of reach: no longer guarded


def test_call_book_rewound_counts_nothing_from_the_jump_on() -> None:
    book = CallBook()
    before, after = cdr("before", NOW), cdr("after", NOW + 3 * BUCKET_MS)
    book.add(before)
    book.add(after)
    book.rewind(NOW // BUCKET_MS + 1)  # CCC's clock went back to a minute after NOW
    assert book.cursor(NOW).cells == [(NOW // BUCKET_MS, 0, 1)]
    # A new call in the minutes CCC now stamps again is not taken for the one counted there.
    assert ids(book.fresh([cdr("again", NOW + 3 * BUCKET_MS)])) == ["again"]
    assert ids(book.fresh([before])) == []


def test_call_book_reads_the_earlier_checkpoint_format() -> None:
    legacy = CallsCursor.model_validate({"watermark_ms": NOW, "seen": {"c1": NOW}})
    book = CallBook(legacy)
    assert ids(book.fresh([cdr("c1", NOW), cdr("c2", NOW)])) == ["c2"]


def test_calls_checkpoint_of_50000_contacts_stays_far_under_a_kafka_message() -> None:
    lookback_min = 30
    book = CallBook()
    for n in range(50_000):
        start = NOW + (n * 36_000) % (lookback_min * BUCKET_MS)  # spread over 30 minutes
        book.add(cdr(f"job-{n:012d}@ccc-demo", start, duration_s=(n * 7) % 1_800))
    encoded = json.dumps(book.cursor(NOW).model_dump(exclude_none=True)).encode()
    assert sum(n for _, _, n in book.cursor(NOW).cells) == 50_000
    # A cell per start minute and length: at most 30 x 31 of them, whatever the call count.
    assert len(encoded) < 64 * 1024, len(encoded)


def test_call_record_and_steps_from_client_models() -> None:
    records = CATALOG["ListCallDetailRecords"].response_model.model_validate(
        {
            "CallDetailRecords": {
                "TotalCount": 1,
                "List": {
                    "CallDetailRecord": [
                        {
                            "ContactId": "c9",
                            "ContactType": "Inbound",
                            "ContactDisposition": "Success",
                            "CallingNumber": "138",
                            "CalledNumber": "021",
                            "StartTime": NOW,
                            "Duration": 94,
                            "AgentNames": "Wei Wang",
                            "SkillGroupIdList": "sg-1",
                            "SkillGroupNames": "Sales",
                            "Satisfaction": 5,
                            "Agents": {"CallDetailAgent": [{"AgentId": "a1"}]},
                            "Recordings": {"Recording": [{"FileName": "r.wav", "Duration": 90}]},
                        }
                    ]
                },
            }
        }
    )
    event = call_record_event("i", records.items()[0])
    record = event.data
    assert record.key() == "i:c9"
    assert event.time == from_ms(NOW)
    dumped = record.model_dump(mode="json")
    assert dumped["duration_s"] == 94
    assert dumped["agents"][0]["agent_id"] == "a1"
    assert dumped["skill_groups"] == [{"skill_group_id": "sg-1", "skill_group_name": "Sales"}]
    assert dumped["recordings"][0]["file_name"] == "r.wav"
    assert call_record_event("i", records.items()[0]).id == event.id
    steps = CATALOG["ListCallEventDetailByContactId"].response_model.model_validate(
        {"Data": {"Events": {"CallEventDetail": [{"Event": "Ring"}, {"Event": "Talk"}]}}}
    )
    step_events = call_step_events("i", "c9", steps.items(), event.time)
    assert [(e.data.seq, e.data.event) for e in step_events] == [(1, "Ring"), (2, "Talk")]  # type: ignore[attr-defined]
    assert len({e.id for e in step_events} | {event.id}) == 3


def test_skill_group_snapshot_and_envelope() -> None:
    rows = [
        SimpleNamespace(
            skill_group_id="sg-1",
            skill_group_name="Sales",
            logged_in_agents=4,
            ready_agents=1,
            talking_agents=2,
            working_agents=3,
            breaking_agents=1,
            waiting_calls=0,
            longest_call=None,
        )
    ]
    (event,) = skill_group_events("ccc-1", rows, NOW)
    cloud = envelope(event.data, event_id=event.id, region="cn-shanghai", time=event.time)
    body = cloud.model_dump(mode="json")
    assert body["source"] == "ccc://cn-shanghai/ccc-1"
    assert body["type"] == "com.aliyun.ccc.skillgroup.state"
    assert body["subject"] == "sg-1"
    assert body["time"].endswith("Z")
    assert body["dataschema"] == "urn:ccc-bridge:schema:com.aliyun.ccc.skillgroup.state:v1"
    assert body["data"]["longest_call_s"] == 0
    assert event.data.key() == "ccc-1:sg-1"


@given(st.lists(st.one_of(st.text(), st.integers(), st.none()), max_size=8))
def test_event_id_is_uuid5_of_the_joined_parts(parts: list[object]) -> None:
    expected = uuid.uuid5(ID_NAMESPACE, "|".join(str(p) for p in parts))
    assert event_id(*parts) == str(expected)
