"""One error taxonomy for CCC calls.

Two facts about every failure drive every decision upstream:
- `retriable`: a later attempt may succeed (throttling, 5xx, transport trouble);
- `acted`: False when CCC provably did not act (throttled, refused before the request left,
  rejected the request); None when it may have (a timeout after sending, any 5xx: no source
  says CCC did not act when it answers one, `ServiceUnavailable` included).
A side-effecting call is retried only when both say so (on a 5xx, only if the settings opt
in); a read whenever it is retriable.
"""

from __future__ import annotations

import re
from typing import Any

AUTH_CODES = frozenset(
    {
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "InvalidAccessKeySecret",
        "InvalidTimeStamp.Expired",
        "InvalidTimeStamp.Format",
        "SignatureNonceUsed",
        "InvalidSecurityToken.Expired",
        "InvalidSecurityToken.Malformed",
        "InvalidSecurityToken.MismatchWithAccessKey",
        "InvalidBearerToken",
        "Forbidden.RAM",
        "ActionUnauthorized",
    }
)


# A security token CCC refused before acting: a refreshable credential is renewed and the
# request signed again, once (service/ccc/client.py).
TOKEN_REFUSED_CODES = frozenset(
    {
        "InvalidSecurityToken.Expired",
        "InvalidSecurityToken.Malformed",
        "InvalidSecurityToken.MismatchWithAccessKey",
    }
)


class CccError(Exception):
    """Base of every error the client raises."""

    retriable = False
    acted: bool | None = None  # None: unknown

    def __init__(self, message: str, *, action: str) -> None:
        super().__init__(message)
        self.action = action
        self.message = message
        self.attempts = 1  # set by the client once it stops retrying

    @property
    def safe_to_repeat(self) -> bool:
        """True when repeating the call cannot double an effect in CCC."""
        return self.retriable and self.acted is False


class CccApiError(CccError):
    """CCC answered with an error body: a gateway error or `Success: false`."""

    acted: bool | None = False

    def __init__(  # noqa: PLR0913 - every field of the error body is worth keeping
        self,
        message: str,
        *,
        action: str,
        code: str,
        http_status: int,
        request_id: str | None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, action=action)
        self.code = code
        self.http_status = http_status
        self.request_id = request_id
        self.retry_after = retry_after  # seconds, from the server's hint

    def __str__(self) -> str:
        return (
            f"{self.action} failed: {self.code} (HTTP {self.http_status}, "
            f"RequestId {self.request_id}): {self.message}"
        )


class CccRequestError(CccApiError):
    """CCC rejected the request (4xx): fix the request, do not retry."""


class CccAuthError(CccRequestError):
    """Credentials, signature or clock skew: a configuration problem."""


class CccCredentialsError(CccError):
    """No credential to sign with: the provider kept failing past `ccc.credentials_retry_s`
    (service/ccc/credentials.py). Nothing was sent."""

    acted = False

    def __str__(self) -> str:
        return f"{self.action} not sent: {self.message}"


class CccThrottledError(CccApiError):
    """`Throttling*`: CCC refused to act for now."""

    retriable = True


class CccServerError(CccApiError):
    """A 5xx: CCC may or may not have acted."""

    retriable = True
    acted = None


class CccServiceUnavailableError(CccServerError):
    """`ServiceUnavailable` (503). Though it sounds like a refusal, nothing documents that CCC
    did not act, so it is as unknown as any other 5xx."""


class CccTransportError(CccError):
    """No usable HTTP answer: connection failure, reset, timeout or a garbled body."""

    retriable = True

    def __init__(self, message: str, *, action: str, sent: bool) -> None:
        super().__init__(message, action=action)
        self.sent = sent
        self.acted = None if sent else False

    def __str__(self) -> str:
        where = "after the request was sent" if self.sent else "before the request was sent"
        return f"{self.action} failed {where}: {self.message}"


class CccTimeoutError(CccTransportError):
    """No answer in time after the request was sent: the outcome is unknown."""

    def __init__(self, message: str, *, action: str) -> None:
        super().__init__(message, action=action, sent=True)


# The gateway quotes its string to sign in SignatureDoesNotMatch; with STS or bearer auth
# that string holds a credential. `&` separates its pairs as %26 (it is encoded twice).
_SIGNED_CREDENTIAL = re.compile(r"(SecurityToken|BearerToken)%3D.*?(?=%26|$)")


def _scrub(message: str) -> str:
    return _SIGNED_CREDENTIAL.sub(r"\1%3D***", message)


def error_from_response(
    action: str, http_status: int, body: dict[str, Any], retry_after: float | None
) -> CccApiError:
    """Map an error body (either casing, as the Tea SDK reads it) to its exception."""
    code = str(body.get("Code") or body.get("code") or f"HTTP{http_status}")
    message = _scrub(str(body.get("Message") or body.get("message") or ""))
    request_id = body.get("RequestId") or body.get("requestId")
    kind: type[CccApiError]
    if code.startswith("Throttling"):
        kind = CccThrottledError
    elif code == "ServiceUnavailable" or http_status == 503:
        kind = CccServiceUnavailableError
    elif http_status >= 500:
        kind = CccServerError
    elif code in AUTH_CODES or http_status in {401, 403}:
        kind = CccAuthError
    else:
        kind = CccRequestError
    return kind(
        message,
        action=action,
        code=code,
        http_status=http_status,
        request_id=None if request_id is None else str(request_id),
        retry_after=retry_after,
    )
