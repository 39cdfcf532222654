"""Standard Webhooks signatures (https://www.standardwebhooks.com/): HMAC-SHA256 of
`{webhook-id}.{webhook-timestamp}.{body}`, keyed by the secret's bytes, sent as
`webhook-signature: v1,<base64>`. Messages here never include a secret's value."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - the marker of a secret, not one
# The spec asks for 24 to 64 random bytes: shorter keys are guessable, longer buy nothing.
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def decode_secret(secret: str) -> bytes:
    """The key bytes of `whsec_<base64>`; ValueError naming what is wrong (not the value)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r}, then base64")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Padding may be left off, as other Standard Webhooks tools accept.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"must be {SECRET_PREFIX!r} followed by valid base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes, not {len(key)}"
        )
    return key


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value of one attempt."""
    signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers. The id is the event's, the same on every
    attempt, so a receiver drops duplicates by it; the timestamp is the attempt's."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, webhook_id, timestamp, body),
    }
