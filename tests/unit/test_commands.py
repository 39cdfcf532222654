"""Commands without I/O: parsing the section 3 contract, the CCC request each command makes,
the outcome each CCC error gives, and the commit positions of the worker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from service.ccc.errors import (
    CccApiError,
    CccAuthError,
    CccError,
    CccRequestError,
    CccServerError,
    CccServiceUnavailableError,
    CccThrottledError,
    CccTimeoutError,
    CccTransportError,
)
from service.commands.execute import ccc_request, from_error, succeeded
from service.commands.models import (
    BackToBack,
    Command,
    CommandKind,
    DialEx,
    FieldError,
    InvalidCommandError,
    Limits,
    Sms,
    SmsAppraisal,
    VoiceAppraisal,
    parse_command,
)
from service.kafka.offsets import Offsets

INSTANCES = frozenset({"ccc-1"})
AT = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

# The examples of PRODUCT.md section 3, one per shape.
DIAL_EX: dict[str, Any] = {
    "command_id": "c-1",
    "instance_id": "ccc-1",
    "mode": "dial_ex",
    "caller": "02180000000",
    "callee": "13900000000",
    "answer_mode": "ivr",
    "route_point": "ivr-flow-1",
    "provider": None,
    "expires_at": "2026-11-24T10:00:00Z",
    "metadata": {"crm": "42"},
}
BACK_TO_BACK: dict[str, Any] = {
    "command_id": "c-2",
    "instance_id": "ccc-1",
    "mode": "back_to_back",
    "caller": "02180000000",
    "callee": "+8613900000000",
    "call_center_number": "057100000000",
}
SMS: dict[str, Any] = {
    "command_id": "c-3",
    "instance_id": "ccc-1",
    "config_id": 12,
    "phone_numbers": ["13900000000", "13900000001"],
    "template_params": {"name": "Wang"},
    "expires_at": "2026-11-24T10:00:00Z",
    "metadata": {},
}
VOICE_APPRAISAL: dict[str, Any] = {
    "command_id": "c-4",
    "instance_id": "ccc-1",
    "channel": "voice",
    "contact_id": "job-1",
}
SMS_APPRAISAL: dict[str, Any] = {
    "command_id": "c-5",
    "instance_id": "ccc-1",
    "channel": "sms",
    "contact_id": "job-2",
    "contact_type": "inbound",
    "phone_numbers": ["13900000000"],
    "skill_group_id": "sg-1",
}

EXAMPLES: list[tuple[CommandKind, dict[str, Any], type[Command]]] = [
    ("dial", DIAL_EX, DialEx),
    ("dial", {**DIAL_EX, "answer_mode": "agent", "route_point": "ram-1@domain"}, DialEx),
    ("dial", {**DIAL_EX, "answer_mode": "skill_group", "route_point": "sg-1"}, DialEx),
    ("dial", BACK_TO_BACK, BackToBack),
    ("sms", SMS, Sms),
    ("appraise", VOICE_APPRAISAL, VoiceAppraisal),
    ("appraise", SMS_APPRAISAL, SmsAppraisal),
]


def encode(body: object) -> bytes:
    return json.dumps(body).encode()


def cloud_event(kind: str, data: object, **overrides: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "e-1",
        "source": "crm://orders",
        "type": f"com.aliyun.ccc.command.{kind}",
        "datacontenttype": "application/json",
        "data": data,
        **overrides,
    }


def rejection(kind: CommandKind, value: bytes | None) -> InvalidCommandError:
    with pytest.raises(InvalidCommandError) as raised:
        parse_command(kind, value, INSTANCES)
    return raised.value


def fields(error: InvalidCommandError) -> dict[str, str]:
    return {e.field: e.reason for e in error.errors}


# -- parsing: accepted -----------------------------------------------------------------


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "cloudevent"])
@pytest.mark.parametrize(("kind", "body", "model"), EXAMPLES)
def test_every_documented_shape_parses_plain_or_as_cloudevent_data(
    kind: CommandKind, body: dict[str, Any], model: type[Command], wrapped: bool
) -> None:
    value = encode(cloud_event(kind, body) if wrapped else body)
    command = parse_command(kind, value, INSTANCES)
    assert type(command) is model
    # Every field given comes back as given (times as times, None as absent).
    dumped = command.model_dump(mode="json", exclude_none=True)
    expected = {
        name: value for name, value in body.items() if value is not None and name != "expires_at"
    }
    assert {name: dumped[name] for name in expected} == expected
    if "expires_at" in body:
        assert command.expires_at == AT


def test_optional_fields_default_to_none_and_empty() -> None:
    command = parse_command("sms", encode({k: SMS[k] for k in SMS if k in {
        "command_id", "instance_id", "config_id", "phone_numbers"}}), INSTANCES)  # fmt: skip
    assert isinstance(command, Sms)
    assert (command.expires_at, command.metadata, command.template_params) == (None, {}, {})


def test_a_cloudevent_without_type_is_read_by_its_topic() -> None:
    event = cloud_event("sms", SMS)
    del event["type"]
    assert isinstance(parse_command("sms", encode(event), INSTANCES), Sms)


# -- parsing: rejected, naming the field and why ----------------------------------------


@pytest.mark.parametrize(
    ("kind", "body", "field", "reason"),
    [
        ("dial", {**DIAL_EX, "caller": "0218000000x"}, "caller", "is not a phone number"),
        ("dial", {**DIAL_EX, "callee": "12"}, "callee", "is not a phone number"),
        ("dial", {**BACK_TO_BACK, "callee": "139 0000"}, "callee", "is not a phone number"),
        (
            "dial",
            {**BACK_TO_BACK, "call_center_number": "+"},
            "call_center_number",
            "is not a phone number",
        ),
        (
            "sms",
            {**SMS, "phone_numbers": ["13900000000", "1390000000a"]},
            "phone_numbers.1",
            "'1390000000a' is not a phone number (3 to 20 digits, optional leading +)",
        ),
        (
            "appraise",
            {**SMS_APPRAISAL, "phone_numbers": ["x"]},
            "phone_numbers.0",
            "is not a phone number",
        ),
        (
            "dial",
            {**DIAL_EX, "instance_id": "ccc-9"},
            "instance_id",
            "unknown instance 'ccc-9': this service serves ['ccc-1']",
        ),
        (
            "dial",
            {k: v for k, v in DIAL_EX.items() if k != "route_point"},
            "route_point",
            "required when answer_mode is ivr",
        ),
        (
            "dial",
            {**DIAL_EX, "answer_mode": "skill_group", "route_point": None},
            "route_point",
            "required when answer_mode is skill_group",
        ),
        (
            "dial",
            {**DIAL_EX, "answer_mode": "agent", "route_point": "ram-1"},
            "route_point",
            "must be ram_id@instance-domain when answer_mode is agent",
        ),
        ("sms", {**SMS, "phone_numbers": []}, "phone_numbers", "at least 1 item"),
        (
            "sms",
            {**SMS, "template_params": {"name": "x" * 36}},
            "template_params",
            "name: longer than 35 characters",
        ),
        ("sms", {**SMS, "config_id": 0}, "config_id", "greater than 0"),
        ("sms", {**SMS, "config_id": "twelve"}, "config_id", "valid integer"),
        ("dial", {**DIAL_EX, "calle": "13900000000"}, "calle", "Extra inputs are not permitted"),
        ("appraise", {**VOICE_APPRAISAL, "nps": 9}, "nps", "Extra inputs are not permitted"),
        ("dial", {**DIAL_EX, "mode": "fax"}, "mode", "does not match any of the expected tags"),
        ("dial", {k: v for k, v in DIAL_EX.items() if k != "mode"}, "mode", "discriminator"),
        ("appraise", {**VOICE_APPRAISAL, "channel": "pigeon"}, "channel", "expected tags"),
        ("dial", {**DIAL_EX, "answer_mode": "robot"}, "answer_mode", "'ivr', 'agent'"),
        ("dial", {**DIAL_EX, "expires_at": "2026-11-24T10:00:00"}, "expires_at", "timezone"),
        ("dial", {**DIAL_EX, "command_id": "has space"}, "command_id", "pattern"),
        ("dial", {**DIAL_EX, "command_id": "nul\x00"}, "command_id", "pattern"),
        ("dial", {**DIAL_EX, "command_id": "unit\x1fsep"}, "command_id", "pattern"),
        ("dial", {**DIAL_EX, "command_id": "del\x7f"}, "command_id", "pattern"),
        ("dial", {**DIAL_EX, "command_id": "caf\u00e9"}, "command_id", "pattern"),
        ("dial", {**DIAL_EX, "command_id": "x" * 201}, "command_id", "pattern"),
        ("dial", {**DIAL_EX, "metadata": [1]}, "metadata", "valid dictionary"),
        ("dial", {**DIAL_EX, "schema_version": 2}, "schema_version", "Input should be 1"),
        ("sms", [SMS], "", "valid dictionary"),
    ],
)
def test_a_bad_command_is_rejected_naming_the_field_and_why(
    kind: CommandKind, body: object, field: str, reason: str
) -> None:
    error = rejection(kind, encode(body))
    assert field in fields(error), fields(error)
    assert reason in fields(error)[field]
    assert f"{field or 'message'}: " in str(error)  # the one-line form names it too


def test_the_limits_no_ccc_document_sets_follow_the_settings() -> None:
    long_value = {**SMS, "template_params": {"name": "x" * 100}}
    long_number = {**SMS, "phone_numbers": ["+" + "1" * 24]}
    for body in (long_value, long_number):
        rejection("sms", encode(body))  # by default
    lifted = Limits(phone_max_digits=24, template_value_max_chars=None)
    for body in (long_value, long_number):
        assert isinstance(parse_command("sms", encode(body), INSTANCES, lifted), Sms)
    strict = Limits(phone_min_digits=12)
    with pytest.raises(InvalidCommandError, match="12 to 20 digits"):
        parse_command("sms", encode(SMS), INSTANCES, strict)


def test_every_bad_field_is_named_not_only_the_first() -> None:
    body = {**SMS_APPRAISAL, "contact_type": "sideways", "phone_numbers": ["1"], "x": 1}
    assert set(fields(rejection("appraise", encode(body)))) == {
        "contact_type",
        "phone_numbers.0",
        "x",
    }


@pytest.mark.parametrize(
    ("kind", "value", "field", "reason"),
    [
        ("dial", encode(cloud_event("dial", [DIAL_EX])), "data", "must be a command object"),
        ("dial", encode(cloud_event("dial", None)), "data", "must be a command object"),
        ("sms", b'{"command_id": "c-3",', "", "not JSON: "),
        ("sms", b"\xff\xfe\x00", "", "not JSON: "),
        ("sms", b"", "", "not JSON: "),
        ("sms", None, "", "the message has no value"),
    ],
    ids=["data-list", "data-null", "truncated", "not-utf8", "empty", "none"],
)
def test_a_message_that_is_not_a_command_is_rejected_as_a_whole(
    kind: CommandKind, value: bytes | None, field: str, reason: str
) -> None:
    error = rejection(kind, value)
    assert [e.field for e in error.errors] == [field]
    assert reason in error.errors[0].reason
    assert (error.command_id, error.instance_id, error.metadata) == (None, None, None)


@pytest.mark.parametrize("event_type", ["com.aliyun.ccc.command.dial", "", 7])
def test_a_cloudevent_of_another_type_is_rejected_naming_type(event_type: object) -> None:
    error = rejection("sms", encode(cloud_event("sms", SMS, type=event_type)))
    assert [(e.field, e.reason) for e in error.errors] == [
        ("type", "a CloudEvent on this topic must have type 'com.aliyun.ccc.command.sms'")
    ]


def test_a_cloudevent_with_invalid_data_names_the_fields_inside_data() -> None:
    event = cloud_event("dial", {**DIAL_EX, "callee": "abc", "metadata": {"crm": 1}})
    error = rejection("dial", encode(event))
    assert list(fields(error)) == ["callee"]
    assert (error.command_id, error.instance_id, error.metadata) == ("c-1", "ccc-1", {"crm": 1})


@pytest.mark.parametrize(
    ("body", "readable"),
    [
        ({**DIAL_EX, "callee": "x"}, ("c-1", "ccc-1", {"crm": "42"})),
        ({**DIAL_EX, "instance_id": "ccc-9"}, ("c-1", "ccc-9", {"crm": "42"})),
        ({**DIAL_EX, "callee": "x", "metadata": "not a dict"}, ("c-1", "ccc-1", None)),
        ({**DIAL_EX, "command_id": 7, "instance_id": ["ccc-1"]}, (None, None, {"crm": "42"})),
        ({**DIAL_EX, "command_id": "", "instance_id": "i" * 201}, (None, None, {"crm": "42"})),
        # Answered under the id it came with, as for any other bad field.
        ({**DIAL_EX, "command_id": "c\x00"}, ("c\x00", "ccc-1", {"crm": "42"})),
        ({"mode": "dial_ex"}, (None, None, None)),
    ],
)
def test_a_rejection_keeps_what_could_be_read_of_the_command(
    body: dict[str, Any], readable: tuple[str | None, str | None, dict[str, Any] | None]
) -> None:
    error = rejection("dial", encode(body))
    assert (error.command_id, error.instance_id, error.metadata) == readable


def test_field_error_reasons_read_as_sentences_without_pydantic_prefixes() -> None:
    error = rejection("dial", encode({**DIAL_EX, "answer_mode": "agent", "route_point": "r"}))
    assert error.errors == [
        FieldError(
            field="route_point",
            reason="must be ram_id@instance-domain when answer_mode is agent",
        )
    ]
    assert str(error) == "route_point: must be ram_id@instance-domain when answer_mode is agent"


@pytest.mark.parametrize(
    "value",
    [
        b"[" * 5000 + b"]" * 5000,  # RecursionError
        b'{"command_id": "c-1", "metadata": {"a": ' + b"[" * 2000 + b"]" * 2000 + b"}}",
        b"1" + b"0" * 4300,  # ValueError: more digits than int() converts
        b'{"command_id": "c-1", "config_id": 1' + b"0" * 5000 + b"}",
    ],
    ids=["nested-array", "nested-metadata", "long-number", "long-config-id"],
)
def test_json_python_cannot_read_is_rejected_as_not_json(value: bytes) -> None:
    error = rejection("sms", value)
    assert [e.field for e in error.errors] == [""]


@pytest.mark.parametrize(
    "metadata",
    [b'{"a": "\\udc00"}', b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}"],
    ids=["lone-surrogate", "nested-300"],
)
def test_a_command_that_is_accepted_can_be_written_back_as_json(metadata: bytes) -> None:
    without = encode({name: value for name, value in SMS.items() if name != "metadata"})
    value = without[:-1] + b', "metadata": ' + metadata + b"}"
    with pytest.raises(InvalidCommandError) as refused:
        parse_command("sms", value, INSTANCES)
    assert "metadata" in fields(refused.value)
    assert refused.value.metadata is None, "what cannot be written is not kept for the result"


# -- the CCC request of each command ----------------------------------------------------


def request(kind: CommandKind, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ccc_request(parse_command(kind, encode(body), INSTANCES))


@pytest.mark.parametrize(("answer_mode", "code"), [("ivr", 0), ("agent", 1), ("skill_group", 2)])
def test_dial_ex_sends_rout_point_and_the_answer_mode_number(answer_mode: str, code: int) -> None:
    body = {**DIAL_EX, "answer_mode": answer_mode, "route_point": "r@d", "provider": "cmcc"}
    assert request("dial", body) == (
        "DialEx",
        {
            "InstanceId": "ccc-1",
            "Caller": "02180000000",
            "Callee": "13900000000",
            "RoutPoint": "r@d",
            "AnswerMode": code,
            "Provider": "cmcc",
        },
    )


def test_dial_ex_leaves_out_a_provider_not_given() -> None:
    action, params = request("dial", DIAL_EX)
    assert action == "DialEx"
    assert "Provider" not in params


def test_back_to_back_is_start_back2back_call() -> None:
    assert request("dial", BACK_TO_BACK) == (
        "StartBack2BackCall",
        {
            "InstanceId": "ccc-1",
            "Caller": "02180000000",
            "Callee": "+8613900000000",
            "CallCenterNumber": "057100000000",
        },
    )
    body = {k: v for k, v in BACK_TO_BACK.items() if k != "call_center_number"}
    assert request("dial", body)[1] == {
        "InstanceId": "ccc-1",
        "Caller": "02180000000",
        "Callee": "+8613900000000",
    }


def test_sms_joins_numbers_with_commas_and_sends_template_params_as_json() -> None:
    body = {**SMS, "template_params": {"name": "王", "code": "1234"}}
    action, params = request("sms", body)
    assert action == "SendPredefinedShortMessage"
    assert params == {
        "InstanceId": "ccc-1",
        "ConfigId": 12,
        "PhoneNumbers": "13900000000,13900000001",
        "TemplateParam": '{"name": "王", "code": "1234"}',
    }
    assert json.loads(params["TemplateParam"]) == {"name": "王", "code": "1234"}


def test_sms_without_template_params_sends_no_template_param() -> None:
    _, params = request("sms", {**SMS, "template_params": {}, "phone_numbers": ["13900000000"]})
    assert params == {"InstanceId": "ccc-1", "ConfigId": 12, "PhoneNumbers": "13900000000"}


def test_voice_appraisal_is_launch_appraise_on_the_contact() -> None:
    assert request("appraise", VOICE_APPRAISAL) == (
        "LaunchAppraise",
        {"InstanceId": "ccc-1", "Acid": "job-1"},
    )


@pytest.mark.parametrize(("contact_type", "code"), [("inbound", 0), ("outbound", 1)])
def test_sms_appraisal_sends_the_contact_type_number(contact_type: str, code: int) -> None:
    body = {**SMS_APPRAISAL, "contact_type": contact_type, "phone_numbers": ["139", "+140"]}
    assert request("appraise", body) == (
        "LaunchShortMessageAppraise",
        {
            "InstanceId": "ccc-1",
            "Acid": "job-2",
            "ContactType": code,
            "PhoneNumbers": "139,+140",
            "SkillGroupId": "sg-1",
        },
    )
    without_group = {k: v for k, v in body.items() if k != "skill_group_id"}
    assert "SkillGroupId" not in request("appraise", without_group)[1]


# -- outcomes ---------------------------------------------------------------------------


def api_error(kind: type[CccApiError], code: str, status: int) -> CccError:
    return kind(
        f"{code} happened", action="DialEx", code=code, http_status=status, request_id="req-9"
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (api_error(CccThrottledError, "Throttling.User", 400), "Throttling.User"),
        (api_error(CccRequestError, "NotExists.SkillGroupId", 404), "NotExists.SkillGroupId"),
        (api_error(CccAuthError, "Forbidden.RAM", 403), "Forbidden.RAM"),
    ],
    ids=["throttled", "request", "auth"],
)
def test_an_error_where_ccc_did_not_act_is_failed_with_its_code(error: CccError, code: str) -> None:
    error.attempts = 3
    outcome = from_error("DialEx", error, AT)
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.message) == (code, f"{code} happened")
    assert (outcome.action, outcome.request_id, outcome.attempts) == ("DialEx", "req-9", 3)
    assert outcome.completed_at == AT


def test_a_transport_error_before_sending_is_failed() -> None:
    error = CccTransportError("connection refused", action="DialEx", sent=False)
    outcome = from_error("DialEx", error, AT)
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.code == "TransportError"
    assert "connection refused" in outcome.error.message


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (api_error(CccServerError, "InternalError", 500), "InternalError"),
        # Nothing documents that CCC did not act when it answers 503.
        (api_error(CccServiceUnavailableError, "ServiceUnavailable", 503), "ServiceUnavailable"),
        (CccTimeoutError("no answer in 5s", action="DialEx"), "TimeoutError"),
        (CccTransportError("connection reset", action="DialEx", sent=True), "TransportError"),
    ],
    ids=["server-500", "unavailable-503", "timeout", "transport-after-send"],
)
def test_an_error_where_ccc_may_have_acted_is_indeterminate(error: CccError, code: str) -> None:
    error.attempts = 2
    outcome = from_error("DialEx", error, AT)
    assert outcome.status == "indeterminate"
    assert outcome.error is not None
    assert outcome.error.code == code
    assert error.message in outcome.error.message
    assert (outcome.action, outcome.attempts) == ("DialEx", 2)


class Reply:
    request_id = "req-1"
    task_id = "task-1"
    biz_id = None


def test_success_carries_cccs_ids_and_attempts() -> None:
    outcome = succeeded("DialEx", Reply(), 2, AT)
    assert outcome.model_dump() == {
        "status": "succeeded",
        "action": "DialEx",
        "request_id": "req-1",
        "task_id": "task-1",
        "biz_id": None,
        "error": None,
        "attempts": 2,
        "completed_at": AT,
    }
    assert succeeded("LaunchAppraise", object(), 1, AT).request_id is None


# -- commit positions -------------------------------------------------------------------

TPS = [TopicPartition("ccc.commands.dial", 0), TopicPartition("ccc.commands.sms", 1)]


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[str, TopicPartition, int]]:
    """Offsets handed out in order per partition (with gaps, as compaction leaves them),
    finished in any order, interleaved with later ones being handed out."""
    handed: dict[TopicPartition, list[int]] = {}
    for tp in TPS:
        gaps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=12))
        start = draw(st.integers(min_value=0, max_value=1000))
        handed[tp] = [start + sum(gaps[: i + 1]) for i in range(len(gaps))]
    steps: list[tuple[str, TopicPartition, int]] = []
    unbegun = {tp: list(offsets) for tp, offsets in handed.items()}
    running: list[tuple[TopicPartition, int]] = []
    while any(unbegun.values()) or running:
        choices = [("begin", tp) for tp, offsets in unbegun.items() if offsets]
        choices += [("end", tp) for tp, _ in running]
        action, _ = draw(st.sampled_from(choices))
        if action == "begin":
            tp = draw(st.sampled_from([tp for tp, offsets in unbegun.items() if offsets]))
            offset = unbegun[tp].pop(0)
            running.append((tp, offset))
        else:
            tp, offset = running.pop(draw(st.integers(0, len(running) - 1)))
        steps.append((action, tp, offset))
    return steps


@given(schedules())
def test_the_commit_position_never_passes_an_unfinished_offset(
    steps: list[tuple[str, TopicPartition, int]],
) -> None:
    offsets = Offsets()
    unfinished: dict[TopicPartition, set[int]] = {}
    last_handed: dict[TopicPartition, int] = {}
    position: dict[TopicPartition, int] = {}
    for action, tp, offset in steps:
        if action == "begin":
            offsets.begin(tp, offset)
            unfinished.setdefault(tp, set()).add(offset)
            last_handed[tp] = offset
        else:
            offsets.end(tp, offset)
            unfinished[tp].discard(offset)
        committable = offsets.committable()
        for tp_, pos in committable.items():
            # The lowest unfinished offset, or past the last one handed out.
            assert pos == min(unfinished[tp_], default=last_handed[tp_] + 1)
            assert pos > position.get(tp_, -1)  # it only moves forward
        # What did not move is not reported again.
        assert set(committable) == {
            tp_ for tp_ in last_handed
            if min(unfinished[tp_], default=last_handed[tp_] + 1) != position.get(tp_)
        }  # fmt: skip
        offsets.committed |= committable  # as the worker does once the commit succeeded
        position |= committable
        assert offsets.committable() == {}
    assert position == {tp: last + 1 for tp, last in last_handed.items()}


def test_ending_an_offset_never_handed_out_changes_nothing() -> None:
    offsets = Offsets()
    offsets.begin(TPS[0], 5)
    offsets.end(TPS[0], 4)
    offsets.end(TPS[1], 0)
    assert offsets.committable() == {TPS[0]: 5}


def test_forget_drops_a_partition_and_its_committed_position() -> None:
    offsets = Offsets()
    offsets.begin(TPS[0], 0)
    offsets.begin(TPS[1], 7)
    offsets.end(TPS[0], 0)
    offsets.committed |= offsets.committable()
    assert offsets.committed == {TPS[0]: 1, TPS[1]: 7}
    offsets.forget([TPS[0]])
    assert offsets.committable() == {}  # TPS[1] did not move; TPS[0] is gone
    offsets.end(TPS[0], 0)  # a late finish of a revoked partition is ignored
    assert offsets.committable() == {}
    assert TPS[0] not in offsets.pending
    assert TPS[0] not in offsets.next
    assert TPS[0] not in offsets.committed
    # Assigned again later: its position is reported anew, even the one committed before.
    offsets.begin(TPS[0], 0)
    offsets.end(TPS[0], 0)
    assert offsets.committable() == {TPS[0]: 1}
