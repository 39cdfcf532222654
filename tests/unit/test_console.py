"""What every `ccc-bridge` process sets up before its subcommand runs."""

from __future__ import annotations

import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from service.cli import build_parser
from service.console import GC_YOUNG_THRESHOLD, StartupError, log_options, settings_from
from service.settings import LogSettings


def test_the_cli_freezes_what_it_imported_and_collects_young_objects_less_often(
    tmp_path: Path,
) -> None:
    """In a process of its own: the tuning is process-wide and would reach pytest's."""
    script = (
        "import gc, sys; from service.cli import main; "
        "code = main(['schemas', '--out', sys.argv[1]]); "
        "print(code, gc.get_threshold()[0], gc.get_freeze_count())"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter on a script of ours
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    code, threshold, frozen = (int(word) for word in done.stdout.splitlines()[-1].split())
    assert code == 0
    assert threshold == GC_YOUNG_THRESHOLD
    assert frozen > 10_000  # modules, models and the catalogue, left out of every collection


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--log-level", "debug", "--log-format", "json"],
        ["--log-level", "debug", "--log-format", "json", "run"],
        ["--log-format", "json", "run", "--log-level", "debug"],
    ],
)
def test_logging_flags_parse_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert log_options(args, LogSettings(level="error", format="console")) == ("debug", "json")


@pytest.mark.parametrize(
    ("argv", "configured", "expected"),
    [
        (["run"], LogSettings(level="debug", format="console"), ("debug", "console")),
        (["run", "--log-level", "error"], LogSettings(level="debug"), ("error", "auto")),
        (["run"], None, ("info", "auto")),  # before settings are read
        (["demo"], None, ("warning", "auto")),  # its own default: the screen is the event view
    ],
)
def test_log_options_command_line_over_settings_over_the_commands_default(
    argv: list[str], configured: LogSettings | None, expected: tuple[str, str]
) -> None:
    assert log_options(build_parser().parse_args(argv), configured) == expected


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ('ccc:\n  access_key_secret: "s3cr3t-Value\n', "line 3, column 1: found unexpected end"),
        ("ccc:\n  access_key_secret: s3cr3t-Value: x\n", "line 2, column 34: mapping values"),
        ("ccc:\n  access_key_secret: !s3cr3t-Value\n", "line 2, column 22: could not determine"),
    ],
    ids=["unterminated-quote", "colon-in-value", "unknown-tag"],
)
def test_a_yaml_error_names_file_line_and_column_never_the_content(
    tmp_path: Path, document: str, where: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(document, encoding="utf-8")
    with pytest.raises(StartupError) as raised:
        settings_from(build_parser().parse_args(["run", "--config", str(config)]))
    message = str(raised.value)
    assert f"{config}, {where}" in message
    assert "s3cr3t" not in message
    assert "s3cr3t" not in "".join(traceback.format_exception(raised.value))
