"""From a command to its CCC call, and from the call's end to an outcome. No I/O here."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from service.ccc.errors import CccApiError, CccError
from service.commands.models import (
    BackToBack,
    Command,
    CommandError,
    DialEx,
    Outcome,
    Sms,
    SmsAppraisal,
    VoiceAppraisal,
)

ANSWER_MODES = {"ivr": 0, "agent": 1, "skill_group": 2}  # DialEx AnswerMode
CONTACT_TYPES = {"inbound": 0, "outbound": 1}  # LaunchShortMessageAppraise ContactType


def ccc_request(command: Command) -> tuple[str, dict[str, Any]]:
    """The action and its wire parameters; optional ones are left out when not given."""
    params: dict[str, Any]
    match command:
        case DialEx():
            action = "DialEx"
            params = {
                "Caller": command.caller,
                "Callee": command.callee,
                "RoutPoint": command.route_point,  # sic: the API's spelling
                "AnswerMode": ANSWER_MODES[command.answer_mode],
                "Provider": command.provider,
            }
        case BackToBack():
            action = "StartBack2BackCall"
            params = {
                "Caller": command.caller,
                "Callee": command.callee,
                "CallCenterNumber": command.call_center_number,
            }
        case Sms():
            action = "SendPredefinedShortMessage"
            params = {
                "ConfigId": command.config_id,
                "PhoneNumbers": ",".join(command.phone_numbers),
                "TemplateParam": json.dumps(command.template_params, ensure_ascii=False)
                if command.template_params
                else None,
            }
        case VoiceAppraisal():
            action = "LaunchAppraise"
            params = {"Acid": command.contact_id}
        case SmsAppraisal():
            action = "LaunchShortMessageAppraise"
            params = {
                "Acid": command.contact_id,
                "ContactType": CONTACT_TYPES[command.contact_type],
                "PhoneNumbers": ",".join(command.phone_numbers),
                "SkillGroupId": command.skill_group_id,
            }
    params["InstanceId"] = command.instance_id
    return action, {name: value for name, value in params.items() if value is not None}


def succeeded(action: str, response: Any, attempts: int, at: datetime) -> Outcome:
    return Outcome(
        status="succeeded",
        action=action,
        request_id=getattr(response, "request_id", None),
        task_id=getattr(response, "task_id", None),
        biz_id=getattr(response, "biz_id", None),
        attempts=attempts,
        completed_at=at,
    )


def from_error(action: str, error: CccError, at: datetime) -> Outcome:
    """`failed` where CCC provably did not act (throttled, refused, never reached);
    `indeterminate` where it may have (a timeout after the request went out, a dropped
    connection, any 5xx, `ServiceUnavailable` included): never called again."""
    api = error if isinstance(error, CccApiError) else None
    return Outcome(
        status="failed" if error.acted is False else "indeterminate",
        action=action,
        request_id=api.request_id if api else None,
        error=CommandError(
            code=api.code if api else type(error).__name__.removeprefix("Ccc"),
            message=api.message if api else str(error),
        ),
        attempts=error.attempts,
        completed_at=at,
    )
