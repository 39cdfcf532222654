"""What a dead letter (commands' or webhooks') keeps of the Kafka record it stands for."""

from __future__ import annotations

import base64

# Kafka's default message limit is 1 MB and base64 adds a third, so a bigger value is cut
# (the original stays on its topic, where the letter says).
MAX_DEAD_VALUE = 512 * 1024


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def kept_bytes(key: bytes | None, value: bytes | None) -> dict[str, str | int | bool | None]:
    """The letter's key_base64, value_base64 (its first MAX_DEAD_VALUE bytes), value_bytes
    and value_truncated fields."""
    return {
        "key_base64": b64(key),
        "value_base64": b64(None if value is None else value[:MAX_DEAD_VALUE]),
        "value_bytes": None if value is None else len(value),
        "value_truncated": value is not None and len(value) > MAX_DEAD_VALUE,
    }
