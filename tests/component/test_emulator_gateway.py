"""The emulator's gateway over real HTTP, with requests signed here from service.ccc.signing
alone, so the gateway is tested independently of the project's CCC client."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from service.ccc.catalog import API_VERSION
from service.ccc.signing import sign, string_to_sign
from service.emulator.config import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from service.emulator.gateway import NonceStore
from service.emulator.server import EmulatorServer
from tests.inspection import eventually, fault, inspect

REPO = Path(__file__).resolve().parents[2]
INSTANCE = "ccc-a"
BEARER_TOKEN = "emulator-bearer-token"  # conftest's emulator_config
STS_KEY_ID, STS_SECRET, STS_TOKEN = "sts-access-key", "sts-access-secret", "sts-security-token"
GATEWAY_ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}
DIAL = {
    "InstanceId": INSTANCE,
    "Caller": "02160000001",
    "Callee": "13800000001",
    "RoutPoint": "Main menu",
    "AnswerMode": "0",  # to the IVR: no agent needs to be free
}
WAIT_S = 10.0
LOGIN_S = 61  # simulated agents all log in within a minute of the start


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        yield session


def timestamp(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def common_params(action: str, **overrides: str) -> dict[str, str]:
    """What a V1 client sends besides the API's own parameters; overrides may replace any."""
    params = {
        "Action": action,
        "Version": API_VERSION,
        "Format": "JSON",
        "AccessKeyId": DEFAULT_ACCESS_KEY_ID,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": timestamp(),
    }
    params.update(overrides)
    return params


def signed(method: str, params: Mapping[str, str], secret: str) -> dict[str, str]:
    return {**params, "Signature": sign(string_to_sign(method, dict(params)), secret)}


async def send(
    http: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str],
    *,
    method: str = "POST",
    in_body: frozenset[str] = frozenset(),
) -> Reply:
    """Send `params` as given: names in `in_body` go in a form body, the rest in the query."""
    query = {k: v for k, v in params.items() if k not in in_body}
    form = {k: v for k, v in params.items() if k in in_body} or None
    async with http.request(method, url, params=query, data=form) as resp:
        return Reply(resp.status, resp.headers, await resp.json())


async def rpc(
    http: aiohttp.ClientSession,
    emulator: EmulatorServer,
    action: str,
    api: dict[str, str],
    *,
    secret: str = DEFAULT_ACCESS_KEY_SECRET,
    **common: str,
) -> Reply:
    """A correctly signed POST with every parameter in the query, as the core SDK sends."""
    return await send(
        http, emulator.url, signed("POST", common_params(action, **common) | api, secret)
    )


async def post_json(
    http: aiohttp.ClientSession, emulator: EmulatorServer, path: str, body: Any
) -> Reply:
    async with http.post(f"{emulator.url}/_emulator/{path}", json=body) as resp:
        return Reply(resp.status, resp.headers, await resp.json())


async def dials(emulator: EmulatorServer) -> list[dict[str, Any]]:
    """The DialEx calls the emulator placed, leaving out the simulated inbound traffic."""
    return [call for call in await inspect(emulator, "calls") if call["action"] == "DialEx"]


def assert_gateway_error(reply: Reply, status: int, code: str) -> str:
    """Check an Alibaba gateway error body and give back its message."""
    assert (reply.status, reply.body["Code"]) == (status, code), reply.body
    assert set(reply.body) == GATEWAY_ERROR_KEYS
    assert reply.body["HostId"] == "ccc.cn-shanghai.aliyuncs.com"
    request_id = reply.body["RequestId"]
    assert reply.body["Recommend"] == (
        f"https://api.aliyun.com/troubleshoot?q={code}&product=CCC&requestId={request_id}"
    )
    return str(reply.body["Message"])


