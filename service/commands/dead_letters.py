"""The command dead letter: what `ccc.commands.dlq` gets for a message that could not be
read, parsed or validated."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from service.cloudevents import Outbound, capped
from service.commands.models import FieldError
from service.kafka.dead_letters import KeptRecord

DEAD_LETTER = "com.aliyun.ccc.command.dlq"
MAX_REASON = 8 * 1024  # characters: one line per field error, each cut already
# The reasons of letters a bug of ours wrote (the worker's, the parser's): not the message's
# fault, so `dlq replay` may send it again once the bug is fixed.
INTERNAL_ERROR = "internal error"
PARSER_FAILED = "cannot be read"
UNREADABLE = "the record cannot be read"  # a defect of the record: it fails again as it is
_BUG_REASONS = tuple(f"message: {reason}: " for reason in (INTERNAL_ERROR, PARSER_FAILED))


class DeadLetter(Outbound):
    """A command message that could not be read, parsed or validated: the reason, each bad
    field, and the record itself (its bytes cut to fit one Kafka record, `record.cut` says)."""

    dlq_id: str  # the same for the same message, however often it is rejected
    reason: Annotated[str, capped(MAX_REASON)]
    errors: list[FieldError]
    command_id: str | None
    rejected_at: datetime
    record: KeptRecord
    # Left out to fit a broker that refused the letter for its size: ["errors"], the record's
    # bytes then all cut too.
    dropped: list[str] = Field(default_factory=list)


def replayable(letter: DeadLetter) -> tuple[bool, str]:
    """Whether sending the message again could give another answer, and why (not)."""
    if letter.reason.startswith(_BUG_REASONS):
        return True, "an internal error"
    if letter.reason.startswith(f"message: {UNREADABLE}"):
        return False, f"{UNREADABLE}: sent again, it fails the same way"
    return False, "an invalid command: sent again, it is rejected again"
