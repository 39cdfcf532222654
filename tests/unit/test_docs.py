"""The README's configuration reference names every setting, with its environment variable,
and nothing that is not a setting: a setting added or renamed without its row fails here.
So does a CCC action called, or no longer called, that docs/deploy.md's RAM policy does not
match."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel

from service.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def leaves(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted paths of every setting; a nested section's fields, not the section."""
    found: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= leaves(annotation, f"{prefix}{name}.")
        else:
            found.add(prefix + name)
    return found


def reference_rows() -> list[tuple[str, str]]:
    """(setting cell, env var cell) of each row of the table under '## Configuration'."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows.append((cells[0], cells[1]))
    return rows


def documented() -> dict[str, str]:
    """Setting path -> the env var its row gives (one setting per row)."""
    names: dict[str, str] = {}
    for setting_cell, env_cell in reference_rows():
        [setting] = re.findall(r"`([a-z_.]+)`", setting_cell)
        [env] = re.findall(r"`([A-Z_]+)`", env_cell)
        assert setting not in names, f"{setting} has two rows"
        names[setting] = env
    return names


def env_var(path: str) -> str:
    return ENV_PREFIX + path.upper().replace(".", "__")


def test_every_setting_has_a_row_and_every_row_is_a_setting() -> None:
    rows = documented()
    settings = leaves(Settings)
    assert sorted(settings - rows.keys()) == [], "settings missing from the README"
    assert sorted(rows.keys() - settings) == [], "README rows that are no setting"


def test_each_row_gives_its_settings_real_env_var() -> None:
    wrong = {path: given for path, given in documented().items() if given != env_var(path)}
    assert wrong == {}


def test_the_ram_policy_allows_exactly_the_ccc_actions_the_service_calls() -> None:
    """docs/deploy.md's least policy: an action the code starts calling, or stops, fails here."""
    service = README.parent / "service"
    called: set[str] = set()
    for path in service.rglob("*.py"):
        if "emulator" in path.parts:
            continue  # it answers CCC's actions, it does not call them
        text = path.read_text(encoding="utf-8")
        called |= set(re.findall(r'\b(?:call|iter_items|pages)\(\s*"([A-Za-z0-9]+)"', text))
        called |= set(re.findall(r'\baction = "([A-Za-z0-9]+)"', text))  # commands' calls
    deploy = (README.parent / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = deploy.split("### The RAM policy", 1)[1]
    policy = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    allowed = {
        action.removeprefix("ccc:")
        for statement in policy["Statement"]
        for action in statement["Action"]
        if action.startswith("ccc:")
    }
    assert called, "no CCC call found: the pattern above no longer matches the code"
    assert allowed == called
