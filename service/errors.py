"""Errors any layer may raise; this module imports nothing, so every package can use it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it."""


def first_cause(error: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group, or the error itself: what to name when
    a supervised task ends everything."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
