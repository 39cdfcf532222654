"""The base of every settings section. Each package that owns a section (service/ccc,
service/kafka, service/webhooks) builds on it; service/settings.py composes them all."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
