"""Which event types an endpoint gets. A pattern is `*` (every type), an exact type, or a
prefix ending in `.*`: `com.aliyun.ccc.call.*` matches `com.aliyun.ccc.call.record` and
`com.aliyun.ccc.call.event`, not `com.aliyun.ccc.callback`."""

from __future__ import annotations

from collections.abc import Iterable

EVERY_TYPE = "*"
PREFIX_SUFFIX = ".*"


def check_pattern(pattern: str) -> str:
    """The pattern itself, or ValueError saying why it is not one."""
    if pattern == EVERY_TYPE:
        return pattern
    stem = pattern.removesuffix(PREFIX_SUFFIX)
    if not stem or "*" in stem or any(char.isspace() for char in stem):
        raise ValueError(
            f"{pattern!r}: use '*', an exact event type, or a prefix ending in '.*' "
            "such as 'com.aliyun.ccc.call.*'"
        )
    return pattern


def matches(patterns: Iterable[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern in (EVERY_TYPE, event_type):
            return True
        if pattern.endswith(PREFIX_SUFFIX) and event_type.startswith(pattern[:-1]):
            return True
    return False
