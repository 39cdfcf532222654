"""The simulated contact centre's data: instances, agents, skill groups, numbers, flows, calls.

Plain mutable records plus the indexes that keep the hot reads cheap: ListAgentStates pages
a sorted list of logged-in agents (O(page)), routing takes the longest-idle Ready agent of a
skill group in O(1), and every history is sorted by time, so a window is two bisections and
retention drops a prefix (`Instance.trim`).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import takewhile
from operator import itemgetter
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

# ListAgentStates (2017) has no offline value (FACTS.md section 9), so an agent that logged
# out is simply absent from it; ListRealTimeAgent and the inspection API report "Offline".
OFFLINE = "Offline"
READY = "Ready"
BREAK = "Break"
RINGING = "Ringing"
TALKING = "Talking"
ACW = "ACW"
DIALING = "Dialing"
ONLINE_STATES = (READY, BREAK, RINGING, TALKING, ACW, DIALING)  # the State filter's values
# States the State description lists beyond those (会议 conference, 发起求助 help requested,
# 求助 help: FACTS.md section 9); their spelling is undocumented, so these are assumed.
CONFERENCE = "Conference"
HELP_REQUESTED = "HelpRequested"
HELPING = "Help"
OTHER_STATES = (CONFERENCE, HELP_REQUESTED, HELPING)
LISTED_STATES = (*ONLINE_STATES, *OTHER_STATES)

# ListAgentEvents labels (FACTS.md section 9), keyed by the state entered.
STATE_LABELS = {
    READY: "等待",
    BREAK: "小休",
    RINGING: "振铃",
    TALKING: "通话",
    ACW: "处理",
    DIALING: "拨号",
    OFFLINE: "签出",
    CONFERENCE: "会议建立",
    HELP_REQUESTED: "发起求助",
    HELPING: "求助成功",
}
CHECK_IN = "签入"
CALL_ENDED = "结束"
RING_ABANDONED = "放弃"

INBOUND = "Inbound"
OUTBOUND = "Outbound"
BACK2BACK = "Back2Back"


class BusinessError(Exception):
    """A CCC business error: the gateway answers it with `status` and a CCC error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def invalid(param: str, reason: str) -> BusinessError:
    return BusinessError(400, "Parameter.Invalid", f"The parameter {param} is invalid: {reason}.")


def not_found(param: str, value: object, instance_id: str) -> BusinessError:
    return BusinessError(
        404, f"NotExists.{param}", f"The {param} {value} does not exist in instance {instance_id}."
    )


def lookup(items: Mapping[K, V], key: K, param: str, instance_id: str) -> V:
    try:
        return items[key]
    except KeyError:
        raise not_found(param, key, instance_id) from None


def drop_before(items: list[T], cutoff: int, at: Callable[[T], int]) -> None:
    """Drop the prefix of a time-sorted list older than `cutoff`: retention's trim."""
    if items and at(items[0]) < cutoff:
        del items[: bisect_left(items, cutoff, key=at)]


def rfc3339(ms: int) -> str:
    """Epoch ms as RFC 3339 UTC with milliseconds: 2026-11-24T10:00:00.123Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def wall_text(ms: int) -> str:
    """Epoch ms as CCC's `yyyy-MM-dd HH:mm:ss` text (UTC)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


# (at, state, code, contact_id, counter_party, skill_group_ids). Histories are plain tuples of
# plain values, which the collector stops tracking: an hour at 5,000 agents makes some 430,000
# state log entries, and a full collection over them all would stall every answer for seconds.
StateLogEntry = tuple[int, str, str, str, str, str]
# (at, name, status, agent_name, skill_group_name), plain for the same reason
CallEvent = tuple[int, str, str, str, str]


@dataclass(frozen=True, slots=True)
class Profile:
    login_name: str
    display_name: str
    email: str
    phone: str
    ram_id: str = ""  # AssignUsers brings its own RAM id; otherwise one is made up


@dataclass(eq=False)
class Agent:
    seq: int  # creation order: the stable order of every agent listing
    instance_id: str
    user_id: str
    ram_id: str
    profile: Profile
    extension: str
    role_ids: list[str]
    skills: dict[str, int]  # skill group id -> level
    private_outbound_number_id: str = ""
    state: str = OFFLINE
    since_ms: int = 0
    epoch: int = 0  # bumped by every state change: a pending timer of an older epoch is void
    contact_id: str = ""
    counter_party: str = ""
    removed: bool = False
    quiet: bool = False  # stays Ready once logged in, taking no calls (config.quiet_agents)
    log: list[StateLogEntry] = field(default_factory=list)
    events: list[tuple[int, str]] = field(default_factory=list)  # (EventTime ms, label)

    @property
    def login_name(self) -> str:
        return self.profile.login_name

    def trim(self, cutoff: int) -> None:
        """Forget log entries and events older than `cutoff`. Called as they grow, not for
        every agent every minute: one whose state never changes keeps its few old ones, which
        readers leave out anyway."""
        drop_before(self.log, cutoff, itemgetter(0))
        drop_before(self.events, cutoff, itemgetter(0))

    @property
    def display_name(self) -> str:
        return self.profile.display_name


