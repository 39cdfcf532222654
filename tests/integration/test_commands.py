"""The command pipeline end to end (PRODUCT.md sections 3-4): the real service against the
embedded broker and the emulator over HTTP, with mixed traffic (every command shape, second
copies of commands, invalid messages) and faults injected in CCC.

Whatever happens (throttling, 5xx, a worker killed with SIGKILL, every message read again by
another group), each command id has its effect in CCC at most once, each message is answered
by exactly one result (or DLQ record), and what a result says CCC did is what the emulator
recorded.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from service.emulator.config import EmulatorConfig
from service.emulator.server import EmulatorServer
from service.kafka.admin import ensure_topics
from service.kafka.settings import KafkaSettings, TopicSettings
from service.settings import CommandSettings, LifecycleSettings, Settings
from tests.inspection import eventually, fault
from tests.integration.commands import (
    SERVER_ERRORS,
    Answers,
    Effects,
    Message,
    Where,
    answers,
    check_answers,
    check_effects,
    command_faults,
    dial_ex,
    effects,
    expected_statuses,
    mixed_commands,
    seed_calls,
    send,
)
from tests.integration.kafka_io import start_worker, stop_worker
from tests.integration.pipeline import INSTANCE, commands_only, in_process

# A quiet contact centre: no inbound calls, only the commands' calls, SMS and surveys.
EMULATOR = EmulatorConfig(
    instances=(INSTANCE,), agents=2, seed=7, speed=1, inbound_calls_per_minute=0
)


def command_service(
    emulator: EmulatorServer, kafka: KafkaSettings, topics: TopicSettings, **commands: Any
) -> Settings:
    """The service for commands alone, on this test's topics."""
    settings = commands_only(emulator, kafka.bootstrap_servers, **commands)
    return settings.model_copy(update={"topics": topics})


async def prepared(emulator: EmulatorServer, settings: Settings, appraisals: int) -> list[str]:
    """The topics created and `appraisals` calls placed to survey: their contact ids."""
    await ensure_topics(settings.kafka, settings.topics)
    return await seed_calls(emulator, settings.ccc, appraisals)


async def answered(
    found: Answers, sent: dict[Where, Message], service: asyncio.Task[None], times: int = 1
) -> None:
    async def check() -> bool:
        assert not service.done(), service  # the worker must keep running whatever comes
        await found.poll()
        return found.answered(sent, times)

    await eventually(check, deadline_s=60)
    await found.poll()  # a rejected result may follow its DLQ record


