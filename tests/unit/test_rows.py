"""The Protocols the pollers read CCC rows through (service/events/rows.py) are what the
client's response models give: each attribute exists there, with the model's own type."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any

import pytest

from service.ccc.catalog import load_catalog
from service.events import rows

CATALOG = load_catalog()
ROWS: dict[str, type] = {
    "ListAgentStates": rows.AgentStateRow,
    "ListAgentEvents": rows.AgentEventRow,
    "ListAgentStateLogs": rows.AgentStateLogEntry,
    "ListCallDetailRecords": rows.CallDetailRecordRow,
    "ListCallEventDetailByContactId": rows.CallEventRow,
    "ListSkillGroupStates": rows.SkillGroupStateRow,
    "ListUsers": rows.UserRow,
}


def item_model(action: str) -> Any:
    """The model of one item of the action's main list (what `response.items()` gives)."""
    model = CATALOG[action].response_model
    node: Any = model
    for name in model.__list_path__:
        node = node.model_fields[name].annotation
        (node,) = (arg for arg in typing.get_args(node) if arg is not type(None))
    return node


def mismatches(expected: Any, actual: Any, where: str) -> list[str]:
    """Where `actual` (a model's annotation) is not `expected` (a Protocol's)."""
    if typing.get_origin(expected) in {typing.Union, types.UnionType}:
        if typing.get_origin(actual) not in {typing.Union, types.UnionType}:
            return [f"{where}: {actual} is never None"]
        [inner] = [arg for arg in typing.get_args(expected) if arg is not type(None)]
        [model_inner] = [arg for arg in typing.get_args(actual) if arg is not type(None)]
        return mismatches(inner, model_inner, where)
    if typing.get_origin(expected) is Sequence:
        if typing.get_origin(actual) is not list:
            return [f"{where}: {actual} is not a list"]
        return mismatches(typing.get_args(expected)[0], typing.get_args(actual)[0], f"{where}[]")
    if getattr(expected, "_is_protocol", False):
        return conformance(expected, actual, where)
    return [] if expected is actual else [f"{where}: the model gives {actual}, not {expected}"]


def conformance(protocol: type, model: Any, where: str) -> list[str]:
    found = []
    for name, member in vars(protocol).items():
        if not isinstance(member, property):
            continue
        expected = typing.get_type_hints(member.fget)["return"]
        field = model.model_fields.get(name)
        if field is None:
            found.append(f"{where}.{name}: not in the model")
        else:
            found += mismatches(expected, field.annotation, f"{where}.{name}")
    return found


@pytest.mark.parametrize("action", ROWS)
def test_each_row_protocol_is_what_the_client_returns(action: str) -> None:
    assert conformance(ROWS[action], item_model(action), action) == []


def test_a_protocol_that_misreads_the_model_is_caught() -> None:
    class Misread(typing.Protocol):
        @property
        def agent_id(self) -> int | None: ...  # a string in the model
        @property
        def dn_typo(self) -> str | None: ...

    assert conformance(Misread, item_model("ListAgentStates"), "row") == [
        "row.agent_id: the model gives <class 'str'>, not <class 'int'>",
        "row.dn_typo: not in the model",
    ]
