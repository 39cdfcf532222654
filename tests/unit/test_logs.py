"""Logs are structured, and values whose key names a secret never reach the output."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from service.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_json_lines_with_secrets_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    structlog.get_logger("t").info(
        "ccc_call", action="DialEx", access_key_secret="s3cr3t", bearer_token="b34r"
    )
    logging.getLogger("aiohttp.client").warning("stdlib too")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "ccc_call"
    assert lines[0]["action"] == "DialEx"
    assert lines[0]["access_key_secret"] == "***"
    assert lines[0]["bearer_token"] == "***"
    assert lines[1]["event"] == "stdlib too"
    assert lines[1]["logger"] == "aiohttp.client"


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", "json")
    structlog.get_logger("t").info("quiet")
    structlog.get_logger("t").warning("loud")
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert events == ["loud"]


def test_at_debug_aiokafka_requests_stay_unlogged(capsys: pytest.CaptureFixture[str]) -> None:
    # aiokafka's request reprs carry a SASL PLAIN login's password.
    configure_logging("debug", "json")
    conn = logging.getLogger("aiokafka.conn")
    try:
        conn.debug("Request 1: SaslAuthenticateRequest_v0(sasl_auth_bytes=b'u\\x00u\\x00pw')")
        structlog.get_logger("t").debug("ours")
        events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
        assert events == ["ours"]
    finally:
        conn.setLevel(logging.NOTSET)
