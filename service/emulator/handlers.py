"""The 89 CCC 2017-07-05 actions over the simulated contact centre.

A handler reads the typed wire parameters and returns its fields as views of the simulation's
objects; a view is a superset (a user view carries every field any user-shaped response
needs). `Shaper.fit` then projects the result onto the action's catalogue shape, so every
answer matches its shape exactly: keys outside the shape are dropped, leaves take the shape's
type, a key the handler leaves out is synthesised from its name (so actions without rich
behaviour are answered by the one synthesiser), and None stands for an empty object or list.

Time windows are half-open, [start, stop): consecutive polls neither miss nor repeat a fact.
A window starts no earlier than the simulation's retention cutoff: older facts are gone.
"""

from __future__ import annotations

import json
import re
import zlib
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

from service.ccc.catalog import load_catalog, snake_case
from service.emulator.model import (
    ACW,
    BREAK,
    CONFERENCE,
    DIALING,
    HELP_REQUESTED,
    HELPING,
    LISTED_STATES,
    OFFLINE,
    ONLINE_STATES,
    READY,
    RINGING,
    TALKING,
    Agent,
    BusinessError,
    Call,
    CallEvent,
    ContactFlow,
    Device,
    FlowVersion,
    Instance,
    PhoneNumber,
    Profile,
    SkillGroup,
    call_record,
    cdr_order,
    invalid,
    lookup,
    wall_text,
)

if TYPE_CHECKING:
    from service.emulator.sim import Simulation

T = TypeVar("T")
Handler = Callable[["Request"], dict[str, Any]]

COMMON_FIELDS = frozenset({"RequestId", "Success", "Code", "Message", "HttpStatusCode"})
MAX_PAGE_SIZE = 100
MAX_AGENT_IDS = 50
HOUR = 3_600_000
DAY = 24 * HOUR
CHINA_OFFSET = 8 * HOUR  # "today" is a China Standard Time day: every CCC region is in China
PHONE = re.compile(r"\+?\d{2,20}")
USAGES = ("Inbound", "Outbound", "Bidirection")
STATE_DESC = {
    OFFLINE: "Logged out",
    READY: "Idle",
    BREAK: "On break",
    RINGING: "Ringing",
    TALKING: "On a call",
    ACW: "After-call work",
    DIALING: "Dialing",
    CONFERENCE: "In a conference",
    HELP_REQUESTED: "Asking for help",
    HELPING: "Being helped",
}


# -- requests


@dataclass(frozen=True, slots=True)
class Request:
    sim: Simulation
    action: str
    params: Mapping[str, Any]
    instance: Instance | None  # None only for the few actions without InstanceId

    @property
    def now(self) -> int:
        return self.sim.now

    @property
    def inst(self) -> Instance:
        if self.instance is None:
            raise invalid("InstanceId", "is required for this action")
        return self.instance

    def text(self, name: str) -> str:
        value = self.params.get(name)
        return "" if value is None else str(value)

    def number(self, name: str) -> int | None:
        value = self.params.get(name)
        return None if value is None else int(value)

    def items(self, name: str) -> list[str]:
        return [str(v) for v in self.params.get(name) or []]

    def csv(self, name: str) -> list[str]:
        return [part.strip() for part in self.text(name).split(",") if part.strip()]

    def page(self) -> tuple[int, int]:
        return self.number("PageNumber") or 1, self.number("PageSize") or 10


def paged(req: Request, items: Sequence[T]) -> tuple[Sequence[T], dict[str, int]]:
    number, size = req.page()
    start = (number - 1) * size
    return items[start : start + size], {
        "TotalCount": len(items),
        "PageNumber": number,
        "PageSize": size,
    }


@dataclass(frozen=True, slots=True)
class WindowRule:
    start: str
    stop: str
    limit_ms: int
    limit_text: str
    code: str = "Parameter.Maximum"

    def check(self, start_ms: int, stop_ms: int, *, inclusive: bool) -> None:
        if stop_ms < start_ms:
            raise invalid(self.stop, f"{self.stop} must not be before {self.start}")
        span = stop_ms - start_ms
        if span > self.limit_ms or (span == self.limit_ms and not inclusive):
            raise BusinessError(
                400,
                self.code,
                f"The window from {self.start} to {self.stop} must be {self.limit_text}; "
                f"got {span / HOUR:.2f} hours.",
            )


STATE_LOG_WINDOW = WindowRule("StartTime", "EndTime", 2 * HOUR, "at most 2 hours")
AGENT_EVENT_WINDOW = WindowRule("StartTime", "StopTime", HOUR, "less than 1 hour")


def phone_numbers(param: str, raw: Iterable[str]) -> list[str]:
    numbers = [p.strip() for p in raw]
    if not numbers:
        raise invalid(param, "no phone number given")
    for number in numbers:
        if not (3 <= len(number) <= 20 and PHONE.fullmatch(number)):
            raise invalid(param, f"{number!r} is not a phone number (3 to 20 digits, optional +)")
    return numbers


def start_of_day(now: int) -> int:
    return (now + CHINA_OFFSET) // DAY * DAY - CHINA_OFFSET


# -- shapes


_BLANK: dict[str, Any] = {"string": "", "integer": 0, "long": 0, "number": 0.0, "boolean": False}
_COERCE: dict[str, Callable[[Any], Any]] = {
    "string": str,
    "integer": int,
    "long": int,
    "number": float,
    "boolean": bool,
}
EPOCH_KEYS = frozenset(
    {"CreatedTime", "LoginTime", "StartTime", "StopTime", "EndTime", "EventTime", "StateTime"}
)
WALL_SUFFIXES = ("Time", "Date", "Created", "Modified", "Timestamp")
AGGREGATE_PREFIXES = ("Average", "Max", "Total")


@cache
def response_shape(action: str) -> dict[str, Any]:
    response = load_catalog()[action].response
    return {k: v for k, v in response.items() if k not in COMMON_FIELDS}


def blank(shape: Any) -> Any:
    if isinstance(shape, list):
        return []
    if isinstance(shape, dict):
        return {k: blank(v) for k, v in shape.items()}
    return _BLANK[shape]


def _crc(text: str) -> int:
    # Not hash(): str hashes change between processes, the emulator's answers must not.
    return zlib.crc32(text.encode())


