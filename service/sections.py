"""The base of every settings section. Each package that owns a section (service/ccc,
service/kafka, service/webhooks) builds on it; service/settings.py composes them all."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # A field's docstring (the string literal right below it) is its description: what
    # docs/configuration.md says of the setting (scripts/config_reference.py writes it).
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