def assert_ok(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    assert (body["Success"], body["Code"], body["Message"], body["HttpStatusCode"]) == (
        True,
        "OK",
        "",
        200,
    )
    assert body["RequestId"] == str(uuid.UUID(body["RequestId"])).upper()
    return body


# --- transport and signature ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "in_body", "extra"),
    [
        pytest.param(
            "GET", frozenset(), {"SignatureType": "", "RegionId": "cn-shanghai"}, id="core-get"
        ),
        pytest.param("POST", frozenset(), {"SignatureType": ""}, id="core-post-query"),
        pytest.param(
            "POST", frozenset({"InstanceId", "PageSize"}), {"Format": "json"}, id="tea-form"
        ),
    ],
)
async def test_signed_request_succeeds_however_parameters_travel(
    http: aiohttp.ClientSession,
    emulator: EmulatorServer,
    method: str,
    in_body: frozenset[str],
    extra: dict[str, str],
) -> None:
    emulator.clock.advance(LOGIN_S)
    params = common_params("ListAgentStates", **extra) | {"InstanceId": INSTANCE, "PageSize": "5"}
    reply = await send(
        http,
        emulator.url,
        signed(method, params, DEFAULT_ACCESS_KEY_SECRET),
        method=method,
        in_body=in_body,
    )

    body = assert_ok(reply)
    assert len(body["Data"]["List"]["RealTimeAgentState"]) == min(5, body["Data"]["TotalCount"])
    assert body["Data"]["TotalCount"] > 0


async def test_form_body_wins_over_query_on_a_clash(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    params = signed(
        "POST", common_params("GetInstance") | {"InstanceId": INSTANCE}, DEFAULT_ACCESS_KEY_SECRET
    )
    url = f"{emulator.url}/?InstanceId=ccc-b"
    async with http.post(url, params=params, data={"InstanceId": INSTANCE}) as resp:
        body = await resp.json()

    # Signed over InstanceId=ccc-a, and the body's ccc-a is the one that counts.
    assert resp.status == 200, body
    assert body["Instance"]["InstanceId"] == INSTANCE


async def test_bad_signature_reports_the_server_string_to_sign(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    params = common_params("GetInstance", SignatureType="") | {"InstanceId": INSTANCE}
    reply = await send(http, emulator.url, signed("POST", params, "wrong-secret"))

    message = assert_gateway_error(reply, 400, "SignatureDoesNotMatch")
    assert message.startswith("Specified signature is not matched with our calculation.")
    assert message.split("is:", 1)[1] == string_to_sign("POST", params)


async def test_signature_covers_the_http_method(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    params = common_params("GetInstance") | {"InstanceId": INSTANCE}
    reply = await send(
        http, emulator.url, signed("GET", params, DEFAULT_ACCESS_KEY_SECRET), method="POST"
    )

    assert_gateway_error(reply, 400, "SignatureDoesNotMatch")


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"AccessKeyId": "no-such-key"}, "InvalidAccessKeyId.NotFound"),
        ({"Timestamp": timestamp(-16 * 60)}, "InvalidTimeStamp.Expired"),
        ({"Timestamp": timestamp(+16 * 60)}, "InvalidTimeStamp.Expired"),
        ({"Timestamp": "2024/01/01 00:00:00"}, "InvalidTimeStamp.Format"),
        ({"SignatureMethod": "HMAC-SHA256"}, "InvalidSignatureMethod"),
    ],
)
async def test_refused_before_the_signature_is_checked(
    http: aiohttp.ClientSession,
    emulator: EmulatorServer,
    overrides: dict[str, str],
    code: str,
) -> None:
    reply = await rpc(http, emulator, "GetInstance", {"InstanceId": INSTANCE}, **overrides)

    assert_gateway_error(reply, 400, code)