class Shaper:
    def __init__(self, req: Request) -> None:
        self._req = req

    def fit(self, shape: Any, value: Any, key: str, path: str) -> Any:
        if value is None:
            return blank(shape)
        if isinstance(shape, list):
            return [self.fit(shape[0], item, key, path) for item in value]
        if isinstance(shape, dict):
            return {
                k: self.fit(s, value[k], k, f"{path}.{k}")
                if k in value
                else self.synth(s, k, f"{path}.{k}")
                for k, s in shape.items()
            }
        return _COERCE[shape](value)

    def synth(self, shape: Any, key: str, path: str) -> Any:
        if isinstance(shape, list):
            return [self.synth(shape[0], key, f"{path}[{i}]") for i in range(1 + _crc(path) % 3)]
        if isinstance(shape, dict):
            out = {k: self.synth(s, k, f"{path}.{k}") for k, s in shape.items()}
            if "TotalCount" in shape:
                self._paginate(out)
            return out
        return self._leaf(shape, key, _crc(path))

    def _paginate(self, out: dict[str, Any]) -> None:
        holder = out.get("List")
        if isinstance(holder, dict):
            holder = next((v for v in holder.values() if isinstance(v, list)), None)
        items: list[Any] = holder if isinstance(holder, list) else []
        page, echo = paged(self._req, list(items))
        items[:] = page
        out.update(echo)

    def _leaf(self, kind: str, key: str, n: int) -> Any:
        if kind == "boolean":
            return n % 2 == 0
        if kind == "number":
            return round(n % 1000 / 1000, 3)
        if kind == "string":
            return self._text(key, n)
        now = self._req.now
        if key in EPOCH_KEYS:
            return now - n % 3600 * 1000
        if key in {"Year", "Month", "Day"}:
            return int(getattr(datetime.fromtimestamp(now / 1000, UTC), key.lower()))
        return n % 100

    def _text(self, key: str, n: int) -> str:
        if key.startswith(AGGREGATE_PREFIXES):
            return str(n % 600)
        if key.endswith(WALL_SUFFIXES):
            return wall_text(self._req.now - n % 3600 * 1000)
        inst = self._req.instance.id if self._req.instance else "ccc"
        return inst if key == "InstanceId" else _named_text(key, n, inst)


def _named_text(key: str, n: int, inst: str) -> str:
    name = snake_case(key).replace("_", "-")
    if key.endswith(("Number", "TelX", "Caller", "Callee")):
        return f"0571{n % 10**8:08d}"
    if key.endswith("Url") or key == "Host":
        return f"https://{inst}.ccc-emulator.invalid/{name}"
    if key.endswith(("Id", "Tid")):
        return f"{name}-{n % 100000}"
    return f"{inst}-{name}-{n % 1000}"


@cache
def _cdr_item_shape() -> dict[str, Any]:
    shape: dict[str, Any] = response_shape("ListCallDetailRecords")
    return dict(shape["CallDetailRecords"]["List"]["CallDetailRecord"][0])


def cdr_view(sim: Simulation, record: dict[str, Any]) -> dict[str, Any]:
    """A call detail record exactly as ListCallDetailRecords returns it."""
    req = Request(sim, "ListCallDetailRecords", {}, None)
    view: dict[str, Any] = Shaper(req).fit(_cdr_item_shape(), record, "", req.action)
    return view