@dataclass(eq=False)
class SkillGroup:
    id: str
    name: str
    description: str
    routing_strategy: str = "LongestIdle"
    outbound_number_ids: list[str] = field(default_factory=list)
    primary_trunks: list[str] = field(default_factory=list)
    allow_private_outbound: bool = False
    queue: deque[Call] = field(default_factory=deque)


@dataclass(eq=False)
class PhoneNumber:
    id: str
    number: str
    usage: str  # Inbound | Outbound | Bidirection
    description: str = ""
    contact_flow_id: str = ""
    skill_group_ids: list[str] = field(default_factory=list)
    city: str = "Shanghai"
    province: str = "Shanghai"

    @property
    def allow_outbound(self) -> bool:
        return self.usage != "Inbound"


@dataclass(eq=False)
class FlowVersion:
    id: str
    version: str
    status: str  # Draft | Published
    canvas: str
    content: str
    modified_ms: int
    modified_by: str = "admin"


@dataclass(eq=False)
class ContactFlow:
    id: str
    name: str
    description: str
    type: str
    versions: list[FlowVersion]
    applied_version: str = ""


@dataclass(frozen=True, slots=True)
class Role:
    id: str
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class SmsConfig:
    id: int
    name: str
    scenario: int  # 1 satisfaction, 2 IVR, 3 missed call
    template_code: str
    description: str


@dataclass(eq=False)
class Device:
    id: int
    ram_id: str
    client_ip: str
    client_port: str
    browser_version: str
    remark: str
    login_ms: int
    is_login: int = 1


@dataclass(eq=False, slots=True)
class Call:
    """A call, and once ended its detail record (call_record). One object per call, with
    slots, and its events in a tuple: an hour at 5,000 agents makes some 170,000 calls, and
    each object costs memory and the collector's time."""

    contact_id: str
    instance_id: str
    contact_type: str
    caller: str
    callee: str
    start_ms: int
    task_id: str = ""
    action: str = ""  # Inbound, DialEx or StartBack2BackCall; "" for an agent's own dial
    params: dict[str, Any] | None = None  # the API parameters that placed it
    skill_group: SkillGroup | None = None
    agent: Agent | None = None
    waiting: bool = False
    queued_ms: int = 0
    queue_ms: int = 0
    ring_start_ms: int = 0
    answered_ms: int = 0
    talk_ms: int = 0
    acw_ms: int = 0
    ended: bool = False
    ended_ms: int = 0
    disposition: str = ""
    satisfaction: int = 0  # 1 to 5 when the customer left a score
    agent_name: str = ""  # the agent's and skill group's names when the call ended
    group_name: str = ""
    available_at: int = 0  # records arrive late: queryable from here on
    events: tuple[CallEvent, ...] = ()


SATISFACTION = {
    1: "Very dissatisfied",
    2: "Dissatisfied",
    3: "Neutral",
    4: "Satisfied",
    5: "Very satisfied",
}


def call_record(call: Call) -> dict[str, Any]:
    """An ended call's detail record, with every field any CDR view of the catalogue needs:
    built when read, as most records never are."""
    agent, group = call.agent, call.skill_group
    ended, satisfaction = call.ended_ms, call.satisfaction
    common = {
        "ContactId": call.contact_id,
        "ContactType": call.contact_type,
        "InstanceId": call.instance_id,
    }
    numbers = {"CallingNumber": call.caller, "CalledNumber": call.callee}
    agents: list[dict[str, Any]] = []
    recordings: list[dict[str, Any]] = []
    if agent is not None:
        agents.append(
            {
                **common,
                "AgentId": agent.ram_id,
                "AgentName": call.agent_name,
                "Feedback": "",
                "Satisfaction": str(satisfaction or ""),
                "SkillGroupName": call.group_name,
                "StartTime": call.ring_start_ms or call.start_ms,
                "HoldTime": 0,
                "QueueTime": call.queue_ms // 1000,
                "RingTime": max(0, (call.answered_ms or ended) - (call.ring_start_ms or ended))
                // 1000,
                "TalkTime": call.talk_ms // 1000,
                "WorkTime": call.acw_ms // 1000,
            }
        )
    if call.talk_ms:
        recordings.append(
            {
                **common,
                **numbers,
                "AgentId": agent.ram_id if agent else "",
                "AgentName": call.agent_name,
                "Channel": "Mixed",
                "Duration": call.talk_ms // 1000,
                "FileDescription": f"Recording of {call.contact_id}",
                "FileName": f"{call.contact_id}.wav",
                "FilePath": f"recordings/{call.instance_id}/{call.contact_id}.wav",
                "QualityCheckTaskId": "",
                "QualityCheckTid": "",
                "StartTime": call.answered_ms,
            }
        )
    return {
        **common,
        **numbers,
        "ContactDisposition": call.disposition,
        "StartTime": call.start_ms,
        "Duration": (ended - call.start_ms) // 1000,
        "Agents": {"CallDetailAgent": agents},
        "AgentNames": call.agent_name,
        "SkillGroupIdList": group.id if group else "",
        "SkillGroupNames": call.group_name,
        "Satisfaction": satisfaction,
        "SatisfactionDesc": SATISFACTION.get(satisfaction, ""),
        "Feedback": "",
        "ExtraAttr": "",
        "Recordings": {"Recording": recordings},
    }


