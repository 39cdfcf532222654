"""The emulator at scale, over real HTTP: per-action stats, quiesce, and how many RamIds one
ListAgentEvents request can carry. Requests travel as this project's client sends them: every
parameter in a form body."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from service.ccc.signing import form_encode
from service.emulator.config import DEFAULT_ACCESS_KEY_SECRET, EmulatorConfig
from service.emulator.gateway import CLIENT_MAX_SIZE
from service.emulator.server import EmulatorServer
from tests.component.test_emulator_gateway import common_params, signed
from tests.inspection import fault, inspect
from tests.unit.test_sim import ms

INSTANCE = "ccc-a"  # conftest's emulator_config
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LOGIN_S = 61  # simulated agents all log in within a minute of the start
RAM_ID = 1_234_567_890_123_456  # the emulator's RamIds have 16 digits


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def form(action: str, api: dict[str, str], secret: str = DEFAULT_ACCESS_KEY_SECRET) -> bytes:
    return form_encode(signed("POST", common_params(action) | api, secret))


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bytes]:
    async with http.post(url, data=io.BytesIO(body), headers=FORM) as resp:
        return resp.status, await resp.read()


async def control(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> dict[str, Any]:
    async with http.request(method, url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def advance(http: aiohttp.ClientSession, emulator: EmulatorServer, seconds: float) -> None:
    await control(http, "POST", f"{emulator.url}/_emulator/clock", {"advance_s": seconds})


async def test_stats_count_every_request_by_action_and_outcome(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    stats_url = f"{emulator.url}/_emulator/stats"
    await advance(http, emulator, LOGIN_S)
    await post(http, emulator.url, form("GetInstance", {"InstanceId": INSTANCE}))  # reset away
    reset = await control(http, "DELETE", stats_url)
    page = {"InstanceId": INSTANCE, "PageNumber": "1", "PageSize": "100"}
    long_ago = {"StartTime": "1", "StopTime": "2"}
    sent = [
        ("ListAgentStates", form("ListAgentStates", page)),
        ("ListAgentStates", form("ListAgentStates", page, secret="wrong")),
        ("ListCallDetailRecords", form("ListCallDetailRecords", page | long_ago)),
        ("ListCallDetailRecords", form("ListCallDetailRecords", page | {"InstanceId": "nope"})),
        ("GetInstance", form("GetInstance", {"InstanceId": INSTANCE})),
    ]
    answers = [(action, *await post(http, emulator.url, body)) for action, body in sent]
    await fault(emulator, action="GetInstance", throttle_rate=1)
    throttled = await post(http, emulator.url, form("GetInstance", {"InstanceId": INSTANCE}))
    answers.append(("GetInstance", *throttled))

    stats = await control(http, "GET", stats_url)
    log = (await inspect(emulator, "requests"))[-len(answers) :]

    codes = [json.loads(body)["Code"] for _, _, body in answers]
    assert codes == [
        "OK",
        "SignatureDoesNotMatch",
        "OK",
        "NotExists.InstanceId",
        "OK",
        "Throttling.User",
    ]
    listed = len(json.loads(answers[0][2])["Data"]["List"]["RealTimeAgentState"])
    assert listed > 0

    def size(action: str) -> int:
        return sum(len(body) for name, _, body in answers if name == action)

    assert stats == {
        "since": reset["since"],
        "actions": {
            "GetInstance": {
                "calls": 2,
                "ok": 1,
                "empty": 0,
                "items": 1,
                "bytes": size("GetInstance"),
                "errors": {"Throttling.User": 1},
            },
            "ListAgentStates": {
                "calls": 2,
                "ok": 1,
                "empty": 0,
                "items": listed,
                "bytes": size("ListAgentStates"),
                "errors": {"SignatureDoesNotMatch": 1},
            },
            "ListCallDetailRecords": {
                "calls": 2,
                "ok": 1,
                "empty": 1,
                "items": 0,
                "bytes": size("ListCallDetailRecords"),
                "errors": {"NotExists.InstanceId": 1},
            },
        },
    }
    items = [listed, 0, 0, 0, 1, 0]  # what each answer held; 0 for an error
    assert [(e["code"], e["items"], e["bytes"]) for e in log] == [
        (code, n, len(body)) for code, n, (_, _, body) in zip(codes, items, answers, strict=True)
    ]
    again = await control(http, "DELETE", stats_url)
    assert again["actions"] == {}
    assert again["since"] >= reset["since"]


async def test_quiesce_logs_everyone_out_and_the_histories_stop_growing(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    await advance(http, emulator, 10 * 60)

    answer = await control(http, "POST", f"{emulator.url}/_emulator/quiesce")
    await advance(http, emulator, 30 * 60)  # every call, its after-call work and record done
    listings = ("agents", "calls", "history/agent-states", "history/calls")
    settled = [await inspect(emulator, what) for what in listings]
    await advance(http, emulator, 60 * 60)
    later = [await inspect(emulator, what) for what in listings]
    status, body = await post(http, emulator.url, form("ListAgentStates", {"InstanceId": INSTANCE}))

    assert list(answer) == ["quiesced_at"]
    agents, calls, history, _ = later
    assert {a["state"] for a in agents} == {"Offline"}
    assert later == settled
    assert all(ms(c["at"]) < answer["quiesced_at"] for c in calls)
    # Whoever moved after it ended logged out: at once, or after finishing a call.
    last = {h["agent_id"]: h["state"] for h in history if ms(h["at"]) >= answer["quiesced_at"]}
    assert last
    assert set(last.values()) == {"Offline"}
    assert status == 200
    assert json.loads(body)["Data"]["TotalCount"] == 0


async def test_list_agent_events_answers_a_thousand_ram_ids(http: aiohttp.ClientSession) -> None:
    config = EmulatorConfig(instances=(INSTANCE,), agents=1000, seed=3)
    async with EmulatorServer(config) as emulator:
        await advance(http, emulator, LOGIN_S)
        ram_ids = [a["agent_id"] for a in await inspect(emulator, "agents")]
        api = {f"RamId.{n}": ram_id for n, ram_id in enumerate(ram_ids, start=1)}

        status, body = await post(
            http, emulator.url, form("ListAgentEvents", api | {"InstanceId": INSTANCE})
        )
        [logged] = await inspect(emulator, "requests")

    events = json.loads(body)["AgentEventList"]["AgentEvent"]
    assert status == 200
    assert len(ram_ids) == 1000
    assert {str(e["RamId"]) for e in events} == set(ram_ids)  # each checked in: 签入
    assert (logged["code"], logged["items"], logged["bytes"]) == ("OK", len(events), len(body))


async def test_a_form_body_holds_some_36_500_ram_ids_and_no_more(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    """One byte over CLIENT_MAX_SIZE is refused before the gateway reads a parameter."""

    def body(count: int) -> bytes:
        api = {f"RamId.{n}": str(RAM_ID + n) for n in range(1, count + 1)}
        return form("ListAgentEvents", api | {"InstanceId": INSTANCE})

    # Each `&RamId.N=<16 digits>` adds 24 bytes and N's digits; the signature's length varies.
    count = 0
    total = len(body(0))
    while total + 24 + len(str(count + 1)) <= CLIENT_MAX_SIZE:
        count += 1
        total += 24 + len(str(count))
    while len(fits := body(count)) > CLIENT_MAX_SIZE:
        count -= 1
    too_big = body(count + 1)

    accepted = await post(http, emulator.url, fits)
    refused = await post(http, emulator.url, too_big)
    stats = await control(http, "GET", f"{emulator.url}/_emulator/stats")

    assert 36_400 < count < 36_600, count
    assert len(too_big) > CLIENT_MAX_SIZE
    assert (accepted[0], json.loads(accepted[1])["Code"]) == (404, "NotExists.RamId")  # parsed
    assert refused[0] == 413
    assert stats["actions"]["ListAgentEvents"]["errors"] == {"NotExists.RamId": 1}
    # The Action travelled in the body, which was never read.
    assert stats["actions"][""]["errors"] == {"RequestEntityTooLarge": 1}
