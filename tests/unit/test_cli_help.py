"""Every option of every subcommand says what it does in `--help`, and `--version` answers."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from service.cli import build_parser
from service.version import service_version


def parsers(
    parser: argparse.ArgumentParser, name: str = "ccc-bridge"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from parsers(child, f"{name} {child_name}")


def without_help(parser: argparse.ArgumentParser) -> list[str]:
    """Each option (or positional) of `parser` and its subcommands that has no help."""
    return [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, each in parsers(parser)
        for action in each._actions
        if not isinstance(action, argparse._SubParsersAction)
        and not (action.help and action.help.strip())
    ]


def test_every_option_of_every_subcommand_has_help() -> None:
    parser = build_parser()
    walked = {name for name, _ in parsers(parser)}
    assert {"ccc-bridge dlq show", "ccc-bridge dlq replay", "ccc-bridge config check"} <= walked
    assert without_help(parser) == []


def test_the_walk_finds_an_option_without_help_in_a_nested_subcommand() -> None:
    parser = argparse.ArgumentParser()
    tool = parser.add_subparsers().add_parser("tool", help="a tool")
    tool.add_subparsers().add_parser("act", help="an act").add_argument("--quiet", "-q")
    assert without_help(parser) == ["ccc-bridge tool act --quiet/-q"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"ccc-bridge {service_version()}\n"
