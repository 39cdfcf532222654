"""Error mapping and the retry rules, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest
from tenacity import RetryCallState

from service.ccc.client import Backoff, retry_after_seconds, should_retry
from service.ccc.errors import (
    CccApiError,
    CccAuthError,
    CccRequestError,
    CccServerError,
    CccServiceUnavailableError,
    CccThrottledError,
    CccTimeoutError,
    CccTransportError,
    error_from_response,
)
from service.ccc.settings import RetrySettings


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "Throttling.User", CccThrottledError),
        (400, "Throttling.Api", CccThrottledError),
        (400, "Throttling", CccThrottledError),
        (503, "ServiceUnavailable", CccServiceUnavailableError),
        (500, "InternalError", CccServerError),
        (500, "InternalService.CTI", CccServerError),
        (400, "SignatureDoesNotMatch", CccAuthError),
        (400, "InvalidAccessKeyId.NotFound", CccAuthError),
        (400, "InvalidTimeStamp.Expired", CccAuthError),
        (400, "SignatureNonceUsed", CccAuthError),
        (403, "Forbidden.RAM", CccAuthError),
        (404, "NotExists.InstanceId", CccRequestError),
        (400, "MissingInstanceId", CccRequestError),
        (404, "InvalidAction.NotFound", CccRequestError),
        (409, "AlreadyExists.UserName", CccRequestError),
    ],
)
def test_error_mapping(status: int, code: str, kind: type[CccApiError]) -> None:
    body = {"RequestId": "R1", "Code": code, "Message": "m", "HostId": "h"}
    error = error_from_response("DialEx", status, body, None)
    assert type(error) is kind
    assert (error.code, error.message, error.request_id, error.http_status) == (
        code,
        "m",
        "R1",
        status,
    )
    assert code in str(error)
    assert "R1" in str(error)


def test_business_error_body_and_lower_case_keys() -> None:
    business = {"RequestId": "R", "Success": False, "Code": "NotExists.UserId", "Message": "gone"}
    assert isinstance(error_from_response("GetUser", 404, business, None), CccRequestError)
    lower = error_from_response("GetUser", 400, {"code": "Throttling.User", "requestId": "r"}, 0.2)
    assert isinstance(lower, CccThrottledError)
    assert lower.request_id == "r"
    assert lower.retry_after == 0.2


def _errors() -> dict[str, Any]:
    def api(kind: type[CccApiError], code: str, status: int) -> CccApiError:
        return kind("m", action="A", code=code, http_status=status, request_id=None)

    return {
        "throttled": api(CccThrottledError, "Throttling.User", 400),
        "unavailable": api(CccServiceUnavailableError, "ServiceUnavailable", 503),
        "server": api(CccServerError, "InternalError", 500),
        "rejected": api(CccRequestError, "NotExists.InstanceId", 404),
        "auth": api(CccAuthError, "SignatureDoesNotMatch", 400),
        "refused": CccTransportError("refused", action="A", sent=False),
        "reset": CccTransportError("reset", action="A", sent=True),
        "timeout": CccTimeoutError("slow", action="A"),
        "other": ValueError("not ours"),
    }


# Reads retry transport errors, 5xx and throttling; side effects only where CCC did not act,
# which no 5xx proves (ServiceUnavailable included), unless the settings opt in.
READ_RETRIES = {"throttled", "unavailable", "server", "refused", "reset", "timeout"}
EFFECT_RETRIES = {"throttled", "refused"}
EFFECT_RETRIES_OPTED_IN = EFFECT_RETRIES | {"unavailable", "server"}


@pytest.mark.parametrize("name", sorted(_errors()))
def test_retry_rules(name: str) -> None:
    error = _errors()[name]
    assert should_retry(error, read_only=True) is (name in READ_RETRIES)
    assert should_retry(error, read_only=False) is (name in EFFECT_RETRIES)
    assert should_retry(error, read_only=True, side_effects_on_server_errors=True) is (
        name in READ_RETRIES
    )
    assert should_retry(error, read_only=False, side_effects_on_server_errors=True) is (
        name in EFFECT_RETRIES_OPTED_IN
    )


def test_side_effects_are_not_retried_on_a_5xx_by_default() -> None:
    assert RetrySettings().side_effects_on_server_errors is False


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_no_5xx_says_ccc_did_not_act(status: int) -> None:
    code = "ServiceUnavailable" if status == 503 else f"HTTP{status}"
    error = error_from_response("DialEx", status, {"Code": code}, None)
    assert isinstance(error, CccServerError)
    assert error.retriable
    assert error.acted is None
    assert not error.safe_to_repeat


def test_timeout_after_sending_leaves_the_outcome_unknown() -> None:
    error = CccTimeoutError("slow", action="DialEx")
    assert error.sent
    assert error.acted is None
    assert "after the request was sent" in str(error)


def _state_after(error: BaseException, attempt: int) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def test_backoff_is_jittered_capped_and_honours_retry_after() -> None:
    backoff = Backoff(RetrySettings(max_attempts=5, backoff_initial_s=0.1, backoff_max_s=0.8))
    plain = CccServerError("m", action="A", code="InternalError", http_status=500, request_id=None)
    delays = [backoff(_state_after(plain, attempt)) for attempt in range(1, 9) for _ in range(20)]
    assert all(0 <= d <= 0.8 for d in delays)
    assert len(set(delays)) > 10  # jittered, not a fixed schedule
    hinted = CccThrottledError(
        "m", action="A", code="Throttling.User", http_status=400, request_id=None, retry_after=2.5
    )
    assert backoff(_state_after(hinted, 1)) == 2.5


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-acs-retry-after": "200"}, 0.2),
        ({"Retry-After": "3"}, 3.0),
        ({"x-acs-retry-after": "0"}, None),
        ({"x-acs-retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_header(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_credentials_in_the_servers_string_to_sign_are_masked() -> None:
    text = (
        "Specified signature is not matched with our calculation. server string to sign is:"
        "POST&%2F&AccessKeyId%3DSTS.k%26SecurityToken%3Dsts%252Btok%253D%26Version%3D2017"
    )
    error = error_from_response(
        "GetInstance", 400, {"Code": "SignatureDoesNotMatch", "Message": text}, None
    )
    assert "sts%252Btok" not in str(error)
    assert "SecurityToken%3D***%26Version%3D2017" in error.message
    assert "AccessKeyId%3DSTS.k" in error.message  # the rest stays, for comparing