async def test_missing_timestamp_or_signature(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    no_timestamp = common_params("GetInstance") | {"InstanceId": INSTANCE}
    del no_timestamp["Timestamp"]
    unsigned = common_params("GetInstance") | {"InstanceId": INSTANCE}

    assert_gateway_error(
        await send(http, emulator.url, signed("POST", no_timestamp, DEFAULT_ACCESS_KEY_SECRET)),
        400,
        "InvalidTimeStamp.Format",
    )
    assert_gateway_error(await send(http, emulator.url, unsigned), 400, "IncompleteSignature")


async def test_nonce_replay_is_refused(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    params = signed("POST", common_params("DialEx") | DIAL, DEFAULT_ACCESS_KEY_SECRET)

    assert_ok(await send(http, emulator.url, params))
    assert_gateway_error(await send(http, emulator.url, params), 400, "SignatureNonceUsed")
    assert len(await dials(emulator)) == 1


def test_nonce_store_forgets_after_the_window_and_when_full() -> None:
    now = 0.0
    store = NonceStore(window_s=60, max_size=2, monotonic=lambda: now)

    assert store.use("key", "n1")
    assert not store.use("key", "n1")
    assert store.use("other-key", "n1")  # nonces are per AccessKeyId
    now = 61
    assert store.use("key", "n1")  # the window has passed
    assert store.use("key", "n2")
    assert store.use("key", "n3")  # full: the oldest, n1, is forgotten early
    assert store.use("key", "n1")
    assert not store.use("key", "n3")


# --- bearer and STS ------------------------------------------------------------------------


async def test_bearer_token_as_parameter_or_header(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    bearer = {
        "Action": "GetInstance",
        "Version": API_VERSION,
        "Format": "json",
        "SignatureType": "BEARERTOKEN",
        "Timestamp": timestamp(),
        "SignatureNonce": uuid.uuid4().hex,
        "InstanceId": INSTANCE,
    }

    assert_ok(await send(http, emulator.url, bearer | {"BearerToken": BEARER_TOKEN}))
    header = {"x-acs-bearer-token": BEARER_TOKEN}
    async with http.post(emulator.url, params=bearer, headers=header) as resp:
        assert_ok(Reply(resp.status, resp.headers, await resp.json()))
    rejected = await send(http, emulator.url, bearer | {"BearerToken": "forged"})
    assert_gateway_error(rejected, 400, "InvalidBearerToken")


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "InvalidSecurityToken.MismatchWithAccessKey"),
        ("stolen", "InvalidSecurityToken.MismatchWithAccessKey"),
        (STS_TOKEN, "OK"),
    ],
)
async def test_sts_key_needs_its_security_token(
    http: aiohttp.ClientSession, emulator: EmulatorServer, token: str | None, code: str
) -> None:
    extra = {} if token is None else {"SecurityToken": token}
    reply = await rpc(
        http,
        emulator,
        "GetInstance",
        {"InstanceId": INSTANCE} | extra,
        secret=STS_SECRET,
        AccessKeyId=STS_KEY_ID,
    )

    assert reply.body["Code"] == code
    assert reply.status == (200 if code == "OK" else 400)


# --- routing and parameters ----------------------------------------------------------------


async def test_unknown_action_and_version(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    unknown_action = await rpc(http, emulator, "ListRealtimeAgentStates", {"InstanceId": INSTANCE})
    other_version = await rpc(
        http, emulator, "ListAgentStates", {"InstanceId": INSTANCE}, Version="2020-07-01"
    )

    assert "ListRealtimeAgentStates" in assert_gateway_error(
        unknown_action, 404, "InvalidAction.NotFound"
    )
    assert "2020-07-01" in assert_gateway_error(other_version, 400, "InvalidVersion")


async def test_missing_and_malformed_parameters_are_named(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    missing = await rpc(http, emulator, "ListAgentStates", {"PageSize": "5"})
    malformed = await rpc(
        http, emulator, "ListAgentStates", {"InstanceId": INSTANCE, "PageSize": "five"}
    )
    missing_list = await rpc(http, emulator, "GetSmsConfig", {"InstanceId": INSTANCE})

    assert (
        assert_gateway_error(missing, 400, "MissingInstanceId")
        == "InstanceId is mandatory for this action."
    )
    assert "PageSize" in assert_gateway_error(malformed, 400, "InvalidParameter")
    assert "Scenario" in assert_gateway_error(missing_list, 400, "MissingScenario")


async def test_business_error_body(http: aiohttp.ClientSession, emulator: EmulatorServer) -> None:
    reply = await rpc(http, emulator, "GetInstance", {"InstanceId": "ccc-nowhere"})

    assert reply.status >= 400
    assert set(reply.body) == {"RequestId", "Success", "Code", "Message", "HttpStatusCode"}
    assert (reply.body["Success"], reply.body["HttpStatusCode"]) == (False, reply.status)


# --- inspection API ------------------------------------------------------------------------


async def act_once_of_each_kind(http: aiohttp.ClientSession, emulator: EmulatorServer) -> None:
    """A DialEx, an SMS, and a survey by SMS on the dialled call."""
    assert_ok(await rpc(http, emulator, "DialEx", DIAL))
    [call] = await dials(emulator)
    sms = {
        "InstanceId": INSTANCE,
        "PhoneNumbers": "13800000002",
        "ConfigId": "1",
        "TemplateParam": '{"name":"张三"}',
    }
    assert_ok(await rpc(http, emulator, "SendPredefinedShortMessage", sms))
    appraise = {
        "InstanceId": INSTANCE,
        "PhoneNumbers": "13800000003",
        "Acid": call["contact_id"],
        "ContactType": "1",
    }
    assert_ok(await rpc(http, emulator, "LaunchShortMessageAppraise", appraise))


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        ("requests", {"at", "action", "version", "params", "code", "items", "bytes"}),
        (
            "calls",
            {"at", "instance_id", "action", "task_id", "contact_id", "caller", "callee", "params"},
        ),
        ("sms", {"at", "instance_id", "biz_id", "config_id", "phone_numbers", "template_param"}),
        ("appraisals", {"at", "instance_id", "action", "acid", "phone_numbers"}),
        ("agents", {"instance_id", "agent_id", "login_name", "state", "state_since"}),
        ("history/agent-states", {"at", "instance_id", "agent_id", "previous_state", "state"}),
        ("history/calls", {"instance_id", "contact_id", "available_at", "record"}),
    ],
)
async def test_inspection_items_have_exactly_the_documented_fields(
    http: aiohttp.ClientSession,
    emulator: EmulatorServer,
    path: str,
    keys: set[str],
) -> None:
    await act_once_of_each_kind(http, emulator)
    # An hour of simulated time: agents change state and calls complete into records.
    await post_json(http, emulator, "clock", {"advance_s": 3600})
    assert_ok(await rpc(http, emulator, "ListAgentStates", {"InstanceId": INSTANCE}))

    items = await inspect(emulator, path)

    assert items, f"/_emulator/{path} is empty"
    assert all(set(item) == keys for item in items), items[0]


