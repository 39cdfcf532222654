"""A strict check of a JSON value against a catalogue response shape (see service/ccc/catalog.py):
every key of the shape present, no key outside it, lists as lists, leaves of the exact type."""

from __future__ import annotations

from typing import Any

# bool is an int in Python, so integers and numbers exclude it explicitly.
_LEAVES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "number": (float,),
    "boolean": (bool,),
}


def shape_errors(value: Any, shape: Any, path: str = "$") -> list[str]:
    """Every mismatch between `value` and `shape`, each prefixed with its JSON path."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        errors = [f"{path}.{key}: missing" for key in shape if key not in value]
        errors += [f"{path}.{key}: not in the shape" for key in value if key not in shape]
        for key in shape:
            if key in value:
                errors += shape_errors(value[key], shape[key], f"{path}.{key}")
        return errors
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [
            e for i, item in enumerate(value) for e in shape_errors(item, shape[0], f"{path}[{i}]")
        ]
    wrong_bool = isinstance(value, bool) and shape != "boolean"
    if wrong_bool or not isinstance(value, _LEAVES[shape]):
        return [f"{path}: expected {shape}, got {type(value).__name__} {value!r}"]
    return []


def assert_shape(value: Any, shape: Any) -> None:
    errors = shape_errors(value, shape)
    assert not errors, "response does not match its shape:\n" + "\n".join(errors)