async def test_mixed_commands_under_faults_each_run_at_most_once_and_are_answered_once(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    """500 messages: 350 valid commands of five shapes, 50 second copies of some of them,
    100 invalid ones of eight kinds; CCC throttles 10% and fails 10% (503 or 500) of calls."""
    async with EmulatorServer(EMULATOR) as emulator:
        settings = command_service(emulator, kafka_settings, topic_settings)
        acids = await prepared(emulator, settings, 140)
        messages = mixed_commands(500, acids, seed=1, tag=uuid.uuid4().hex[:6])
        await command_faults(emulator, throttle_rate=0.1, error_rate=0.1)
        async with in_process(settings) as (_, service), answers(settings) as found:
            sent = await send(settings, messages)
            await answered(found, sent, service)
        seen = await effects(emulator)

    firsts = check_answers(sent, found)
    check_effects(sent, firsts, seen, seeded=set(acids) | seeded_callees(seen))
    statuses = Counter(r["data"]["status"] for r in found.distinct().values())
    assert statuses == expected_statuses(sent, firsts)
    assert (statuses["duplicate"], statuses["rejected"]) == (50, 88)  # 100 less 12 not JSON
    assert sum(len(letters) for letters in found.dead.values()) == 100
    # The faults were met: throttling retried to success, and each 5xx (500 or 503) ended
    # its command indeterminate, never sent again.
    codes = seen.codes()
    assert codes["Throttling.User"] > 0, codes
    assert codes["ServiceUnavailable"] > 0, codes
    assert codes["InternalError"] > 0, codes
    assert any(d["status"] == "succeeded" and d["attempts"] > 1 for d in firsts.values())
    server_errors = sum(codes[code] for code in SERVER_ERRORS)
    assert statuses["indeterminate"] == server_errors, (statuses, codes)
    assert statuses["succeeded"] > 0.7 * len(firsts), statuses


def seeded_callees(seen: Effects) -> set[str]:
    """The seed calls' marks (callees starting 136): placed by the test, not by a command."""
    return {mark for mark in seen.executed if mark.startswith("136")}


# -- two worker processes, one killed -----------------------------------------------------


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if f'"{event}"' in line and line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                found.append(entry)
    return found


def commands_assigned(log: Path) -> list[dict[str, Any]]:
    """The command workers' assignments, in the order they came."""
    assigned = log_events(log, "kafka_partitions_assigned")
    return [entry for entry in assigned if entry["consumer"] == "commands"]


def assignment(log: Path) -> set[str]:
    """The partitions a worker was last assigned."""
    assigned = commands_assigned(log)
    return set(assigned[-1]["partitions"]) if assigned else set()


def unanswered(found: Answers, sent: dict[Where, Message]) -> dict[str, list[int]]:
    """The offsets of the messages still without their answer, by topic partition."""
    missing: dict[str, list[int]] = {}
    for (topic, partition, offset), message in sorted(sent.items()):
        if not found.answered({(topic, partition, offset): message}):
            missing.setdefault(f"{topic}:{partition}", []).append(offset)
    return missing


async def test_two_workers_one_killed_mid_run_and_restarted_still_run_each_command_once(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings, tmp_path: Path
) -> None:
    """Two `ccc-bridge run` processes share the group; one is killed with SIGKILL while
    commands run (each call held 50 ms by CCC) and restarted at once, as a supervisor does."""
    concurrency = 4
    async with EmulatorServer(EMULATOR) as emulator:
        settings = command_service(
            emulator, kafka_settings, topic_settings, concurrency=concurrency,
            session_timeout_ms=6000,
        )  # fmt: skip
        acids = await prepared(emulator, settings, 84)
        messages = mixed_commands(300, acids, seed=2, tag=uuid.uuid4().hex[:6])
        await command_faults(emulator, latency_ms=50, throttle_rate=0.05, error_rate=0.05)
        config = tmp_path / "service.yaml"
        logs = [tmp_path / name for name in ("a.log", "b.log", "a2.log")]
        workers = [await start_worker(settings, config, log) for log in logs[:2]]
        try:

            async def both_assigned() -> bool:
                for worker in workers:
                    assert worker.returncode is None, logs
                a, b = assignment(logs[0]), assignment(logs[1])
                return bool(a) and bool(b) and not a & b and len(a | b) == 3 * 2

            await eventually(both_assigned, deadline_s=60)
            async with answers(settings) as found:
                sent = await send(settings, messages)

                async def a_at_work() -> bool:
                    return len(log_events(logs[0], "command_executed")) >= 10

                await eventually(a_at_work, deadline_s=60)
                workers[0].kill()
                await workers[0].wait()
                await found.poll()
                assert not found.answered(sent), "the kill came after the last command"
                workers.append(await start_worker(settings, config, logs[2]))

                async def all_answered() -> bool:
                    for worker in workers[1:]:
                        assert worker.returncode is None, logs
                    await found.poll()
                    return found.answered(sent)

                try:
                    await eventually(all_answered, deadline_s=60)
                except AssertionError:
                    raise AssertionError(f"never answered: {unanswered(found, sent)}") from None
                await found.poll()
        finally:
            codes = [await stop_worker(worker) for worker in workers]
        seen = await effects(emulator)

    assert codes == [-signal.SIGKILL, 0, 0]  # the survivors stop cleanly
    firsts = check_answers(sent, found)
    check_effects(sent, firsts, seen, seeded=seeded_callees(seen))
    statuses = Counter(r["data"]["status"] for r in found.distinct().values())
    assert statuses == expected_statuses(sent, firsts)
    mark = {m.command_id: m.mark or "" for m in sent.values()}
    # Unknown outcomes only where a call was cut off by the kill (or CCC answered a 5xx).
    interrupted = [d for d in firsts.values() if (d["error"] or {}).get("code") == "Interrupted"]
    never_sent = [d["command_id"] for d in interrupted if not seen.requests[mark[d["command_id"]]]]
    assert interrupted, "the kill cut no call short: it tested nothing"
    # A worker holds at most `concurrency` commands calling CCC and as many `started` and
    # waiting for a call slot: only those can be cut off. Some of either may never have
    # reached CCC (one holding a slot may not have sent yet), so only their sum is bound.
    assert len(interrupted) <= 2 * concurrency, (
        f"{len(interrupted)} indeterminate by the kill, {len(never_sent)} of them never sent "
        f"to CCC, e.g. {never_sent[:5]}"
    )
    assert commands_assigned(logs[2]), "the restarted worker took part"


# -- SIGTERM -------------------------------------------------------------------------------


async def test_sigterm_finishes_calls_in_flight_and_exits_0_within_the_budget(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings, tmp_path: Path
) -> None:
    """SIGTERM while commands run (each call held 100 ms by CCC): the calls in flight finish
    and are answered, the rest are left uncommitted, the process exits 0 within its budget,
    and the next start answers the rest: nothing lost, nothing run twice, nothing left
    `indeterminate`."""
    budget_s = 15.0
    async with EmulatorServer(EMULATOR) as emulator:
        settings = command_service(emulator, kafka_settings, topic_settings, concurrency=4)
        settings = settings.model_copy(
            update={"lifecycle": LifecycleSettings(shutdown_budget_s=budget_s)}
        )
        acids = await prepared(emulator, settings, 42)
        messages = mixed_commands(150, acids, seed=3, tag=uuid.uuid4().hex[:6])
        await command_faults(emulator, latency_ms=100)
        config = tmp_path / "service.yaml"
        logs = [tmp_path / "first.log", tmp_path / "second.log"]
        first = await start_worker(settings, config, logs[0])
        try:
            await eventually(lambda: _assigned(first, logs[0]), deadline_s=60)
            async with answers(settings) as found:
                sent = await send(settings, messages)

                async def at_work() -> bool:
                    return len(log_events(logs[0], "command_executed")) >= 10

                await eventually(at_work, deadline_s=60)
                signalled = asyncio.get_running_loop().time()
                first.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(first.wait(), timeout=budget_s + 10)
                took = asyncio.get_running_loop().time() - signalled
                assert (code, took < budget_s) == (0, True), (code, took)
                await found.poll()
                assert not found.answered(sent), "SIGTERM came after the last command"
                second = await start_worker(settings, config, logs[1])
                try:

                    async def all_answered() -> bool:
                        assert second.returncode is None, logs[1]
                        await found.poll()
                        return found.answered(sent)

                    await eventually(all_answered, deadline_s=60)
                    await found.poll()
                finally:
                    assert await stop_worker(second) == 0
        finally:
            await stop_worker(first)
        seen = await effects(emulator)
    firsts = check_answers(sent, found)
    check_effects(sent, firsts, seen, seeded=seeded_callees(seen))
    statuses = Counter(r["data"]["status"] for r in found.distinct().values())
    assert statuses == expected_statuses(sent, firsts)
    assert "indeterminate" not in statuses, "an orderly stop cuts no call short"


async def _assigned(worker: asyncio.subprocess.Process, log: Path) -> bool:
    assert worker.returncode is None, f"the worker ended: see {log}"
    return bool(assignment(log))


# -- every message read again -------------------------------------------------------------


async def test_every_message_read_again_is_answered_with_the_same_ids_and_no_ccc_call(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    """Once all is answered, a second consumer group reads every command topic from the
    start (as a reset of the group's offsets would): nothing reaches CCC again, and each
    message's answer comes again under the same id."""
    async with EmulatorServer(EMULATOR) as emulator:
        settings = command_service(emulator, kafka_settings, topic_settings)
        acids = await prepared(emulator, settings, 28)
        messages = mixed_commands(100, acids, seed=3, tag=uuid.uuid4().hex[:6])
        await command_faults(emulator, throttle_rate=0.1, error_rate=0.1)
        async with answers(settings) as found:
            async with in_process(settings) as (_, service):
                sent = await send(settings, messages)
                await answered(found, sent, service)
            before = await effects(emulator)
            first_answers = {where: list(results) for where, results in found.results.items()}
            check_answers(sent, found)
            again = settings.model_copy(
                update={"commands": CommandSettings(group_id=f"again-{uuid.uuid4().hex[:12]}")}
            )
            async with in_process(again) as (_, service):
                await answered(found, sent, service, times=2)
        after = await effects(emulator)

    assert after == before  # no request for a command action, nothing done in CCC
    check_answers(sent, found)  # still one id per message, the answers as before
    for where, message in sent.items():
        results, dead = found.results.get(where, []), found.dead.get(where, [])
        context = f"{message}: {results} {dead}"
        if message.role == "invalid":
            assert len(dead) == 2, context  # the same dlq_id: checked above
        assert len(results) == (0 if message.command_id is None else 2), context
        if message.role == "first":
            # The ledger's result, published again as it was.
            assert results[1] == results[0] == first_answers[where][0], context
        elif message.role == "copy":
            assert results[1]["data"]["original"] == results[0]["data"]["original"], context


async def test_the_lag_gauge_counts_commands_backed_up_behind_a_slow_ccc_then_drains(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    """One call at a time, each held 300 ms by CCC: twelve dial commands back up, the gauge
    of their topic shows it, and it returns to 0 once every one is answered."""
    async with EmulatorServer(EMULATOR) as emulator:
        settings = command_service(emulator, kafka_settings, topic_settings, concurrency=1)
        await prepared(emulator, settings, 0)
        await fault(emulator, action="DialEx", latency_ms=300)
        dial = settings.topics.name("commands_dial")
        messages = [dial_message(f"lag-{uuid.uuid4().hex[:8]}-{n}", n) for n in range(12)]

        def lag() -> float:
            value = REGISTRY.get_sample_value("ccc_bridge_command_consumer_lag", {"topic": dial})
            return -1.0 if value is None else value

        async with in_process(settings) as (_, service), answers(settings) as found:
            sent = await send(settings, messages)

            async def backed_up() -> bool:
                assert not service.done(), service
                return lag() >= 6

            await eventually(backed_up, deadline_s=30)
            await answered(found, sent, service)

            async def drained() -> bool:
                return lag() == 0

            await eventually(drained, deadline_s=10)
    assert {r["status"] for r in found.all_results()} == {"succeeded"}


def dial_message(command_id: str, serial: int) -> Message:
    callee = f"13770{serial:06d}"
    value = json.dumps(dial_ex(command_id, callee)).encode()
    return Message("dial", command_id.encode(), value, "first", command_id, callee, "DialEx")
