"""The command dead letter: what `ccc.commands.dlq` gets for a message that could not be
parsed or validated."""

from __future__ import annotations

from datetime import datetime

from service.cloudevents import Outbound
from service.commands.models import FieldError

DEAD_LETTER = "com.aliyun.ccc.command.dlq"


class DeadLetter(Outbound):
    """A command message that could not be parsed or validated, with the reason, its key,
    headers and value (the first MAX_DEAD_VALUE bytes of a bigger one)."""

    dlq_id: str  # the same for the same message, however often it is rejected
    reason: str
    errors: list[FieldError]
    command_id: str | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key_base64: str | None
    value_base64: str | None
    value_bytes: int | None  # the original value's size
    value_truncated: bool = False  # True: only its first MAX_DEAD_VALUE bytes are kept
    headers: list[tuple[str, str]]  # (name, value in base64)
    rejected_at: datetime
