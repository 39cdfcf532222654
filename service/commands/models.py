"""Commands (PRODUCT.md section 3): what a producer puts on `ccc.commands.*`, and the one
result each gets on `ccc.commands.results`.

Inbound models forbid unknown fields: a misspelt `calle` is a rejected command naming the
field, not a call placed to nobody. Each kind is versioned by `schema_version`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticSerializationError, to_json

from service.cloudevents import EventData, Outbound, UtcTime, capped

CommandKind = Literal["dial", "sms", "appraise"]
KINDS: tuple[CommandKind, ...] = ("dial", "sms", "appraise")
COMMAND_TYPE = "com.aliyun.ccc.command.{kind}"  # the CloudEvents type a command may carry


@dataclass(frozen=True, slots=True)
class Limits:
    """Checks no CCC document sets, so each is a setting (commands.*; docs/emulator.md has
    the sources looked at). The defaults: phone numbers of 3 to 20 digits, a bound of the
    bridge's own; a template value of at most 35 characters, Alibaba SMS's default per
    variable, which Alibaba can lift for an account (None: not checked here)."""

    phone_min_digits: int = 3
    phone_max_digits: int = 20
    template_value_max_chars: int | None = 35

    @classmethod
    def of(cls, settings: LimitSettings) -> Limits:
        return cls(
            settings.phone_min_digits,
            settings.phone_max_digits,
            settings.template_value_max_chars,
        )


class LimitSettings(Protocol):
    """Where the limits are configured (CommandSettings)."""

    @property
    def phone_min_digits(self) -> int: ...
    @property
    def phone_max_digits(self) -> int: ...
    @property
    def template_value_max_chars(self) -> int | None: ...


DEFAULT_LIMITS = Limits()


def _limits(info: ValidationInfo) -> Limits:
    return info.context if isinstance(info.context, Limits) else DEFAULT_LIMITS


def _phone(number: str, info: ValidationInfo) -> str:
    limits = _limits(info)
    digits = number.removeprefix("+")
    low, high = limits.phone_min_digits, limits.phone_max_digits
    if not (digits.isascii() and digits.isdigit() and low <= len(digits) <= high):
        raise ValueError(
            f"{number!r} is not a phone number ({low} to {high} digits, optional leading +)"
        )
    return number


PhoneNumber = Annotated[
    str,
    AfterValidator(_phone),
    # With the default limits (commands.phone_min_digits / phone_max_digits).
    WithJsonSchema({"type": "string", "pattern": r"^\+?[0-9]{3,20}$"}),
]
# Visible ASCII only: an id goes into a Kafka key, a URL path and an HTTP header (Location),
# where control characters, spaces and non-ASCII cannot go as they are.
CommandId = Annotated[
    str,
    StringConstraints(pattern=r"^[!-~]{1,200}$"),
    Field(description="1 to 200 visible ASCII characters ('!' to '~'): no spaces or controls"),
]
Text = Annotated[str, StringConstraints(min_length=1, max_length=256)]
# Alibaba SMS's SendSms takes at most 1,000 numbers a request (its API reference; that CCC
# sends through Alibaba SMS is inferred from GetSmsConfig's SignName and TemplateCode).
MAX_PHONE_NUMBERS = 1000


# Metadata rides on every result: kept small so a result always fits a Kafka message.
MAX_METADATA_BYTES = 64 * 1024


def metadata_fits(metadata: dict[str, Any]) -> bool:
    if not metadata:
        return True
    try:
        return len(to_json(metadata)) <= MAX_METADATA_BYTES
    except (PydanticSerializationError, ValueError, RecursionError):
        return True  # unwritable, which is reported as such


class Inbound(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommandBase(Inbound):
    schema_version: Literal[1] = 1
    command_id: CommandId
    instance_id: Text
    expires_at: AwareDatetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _metadata_fits(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        if not metadata_fits(metadata):
            raise ValueError(f"larger than {MAX_METADATA_BYTES // 1024} KiB as JSON")
        return metadata


class DialEx(CommandBase):
    """An outbound call by DialEx: CCC rings `callee` and connects the call as
    `answer_mode` says (to an IVR flow, an agent or a skill group: the `route_point`)."""

    kind: ClassVar[CommandKind] = "dial"
    mode: Literal["dial_ex"]
    caller: PhoneNumber
    callee: PhoneNumber
    answer_mode: Literal["ivr", "agent", "skill_group"]
    route_point: Text | None = Field(None, validate_default=True)
    provider: Text | None = None

    @field_validator("route_point")
    @classmethod
    def _route_point_fits(cls, route_point: str | None, info: ValidationInfo) -> str | None:
        answer_mode = info.data.get("answer_mode")
        if answer_mode is None:  # itself invalid, and named so
            return route_point
        if route_point is None:
            raise ValueError(f"required when answer_mode is {answer_mode}")
        if answer_mode == "agent" and "@" not in route_point:
            raise ValueError("must be ram_id@instance-domain when answer_mode is agent")
        return route_point


class BackToBack(CommandBase):
    """A back-to-back call by StartBack2BackCall: CCC rings `caller`, then bridges `callee`."""

    kind: ClassVar[CommandKind] = "dial"
    mode: Literal["back_to_back"]
    caller: PhoneNumber
    callee: PhoneNumber
    call_center_number: PhoneNumber | None = None


class Sms(CommandBase):
    """A predefined SMS (SendPredefinedShortMessage) to one or more numbers."""

    kind: ClassVar[CommandKind] = "sms"
    config_id: int = Field(gt=0)
    phone_numbers: list[PhoneNumber] = Field(min_length=1, max_length=MAX_PHONE_NUMBERS)
    template_params: dict[str, str] = Field(default_factory=dict)

    @field_validator("template_params")
    @classmethod
    def _template_values_fit(cls, params: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        limit = _limits(info).template_value_max_chars
        too_long = sorted(name for name, value in params.items() if limit and len(value) > limit)
        if too_long:
            raise ValueError(f"{', '.join(too_long)}: longer than {limit} characters")
        return params


class VoiceAppraisal(CommandBase):
    """A voice satisfaction survey on a live call (LaunchAppraise)."""

    kind: ClassVar[CommandKind] = "appraise"
    channel: Literal["voice"]
    contact_id: Text


class SmsAppraisal(CommandBase):
    """An SMS satisfaction survey about a call (LaunchShortMessageAppraise)."""

    kind: ClassVar[CommandKind] = "appraise"
    channel: Literal["sms"]
    contact_id: Text
    contact_type: Literal["inbound", "outbound"]
    phone_numbers: list[PhoneNumber] = Field(min_length=1, max_length=MAX_PHONE_NUMBERS)
    skill_group_id: Text | None = None


Dial = Annotated[DialEx | BackToBack, Field(discriminator="mode")]
Appraise = Annotated[VoiceAppraisal | SmsAppraisal, Field(discriminator="channel")]
Command = DialEx | BackToBack | Sms | VoiceAppraisal | SmsAppraisal
COMMAND_MODELS: dict[CommandKind, tuple[type[Command], ...]] = {
    "dial": (DialEx, BackToBack),
    "sms": (Sms,),
    "appraise": (VoiceAppraisal, SmsAppraisal),
}
_ADAPTERS: dict[CommandKind, TypeAdapter[Any]] = {
    "dial": TypeAdapter(Dial),
    "sms": TypeAdapter(Sms),
    "appraise": TypeAdapter(Appraise),
}


# -- parsing ----------------------------------------------------------------------------


# What a rejection may say: enough to act on, and within a Kafka record whatever the input.
MAX_FIELD_ERRORS = 20
MAX_REASON = 500  # characters of one field's reason (it may quote the input)
MAX_FIELD = 200  # characters of a field's path (it may be an unknown key of any length)
MAX_MESSAGE = 16 * 1024  # characters of a result's error message
SMALL_MESSAGE = 1024  # of a result made smaller for a broker that refused it for its size


class FieldError(Outbound):
    field: Annotated[str, capped(MAX_FIELD)]  # dotted path, "" for the message as a whole
    reason: Annotated[str, capped(MAX_REASON)]


class InvalidCommandError(Exception):
    """A message that is not a valid command; whatever could be read of it is kept, so the
    rejection can still be answered under its command id."""

    def __init__(
        self,
        errors: list[FieldError],
        command_id: str | None = None,
        instance_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if len(errors) > MAX_FIELD_ERRORS:
            more = len(errors) - MAX_FIELD_ERRORS + 1
            errors = [
                *errors[: MAX_FIELD_ERRORS - 1],
                FieldError(field="", reason=f"and {more} more errors, not listed"),
            ]
        super().__init__(errors)
        self.errors = errors
        self.command_id = command_id
        self.instance_id = instance_id
        self.metadata = metadata

    def __str__(self) -> str:
        return "; ".join(f"{e.field or 'message'}: {e.reason}" for e in self.errors)


def parse_command(
    kind: CommandKind,
    value: bytes | None,
    instances: frozenset[str],
    limits: Limits = DEFAULT_LIMITS,
) -> Command:
    """The command in a Kafka record's value: plain JSON, or the `data` of a structured
    CloudEvent. Raises InvalidCommandError naming each bad field and why."""
    if value is None:
        raise InvalidCommandError([FieldError(field="", reason="the message has no value")])
    try:
        document = json.loads(value)
    except (ValueError, RecursionError) as error:  # also too deep, or too many digits
        reason = f"not JSON: {_printable(str(error))}"
        raise InvalidCommandError([FieldError(field="", reason=reason)]) from None
    body = _unwrap(kind, document)
    # Whatever is read must be writable again, in the ledger, the result and the DLQ.
    unwritable = _unwritable(body)
    try:
        command = validate_command(kind, body, limits)
    except InvalidCommandError as invalid:
        raise InvalidCommandError(unwritable + invalid.errors, *_readable(body)) from None
    if unwritable:
        raise InvalidCommandError(unwritable, *_readable(body))
    if command.instance_id not in instances:
        reason = (
            f"unknown instance {command.instance_id!r}: this service serves {sorted(instances)}"
        )
        raise InvalidCommandError(
            [FieldError(field="instance_id", reason=reason)], *_readable(body)
        )
    return command


def validate_command(kind: CommandKind, body: object, limits: Limits = DEFAULT_LIMITS) -> Command:
    """`body` as a command of `kind`, or InvalidCommandError naming each bad field."""
    try:
        command: Command = _ADAPTERS[kind].validate_python(body, context=limits)
    except ValidationError as error:
        raise InvalidCommandError(_field_errors(error), *_readable(body)) from None
    return command


def _unwrap(kind: CommandKind, document: object) -> object:
    if not (isinstance(document, dict) and "specversion" in document):
        return document
    expected = COMMAND_TYPE.format(kind=kind)
    if document.get("type") not in (None, expected):
        reason = f"a CloudEvent on this topic must have type {expected!r}"
        raise InvalidCommandError(
            [FieldError(field="type", reason=reason)], *_readable(document.get("data"))
        )
    if not isinstance(document.get("data"), dict):
        raise InvalidCommandError(
            [FieldError(field="data", reason="a CloudEvent's data must be a command object")]
        )
    return document["data"]


_TAGS = {"dial_ex", "back_to_back", "voice", "sms"}  # the union members' discriminators


def _field_errors(error: ValidationError) -> list[FieldError]:
    errors = []
    for e in error.errors(include_url=False):
        loc = e["loc"][1:] if e["loc"] and e["loc"][0] in _TAGS else e["loc"]
        if e["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            loc = (str(e.get("ctx", {}).get("discriminator", "")).strip("'"),)
        reason = _printable(e["msg"].removeprefix("Value error, "))  # it may quote the input
        errors.append(FieldError(field=".".join(str(part) for part in loc), reason=reason))
    return errors


def _readable(body: object) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """command_id, instance_id and metadata, where they are of the right type and can be
    written back."""
    if not isinstance(body, dict):
        return None, None, None

    def text(name: str) -> str | None:
        value = body.get(name)
        if isinstance(value, str) and 0 < len(value) <= 200 and _writable(value):
            return value
        return None

    metadata = body.get("metadata")
    usable = isinstance(metadata, dict) and _writable(metadata) and metadata_fits(metadata)
    return text("command_id"), text("instance_id"), metadata if usable else None


def _writable(value: object) -> bool:
    """JSON can carry what pydantic cannot write back: lone surrogates (`"\\udc00"`) and
    nesting deeper than its serializer's limit (about 255)."""
    try:
        to_json(value)
    except (PydanticSerializationError, ValueError, RecursionError):
        return False
    return True


