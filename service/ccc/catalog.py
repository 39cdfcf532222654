"""The CCC 2017-07-05 action catalogue: one table drives the client's typed models and the
emulator's routing, so 89 actions are data, not 89 hand-written classes.

`actions.json` beside this file is generated from ../shared/ccc-api/actions.json by
scripts/build_catalog.py. Request models use snake_case field names and accept the wire
(PascalCase) names too; response models keep the XML-heritage wrappers reachable
(`resp.data.list.real_time_agent_state`) and `resp.items()` gives the plain typed list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

API_VERSION = "2017-07-05"

# Actions that only read. Everything else may act in CCC (place a call, send an SMS, change
# configuration) and is retried only where CCC provably did not act: never after a 5xx,
# unless `ccc.retry.side_effects_on_server_errors` opts in.
READ_ONLY_PREFIXES = ("List", "Get", "Find", "Download", "Pick", "Generate")

_SCALARS: dict[str, type] = {
    "string": str,
    "integer": int,
    "long": int,
    "number": float,
    "boolean": bool,
}


def snake_case(name: str) -> str:
    """`RealTimeAgentState` -> `real_time_agent_state`, `TURNServer` -> `turn_server`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def is_read_only(action: str) -> bool:
    return action.startswith(READ_ONLY_PREFIXES)


class WireError(ValueError):
    """A request parameter is missing or malformed on the wire."""

    def __init__(self, param: str, reason: str, *, missing: bool = False) -> None:
        super().__init__(f"{param}: {reason}")
        self.param = param
        self.reason = reason
        self.missing = missing


class UnknownActionError(KeyError):
    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action

    def __str__(self) -> str:
        return f"unknown CCC {API_VERSION} action {self.action!r}"


def _text_param(value: Any) -> Any:
    """String parameters accept a list (sent comma-separated, as AgentIds or PhoneNumbers
    expect) or a dict (sent as a JSON string, as TemplateParam expects)."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


TextParam = Annotated[str, BeforeValidator(_text_param)]


class WireModel(BaseModel):
    """A CCC response object: tolerant of fields newer than the catalogue."""

    model_config = ConfigDict(
        extra="allow",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        coerce_numbers_to_str=True,
    )


class CccResponse(WireModel):
    """Fields every 2017-07-05 action returns; subclasses add the action's own."""

    __list_path__: ClassVar[tuple[str, ...]] = ()
    __page_path__: ClassVar[tuple[str, ...] | None] = None

    request_id: str | None = Field(default=None, alias="RequestId")
    success: bool | None = Field(default=None, alias="Success")
    code: str | None = Field(default=None, alias="Code")
    message: str | None = Field(default=None, alias="Message")
    http_status_code: int | None = Field(default=None, alias="HttpStatusCode")

    if TYPE_CHECKING:
        # The action's own fields are built from the catalogue at runtime.
        def __getattr__(self, name: str) -> Any: ...

    def items(self) -> list[Any]:
        """The action's main list with its wrappers peeled off (empty if absent)."""
        if not self.__list_path__:
            return []
        node: Any = self
        for name in self.__list_path__:
            node = getattr(node, name, None)
            if node is None:
                return []
        return list(node)

    def page(self) -> tuple[int, int, int] | None:
        """(total_count, page_number, page_size) for paged actions, else None."""
        if self.__page_path__ is None:
            return None
        node: Any = self
        for name in self.__page_path__:
            node = getattr(node, name, None)
            if node is None:
                return None
        return (node.total_count or 0, node.page_number or 0, node.page_size or 0)


