"""Validation errors as one line a person can act on: every field and its reason."""

from __future__ import annotations

from pydantic import ValidationError


def field_errors(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
    )
