"""Alibaba's own SDKs, unchanged, as clients of the emulator.

aliyun-python-sdk-core + aliyun-python-sdk-ccc send every parameter in the query with an
empty SignatureType; alibabacloud-ccc20170705 (Tea) sends the API's parameters in a form
body, `Format=json` and no RegionId. Both sign V1, so both must be accepted byte for byte.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from alibabacloud_ccc20170705 import models as tea_models
from alibabacloud_ccc20170705.client import Client as TeaClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient

from service.ccc.catalog import snake_case
from service.emulator.config import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from service.emulator.server import EmulatorServer
from tests.inspection import inspect

INSTANCE = "ccc-a"
AGENTS = 12  # conftest's emulator_config
LOGIN_S = 61  # simulated agents all log in within a minute of the start
TEMPLATE_PARAM = '{"name":"张三 a*b~c/d+e"}'

# (action, wire parameters): a list value is a repeat list (Scenario.1, Scenario.2 ...).
Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
MakeClient = Callable[[str], Call]


class SdkError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def core_client(endpoint: str, secret: str) -> Call:
    client = AcsClient(DEFAULT_ACCESS_KEY_ID, secret, "cn-shanghai")

    def call_sync(action: str, params: dict[str, Any]) -> dict[str, Any]:
        module = importlib.import_module(f"aliyunsdkccc.request.v20170705.{action}Request")
        request = getattr(module, f"{action}Request")()
        request.set_endpoint(endpoint)
        request.set_protocol_type("http")
        for name, value in params.items():
            # The SDK's repeat-list setters are plural: set_Scenarios([1, 2]).
            getattr(request, f"set_{name}s" if isinstance(value, list) else f"set_{name}")(value)
        try:
            body = client.do_action_with_exception(request)
        except ServerException as error:
            raise SdkError(error.get_error_code()) from error
        result: dict[str, Any] = json.loads(body)
        return result

    async def call(action: str, params: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(call_sync, action, params)

    return call


def tea_client(endpoint: str, secret: str, *, use_async: bool) -> Call:
    config = open_api_models.Config(
        access_key_id=DEFAULT_ACCESS_KEY_ID,
        access_key_secret=secret,
        endpoint=endpoint,
        protocol="http",
    )
    client = TeaClient(config)

    async def call(action: str, params: dict[str, Any]) -> dict[str, Any]:
        request = getattr(tea_models, f"{action}Request")(
            **{snake_case(name): value for name, value in params.items()}
        )
        method = snake_case(action)
        try:
            if use_async:
                response = await getattr(client, f"{method}_async")(request)
            else:
                response = await asyncio.to_thread(getattr(client, method), request)
        except AlibabaCloudException as error:
            raise SdkError(str(error.code)) from error
        result: dict[str, Any] = response.body.to_map()
        return result

    return call


@pytest.fixture(params=["core", "tea-async", "tea-sync"])
def make_client(request: pytest.FixtureRequest, emulator: EmulatorServer) -> MakeClient:
    """A factory of one SDK's clients for the running emulator, given an AccessKeySecret."""
    endpoint = f"127.0.0.1:{emulator.port}"
    kind: str = request.param
    if kind == "core":
        return lambda secret: core_client(endpoint, secret)
    return lambda secret: tea_client(endpoint, secret, use_async=kind == "tea-async")


@pytest.fixture
def sdk(make_client: MakeClient) -> Call:
    return make_client(DEFAULT_ACCESS_KEY_SECRET)


async def test_reads(sdk: Call, emulator: EmulatorServer) -> None:
    emulator.clock.advance(LOGIN_S)
    states = await sdk("ListAgentStates", {"InstanceId": INSTANCE, "PageSize": 50})
    users = await sdk("ListUsers", {"InstanceId": INSTANCE, "PageNumber": 1, "PageSize": 5})
    instance = await sdk("GetInstance", {"InstanceId": INSTANCE})
    records = await sdk(
        "ListCallDetailRecords", {"InstanceId": INSTANCE, "PageNumber": 1, "PageSize": 10}
    )

    online = states["Data"]["List"]["RealTimeAgentState"]
    assert 0 < len(online) == states["Data"]["TotalCount"] <= AGENTS
    assert {s["InstanceId"] for s in online} == {INSTANCE}
    assert (len(users["Users"]["List"]["User"]), users["Users"]["TotalCount"]) == (5, AGENTS)
    assert instance["Instance"]["InstanceId"] == INSTANCE
    assert records["CallDetailRecords"]["PageSize"] == 10


async def test_sms_with_a_repeat_list_and_awkward_characters(
    sdk: Call, emulator: EmulatorServer
) -> None:
    configs = await sdk("GetSmsConfig", {"InstanceId": INSTANCE, "Scenario": [1, 2]})
    [config_id, *_] = [c["Id"] for c in configs["SmsConfigs"]["SmsConfig"]]
    sms = {
        "InstanceId": INSTANCE,
        "PhoneNumbers": "13800000000",
        "ConfigId": config_id,
        "TemplateParam": TEMPLATE_PARAM,
    }

    sent = await sdk("SendPredefinedShortMessage", sms)

    assert {c["Scenario"] for c in configs["SmsConfigs"]["SmsConfig"]} <= {1, 2}
    [recorded] = await inspect(emulator, "sms")
    assert recorded["biz_id"] == sent["BizId"]
    assert recorded["template_param"] == json.loads(TEMPLATE_PARAM)


async def test_dial(sdk: Call, emulator: EmulatorServer) -> None:
    dial = {
        "InstanceId": INSTANCE,
        "Caller": "02160000001",
        "Callee": "13800000001",
        "RoutPoint": "Main menu",
        "AnswerMode": 0,
    }

    dialled = await sdk("DialEx", dial)

    [call] = [c for c in await inspect(emulator, "calls") if c["action"] == "DialEx"]
    assert call["task_id"] == dialled["TaskId"]
    assert call["callee"] == "13800000001"


async def test_wrong_secret_is_a_signature_mismatch(make_client: MakeClient) -> None:
    impostor = make_client("not-the-secret")

    with pytest.raises(SdkError) as caught:
        await impostor("GetInstance", {"InstanceId": INSTANCE})

    # The core SDK renames the code when the server's string to sign equals its own.
    assert caught.value.code in {"SignatureDoesNotMatch", "InvalidAccessKeySecret"}
