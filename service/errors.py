"""Errors any layer may raise; this module imports nothing, so every package can use it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it."""
