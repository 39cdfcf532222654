"""The simulated contact centre: agents that log in, take breaks and calls; inbound calls that
queue and get answered or abandoned; DialEx and back-to-back calls; call detail records that
arrive late; and a record of every side effect for the inspection API.

Everything is a function of `config.seed` and the clock readings: one seeded `random.Random`
draws every decision, and scheduled events (a heap) run at their own simulated time whenever
the clock is read, so how often the clock is read does not change what happens.

Memory stays bounded however long it runs: what is older than `config.retention_s` is
dropped, from an agent's log and events as they grow and from every other history once per
simulated minute (a scheduled event, so a clock jump trims as it goes); readers never see
past that cutoff, so retention is exact to the millisecond.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from itertools import count
from operator import itemgetter
from typing import Any, TypeVar

from service.emulator.config import EmulatorConfig, SimClock
from service.emulator.handlers import cdr_view, dispatch
from service.emulator.model import (
    ACW,
    BACK2BACK,
    BREAK,
    CALL_ENDED,
    CHECK_IN,
    DIALING,
    INBOUND,
    OFFLINE,
    OTHER_STATES,
    OUTBOUND,
    READY,
    RING_ABANDONED,
    RINGING,
    STATE_LABELS,
    TALKING,
    Agent,
    BusinessError,
    Call,
    ContactFlow,
    FlowVersion,
    Instance,
    PhoneNumber,
    Profile,
    Role,
    SkillGroup,
    SmsConfig,
    call_record,
    call_start,
    not_found,
    rfc3339,
)

__all__ = ["BusinessError", "Simulation"]

T = TypeVar("T")

SECOND = 1000
MINUTE = 60 * SECOND
Span = tuple[int, int]  # inclusive range of milliseconds

LOGIN_SPREAD: Span = (0, MINUTE)
IDLE_MEAN_MS = 3 * MINUTE
BREAK_SPAN: Span = (1 * MINUTE, 5 * MINUTE)
AWAY_SPAN: Span = (2 * MINUTE, 10 * MINUTE)
RING_SPAN: Span = (2 * SECOND, 8 * SECOND)
TALK_SPAN: Span = (20 * SECOND, 240 * SECOND)
ACW_SPAN: Span = (5 * SECOND, 30 * SECOND)
DIAL_SPAN: Span = (5 * SECOND, 20 * SECOND)
PATIENCE_SPAN: Span = (20 * SECOND, 120 * SECOND)
CDR_DELAY_SPAN: Span = (2 * SECOND, 8 * SECOND)
TRIM_EVERY_MS = MINUTE
BREAK_SHARE = 0.45  # of idle decisions; then outbound dials, then logging out
DIAL_SHARE = 0.40
BREAK_AFTER_CALL = 0.1
ANSWER_RATE = 0.85  # customers who pick up an outbound call
SURVEY_RATE = 0.5  # answered calls whose customer leaves a satisfaction score

SKILL_GROUP_NAMES = ("Sales", "Support", "Billing", "Retention")
FIRST_NAMES = ("Wei", "Fang", "Jing", "Lei", "Min", "Yang", "Hui", "Tao", "Na", "Jun", "Li")
LAST_NAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Zhao", "Huang", "Zhou", "Wu", "Xu")
BREAK_CODES = ("Rest", "Lunch", "Meeting", "Training")
SMS_SCENARIOS = ((1, "Satisfaction survey"), (2, "IVR notice"), (3, "Missed call"))
TRUNK_PROVIDERS = ("cmcc-shanghai", "ct-shanghai", "cu-shanghai")


class Simulation:
    def __init__(self, config: EmulatorConfig, clock: SimClock) -> None:
        self._config = config
        self._clock = clock
        self._rng = random.Random(config.seed)  # noqa: S311
        self._rows_rng = random.Random(config.seed)  # noqa: S311
        self._now = clock.now_ms()
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._order = count()  # ties in the heap run in scheduling order
        self._serial = count(1)
        self._ram_ids: set[str] = set()
        self._retention_ms = int(config.retention_s * 1000)
        self._quiesced_at: int | None = None
        # The inspection logs, each in time order, so retention pops from the left.
        self._history: deque[tuple[int, str, str, str, str]] = deque()
        self._calls: deque[Call] = deque()  # inbound and API calls, not agents' own dials
        self._sms: deque[dict[str, Any]] = deque()
        self._appraisals: deque[dict[str, Any]] = deque()
        self._cdrs: deque[Call] = deque()  # in the order their records arrived
        self._at(TRIM_EVERY_MS, self._trim)
        self.trunk_providers = dict.fromkeys(TRUNK_PROVIDERS, "Enabled")
        self.instances: dict[str, Instance] = {}
        for index, instance_id in enumerate(config.instances):
            self.instances[instance_id] = self._build_instance(index, instance_id)

    # -- the interface the gateway calls

    @property
    def now(self) -> int:
        return self._now

    @property
    def region(self) -> str:
        return self._config.region

    @property
    def config(self) -> EmulatorConfig:
        return self._config

    @property
    def retained_since(self) -> int:
        """The oldest simulated time still kept: queries start no earlier."""
        return self._now - self._retention_ms

    def shuffle(self, rows: list[Any]) -> None:
        """A new order for a listing (config.shuffle_rows), drawn apart from the centre's own
        generator: how often lists are read leaves what happens in the centre as it was."""
        self._rows_rng.shuffle(rows)

    def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        self.advance()
        return dispatch(self, action, params)

    def advance(self) -> None:
        now = self._clock.now_ms()
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, step = heapq.heappop(heap)
            self._now = at
            step()
        self._now = max(self._now, now)

    def instance(self, instance_id: str) -> Instance:
        try:
            return self.instances[instance_id]
        except KeyError:
            raise BusinessError(
                404, "NotExists.InstanceId", f"The instance {instance_id} does not exist."
            ) from None

    # -- inspection: each first catches up with the clock, like handle()

    def calls(self) -> list[dict[str, Any]]:
        self.advance()
        cutoff = self.retained_since
        return [
            {
                "at": rfc3339(call.start_ms),
                "instance_id": call.instance_id,
                "action": call.action,
                "task_id": call.task_id or None,
                "contact_id": call.contact_id,
                "caller": call.caller,
                "callee": call.callee,
                "params": call.params or {},
            }
            for call in self._calls
            if call.start_ms >= cutoff
        ]

    def sms(self) -> list[dict[str, Any]]:
        self.advance()
        return _rendered(self._sms, self.retained_since)

    def appraisals(self) -> list[dict[str, Any]]:
        self.advance()
        return _rendered(self._appraisals, self.retained_since)

    def agents(self) -> list[dict[str, Any]]:
        self.advance()
        return [
            {
                "instance_id": inst.id,
                "agent_id": agent.ram_id,
                "login_name": agent.login_name,
                "state": agent.state,
                "state_since": rfc3339(agent.since_ms),
            }
            for inst in self.instances.values()
            for agent in inst.agents.values()
        ]

    def agent_state_history(self) -> list[dict[str, Any]]:
        self.advance()
        cutoff = self.retained_since
        return [
            {
                "at": rfc3339(at),
                "instance_id": instance_id,
                "agent_id": agent_id,
                "previous_state": previous,
                "state": state,
            }
            for at, instance_id, agent_id, previous, state in self._history
            if at >= cutoff
        ]

    def call_history(self) -> list[dict[str, Any]]:
        """Records already queryable, in the order they became so."""
        self.advance()
        cutoff = self.retained_since
        return [
            {
                "instance_id": call.instance_id,
                "contact_id": call.contact_id,
                "available_at": rfc3339(call.available_at),
                "record": cdr_view(self, call_record(call)),
            }
            for call in self._cdrs
            if call.start_ms >= cutoff
        ]

    def quiesce(self) -> int:
        """Wind the centre down: no inbound call starts from now on, and every agent logs out
        as soon as it is free (at once if Ready or on a break, else once its call and
        after-call work end). Returns when that began; asking again changes nothing."""
        self.advance()
        if self._quiesced_at is None:
            self._quiesced_at = self._now
            for inst in self.instances.values():
                for agent in inst.agents.values():
                    if agent.state in {READY, BREAK}:
                        self._set_state(agent, OFFLINE)
        return self._quiesced_at

    # -- side effects the handlers ask for

    def dial(self, inst: Instance, action: str, params: dict[str, Any], target: object) -> Call:
        """Place a DialEx / StartBack2BackCall call. `target` is who takes it once the
        customer answers: an Agent, a SkillGroup, or None (IVR flow, back-to-back bridge)."""
        kind = BACK2BACK if action == "StartBack2BackCall" else OUTBOUND
        task_id = f"task-{self._uuid()}"
        call = self._new_call(inst, kind, str(params["Caller"]), str(params["Callee"]))
        call.task_id = task_id
        self._log_call(action, call, dict(params))
        self._event(call, "Dialing")
        self._at(self._span(DIAL_SPAN), partial(self._connect, call, target))
        return call

    def record_sms(self, inst: Instance, config_id: int, phones: list[str], param: object) -> str:
        biz_id = f"{next(self._serial):012d}^0"
        self._sms.append(
            {
                "at": self._now,
                "instance_id": inst.id,
                "biz_id": biz_id,
                "config_id": config_id,
                "phone_numbers": phones,
                "template_param": param,
            }
        )
        return biz_id

    def record_appraisal(self, inst: Instance, action: str, acid: str, phones: list[str]) -> None:
        self._appraisals.append(
            {
                "at": self._now,
                "instance_id": inst.id,
                "action": action,
                "acid": acid,
                "phone_numbers": phones,
            }
        )

    def create_agent(
        self, inst: Instance, profile: Profile, role_ids: list[str], skills: dict[str, int]
    ) -> Agent:
        """A new user starts offline and logs in within a minute, like the initial staff."""
        ram_id = profile.ram_id or self._new_ram_id()
        self._ram_ids.add(ram_id)
        seq = inst.next_serial("agent")  # never reused: removed agents' timers may still fire
        agent = Agent(
            seq=seq,
            instance_id=inst.id,
            user_id=self._uuid(),
            ram_id=ram_id,
            profile=profile,
            extension=str(8000 + seq),
            role_ids=role_ids,
            skills=skills,
            since_ms=self._now,
        )
        inst.agents[agent.user_id] = agent
        inst.by_ram[ram_id] = agent
        inst.by_login[profile.login_name] = agent
        inst.by_seq[seq] = agent
        self._after(agent, self._span(LOGIN_SPREAD), self._ready)
        return agent

    def remove_agent(self, inst: Instance, agent: Agent) -> None:
        if agent.state != OFFLINE:
            self._set_state(agent, OFFLINE)
        agent.removed = True
        del inst.agents[agent.user_id], inst.by_ram[agent.ram_id]
        del inst.by_login[agent.login_name], inst.by_seq[agent.seq]
        inst.by_change.pop(agent.seq, None)  # absent if it never logged in

    def reskill(self, inst: Instance, agent: Agent, skills: dict[str, int]) -> None:
        inst.leave(agent)
        agent.skills = skills
        inst.enter(agent)

    def log_out(self, instance_id: str, ram_id: str) -> None:
        """An agent not on a call checks out, and stays out (its own timers are void): for
        tests of what a logout looks like."""
        agent = self.instance(instance_id).agent_by_ram(ram_id, "RamId")
        self.advance()
        self._set_state(agent, OFFLINE)

    def reset_agent(self, agent: Agent) -> None:
        """ResetUserStatus frees an agent stuck outside a call; live calls are left alone."""
        if agent.state in {BREAK, ACW}:
            self._ready(agent)

    def delete_skill_group(self, inst: Instance, group: SkillGroup) -> None:
        for agent in list(inst.agents.values()):
            if group.id in agent.skills:
                self.reskill(inst, agent, {k: v for k, v in agent.skills.items() if k != group.id})
        for number in inst.numbers.values():
            if group.id in number.skill_group_ids:
                number.skill_group_ids.remove(group.id)
        del inst.skill_groups[group.id]

    def contact(self, inst: Instance, contact_id: str, param: str) -> Call:
        """A call of the instance by ContactId, unless it started before retention."""
        call = inst.calls.get(contact_id)
        if call is None or call.start_ms < self.retained_since:
            raise not_found(param, contact_id, inst.id)
        return call

    def next_serial(self) -> int:
        return next(self._serial)

    # -- scheduling

    def _at(self, delay_ms: int, step: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (self._now + delay_ms, next(self._order), step))

    def _after(self, agent: Agent, delay_ms: int, step: Callable[[Agent], None]) -> None:
        """An agent's own next move; any state change before it fires voids it."""
        self._at(delay_ms, partial(self._agent_step, agent, agent.epoch, step))

    @staticmethod
    def _agent_step(agent: Agent, epoch: int, step: Callable[[Agent], None]) -> None:
        if agent.epoch == epoch and not agent.removed:
            step(agent)

    def _span(self, span: Span) -> int:
        low, high = span  # not randint: this runs for every simulated step
        return low + int(self._rng.random() * (high - low + 1))

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _new_ram_id(self) -> str:
        while (ram_id := str(self._rng.randrange(10**15, 10**16))) in self._ram_ids:
            pass
        return ram_id

    def _mobile(self) -> str:
        return f"13{self._rng.randrange(10**9):09d}"

    # -- agent states

    def _set_state(
        self, agent: Agent, state: str, call: Call | None = None, code: str = ""
    ) -> None:
        inst = self.instances[agent.instance_id]
        previous = agent.state
        inst.leave(agent)
        agent.state, agent.since_ms, agent.epoch = state, self._now, agent.epoch + 1
        agent.contact_id = call.contact_id if call else ""
        agent.counter_party = (
            (call.caller if call.contact_type == INBOUND else call.callee) if call else ""
        )
        inst.enter(agent)
        inst.changed(agent)
        self._history.append((self._now, inst.id, agent.ram_id, previous, state))
        agent.log.append(
            (self._now, state, code, agent.contact_id, agent.counter_party, ",".join(agent.skills))
        )
        labels = [CHECK_IN] if previous == OFFLINE else []
        if previous == TALKING:
            labels.append(CALL_ENDED)
        elif previous == RINGING and state == READY:
            labels.append(RING_ABANDONED)
        labels.append(STATE_LABELS[state])
        agent.events.extend((self._now, label) for label in labels)
        agent.trim(self.retained_since)

    def _ready(self, agent: Agent) -> None:
        if self._quiesced_at is not None:  # free once quiesced: logs out instead
            if agent.state != OFFLINE:
                self._set_state(agent, OFFLINE)
            return
        self._set_state(agent, READY)
        if agent.quiet:
            return  # Ready from now on, until logged out (log_out)
        call = self._next_waiting(agent)
        if call is not None:
            self._ring(call, agent)
        else:
            idle = round(self._rng.expovariate(1 / IDLE_MEAN_MS)) + 1
            self._after(agent, idle, self._idle)

    def _wrap_up(self, agent: Agent) -> None:
        # Breaks after a call too, or a busy centre would never see one.
        if self._quiesced_at is None and self._rng.random() < BREAK_AFTER_CALL:
            self._take_break(agent)
        else:
            self._ready(agent)

    def _take_break(self, agent: Agent) -> None:
        self._set_state(agent, BREAK, code=self._rng.choice(BREAK_CODES))
        self._after(agent, self._span(BREAK_SPAN), self._ready)

    def _idle(self, agent: Agent) -> None:
        roll = self._rng.random()
        inst = self.instances[agent.instance_id]
        if roll < BREAK_SHARE:
            self._take_break(agent)
        elif roll < BREAK_SHARE + DIAL_SHARE and inst.outbound_numbers():
            self._dial_out(inst, agent)
        else:
            self._set_state(agent, OFFLINE)
            self._after(agent, self._span(AWAY_SPAN), self._ready)

    # -- calls

    def _new_call(self, inst: Instance, kind: str, caller: str, callee: str) -> Call:
        contact_id = str(self._config.contact_id_base + next(self._serial))
        call = Call(contact_id, inst.id, kind, caller, callee, self._now)
        inst.calls[contact_id] = call
        return call

    def _log_call(self, action: str, call: Call, params: dict[str, Any] | None) -> None:
        call.action, call.params = action, params
        self._calls.append(call)

    def _event(self, call: Call, name: str, status: str = "Success") -> None:
        agent, group = call.agent, call.skill_group
        event = (
            self._now,
            name,
            status,
            agent.display_name if agent else "",
            group.name if group else "",
        )
        call.events += (event,)

    def _schedule_arrival(self, inst: Instance) -> None:
        rate = self._config.inbound_calls_per_minute * len(inst.agents) / 10
        if rate <= 0:  # look again later: users may be added
            self._at(MINUTE, partial(self._schedule_arrival, inst))
            return
        gap = round(self._rng.expovariate(rate) * MINUTE) + 1
        self._at(gap, partial(self._arrival, inst))

    def _arrival(self, inst: Instance) -> None:
        if self._quiesced_at is not None:
            return  # and no more arrivals are scheduled
        self._schedule_arrival(inst)
        callee = self._rng.choice(
            [n for n in inst.numbers.values() if n.usage != "Outbound"] or [None]
        )
        call = self._new_call(inst, INBOUND, self._mobile(), callee.number if callee else "")
        self._log_call(INBOUND, call, None)
        self._event(call, "Incoming")
        groups = list(inst.skill_groups.values())
        if not groups:
            self._finish(call, "AbandonedInContactFlow")
            return
        self._offer(call, self._rng.choice(groups))

    def _offer(self, call: Call, group: SkillGroup) -> None:
        call.skill_group = group
        self._event(call, "EnterQueue")
        agent = self.instances[call.instance_id].longest_ready(group.id)
        if agent is not None:
            self._ring(call, agent)
            return
        call.waiting, call.queued_ms = True, self._now
        group.queue.append(call)
        self._at(self._span(PATIENCE_SPAN), partial(self._abandon, call))

    def _next_waiting(self, agent: Agent) -> Call | None:
        """The longest-waiting call queued on any of the agent's skill groups."""
        inst = self.instances[agent.instance_id]
        queues = [inst.skill_groups[s].queue for s in agent.skills if s in inst.skill_groups]
        queues = [q for q in queues if q]
        if not queues:
            return None
        call = min(queues, key=lambda q: q[0].queued_ms).popleft()
        call.waiting = False
        call.queue_ms = self._now - call.queued_ms
        return call

    def _abandon(self, call: Call) -> None:
        if not call.waiting or call.skill_group is None:
            return
        call.waiting = False
        call.queue_ms = self._now - call.queued_ms
        call.skill_group.queue.remove(call)
        self._event(call, "Abandoned", "Failure")
        self._finish(call, "AbandonedInQueue")

    def _ring(self, call: Call, agent: Agent) -> None:
        call.agent, call.ring_start_ms = agent, self._now
        self._set_state(agent, RINGING, call)
        self._event(call, "Ringing")
        self._at(self._span(RING_SPAN), partial(self._answer, call))

    def _answer(self, call: Call) -> None:
        agent = call.agent
        if agent is None or agent.removed:
            self._event(call, "Abandoned", "Failure")
            self._finish(call, "AbandonedRing")
            return
        self._set_state(agent, TALKING, call)
        self._talk(call)

    def _talk(self, call: Call) -> None:
        call.answered_ms = self._now
        self._event(call, "Established")
        talk_ms = self._span(TALK_SPAN)
        # Drawn only when asked for, so a seed's centre is the same without other states.
        rate = self._config.other_states_rate
        if rate > 0 and self._rng.random() < rate:
            state = self._rng.choice(OTHER_STATES)
            self._at(talk_ms // 2, partial(self._aside, call, state))
        self._at(talk_ms, partial(self._hangup, call))

    def _aside(self, call: Call, state: str) -> None:
        """Halfway through a call, its agent in a conference or asking for help, till it ends."""
        agent = call.agent
        if agent is not None and not agent.removed and agent.state == TALKING:
            self._set_state(agent, state, call)

    def _hangup(self, call: Call) -> None:
        call.talk_ms = self._now - call.answered_ms
        self._event(call, "Released")
        agent = call.agent
        if agent is not None and not agent.removed:
            call.acw_ms = self._span(ACW_SPAN)
            self._set_state(agent, ACW, call)
            self._after(agent, call.acw_ms, self._wrap_up)
        self._finish(call, "Success")

    def _dial_out(self, inst: Instance, agent: Agent) -> None:
        number = self._rng.choice(inst.outbound_numbers())
        call = self._new_call(inst, OUTBOUND, number.number, self._mobile())
        call.agent = agent
        call.skill_group = next((inst.skill_groups[s] for s in agent.skills), None)
        self._set_state(agent, DIALING, call)
        self._event(call, "Dialing")
        self._at(self._span(DIAL_SPAN), partial(self._dial_result, call, agent))

    def _dial_result(self, call: Call, agent: Agent) -> None:
        if agent.removed:
            self._finish(call, "NoAnswer")
        elif self._rng.random() < ANSWER_RATE:
            self._set_state(agent, TALKING, call)
            self._talk(call)
        else:
            self._event(call, "NoAnswer", "Failure")
            self._finish(call, "NoAnswer")
            self._ready(agent)

    def _connect(self, call: Call, target: object) -> None:
        if self._rng.random() >= ANSWER_RATE:
            self._event(call, "NoAnswer", "Failure")
            self._finish(call, "NoAnswer")
        elif isinstance(target, Agent):
            if target.state == READY and not target.removed:
                self._ring(call, target)
            else:
                self._event(call, "AgentBusy", "Failure")
                self._finish(call, "NoAnswer")
        elif isinstance(target, SkillGroup):
            self._offer(call, target)
        else:
            self._talk(call)

    def _finish(self, call: Call, disposition: str) -> None:
        call.ended, call.disposition, call.ended_ms = True, disposition, self._now
        if disposition == "Success" and call.agent and self._rng.random() < SURVEY_RATE:
            call.satisfaction = self._rng.randint(1, 5)
        # The record keeps the names of the moment, whatever renames come later.
        call.agent_name = call.agent.display_name if call.agent else ""
        call.group_name = call.skill_group.name if call.skill_group else ""
        delay = self._span(CDR_DELAY_SPAN)
        call.available_at = self._now + delay
        self._at(delay, partial(self._arrive, self.instances[call.instance_id], call))

    def _arrive(self, inst: Instance, call: Call) -> None:
        """A record becomes queryable: late, as CCC's are."""
        inst.add_record(call)
        self._cdrs.append(call)

    # -- retention

    def _trim(self) -> None:
        cutoff = self.retained_since
        _pop_before(self._history, cutoff, itemgetter(0))
        for calls in (self._calls, self._cdrs):
            _pop_before(calls, cutoff, call_start)
        for log in (self._sms, self._appraisals):
            _pop_before(log, cutoff, _item_time)
        for inst in self.instances.values():
            inst.trim(cutoff)
        self._at(TRIM_EVERY_MS, self._trim)

    # -- the initial contact centre

    def _build_instance(self, index: int, instance_id: str) -> Instance:
        inst = Instance(
            id=instance_id,
            index=index,
            name=f"{instance_id} contact centre",
            domain=instance_id.lower(),
            created_ms=self._now - 30 * 24 * 60 * MINUTE,
        )
        for role in ("Admin", "Agent"):
            role_id = f"{role}@{instance_id}"
            inst.roles[role_id] = Role(role_id, role, f"{role} of {instance_id}")
        for config_id, name in SMS_SCENARIOS:
            inst.sms_configs[config_id] = SmsConfig(
                config_id, name, config_id, f"SMS_{index:02d}{config_id:04d}", f"{name} SMS"
            )
        self._build_numbers_and_flows(inst)
        for name in SKILL_GROUP_NAMES[: self._rng.randint(3, 4)]:
            group_id = inst.next_id("skg")
            inst.skill_groups[group_id] = SkillGroup(
                group_id,
                name,
                f"{name} team",
                outbound_number_ids=[n.id for n in inst.outbound_numbers()],
            )
        for n in range(self._config.agents):
            self._build_agent(inst).quiet = n < self._config.quiet_agents
        self._schedule_arrival(inst)
        return inst

    def _build_numbers_and_flows(self, inst: Instance) -> None:
        main = ContactFlow(inst.next_id("flow"), "Main menu", "Inbound IVR", "MAIN_FLOW", [])
        survey = ContactFlow(
            inst.next_id("flow"), "Satisfaction survey", "Voice appraise", "VOICE_APPRAISE", []
        )
        for flow in (main, survey):
            version = FlowVersion(
                inst.next_id("flowver"), "V1", "Published", "{}", "{}", inst.created_ms
            )
            flow.versions.append(version)
            flow.applied_version = version.id
            inst.flows[flow.id] = flow
        for serial, usage in enumerate(("Bidirection", "Inbound", "Outbound"), start=1):
            number = PhoneNumber(
                inst.next_id("pn"), f"021{inst.index + 6:02d}{serial:06d}", usage, f"{usage} line"
            )
            number.contact_flow_id = main.id if usage != "Outbound" else ""
            inst.numbers[number.id] = number

    def _build_agent(self, inst: Instance) -> Agent:
        n = len(inst.agents) + 1
        login = f"agent{n:03d}"
        name = f"{self._rng.choice(FIRST_NAMES)} {self._rng.choice(LAST_NAMES)}"
        groups = list(inst.skill_groups)
        skills = {
            g: self._rng.randint(1, 10) for g in self._rng.sample(groups, self._rng.randint(1, 2))
        }
        profile = Profile(login, name, f"{login}@{inst.domain}.example.com", self._mobile())
        return self.create_agent(inst, profile, [f"Agent@{inst.id}"], skills)


def _rendered(log: Iterable[dict[str, Any]], cutoff: int) -> list[dict[str, Any]]:
    """Inspection items with their epoch-ms `at` as RFC 3339: formatting is left until asked,
    as most items are never inspected."""
    return [{**item, "at": rfc3339(item["at"])} for item in log if item["at"] >= cutoff]


def _pop_before(log: deque[T], cutoff: int, at: Callable[[T], int]) -> None:
    """Drop a time-ordered log's head older than `cutoff`. Records arrive in end order, so
    one that started earlier than its predecessor waits for it, at most a call's length."""
    while log and at(log[0]) < cutoff:
        log.popleft()


def _item_time(item: dict[str, Any]) -> int:
    return int(item["at"])
