"""Signature V1 (HMAC-SHA1) for CCC's RPC API, as pure functions.

Shared by the client (to sign) and the emulator (to verify), so both agree byte for byte.
See FACTS.md section 4: the canonical string is encoded twice, an empty value still signs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote

from pydantic import SecretStr

SIGNATURE_METHOD = "HMAC-SHA1"
SIGNATURE_VERSION = "1.0"
BEARER_SIGNATURE_TYPE = "BEARERTOKEN"


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def percent_encode(value: str) -> str:
    """RFC 3986 encoding: only A-Z a-z 0-9 - _ . ~ stay literal; space is %20, not +."""
    # Most names and values need no escaping; skipping quote() for them halves signing time.
    if _UNRESERVED.fullmatch(value):
        return value
    return quote(value, safe="~")


def form_encode(params: dict[str, str]) -> bytes:
    """An application/x-www-form-urlencoded body with the same encoding the signature uses."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params.items()).encode()


def canonical_query(params: dict[str, str]) -> str:
    pairs = sorted((percent_encode(k), percent_encode(v)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def string_to_sign(method: str, params: dict[str, str]) -> str:
    """Every parameter except Signature, from query and form body alike."""
    signed = {k: v for k, v in params.items() if k != "Signature"}
    return f"{method.upper()}&%2F&{percent_encode(canonical_query(signed))}"


def sign(text: str, secret: str) -> str:
    digest = hmac.new(f"{secret}&".encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An AccessKey pair; with `security_token` it is an STS credential."""

    access_key_id: str
    access_key_secret: SecretStr
    security_token: SecretStr | None = None


@dataclass(frozen=True, slots=True)
class BearerToken:
    token: SecretStr


Credentials = AccessKey | BearerToken


def authorize(
    method: str,
    params: dict[str, str],
    credentials: Credentials,
    *,
    timestamp: str,
    nonce: str,
) -> dict[str, str]:
    """The common parameters that authenticate one request, Signature included (if any).

    `params` are the request's own parameters (Action, Version, Format and the API's);
    the result is to be merged with them. Bearer mode sends no signature at all.
    """
    common = {"Timestamp": timestamp, "SignatureNonce": nonce}
    if isinstance(credentials, BearerToken):
        common["BearerToken"] = credentials.token.get_secret_value()
        common["SignatureType"] = BEARER_SIGNATURE_TYPE
        return common
    common["AccessKeyId"] = credentials.access_key_id
    common["SignatureMethod"] = SIGNATURE_METHOD
    common["SignatureVersion"] = SIGNATURE_VERSION
    if credentials.security_token is not None:
        common["SecurityToken"] = credentials.security_token.get_secret_value()
    text = string_to_sign(method, params | common)
    common["Signature"] = sign(text, credentials.access_key_secret.get_secret_value())
    return common