def _unwritable(body: object) -> list[FieldError]:
    if not isinstance(body, dict) or _writable(body):  # the whole at once: the usual case
        return []
    return [
        FieldError(
            field=name if _writable(name) else "",
            reason="cannot be written back as JSON (a lone surrogate, or nested too deep)",
        )
        for name, value in body.items()
        if not (_writable(name) and _writable(value))
    ]


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode()


# -- results ----------------------------------------------------------------------------

Status = Literal["succeeded", "failed", "rejected", "expired", "duplicate", "indeterminate"]


class CommandError(Outbound):
    # CCC's error code, or the bridge's own (InvalidCommandError, Expired, ...)
    code: Annotated[str, capped(MAX_FIELD)]
    message: Annotated[str, capped(MAX_MESSAGE)]
    fields: list[FieldError] = Field(default_factory=list)  # what was wrong with a command


class CommandSource(Outbound):
    """The Kafka record a result answers."""

    topic: str
    partition: int
    offset: int


class Outcome(Outbound):
    """What came of executing a command: a result's own, or for a duplicate the original's."""

    status: Status
    action: str | None = None
    request_id: str | None = None
    task_id: str | None = None
    biz_id: str | None = None
    error: CommandError | None = None
    attempts: int = 0  # CCC calls made
    completed_at: UtcTime


