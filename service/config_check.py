"""`ccc-bridge config check`: validate the layered settings without Kafka or CCC, and print
the effective configuration, secrets masked, each value with the layer it came from
(docs/config-check.md)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.console import StartupError, add_config_argument, say, settings_from, startup_failed
from service.settings import ENV_PREFIX, file_layers, outer_layers, secrets_dir

MASK = "**********"  # what pydantic shows for a SecretStr
# Values shown masked by their name too, whatever their type: a secret typed as plain text
# by mistake must not reach a terminal or a CI log. Paths to such files are not secrets.
SENSITIVE = re.compile(r"secret|password|passphrase|token|credential|private", re.IGNORECASE)
NOT_SENSITIVE = re.compile(r"_(file|dir|arn)$")
# In a URL, its user info and its query (which often carries a token).
URL_USER = re.compile(r"(?<=://)[^@/?#]*@")
URL_QUERY = re.compile(r"\?[^#]*")

Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    values: Mapping[str, Any]
    by_variable: bool = False  # named by the variable (or file) of the setting: env, secrets


def leaves(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Each value of a settings dump by its dotted path; lists of sections by index, other
    lists and empty mappings whole."""
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            yield from leaves(inner, (*path, str(key)))
    elif isinstance(value, list) and any(isinstance(item, Mapping) for item in value):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, str(index)))
    else:
        yield path, value


def set_by(layer: Mapping[str, Any], path: Path) -> Path | None:
    """The part of `path` a layer set: all of it, or the start of it where the layer gave a
    whole value (a list in YAML, JSON in an env var); None if the layer left it alone."""
    node: Any = layer
    for depth, key in enumerate(path):
        if isinstance(node, Mapping):
            matched = {str(k).lower(): v for k, v in node.items()}.get(key.lower(), _ABSENT)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            matched = node[int(key)]
        else:
            return path[:depth]
        if matched is _ABSENT:
            return None
        node = matched
    return path


_ABSENT = object()


def source(layers: Sequence[Layer], path: Path) -> str:
    """The name of the highest layer that set `path`."""
    for layer in reversed(layers):
        part = set_by(layer.values, path)
        if part is not None:
            variable = ENV_PREFIX + "__".join(p.upper() for p in part)
            return layer.name + variable if layer.by_variable else layer.name
    return "default"


def masked(path: Path, value: Any) -> Any:
    if not isinstance(value, str):
        return value  # a number, a flag or unset: no secret
    name = path[-1] if path else ""
    if SENSITIVE.search(name) and not NOT_SENSITIVE.search(name):
        return MASK
    if "://" in value:
        return URL_QUERY.sub(f"?{MASK}", URL_USER.sub(f"{MASK}@", value))
    return value


def effective(dump: Mapping[str, Any], layers: Sequence[Layer]) -> list[tuple[str, str, str]]:
    """Each setting's dotted name, its value as JSON (masked) and the layer it came from."""
    return [
        (".".join(path), json.dumps(masked(path, value)), source(layers, path))
        for path, value in leaves(dump)
    ]


def add_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "config",
        help="check the configuration",
        description="The layered settings: built-in defaults, config/default.yaml, --config "
        "FILE, secret files, env vars (docs/config-check.md).",
    )
    actions = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate the settings and print them with the layer of each value",
        description="Validate the settings as `run` would load them (exit 0, or 2 naming each "
        "bad field) and print the effective configuration, secrets masked, each value with "
        "the layer it came from. Needs neither Kafka nor CCC.",
    )
    add_config_argument(check)
    check.set_defaults(func=run)


async def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        secrets, env = outer_layers()
    except StartupError as error:
        return startup_failed("config check", error)
    layers = [
        *(Layer(name, values) for name, values in file_layers(args.config)),
        Layer(f"secret file {secrets_dir()}/", secrets, by_variable=True),
        Layer("env ", env, by_variable=True),
    ]
    rows = effective(settings.model_dump(mode="json"), layers)
    width = max(len(name) for name, _, _ in rows)
    for name, value, layer in rows:
        say(f"{name:<{width}} = {value}  ({layer})")
    return 0