class CccRequest(BaseModel):
    """A request's API parameters. Unknown names are refused so a typo never goes silent."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: str
    required: bool
    repeat_list: bool

    @property
    def field_name(self) -> str:
        return snake_case(self.name)

    @property
    def item_type(self) -> str:
        return self.type.removeprefix("array<").removesuffix(">")

    def annotation(self) -> Any:
        if self.type.startswith("array<"):
            return list.__class_getitem__(_SCALARS[self.item_type])
        if self.type == "string":
            return TextParam
        return _SCALARS[self.type]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    method: str
    params: tuple[ParamSpec, ...]
    response: Mapping[str, Any] = field(repr=False)

    @property
    def read_only(self) -> bool:
        return is_read_only(self.name)

    @cached_property
    def request_model(self) -> type[CccRequest]:
        fields: dict[str, Any] = {}
        for param in self.params:
            annotation = param.annotation()
            if param.required:
                fields[param.field_name] = (annotation, Field(alias=param.name))
            else:
                fields[param.field_name] = (annotation | None, Field(None, alias=param.name))
        return create_model(f"{self.name}Request", __base__=CccRequest, **fields)

    @cached_property
    def response_model(self) -> type[CccResponse]:
        common = set(CccResponse.model_fields)
        fields: dict[str, Any] = {
            snake_case(key): _field(f"{self.name}{key}", key, shape)
            for key, shape in self.response.items()
            if snake_case(key) not in common
        }
        model = create_model(f"{self.name}Response", __base__=CccResponse, **fields)
        model.__list_path__ = tuple(snake_case(k) for k in _list_path(self.response))
        page = _page_path(self.response)
        model.__page_path__ = None if page is None else tuple(snake_case(k) for k in page)
        return model

    @property
    def paged(self) -> bool:
        return (
            any(p.name == "PageNumber" for p in self.params)
            and _page_path(self.response) is not None
        )

    def request(self, params: Mapping[str, Any] | CccRequest | None = None) -> CccRequest:
        if isinstance(params, CccRequest):
            if not isinstance(params, self.request_model):
                raise TypeError(f"{type(params).__name__} is not a {self.name} request")
            return params
        return self.request_model.model_validate(dict(params or {}))

    def to_wire(self, request: CccRequest) -> dict[str, str]:
        """Flatten to wire parameters: lists as Name.1, Name.2 ...; booleans lowercase."""
        wire: dict[str, str] = {}
        for param in self.params:
            value = getattr(request, param.field_name)
            if value is None:
                continue
            if isinstance(value, list):
                for index, item in enumerate(value, start=1):
                    wire[f"{param.name}.{index}"] = _scalar_to_wire(item)
            else:
                wire[param.name] = _scalar_to_wire(value)
        return wire

    def from_wire(self, flat: Mapping[str, str]) -> dict[str, Any]:
        """Parse received wire parameters into typed values keyed by wire name.

        Raises WireError naming the first missing or malformed parameter.
        """
        parsed: dict[str, Any] = {}
        for param in self.params:
            if param.repeat_list:
                items = _collect_repeat_list(param.name, flat)
                values = [_parse_scalar(f"{param.name}.{n}", param.item_type, v) for n, v in items]
                if values:
                    parsed[param.name] = values
                elif param.required:
                    raise WireError(f"{param.name}.1", "is mandatory for this action", missing=True)
                continue
            raw = flat.get(param.name)
            if raw is None or (raw == "" and param.type != "string"):
                if param.required:
                    raise WireError(param.name, "is mandatory for this action", missing=True)
                continue
            parsed[param.name] = _parse_scalar(param.name, param.type, raw)
        return parsed


def _scalar_to_wire(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _collect_repeat_list(name: str, flat: Mapping[str, str]) -> list[tuple[int, str]]:
    prefix = f"{name}."
    items = []
    for key, value in flat.items():
        if key.startswith(prefix) and key[len(prefix) :].isdigit():
            items.append((int(key[len(prefix) :]), value))
    return sorted(items)


def _parse_scalar(name: str, kind: str, raw: str) -> Any:
    if kind == "boolean":
        lowered = raw.lower()
        if lowered not in {"true", "false"}:
            raise WireError(name, f"must be true or false, got {raw!r}")
        return lowered == "true"
    if kind in {"integer", "long"}:
        try:
            return int(raw)
        except ValueError:
            raise WireError(name, f"must be an integer, got {raw!r}") from None
    return raw


def _field(model_name: str, key: str, shape: Any) -> tuple[Any, Any]:
    """(annotation, FieldInfo) for one response member, building nested models."""
    annotation = _annotation(model_name, shape)
    if isinstance(shape, list):
        return (annotation, Field(default_factory=list, alias=key))
    return (annotation | None, Field(None, alias=key))


def _annotation(model_name: str, shape: Any) -> Any:
    if isinstance(shape, list):
        return list.__class_getitem__(_annotation(model_name, shape[0]))
    if isinstance(shape, dict):
        fields: dict[str, Any] = {
            snake_case(k): _field(f"{model_name}{k}", k, v) for k, v in shape.items()
        }
        return create_model(model_name, __base__=WireModel, **fields)
    return _SCALARS[shape]


def _list_path(shape: Mapping[str, Any]) -> tuple[str, ...]:
    """The shallowest array in the response (outside other arrays): the action's main list."""
    frontier: list[tuple[tuple[str, ...], Any]] = [((), shape)]
    while frontier:
        for path, node in frontier:
            for key, child in node.items():
                if isinstance(child, list):
                    return (*path, key)
        frontier = [
            ((*path, key), child)
            for path, node in frontier
            for key, child in node.items()
            if isinstance(child, dict)
        ]
    return ()


def _page_path(shape: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The object that echoes TotalCount/PageNumber/PageSize (FACTS.md section 7)."""
    for key, child in shape.items():
        if isinstance(child, dict):
            if "TotalCount" in child:
                return (key,)
            inner = _page_path(child)
            if inner is not None:
                return (key, *inner)
    return None


@dataclass(frozen=True)
class Catalog:
    version: str
    actions: Mapping[str, ActionSpec]

    def __getitem__(self, action: str) -> ActionSpec:
        try:
            return self.actions[action]
        except KeyError:
            raise UnknownActionError(action) from None

    def __contains__(self, action: object) -> bool:
        return action in self.actions

    def __iter__(self) -> Any:
        return iter(self.actions.values())


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    actions = {
        name: ActionSpec(
            name=name,
            method=entry["method"],
            params=tuple(
                ParamSpec(
                    name=p["name"],
                    type=p["type"],
                    required=bool(p.get("required", False)),
                    repeat_list=bool(p.get("repeat_list", False)),
                )
                for p in entry["params"]
            ),
            response=entry["response"],
        )
        for name, entry in data["actions"].items()
    }
    return Catalog(version=data["version"], actions=actions)


@cache
def load_catalog() -> Catalog:
    text = resources.files(__package__).joinpath("actions.json").read_text(encoding="utf-8")
    return parse_catalog(json.loads(text))
