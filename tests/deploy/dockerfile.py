"""The Dockerfile by stage, as dockerfile-parse reads it (continuation lines joined)."""

from __future__ import annotations

from dataclasses import dataclass

from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

from tests.deploy import ROOT

DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    name: str
    value: str


def stages() -> list[list[Instruction]]:
    """Each stage's instructions, its FROM first; comments left out."""
    found: list[list[Instruction]] = []
    for item in DockerfileParser(path=str(DOCKERFILE)).structure:
        if item["instruction"] == "FROM":
            found.append([])
        if item["instruction"] != "COMMENT":
            found[-1].append(Instruction(item["instruction"], item["value"]))
    return found


def runtime() -> dict[str, str]:
    """The final stage's instructions by name, the last of each as Docker applies them."""
    return {i.name: i.value for i in stages()[-1]}


def runtime_user() -> tuple[int, int]:
    """USER as (uid, gid): numeric, so Kubernetes can check runAsNonRoot against it."""
    uid, gid = runtime()["USER"].split(":")
    return int(uid), int(gid)