class CommandResult(EventData):
    """The one result of one command message: what happened, with CCC's ids."""

    event_type = "com.aliyun.ccc.command.result"
    topic = "command_results"
    subject_field = "command_id"

    instance_id: str | None  # type: ignore[assignment] # None when a rejected message had none
    command_id: str
    kind: CommandKind
    status: Status
    action: str | None
    request_id: str | None
    task_id: str | None
    biz_id: str | None
    error: CommandError | None
    attempts: int
    received_at: UtcTime
    completed_at: UtcTime
    latency_ms: float  # received_at to completed_at
    metadata: dict[str, Any]
    source: CommandSource
    original: Outcome | None = None  # a duplicate's: the outcome of the command it repeats
    # Left out to fit a broker that refused the result for its size.
    dropped: list[str] = Field(default_factory=list)

    def key(self) -> str:
        return self.command_id

    def smaller(self) -> CommandResult:
        """This result without what may make it large (metadata, field errors; the messages
        cut), for a broker whose limit is below kafka.max_record_bytes."""

        def lean(error: CommandError | None) -> CommandError | None:
            if error is None:
                return None
            return error.model_copy(update={"message": error.message[:SMALL_MESSAGE], "fields": []})

        original = self.original
        if original is not None:
            original = original.model_copy(update={"error": lean(original.error)})
        return self.model_copy(
            update={
                "metadata": {},
                "error": lean(self.error),
                "original": original,
                "dropped": ["metadata", "error.fields"],
            }
        )

    def outcome(self) -> Outcome:
        return Outcome.model_validate(self.model_dump(include=set(Outcome.model_fields)))
