"""/readyz's verdict: only what serving needs fails it; the rest is told beside it."""

from __future__ import annotations

import asyncio

from service.web import Readiness


def test_ccc_and_consumer_groups_are_told_but_never_make_it_unready() -> None:
    stop = asyncio.Event()
    kafka: list[str | None] = [None]
    readiness = Readiness(
        stop,
        {"kafka": lambda: kafka[0]},
        {"ccc": lambda: "CCC did not answer", "commands": lambda: None},
    )
    assert readiness.problems() == {}
    assert readiness.degraded() == {"ccc": "CCC did not answer"}
    kafka[0] = "Kafka did not answer a metadata request"
    assert readiness.problems() == {"kafka": "Kafka did not answer a metadata request"}
    stop.set()
    assert readiness.problems()["shutdown"] == "the service is stopping"
