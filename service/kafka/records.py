"""Kafka records as the service's consumers see them: frozen values of bytes, made at the edge,
so no handler depends on how a client decodes (or fails to decode) a record."""

from __future__ import annotations

from dataclasses import dataclass

Header = tuple[bytes, bytes | None]  # name and value, both as they were produced


@dataclass(frozen=True, slots=True)
class Record:
    """One record of one partition. `defect` says why a client could not decode it (a header
    name that is not UTF-8, a batch that fails its CRC...): such a record is dead-lettered by
    its handler with that reason, never taken for what it seems to say."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    defect: str | None = None