async def test_inspection_records_the_side_effects(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    await act_once_of_each_kind(http, emulator)

    [call] = await dials(emulator)
    [sms] = await inspect(emulator, "sms")
    [appraisal] = await inspect(emulator, "appraisals")
    agents = await inspect(emulator, "agents")

    assert (call["instance_id"], call["caller"], call["callee"]) == (
        INSTANCE,
        DIAL["Caller"],
        DIAL["Callee"],
    )
    assert (sms["phone_numbers"], sms["template_param"]) == (["13800000002"], {"name": "张三"})
    assert (appraisal["acid"], appraisal["action"]) == (
        call["contact_id"],
        "LaunchShortMessageAppraise",
    )
    assert sorted({a["instance_id"] for a in agents}) == ["ccc-a", "ccc-b"]
    assert len(agents) == 24


async def test_requests_log_keeps_no_secrets(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    await rpc(
        http,
        emulator,
        "GetInstance",
        {"InstanceId": INSTANCE, "SecurityToken": STS_TOKEN},
        secret=STS_SECRET,
        AccessKeyId=STS_KEY_ID,
    )
    bearer = common_params("GetInstance", SignatureType="BEARERTOKEN", BearerToken=BEARER_TOKEN)
    await send(http, emulator.url, bearer | {"InstanceId": INSTANCE})
    await rpc(http, emulator, "GetInstance", {"InstanceId": INSTANCE}, secret="wrong")

    log = await inspect(emulator, "requests")

    assert [entry["code"] for entry in log] == ["OK", "OK", "SignatureDoesNotMatch"]
    assert all(
        entry["action"] == "GetInstance" and entry["version"] == API_VERSION for entry in log
    )
    assert all(entry["params"]["InstanceId"] == INSTANCE for entry in log)
    assert not any(
        {"Signature", "BearerToken", "SecurityToken"} & set(entry["params"]) for entry in log
    )
    assert all(entry["at"].endswith("Z") and len(entry["at"]) == 24 for entry in log)


async def test_clock_advances_on_request(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    before = emulator.clock.now_ms()
    reply = await post_json(http, emulator, "clock", {"advance_s": 90})
    refused = await post_json(http, emulator, "clock", {"advance_s": -1})

    assert reply.status == 200
    assert reply.body["now_ms"] >= before + 90_000
    assert refused.status == 400
    assert "advance_s" in refused.body["error"]


# --- faults --------------------------------------------------------------------------------


async def test_throttle_refuses_before_acting(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    await fault(emulator, action="DialEx", throttle_rate=1)

    reply = await rpc(http, emulator, "DialEx", DIAL)
    other_action = await rpc(http, emulator, "GetInstance", {"InstanceId": INSTANCE})

    assert_gateway_error(reply, 400, "Throttling.User")
    assert reply.body["Message"] == "Request was denied due to user flow control."
    assert reply.headers["x-acs-retry-after"] == "200"
    assert_ok(other_action)
    assert await dials(emulator) == []


async def test_server_errors_refuse_before_acting(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    await fault(emulator, action="*", error_rate=1.0)

    replies = [await rpc(http, emulator, "DialEx", DIAL) for _ in range(12)]

    outcomes = {(r.status, r.body["Code"]) for r in replies}
    assert outcomes == {(503, "ServiceUnavailable"), (500, "InternalError")}
    assert await dials(emulator) == []


async def test_latency_still_acts_after_the_client_gave_up(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    await fault(emulator, action="DialEx", latency_ms=300)
    params = signed("POST", common_params("DialEx") | DIAL, DEFAULT_ACCESS_KEY_SECRET)

    with pytest.raises(TimeoutError):
        async with http.post(
            emulator.url, params=params, timeout=aiohttp.ClientTimeout(total=0.05)
        ):
            pass
    assert await dials(emulator) == []  # still delayed when the client gave up

    async def dialled() -> bool:
        return bool(await dials(emulator))

    await eventually(dialled)
    [call] = await dials(emulator)
    assert call["callee"] == DIAL["Callee"]


async def test_drop_acts_then_closes_without_answer(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    await post_json(
        http, emulator, "faults", {"action": "SendPredefinedShortMessage", "drop_rate": 1}
    )
    sms = {"InstanceId": INSTANCE, "PhoneNumbers": "13800000004", "ConfigId": "1"}

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await rpc(http, emulator, "SendPredefinedShortMessage", sms)

    [sent] = await inspect(emulator, "sms")
    assert sent["phone_numbers"] == ["13800000004"]
    [logged] = await inspect(emulator, "requests")
    assert logged["code"] == "OK"


async def test_faults_are_listed_replaced_and_cleared(
    http: aiohttp.ClientSession, emulator: EmulatorServer
) -> None:
    await fault(emulator, action="DialEx", throttle_rate=1)
    await fault(emulator, action="DialEx", latency_ms=1)
    listed = await inspect(emulator, "faults")
    assert_ok(await rpc(http, emulator, "DialEx", DIAL))

    async with http.delete(f"{emulator.url}/_emulator/faults") as resp:
        assert resp.status == 200
    assert listed == [
        {"action": "DialEx", "latency_ms": 1, "throttle_rate": 0, "error_rate": 0, "drop_rate": 0}
    ]
    assert await inspect(emulator, "faults") == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"action": "*", "throttle_rate": 1.5}, "throttle_rate"),
        ({"action": "*", "latency_ms": -1}, "latency_ms"),
        ({"action": "NoSuchAction", "error_rate": 0.5}, "action"),
        ({"action": "*", "drop_rat": 0.5}, "drop_rat"),
        (["not", "an", "object"], "JSON object"),
    ],
)
async def test_bad_fault_is_refused_naming_the_field(
    http: aiohttp.ClientSession,
    emulator: EmulatorServer,
    body: Any,
    named: str,
) -> None:
    reply = await post_json(http, emulator, "faults", body)

    assert reply.status == 400
    assert named in reply.body["error"]
    assert await inspect(emulator, "faults") == []


# --- command line --------------------------------------------------------------------------


async def start_cli(*args: str, env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "emulator",
        *args,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_cli_serves_until_sigint(http: aiohttp.ClientSession) -> None:
    env = {"CCC_EMULATOR_ACCESS_KEY_ID": "env-key", "CCC_EMULATOR_ACCESS_KEY_SECRET": "env-secret"}
    process = await start_cli("--port", "0", "--instance", "ccc-x", "--agents", "3", env=env)
    assert process.stdout is not None
    ready = (await asyncio.wait_for(process.stdout.readline(), WAIT_S)).decode()
    url = ready.split("url=", 1)[1].split()[0]
    reply = await send(
        http,
        url,
        signed(
            "POST",
            common_params("GetInstance", AccessKeyId="env-key") | {"InstanceId": "ccc-x"},
            "env-secret",
        ),
    )

    process.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(process.communicate(), WAIT_S)

    assert ready.startswith("ccc-emulator ready url=http://127.0.0.1:")
    assert "instances=ccc-x agents=3 credentials=environment (env-key)" in ready
    assert "env-secret" not in ready
    assert_ok(reply)
    assert (process.returncode, stdout, stderr) == (0, b"", b"")


async def test_cli_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await start_cli("--port", str(port))
        stdout, stderr = await asyncio.wait_for(process.communicate(), WAIT_S)

    assert process.returncode == 2
    assert stdout == b""
    [line] = stderr.decode().splitlines()
    assert str(port) in line
    assert "already in use" in line
    assert "Traceback" not in line