def dispatch(sim: Simulation, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
    _check_paging(params)
    instance_id = params.get("InstanceId")
    inst = None if instance_id is None else sim.instance(str(instance_id))
    req = Request(sim, action, params, inst)
    handler = HANDLERS.get(action)
    body = {} if handler is None else handler(req)
    fitted: dict[str, Any] = Shaper(req).fit(response_shape(action), body, "", action)
    return fitted


def _check_paging(params: Mapping[str, Any]) -> None:
    size = params.get("PageSize")
    if size is not None and size > MAX_PAGE_SIZE:
        raise BusinessError(
            400,
            "Parameter.Maximum",
            f"The parameter PageSize must be at most {MAX_PAGE_SIZE}, got {size}.",
        )
    for name in ("PageSize", "PageNumber"):
        value = params.get(name)
        if value is not None and value < 1:
            raise BusinessError(
                400, "Parameter.Minimum", f"The parameter {name} must be at least 1, got {value}."
            )


# -- views: supersets of every shape the catalogue gives the same object


def _flow_brief(inst: Instance, flow: ContactFlow | None) -> dict[str, Any] | None:
    if flow is None:
        return None
    return {
        "ContactFlowDescription": flow.description,
        "ContactFlowId": flow.id,
        "ContactFlowName": flow.name,
        "InstanceId": inst.id,
        "Type": flow.type,
    }


def _number_view(inst: Instance, number: PhoneNumber) -> dict[str, Any]:
    groups = [inst.skill_groups[g] for g in number.skill_group_ids if g in inst.skill_groups]
    return {
        "AllowOutbound": number.allow_outbound,
        "Assignee": "",
        "City": number.city,
        "Province": number.province,
        "ContactFlow": _flow_brief(inst, inst.flows.get(number.contact_flow_id)),
        "InstanceId": inst.id,
        "Number": number.number,
        "NumberCommodityStatus": 1,
        "PhoneNumberDescription": number.description,
        "PhoneNumberId": number.id,
        "PrivacyNumber": None,
        "PrivateFlag": False,
        "RemainingTime": 0,
        "SipTelX": "",
        "SkillGroups": {
            "SkillGroup": [{"SkillGroupId": g.id, "SkillGroupName": g.name} for g in groups]
        },
        "TestOnly": False,
        "Trunks": 1,
        "Usage": number.usage,
    }


def _group_view(inst: Instance, group: SkillGroup) -> dict[str, Any]:
    numbers = [inst.numbers[n] for n in group.outbound_number_ids if n in inst.numbers]
    return {
        "AccQueueName": f"{inst.id}-{group.id}",
        "AccSkillGroupName": group.name,
        "AllowPrivateOutboundNumber": group.allow_private_outbound,
        "InstanceId": inst.id,
        "OutboundPhoneNumbers": {"PhoneNumber": [_number_view(inst, n) for n in numbers]},
        "RoutingStrategy": group.routing_strategy,
        "SkillGroupDescription": group.description,
        "SkillGroupId": group.id,
        "SkillGroupName": group.name,
    }


def _skill_levels(inst: Instance, agent: Agent) -> list[dict[str, Any]]:
    return [
        {
            "Level": level,
            "SkillLevelId": f"{agent.user_id}:{group_id}",
            "Skill": _group_view(inst, inst.skill_groups[group_id]),
        }
        for group_id, level in agent.skills.items()
        if group_id in inst.skill_groups
    ]


def _role_views(inst: Instance, *, with_counts: bool = False) -> dict[str, dict[str, Any]]:
    counts = Counter(r for a in inst.agents.values() for r in a.role_ids) if with_counts else None
    return {
        role.id: {
            "InstanceId": inst.id,
            "RoleId": role.id,
            "RoleName": role.name,
            "RoleDescription": role.description,
            "UserCount": counts[role.id] if counts else 0,
            "Privileges": {
                "Privilege": [
                    {
                        "PrivilegeId": f"{role.name.lower()}-console",
                        "PrivilegeName": f"{role.name} console",
                        "PrivilegeDescription": f"Everything a {role.name} may do",
                    }
                ]
            },
        }
        for role in inst.roles.values()
    }


def _user_view(inst: Instance, agent: Agent, roles: Mapping[str, Any]) -> dict[str, Any]:
    profile = agent.profile
    return {
        "Detail": {
            "Department": "Customer Service",
            "DisplayName": profile.display_name,
            "Email": profile.email,
            "Extension": agent.extension,
            "LoginName": profile.login_name,
            "Phone": profile.phone,
        },
        "InstanceId": inst.id,
        "Primary": False,
        "PrivateOutboundNumberId": agent.private_outbound_number_id,
        "RamId": agent.ram_id,
        "UserId": agent.user_id,
        "Roles": {"Role": [roles[r] for r in agent.role_ids if r in roles]},
        "SkillLevels": {"SkillLevel": _skill_levels(inst, agent)},
    }


def _users_page(req: Request, agents: Sequence[Agent], roles: Mapping[str, Any]) -> dict[str, Any]:
    page, echo = paged(req, agents)
    users = [_user_view(req.inst, a, roles) for a in page]
    return {"Users": {"List": {"User": users}, **echo}}


def _version_view(version: FlowVersion) -> dict[str, Any]:
    return {
        "Canvas": version.canvas,
        "Content": version.content,
        "ContactFlowVersionDescription": f"Version {version.version}",
        "ContactFlowVersionId": version.id,
        "LastModified": wall_text(version.modified_ms),
        "LastModifiedBy": version.modified_by,
        "LockedBy": "",
        "Status": version.status,
        "Version": version.version,
    }


def _flow_view(inst: Instance, flow: ContactFlow) -> dict[str, Any]:
    numbers = [n for n in inst.numbers.values() if n.contact_flow_id == flow.id]
    return {
        **(_flow_brief(inst, flow) or {}),
        "AppliedVersion": flow.applied_version,
        "PhoneNumbers": {"PhoneNumber": [_number_view(inst, n) for n in numbers]},
        "Versions": {"ContactFlowVersion": [_version_view(v) for v in flow.versions]},
    }


def _instance_view(inst: Instance) -> dict[str, Any]:
    roles = _role_views(inst)
    admins = [a for a in inst.agents.values() if f"Admin@{inst.id}" in a.role_ids]
    return {
        "Admin": {"User": [_user_view(inst, a, roles) for a in admins]},
        "ConsoleUrl": f"https://ccc.console.ccc-emulator.invalid/{inst.id}",
        "CreatedTime": inst.created_ms,
        "DirectoryId": f"dir-{inst.domain}",
        "DomainName": inst.domain,
        "InstanceDescription": inst.name,
        "InstanceId": inst.id,
        "InstanceName": inst.name,
        "MaxOnlineAgents": max(100, len(inst.agents)),
        "Owner": "emulator",
        "PhoneNumbers": {"PhoneNumber": [_number_view(inst, n) for n in inst.numbers.values()]},
        "Status": "Running",
        "StorageBucket": f"ccc-recordings-{inst.domain}",
        "StorageMaxDays": 180,
        "StorageMaxSize": 1024,
        "TenantId": inst.id,
    }


def _skill_group_brief(inst: Instance, agent: Agent) -> dict[str, Any]:
    groups = [inst.skill_groups[g] for g in agent.skills if g in inst.skill_groups]
    return {"SkillGroup": [{"SkillGroupId": g.id, "SkillGroupName": g.name} for g in groups]}


# -- parameter helpers


def _roles(inst: Instance, req: Request) -> list[str]:
    return [lookup(inst.roles, r, "RoleId", inst.id).id for r in req.items("RoleId")]


def _levels(req: Request, count: int) -> list[int]:
    """SkillLevel.N pairs with SkillGroupId.N / UserId.N; absent levels default to 1."""
    raw = req.items("SkillLevel")
    if raw and len(raw) != count:
        raise invalid(
            "SkillLevel", f"needs one level per skill assignment ({count}), got {len(raw)}"
        )
    levels = [int(v) for v in raw] if raw else [1] * count
    for index, level in enumerate(levels, start=1):
        if not 1 <= level <= 10:
            raise invalid(f"SkillLevel.{index}", f"must be between 1 and 10, got {level}")
    return levels


def _skills(inst: Instance, req: Request) -> dict[str, int] | None:
    """SkillGroupId.N with SkillLevel.N; None when the request does not set skills."""
    if "SkillGroupId" not in req.params:
        return None
    group_ids = [inst.skill_group(g).id for g in req.items("SkillGroupId")]
    return dict(zip(group_ids, _levels(req, len(group_ids)), strict=True))


def _members(inst: Instance, req: Request) -> dict[str, int] | None:
    """UserId.N with SkillLevel.N (CreateSkillGroup / ModifySkillGroup)."""
    if "UserId" not in req.params:
        return None
    user_ids = [inst.agent(u).user_id for u in req.items("UserId")]
    return dict(zip(user_ids, _levels(req, len(user_ids)), strict=True))


def _set_members(
    sim: Simulation, inst: Instance, group: SkillGroup, members: dict[str, int]
) -> None:
    for agent in list(inst.agents.values()):
        skills = {k: v for k, v in agent.skills.items() if k != group.id}
        if agent.user_id in members:
            skills[group.id] = members[agent.user_id]
        if skills != agent.skills:
            sim.reskill(inst, agent, skills)


def _number_ids(inst: Instance, req: Request, param: str) -> list[str]:
    return [inst.number(n).id for n in req.items(param)]


def _usage(req: Request) -> str:
    usage = req.text("Usage")
    if usage not in USAGES:
        raise invalid("Usage", f"must be one of {', '.join(USAGES)}, got {usage!r}")
    return usage


def _flow_id(inst: Instance, req: Request) -> str:
    flow_id = req.text("ContactFlowId")
    return lookup(inst.flows, flow_id, "ContactFlowId", inst.id).id if flow_id else ""


def _private_number(inst: Instance, req: Request) -> str:
    number_id = req.text("PrivateOutboundNumberId")
    return inst.number(number_id).id if number_id else ""


def _email(req: Request) -> str:
    email = req.text("Email")
    if "@" not in email:
        raise invalid("Email", f"{email!r} is not an email address")
    return email


def _optional_phone(req: Request, param: str) -> str:
    phone = req.text(param)
    return phone_numbers(param, [phone])[0] if phone else ""


def _template_param(raw: object) -> object:
    if raw is None:
        return None
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError as error:
        raise invalid("TemplateParam", f"is not valid JSON ({error.msg} at {error.pos})") from None
    if not isinstance(value, dict):
        raise invalid("TemplateParam", "must be a JSON object of template variables")
    return value


# -- agents


def _list_agent_states(req: Request) -> dict[str, Any]:
    inst, now = req.inst, req.now
    # Only agents active (a state change) within the window are listed (doc 90007): a quiet
    # one is absent though logged in.
    quiet = inst.unchanged_since(now - int(req.sim.config.active_window_s * 1000))
    seqs = _agent_state_seqs(inst, req)
    if quiet:
        seqs = [s for s in seqs if s not in quiet]
    if req.sim.config.shuffle_rows:
        seqs = list(seqs)  # never the index itself
        req.sim.shuffle(seqs)
    page, echo = paged(req, seqs)
    rows = []
    for seq in page:
        agent = inst.by_seq[seq]
        rows.append(
            {
                "AgentId": agent.ram_id,
                "AgentName": agent.display_name,
                "LoginName": agent.login_name,
                "Dn": agent.extension,
                "InstanceId": inst.id,
                "State": agent.state,
                "StateDuration": str((now - agent.since_ms) // 1000),
            }
        )
    return {"Data": {"List": {"RealTimeAgentState": rows}, **echo}}


def _agent_state_seqs(inst: Instance, req: Request) -> Sequence[int]:
    """Logged-in agents' seqs in stable order; unfiltered and State-filtered pages are slices
    of maintained indexes, so a page costs O(page), not O(agents)."""
    state = req.text("State")
    if state and state not in ONLINE_STATES:
        raise invalid("State", f"must be one of {', '.join(ONLINE_STATES)}, got {state!r}")
    seqs: Sequence[int] = inst.by_state[state] if state else inst.online
    wanted = req.csv("AgentIds")
    if len(wanted) > MAX_AGENT_IDS:
        raise BusinessError(
            400,
            "Parameter.Maximum",
            f"The parameter AgentIds lists at most {MAX_AGENT_IDS} agents.",
        )
    if wanted:
        agents = [inst.by_ram.get(a) for a in set(wanted)]
        allowed = {state} if state else set(LISTED_STATES)
        seqs = sorted(a.seq for a in agents if a is not None and a.state in allowed)
    group_id = req.text("SkillGroupId")
    if group_id:
        inst.skill_group(group_id)
        seqs = [s for s in seqs if group_id in inst.by_seq[s].skills]
    return seqs


def _list_skill_group_states(req: Request) -> dict[str, Any]:
    inst, now = req.inst, req.now
    wanted = req.csv("SkillGroupIds")
    groups = [inst.skill_group(g) for g in wanted] if wanted else list(inst.skill_groups.values())
    page, echo = paged(req, groups)
    counts: dict[str, Counter[str]] = {g.id: Counter() for g in page}
    for seq in inst.online:
        agent = inst.by_seq[seq]
        for group_id in agent.skills:
            if group_id in counts:
                counts[group_id][agent.state] += 1
    rows = [
        {
            "InstanceId": inst.id,
            "SkillGroupId": g.id,
            "SkillGroupName": g.name,
            # Every logged-in member counts once; Ringing and Dialing only in LoggedInAgents.
            "LoggedInAgents": counts[g.id].total(),
            "ReadyAgents": counts[g.id][READY],
            "TalkingAgents": counts[g.id][TALKING],
            "WorkingAgents": counts[g.id][ACW],
            "BreakingAgents": counts[g.id][BREAK],
            "WaitingCalls": len(g.queue),
            "LongestCall": (now - g.queue[0].queued_ms) // 1000 if g.queue else 0,
        }
        for g in page
    ]
    return {"Data": {"List": {"RealTimeSkillGroupState": rows}, **echo}}


def _list_real_time_agent(req: Request) -> dict[str, Any]:
    inst = req.inst
    users = [
        {
            "DisplayName": a.display_name,
            "Dn": a.extension,
            "Phone": a.profile.phone,
            "RamId": a.ram_id,
            "SkillLevels": {"SkillLevel": _skill_levels(inst, a)},
            "State": a.state,
            "StateDesc": STATE_DESC[a.state],
        }
        for a in inst.agents.values()
    ]
    return {"Data": {"User": users}}


def _list_agent_state_logs(req: Request) -> dict[str, Any]:
    inst = req.inst
    agent = inst.agent_by_ram(req.text("RamId"), "RamId")
    start, end = int(req.params["StartTime"]), int(req.params["EndTime"])
    STATE_LOG_WINDOW.check(start, end, inclusive=True)
    low = bisect_left(agent.log, max(start, req.sim.retained_since), key=lambda e: e[0])
    high = bisect_left(agent.log, end, key=lambda e: e[0])
    page, echo = paged(req, agent.log[low:high])
    rows = [
        {
            "ConnectId": f"{contact_id}-{agent.seq}" if contact_id else "",
            "ContactId": contact_id,
            "CounterParty": counter_party,
            "InstanceId": inst.id,
            "RamId": agent.ram_id,
            "SkillGroupIds": skill_group_ids,
            "State": state,
            "StateCode": code,
            "StateTime": at,
        }
        for at, state, code, contact_id, counter_party, skill_group_ids in page
    ]
    return {"AgentStateLogPage": {"List": rows, **echo}}


def _list_agent_events(req: Request) -> dict[str, Any]:
    inst = req.inst
    agents = [inst.agent_by_ram(r, "RamId") for r in req.items("RamId")]
    stop = req.number("StopTime") or req.now
    given_start = req.number("StartTime")
    if given_start is None:
        start = stop - HOUR  # the documented default window, exempt from the < 1 h rule
    else:
        start = given_start
        AGENT_EVENT_WINDOW.check(start, stop, inclusive=False)
    labels = set(req.items("Event"))
    start = max(start, req.sim.retained_since)
    rows: list[dict[str, Any]] = []
    for agent in agents:
        low = bisect_left(agent.events, start, key=lambda e: e[0])
        high = bisect_left(agent.events, stop, key=lambda e: e[0])
        groups = _skill_group_brief(inst, agent)
        rows.extend(
            {
                "Event": label,
                "EventTime": at,
                "InstanceId": inst.id,
                "LoginName": agent.login_name,
                "RamId": agent.ram_id,
                "SkillGroupIds": groups,
            }
            for at, label in agent.events[low:high]
            if not labels or label in labels
        )
    rows.sort(key=lambda r: int(r["EventTime"]))  # stable: ties keep per-agent order
    return {"AgentEventList": {"AgentEvent": rows}}


# -- calls


def _cdr_filters(req: Request) -> list[Callable[[Call], bool]]:
    """Checks on the record's ContactId, ContactType, ContactDisposition, CallingNumber,
    CalledNumber and AgentNames, read from the ended call the record is built from."""
    checks: list[Callable[[Call], bool]] = []
    if contact_id := req.text("ContactId"):
        checks.append(lambda c: c.contact_id == contact_id)
    if kinds := set(req.csv("ContactType")):
        checks.append(lambda c: c.contact_type in kinds)
    if dispositions := set(req.csv("ContactDisposition")):
        checks.append(lambda c: c.disposition in dispositions)
    if phone := req.text("PhoneNumber"):
        checks.append(lambda c: phone in {c.caller, c.callee})
    if criteria := req.text("Criteria"):
        checks.append(
            lambda c: any(criteria in f for f in (c.contact_id, c.caller, c.callee, c.agent_name))
        )
    return checks


def _cdr_positions(req: Request) -> Sequence[int]:
    """Where the matching records sit in `inst.records`, in the order asked for. Unfiltered,
    it is a range, so a page costs O(log n + page) however long the window; a filter costs
    O(window)."""
    inst, now = req.inst, req.now
    start = req.number("StartTime") or start_of_day(now)
    stop = req.number("StopTime") or now
    if stop < start:
        raise invalid("StopTime", "StopTime must not be before StartTime")
    order = req.text("OrderBy").upper() or "ASC"
    if order not in {"ASC", "DESC"}:
        raise invalid("OrderBy", f"must be ASC or DESC, got {req.text('OrderBy')!r}")
    start = max(start, req.sim.retained_since)
    low = bisect_left(inst.records, (start, ""), key=cdr_order)
    high = bisect_left(inst.records, (stop, ""), key=cdr_order)
    positions: Sequence[int] = range(low, high)
    if checks := _cdr_filters(req):
        records = inst.records
        positions = [i for i in positions if all(check(records[i]) for check in checks)]
    return positions[::-1] if order == "DESC" else positions


def _list_call_records(req: Request) -> dict[str, Any]:
    records = req.inst.records
    positions, echo = paged(req, _cdr_positions(req))
    page = [call_record(records[i]) for i in positions]
    if req.params.get("WithRecording") is False:
        page = [{**r, "Recordings": None} for r in page]
    return {"CallDetailRecords": {"List": {"CallDetailRecord": page}, **echo}}


def _list_call_events(req: Request) -> dict[str, Any]:
    inst = req.inst
    call = req.sim.contact(inst, req.text("ContactId"), "ContactId")
    release_agent = call.agent.display_name if call.agent and call.ended else ""
    return {
        "Data": {
            "CallType": call.contact_type,
            "Caller": call.caller,
            "Callee": call.callee,
            "StartTime": str(call.start_ms),
            "ReleaseReason": call.disposition,
            "ReleaseAgent": release_agent,
            "PrivacyNumber": "",
            "Events": {"CallEventDetail": [_call_event_view(call, e) for e in call.events]},
        }
    }


def _call_event_view(call: Call, event: CallEvent) -> dict[str, Any]:
    at, name, status, agent_name, skill_group_name = event
    return {
        "Event": name,
        "Status": status,
        "TimeStamp": str(at),
        "AgentName": agent_name,
        "CallMode": call.contact_type,
        "Duration": (at - call.start_ms) // 1000,  # seconds into the call
        "DetailData": {
            "EventType": name,
            "HangUper": "",
            "Helper": "",
            "SatisfactionalResearch": "",
            "SkillGroup": skill_group_name,
        },
    }


def _list_recordings_by_contact(req: Request) -> dict[str, Any]:
    inst = req.inst
    call = req.sim.contact(inst, req.text("ContactId"), "ContactId")
    return {"Recordings": call_record(call)["Recordings"] if call.ended else None}


def _download_recording(req: Request) -> dict[str, Any]:
    return {"MediaDownloadParam": {"FileName": req.text("FileName")}}


# -- commands with side effects


def _dial_ex(req: Request) -> dict[str, Any]:
    inst = req.inst
    phone_numbers("Caller", [req.text("Caller")])
    phone_numbers("Callee", [req.text("Callee")])
    target = _route_target(inst, req.number("AnswerMode"), req.text("RoutPoint"))
    call = req.sim.dial(inst, req.action, dict(req.params), target)
    return _dial_reply(call.task_id, req.now)


def _route_target(inst: Instance, mode: int | None, route: str) -> Agent | SkillGroup | None:
    if mode not in {0, 1, 2}:
        raise invalid("AnswerMode", f"must be 0 (IVR), 1 (agent) or 2 (skill group), got {mode}")
    if not route:
        raise invalid("RoutPoint", "must not be empty")
    if mode == 0:
        return None
    if mode == 2:
        group = inst.skill_groups.get(route)
        if group is None:
            raise BusinessError(
                404,
                "NotExists.SkillGroupId",
                f"The skill group {route} given as RoutPoint does not exist in instance {inst.id}.",
            )
        return group
    ram_id, at, domain = route.partition("@")
    if not at or domain != inst.domain:
        raise invalid("RoutPoint", f"must be ram_id@{inst.domain} when AnswerMode is 1")
    return inst.agent_by_ram(ram_id, "RoutPoint")


def _dial_reply(task_id: str, now: int) -> dict[str, Any]:
    return {
        "TaskId": task_id,
        "StatusCode": "Success",
        "StatusDesc": "The call is being placed.",
        "TimeStamp": str(now),
    }


def _start_back2back_call(req: Request) -> dict[str, Any]:
    inst = req.inst
    phone_numbers("Caller", [req.text("Caller")])
    phone_numbers("Callee", [req.text("Callee")])
    number = req.text("CallCenterNumber")
    if number and number not in {n.number for n in inst.numbers.values()}:
        raise invalid("CallCenterNumber", f"{number} is not a number of instance {inst.id}")
    if not number and not inst.outbound_numbers():
        raise invalid("CallCenterNumber", f"instance {inst.id} has no outbound-capable number")
    call = req.sim.dial(inst, req.action, dict(req.params), None)
    return _dial_reply(call.task_id, req.now)


def _send_sms(req: Request) -> dict[str, Any]:
    inst = req.inst
    config = lookup(inst.sms_configs, int(req.params["ConfigId"]), "ConfigId", inst.id)
    phones = phone_numbers("PhoneNumbers", req.csv("PhoneNumbers"))
    param = _template_param(req.params.get("TemplateParam"))
    return {"BizId": req.sim.record_sms(inst, config.id, phones, param)}


def _launch_appraise(req: Request) -> dict[str, Any]:
    inst = req.inst
    acid = req.sim.contact(inst, req.text("Acid"), "Acid").contact_id
    req.sim.record_appraisal(inst, req.action, acid, [])
    return {}


def _launch_sms_appraise(req: Request) -> dict[str, Any]:
    inst = req.inst
    acid = req.sim.contact(inst, req.text("Acid"), "Acid").contact_id
    contact_type = req.number("ContactType")
    if contact_type not in {0, 1}:
        raise invalid("ContactType", f"must be 0 (inbound) or 1 (outbound), got {contact_type}")
    phones = phone_numbers("PhoneNumbers", req.csv("PhoneNumbers"))
    if group_id := req.text("SkillGroupId"):
        inst.skill_group(group_id)
    req.sim.record_appraisal(inst, req.action, acid, phones)
    return {}


# -- users


def _list_users(req: Request) -> dict[str, Any]:
    inst = req.inst
    number, size = req.page()
    page = islice(inst.agents.values(), (number - 1) * size, number * size)
    roles = _role_views(inst)
    users = [_user_view(inst, a, roles) for a in page]
    echo = {"TotalCount": len(inst.agents), "PageNumber": number, "PageSize": size}
    return {"Users": {"List": {"User": users}, **echo}}


def _find_users(req: Request) -> dict[str, Any]:
    inst = req.inst
    criteria = req.text("Criteria").lower()
    found = [
        a
        for a in inst.agents.values()
        if criteria in a.login_name.lower() or criteria in a.display_name.lower()
    ]
    return _users_page(req, found, _role_views(inst))


def _list_users_of_skill_group(req: Request) -> dict[str, Any]:
    inst = req.inst
    group = inst.skill_group(req.text("SkillGroupId"))
    members = [a for a in inst.agents.values() if group.id in a.skills]
    return _users_page(req, members, _role_views(inst, with_counts=True))


def _get_user(req: Request) -> dict[str, Any]:
    inst = req.inst
    return {"User": _user_view(inst, inst.agent(req.text("UserId")), _role_views(inst))}


def _get_user_by_extension(req: Request) -> dict[str, Any]:
    inst = req.inst
    extension = req.text("Extension")
    by_extension = {a.extension: a for a in inst.agents.values()}
    view = _user_view(
        inst, lookup(by_extension, extension, "Extension", inst.id), _role_views(inst)
    )
    # This one action lists roles and skill levels without the XML-heritage wrappers.
    view["Roles"] = view["Roles"]["Role"]
    view["SkillLevels"] = view["SkillLevels"]["SkillLevel"]
    return {"User": view}


def _create_user(req: Request) -> dict[str, Any]:
    inst = req.inst
    login = req.text("LoginName")
    if not login:
        raise invalid("LoginName", "must not be empty")
    if login in inst.by_login:
        raise BusinessError(
            409, "AlreadyExists.UserName", f"The user name {login} already exists in {inst.id}."
        )
    profile = Profile(login, req.text("DisplayName"), _email(req), _optional_phone(req, "Phone"))
    roles, skills, private = _roles(inst, req), _skills(inst, req), _private_number(inst, req)
    agent = req.sim.create_agent(inst, profile, roles, skills or {})
    agent.private_outbound_number_id = private
    return {"UserId": agent.user_id}


def _modify_user(req: Request) -> dict[str, Any]:
    inst = req.inst
    agent = inst.agent(req.text("UserId"))
    profile = replace(
        agent.profile,
        display_name=req.text("DisplayName"),
        email=_email(req),
        phone=_optional_phone(req, "Phone"),
    )
    roles, skills = _roles(inst, req), _skills(inst, req)
    if "PrivateOutboundNumberId" in req.params:
        agent.private_outbound_number_id = _private_number(inst, req)
    agent.profile, agent.role_ids = profile, roles
    if skills is not None:
        req.sim.reskill(inst, agent, skills)
    return {}


def _remove_users(req: Request) -> dict[str, Any]:
    inst = req.inst
    for agent in [inst.agent(u) for u in req.items("UserId")]:
        req.sim.remove_agent(inst, agent)
    return {}


def _assign_users(req: Request) -> dict[str, Any]:
    inst = req.inst
    roles = _roles(inst, req) or [f"Agent@{inst.id}"]
    skills = _skills(inst, req)
    ram_ids = req.items("UserRamId")
    for ram_id in ram_ids:
        if not ram_id.isdigit():
            raise invalid("UserRamId", f"{ram_id!r} is not a RAM user id")
    users = []
    for ram_id in ram_ids:
        agent = inst.by_ram.get(ram_id)
        if agent is None:
            login = f"ram{ram_id}"
            email = f"{login}@{inst.domain}.example.com"
            profile = Profile(login, login, email, "", ram_id=ram_id)
            agent = req.sim.create_agent(inst, profile, roles, skills or {})
        else:
            agent.role_ids = roles
            if skills is not None:
                req.sim.reskill(inst, agent, skills)
        users.append(
            {"InstanceId": inst.id, "Primary": False, "RamId": ram_id, "UserId": agent.user_id}
        )
    return {"Data": {"User": users}}


def _modify_skill_group_of_user(req: Request) -> dict[str, Any]:
    inst = req.inst
    agent = inst.agent(req.text("UserId"))
    agent.role_ids = _roles(inst, req)
    req.sim.reskill(inst, agent, _skills(inst, req) or {})
    return {}


def _remove_users_from_skill_group(req: Request) -> dict[str, Any]:
    inst = req.inst
    group = inst.skill_group(req.text("SkillGroupId"))
    for agent in [inst.agent(u) for u in req.items("UserId")]:
        req.sim.reskill(inst, agent, {k: v for k, v in agent.skills.items() if k != group.id})
    return {}


def _reset_user_status(req: Request) -> dict[str, Any]:
    inst = req.inst
    for agent in [inst.agent_by_ram(r, "RamIdList") for r in req.items("RamIdList")]:
        req.sim.reset_agent(agent)
    return {}


def _list_skill_groups_of_user(req: Request) -> dict[str, Any]:
    inst = req.inst
    return {"SkillLevels": {"SkillLevel": _skill_levels(inst, inst.agent(req.text("UserId")))}}


def _list_outbound_numbers_of_user(req: Request) -> dict[str, Any]:
    inst = req.inst
    agent = inst.agent(req.text("UserId"))
    ids = [
        n
        for g in agent.skills
        if g in inst.skill_groups
        for n in inst.skill_groups[g].outbound_number_ids
    ]
    private = agent.private_outbound_number_id
    numbers = [inst.numbers[n] for n in dict.fromkeys([*ids, private]) if n in inst.numbers]
    views = [{**_number_view(inst, n), "PrivateFlag": n.id == private} for n in numbers]
    return {
        "NumberList": {"Number": [n.number for n in numbers]},
        "OutboundPhoneNumbers": {"PhoneNumber": views},
    }


def _request_login_info(req: Request) -> dict[str, Any]:
    inst = req.inst
    user_id = req.text("UserId")
    agent = inst.agent(user_id) if user_id else inst.agent(next(iter(inst.agents), ""))
    roles = _role_views(inst)
    base = f"{inst.domain}.ccc-emulator.invalid"
    return {
        "LoginInfo": {
            "AgentServerUrl": f"wss://{base}/agent",
            "WebRtcUrl": f"wss://{base}/webrtc",
            "DisplayName": agent.display_name,
            "Extension": agent.extension,
            "PhoneNumber": agent.profile.phone,
            "Region": req.sim.region,
            "Roles": {"Role": [roles[r] for r in agent.role_ids if r in roles]},
            "SignData": f"{inst.id}:{agent.ram_id}:{req.now}",
            "Signature": f"{zlib.crc32(f'{inst.id}:{agent.ram_id}:{req.now}'.encode()):08x}",
            "TenantId": inst.id,
            "UserName": agent.login_name,
        }
    }


# -- skill groups and trunks


def _list_skill_groups(req: Request) -> dict[str, Any]:
    inst = req.inst
    ids, names = set(req.items("SkillGroupId")), set(req.items("SkillGroupName"))
    counts = Counter(g for a in inst.agents.values() for g in a.skills)
    groups = [
        {**_group_view(inst, g), "UserCount": counts[g.id]}
        for g in inst.skill_groups.values()
        if (not ids or g.id in ids) and (not names or g.name in names)
    ]
    return {"SkillGroups": {"SkillGroup": groups}}


def _list_transferable_skill_groups(req: Request) -> dict[str, Any]:
    listed: dict[str, Any] = _list_skill_groups(req)["SkillGroups"]
    return {"SkillGroups": listed["SkillGroup"]}


def _create_skill_group(req: Request) -> dict[str, Any]:
    inst = req.inst
    name = req.text("Name")
    if not name:
        raise invalid("Name", "must not be empty")
    numbers, members = _number_ids(inst, req, "OutboundPhoneNumberId"), _members(inst, req)
    group = SkillGroup(
        inst.next_id("skg"),
        name,
        req.text("Description"),
        req.text("RoutingStrategy") or "LongestIdle",
        numbers,
        allow_private_outbound=bool(req.params.get("AllowPrivateOutboundNumber")),
    )
    inst.skill_groups[group.id] = group
    _set_members(req.sim, inst, group, members or {})
    return {"SkillGroupId": group.id}


def _modify_skill_group(req: Request) -> dict[str, Any]:
    inst = req.inst
    group = inst.skill_group(req.text("SkillGroupId"))
    members = _members(inst, req)
    if "OutboundPhoneNumberId" in req.params:
        group.outbound_number_ids = _number_ids(inst, req, "OutboundPhoneNumberId")
    group.name = req.text("Name") or group.name
    group.description = req.text("Description") or group.description
    group.routing_strategy = req.text("RoutingStrategy") or group.routing_strategy
    if "AllowPrivateOutboundNumber" in req.params:
        group.allow_private_outbound = bool(req.params["AllowPrivateOutboundNumber"])
    if members is not None:
        _set_members(req.sim, inst, group, members)
    return {}


def _delete_skill_group(req: Request) -> dict[str, Any]:
    inst = req.inst
    req.sim.delete_skill_group(inst, inst.skill_group(req.text("SkillGroupId")))
    return {}


def _modify_skill_group_outbound_numbers(req: Request) -> dict[str, Any]:
    """OperationType 1 adds the numbers, 2 removes them (the 2017 docs leave it unsaid)."""
    inst = req.inst
    group = inst.skill_group(req.text("SkillGroupId"))
    numbers = _number_ids(inst, req, "OutboundPhoneNumberId")
    operation = req.number("OperationType")
    if operation == 1:
        group.outbound_number_ids = list(dict.fromkeys([*group.outbound_number_ids, *numbers]))
    elif operation == 2:
        group.outbound_number_ids = [n for n in group.outbound_number_ids if n not in numbers]
    else:
        raise invalid("OperationType", f"must be 1 (add) or 2 (remove), got {operation}")
    return {}


def _modify_primary_trunks(req: Request) -> dict[str, Any]:
    inst = req.inst
    group = inst.skill_group(req.text("SkillGroupId"))
    names = req.items("PrimaryProviderName")
    for name in names:
        lookup(req.sim.trunk_providers, name, "PrimaryProviderName", inst.id)
    group.primary_trunks = names
    return {}


def _list_trunks_of_skill_group(req: Request) -> dict[str, Any]:
    group = req.inst.skill_group(req.text("SkillGroupId"))
    trunks = [
        {"Primary": p in group.primary_trunks, "ProviderName": p} for p in req.sim.trunk_providers
    ]
    return {"TrunkConfigs": trunks}


def _list_trunk_providers(req: Request) -> dict[str, Any]:
    providers = [{"ProviderName": p, "Status": s} for p, s in req.sim.trunk_providers.items()]
    return {"TrunkProviders": providers}


def _disable_trunk_providers(req: Request) -> dict[str, Any]:
    names = req.items("ProviderName")
    for name in names:
        lookup(req.sim.trunk_providers, name, "ProviderName", "any instance")
    req.sim.trunk_providers.update(dict.fromkeys(names, "Disabled"))
    return {}


# -- phone numbers


def _new_number(inst: Instance, req: Request, number: str) -> PhoneNumber:
    if any(n.number == number for n in inst.numbers.values()):
        raise BusinessError(
            409, "AlreadyExists.PhoneNumber", f"The number {number} already exists in {inst.id}."
        )
    created = PhoneNumber(
        inst.next_id("pn"), number, _usage(req), contact_flow_id=_flow_id(inst, req)
    )
    inst.numbers[created.id] = created
    return created


def _add_phone_number(req: Request) -> dict[str, Any]:
    number = phone_numbers("PhoneNumber", [req.text("PhoneNumber")])[0]
    return {"PhoneNumber": _number_view(req.inst, _new_number(req.inst, req, number))}


def _add_bulk_phone_numbers(req: Request) -> dict[str, Any]:
    inst = req.inst
    _usage(req)
    groups = [inst.skill_group(g).id for g in req.items("SkillGroupId")]
    known = {n.number for n in inst.numbers.values()}
    added, failed, used = [], [], []
    for raw in req.items("PhoneNumber"):
        if not (3 <= len(raw) <= 20 and PHONE.fullmatch(raw)):
            failed.append(raw)
        elif raw in known:
            used.append(raw)
        else:
            created = _new_number(inst, req, raw)
            created.skill_group_ids = list(groups)
            known.add(raw)
            added.append(_number_view(inst, created))
    return {
        "PhoneNumbers": {"PhoneNumber": added},
        "FailedPhoneNumbers": {"FailedPhoneNumber": failed},
        "UserdPhoneNumbers": {"UserdPhoneNumber": used},
        "ArrearagePhoneNumbers": {"ArrearagePhoneNumber": []},
    }


def _modify_phone_number(req: Request) -> dict[str, Any]:
    inst = req.inst
    number = inst.number(req.text("PhoneNumberId"))
    usage, flow_id = _usage(req), _flow_id(inst, req)
    if "SkillGroupId" in req.params:
        number.skill_group_ids = [inst.skill_group(g).id for g in req.items("SkillGroupId")]
    number.usage = usage
    number.contact_flow_id = flow_id or number.contact_flow_id
    return {"PhoneNumber": _number_view(inst, number)}


def _remove_phone_number(req: Request) -> dict[str, Any]:
    inst = req.inst
    number = inst.number(req.text("PhoneNumberId"))
    del inst.numbers[number.id]
    for group in inst.skill_groups.values():
        if number.id in group.outbound_number_ids:
            group.outbound_number_ids.remove(number.id)
    return {}


def _list_phone_numbers(req: Request) -> dict[str, Any]:
    inst = req.inst
    outbound_only = bool(req.params.get("OutboundOnly"))
    numbers = [n for n in inst.numbers.values() if n.allow_outbound or not outbound_only]
    return {"PhoneNumbers": {"PhoneNumber": [_number_view(inst, n) for n in numbers]}}


# -- contact flows


def _create_contact_flow(req: Request) -> dict[str, Any]:
    inst = req.inst
    name, kind = req.text("Name"), req.text("Type")
    if not name or not kind:
        raise invalid("Name" if not name else "Type", "must not be empty")
    version = FlowVersion(
        inst.next_id("flowver"), "V1", "Draft", req.text("Canvas"), req.text("Content"), req.now
    )
    flow = ContactFlow(inst.next_id("flow"), name, req.text("Description"), kind, [version])
    inst.flows[flow.id] = flow
    return {"ContactFlow": _flow_view(inst, flow)}


def _commit_flow_version(req: Request) -> dict[str, Any]:
    _, version = req.inst.flow_version(req.text("ContactFlowVersionId"))
    version.canvas, version.content = req.text("Canvas"), req.text("Content")
    version.modified_ms = req.now
    return {"ContactFlowVersion": _version_view(version)}


def _publish_flow_version(req: Request) -> dict[str, Any]:
    flow, version = req.inst.flow_version(req.text("ContactFlowVersionId"))
    version.status, version.modified_ms = "Published", req.now
    flow.applied_version = version.id
    return {}


def _create_voice_appraise(req: Request) -> dict[str, Any]:
    _, version = req.inst.flow_version(req.text("ContactFlowVersionId"))
    version.content, version.modified_ms = req.text("Content"), req.now
    return {}


def _list_contact_flows(req: Request) -> dict[str, Any]:
    inst = req.inst
    return {"ContactFlows": {"ContactFlow": [_flow_view(inst, f) for f in inst.flows.values()]}}


def _list_voice_appraise(req: Request) -> dict[str, Any]:
    inst = req.inst
    flow = next((f for f in inst.flows.values() if f.type == "VOICE_APPRAISE"), None)
    return {"ContactFlow": _flow_view(inst, flow) if flow else None, "Notice": ""}


def _get_route_point(req: Request) -> dict[str, Any]:
    inst = req.inst
    flow = lookup(inst.flows, req.text("ContactFlowId"), "ContactFlowId", inst.id)
    return {"RoutePoint": f"{flow.id}@{inst.domain}", "StatusCode": "Success", "StatusDesc": "OK"}


# -- instance, roles, SMS configs, devices


def _get_instance(req: Request) -> dict[str, Any]:
    return {"Instance": _instance_view(req.inst)}


def _list_instances_of_user(req: Request) -> dict[str, Any]:
    views = [_instance_view(inst) for inst in req.sim.instances.values()]
    return {"Instances": {"CallCenterInstance": views}}


def _list_roles(req: Request) -> dict[str, Any]:
    return {"Roles": {"Role": list(_role_views(req.inst).values())}}


def _get_sms_config(req: Request) -> dict[str, Any]:
    inst = req.inst
    scenarios = {int(s) for s in req.items("Scenario")}
    if bad := sorted(scenarios - {1, 2, 3}):
        raise invalid("Scenario", f"must be 1, 2 or 3, got {bad[0]}")
    configs = [
        {
            "Id": c.id,
            "Name": c.name,
            "Scenario": c.scenario,
            "SignName": "CCC Emulator",
            "TemplateCode": c.template_code,
            "Description": c.description,
            "Extra": "",
            "Instance": inst.id,
            "GmtCreate": wall_text(inst.created_ms),
            "GmtModified": wall_text(inst.created_ms),
        }
        for c in inst.sms_configs.values()
        if c.scenario in scenarios
    ]
    return {"SmsConfigs": {"SmsConfig": configs}}


def _add_agent_device(req: Request) -> dict[str, Any]:
    inst = req.inst
    # The request names no agent (CCC takes it from the caller's login); use the first.
    owner = next(iter(inst.agents.values()), None)
    device = Device(
        req.sim.next_serial(),
        owner.ram_id if owner else "0",
        req.text("ClientIp"),
        req.text("ClientPort"),
        req.text("BrowserVersion"),
        req.text("Remark"),
        req.now,
    )
    inst.devices[device.id] = device
    return {"AgentDeviceId": device.id}


def _modify_agent_device(req: Request) -> dict[str, Any]:
    inst = req.inst
    device_id = req.number("AgentDeviceId")
    if device_id is None:
        return {}
    device = lookup(inst.devices, device_id, "AgentDeviceId", inst.id)
    is_login = req.number("IsLogin")
    if is_login is not None:
        if is_login not in {0, 1}:
            raise invalid("IsLogin", f"must be 0 or 1, got {is_login}")
        device.is_login = is_login
    return {}


def _list_agent_devices(req: Request) -> dict[str, Any]:
    inst = req.inst
    start = req.number("StartTime") or start_of_day(req.now)
    stop = req.number("StopTime") or req.now + 1
    rams = set(req.csv("RamIds"))
    devices = [
        {
            "BrowserVersion": d.browser_version,
            "ClientIp": d.client_ip,
            "ClientPort": d.client_port,
            "InstanceId": inst.id,
            "IsLogin": d.is_login,
            "LoginTime": d.login_ms,
            "RamId": d.ram_id,
            "Remark": d.remark,
        }
        for d in inst.devices.values()
        if start <= d.login_ms < stop and (not rams or d.ram_id in rams)
    ]
    return {"AgentDeviceList": {"AgentDevice": devices}}


# -- echoes on top of the synthesiser


def _get_number_region_info(req: Request) -> dict[str, Any]:
    return {"PhoneNumber": {"Number": req.text("Number")}}


def _get_turn_credentials(req: Request) -> dict[str, Any]:
    return {"Username": req.text("UserName")}


def _get_config(req: Request) -> dict[str, Any]:
    return {"ConfigItem": {"Name": req.text("Name")}}


HANDLERS: dict[str, Handler] = {
    "ListAgentStates": _list_agent_states,
    "ListSkillGroupStates": _list_skill_group_states,
    "ListRealTimeAgent": _list_real_time_agent,
    "ListAgentStateLogs": _list_agent_state_logs,
    "ListAgentEvents": _list_agent_events,
    "ListCallDetailRecords": _list_call_records,
    "ListRecentCallRecords": _list_call_records,
    "ListCallEventDetailByContactId": _list_call_events,
    "ListRecordingsByContactId": _list_recordings_by_contact,
    "DownloadRecording": _download_recording,
    "DialEx": _dial_ex,
    "StartBack2BackCall": _start_back2back_call,
    "SendPredefinedShortMessage": _send_sms,
    "LaunchAppraise": _launch_appraise,
    "LaunchShortMessageAppraise": _launch_sms_appraise,
    "ListUsers": _list_users,
    "FindUsers": _find_users,
    "ListUsersOfSkillGroup": _list_users_of_skill_group,
    "GetUser": _get_user,
    "GetUserByExtension": _get_user_by_extension,
    "CreateUser": _create_user,
    "ModifyUser": _modify_user,
    "RemoveUsers": _remove_users,
    "AssignUsers": _assign_users,
    "ModifySkillGroupOfUser": _modify_skill_group_of_user,
    "RemoveUsersFromSkillGroup": _remove_users_from_skill_group,
    "ResetUserStatus": _reset_user_status,
    "ListSkillGroupsOfUser": _list_skill_groups_of_user,
    "ListOutboundPhoneNumberOfUser": _list_outbound_numbers_of_user,
    "RequestLoginInfo": _request_login_info,
    "ListSkillGroups": _list_skill_groups,
    "ListTransferableSkillGroups": _list_transferable_skill_groups,
    "CreateSkillGroup": _create_skill_group,
    "ModifySkillGroup": _modify_skill_group,
    "DeleteSkillGroup": _delete_skill_group,
    "ModifySkillGroupOutboundNumbers": _modify_skill_group_outbound_numbers,
    "ModifyPrimaryTrunksOfSkillGroup": _modify_primary_trunks,
    "ListTrunksOfSkillGroup": _list_trunks_of_skill_group,
    "ListTrunkProviders": _list_trunk_providers,
    "DisableTrunkProviders": _disable_trunk_providers,
    "AddPhoneNumber": _add_phone_number,
    "AddBulkPhoneNumbers": _add_bulk_phone_numbers,
    "ModifyPhoneNumber": _modify_phone_number,
    "RemovePhoneNumber": _remove_phone_number,
    "ListPhoneNumbers": _list_phone_numbers,
    "CreateContactFlow": _create_contact_flow,
    "CommitContactFlowVersionModification": _commit_flow_version,
    "PublishContactFlowVersion": _publish_flow_version,
    "CreateVoiceAppraise": _create_voice_appraise,
    "ListContactFlows": _list_contact_flows,
    "ListVoiceAppraise": _list_voice_appraise,
    "GetRoutePoint": _get_route_point,
    "GetInstance": _get_instance,
    "ListInstancesOfUser": _list_instances_of_user,
    "ListRoles": _list_roles,
    "GetSmsConfig": _get_sms_config,
    "AddAgentDevice": _add_agent_device,
    "ModifyAgentDevice": _modify_agent_device,
    "ListAgentDevices": _list_agent_devices,
    "GetNumberRegionInfo": _get_number_region_info,
    "GetTURNCredentials": _get_turn_credentials,
    "GetConfig": _get_config,
}