def cdr_order(call: Call) -> tuple[int, str]:
    return (call.start_ms, call.contact_id)


def call_start(call: Call) -> int:
    return call.start_ms


@dataclass(eq=False)
class Instance:
    id: str
    index: int
    name: str
    domain: str  # second-level domain: DialEx agent route points are ram_id@domain
    created_ms: int
    agents: dict[str, Agent] = field(default_factory=dict)  # by UserId, creation order
    by_ram: dict[str, Agent] = field(default_factory=dict)
    by_login: dict[str, Agent] = field(default_factory=dict)
    by_seq: dict[int, Agent] = field(default_factory=dict)
    # Agents' seqs, least recently changed first: who is quiet for the active window is a
    # prefix, so ListAgentStates pages in O(page) while no one is.
    by_change: OrderedDict[int, None] = field(default_factory=OrderedDict)
    online: list[int] = field(default_factory=list)  # sorted seqs of logged-in agents
    by_state: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in LISTED_STATES})
    # skill group id -> Ready agents' seqs in the order they became Ready (longest idle first)
    ready_by_skill: dict[str, dict[int, None]] = field(default_factory=dict)
    skill_groups: dict[str, SkillGroup] = field(default_factory=dict)
    numbers: dict[str, PhoneNumber] = field(default_factory=dict)
    flows: dict[str, ContactFlow] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    sms_configs: dict[int, SmsConfig] = field(default_factory=dict)
    devices: dict[int, Device] = field(default_factory=dict)
    calls: dict[str, Call] = field(default_factory=dict)  # by ContactId, in start order
    records: list[Call] = field(default_factory=list)  # calls whose record arrived, by cdr_order
    serials: dict[str, int] = field(default_factory=dict)

    def next_serial(self, prefix: str) -> int:
        self.serials[prefix] = self.serials.get(prefix, 0) + 1
        return self.serials[prefix]

    def next_id(self, prefix: str) -> str:
        return f"{prefix}-{self.next_serial(prefix)}"

    def enter(self, agent: Agent) -> None:
        """Enter the agent's current state into the listing and routing indexes."""
        if agent.state == OFFLINE:
            return
        insort(self.online, agent.seq)
        insort(self.by_state[agent.state], agent.seq)
        if agent.state == READY and not agent.quiet:
            for skill in agent.skills:
                self.ready_by_skill.setdefault(skill, {})[agent.seq] = None

    def leave(self, agent: Agent) -> None:
        if agent.state == OFFLINE:
            return
        for seqs in (self.online, self.by_state[agent.state]):
            del seqs[bisect_left(seqs, agent.seq)]
        if agent.state == READY:
            for skill in agent.skills:
                self.ready_by_skill.get(skill, {}).pop(agent.seq, None)

    def changed(self, agent: Agent) -> None:
        self.by_change[agent.seq] = None
        self.by_change.move_to_end(agent.seq)

    def unchanged_since(self, since: int) -> set[int]:
        """Agents, logged in or not, whose state has not changed since `since`."""
        return set(takewhile(lambda seq: self.by_seq[seq].since_ms < since, self.by_change))

    def longest_ready(self, skill_group_id: str) -> Agent | None:
        ready = self.ready_by_skill.get(skill_group_id)
        return self.by_seq[next(iter(ready))] if ready else None

    def add_record(self, call: Call) -> None:
        insort(self.records, call, key=cdr_order)

    def trim(self, cutoff: int) -> None:
        """Forget records and calls that started before `cutoff`. A call still in progress is
        kept until it ends."""
        drop_before(self.records, cutoff, call_start)
        # Gathered in one pass, then deleted: a dict reaches its head again only by skipping
        # every entry deleted before it.
        ended = takewhile(lambda c: c.start_ms < cutoff and c.ended, self.calls.values())
        for contact_id in [c.contact_id for c in ended]:
            del self.calls[contact_id]

    def agent(self, user_id: str) -> Agent:
        return lookup(self.agents, user_id, "UserId", self.id)

    def agent_by_ram(self, ram_id: str, param: str) -> Agent:
        return lookup(self.by_ram, ram_id, param, self.id)

    def skill_group(self, skill_group_id: str) -> SkillGroup:
        return lookup(self.skill_groups, skill_group_id, "SkillGroupId", self.id)

    def number(self, number_id: str) -> PhoneNumber:
        return lookup(self.numbers, number_id, "PhoneNumberId", self.id)

    def flow_version(self, version_id: str) -> tuple[ContactFlow, FlowVersion]:
        for flow in self.flows.values():
            for version in flow.versions:
                if version.id == version_id:
                    return flow, version
        raise not_found("ContactFlowVersionId", version_id, self.id)

    def outbound_numbers(self) -> list[PhoneNumber]:
        return [n for n in self.numbers.values() if n.allow_outbound]
