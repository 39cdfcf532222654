"""The docs against the code. docs/configuration.md is what scripts/config_reference.py
renders from the settings model: a setting added, renamed or changed without running it, or
without a docstring, fails here, and so does a row that is no setting. So does a CCC action
called, or no longer called, that docs/deploy.md's RAM policy does not match, and a relative
link in README.md or docs/ to a file or heading that is not there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scripts.config_reference import REFERENCE, env_var, leaves, render
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_configuration_reference_is_the_one_the_settings_model_renders() -> None:
    """Regenerate with `python -m scripts.config_reference` after changing a setting."""
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run python -m scripts.config_reference"
    )


def documented() -> dict[str, str]:
    """Setting path -> the env var its row gives, from the committed reference."""
    names: dict[str, str] = {}
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            [setting] = re.findall(r"`([a-z_.]+)`", cells[0])
            [env] = re.findall(r"`([A-Z_]+)`", cells[1])
            assert setting not in names, f"{setting} has two rows"
            names[setting] = env
    return names


def test_every_setting_has_a_row_and_every_row_is_a_setting() -> None:
    rows = documented()
    settings = {path for path, _ in leaves(Settings)}
    assert sorted(settings - rows.keys()) == [], "settings missing from docs/configuration.md"
    assert sorted(rows.keys() - settings) == [], "rows of docs/configuration.md that are no setting"


def test_each_row_gives_its_settings_real_env_var() -> None:
    wrong = {path: given for path, given in documented().items() if given != env_var(path)}
    assert wrong == {}


def test_every_setting_says_what_it_does() -> None:
    assert [path for path, field in leaves(Settings) if not field.description] == []


def test_the_ram_policy_allows_exactly_the_ccc_actions_the_service_calls() -> None:
    """docs/deploy.md's least policy: an action the code starts calling, or stops, fails here."""
    service = ROOT / "service"
    called: set[str] = set()
    for path in service.rglob("*.py"):
        if "emulator" in path.parts:
            continue  # it answers CCC's actions, it does not call them
        text = path.read_text(encoding="utf-8")
        called |= set(re.findall(r'\b(?:call|iter_items|pages)\(\s*"([A-Za-z0-9]+)"', text))
        called |= set(re.findall(r'\baction = "([A-Za-z0-9]+)"', text))  # commands' calls
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
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


LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(markdown: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation but `-` and `_` dropped, spaces `-`."""
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", markdown), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_anchors_follow_githubs_rule() -> None:
    assert anchors("# Commands in\n## A real centre's size (issue 13)\n### `webhooks`") == {
        "commands-in",
        "a-real-centres-size-issue-13",
        "webhooks",
    }


def reaches(doc: Path, target: str) -> bool:
    """A link's file exists in the repository, and so does its heading if it names one."""
    path, _, anchor = target.partition("#")
    linked = (doc.parent / path).resolve() if path else doc
    if not linked.exists() or ROOT not in linked.parents:
        return False
    return not anchor or anchor in anchors(linked.read_text(encoding="utf-8"))


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_relative_links_reach_a_file_and_heading(doc: Path) -> None:
    targets = LINK.findall(FENCE.sub("", doc.read_text(encoding="utf-8")))
    relative = [target for target in targets if not re.match(r"[a-z]+:", target)]  # https:
    assert [target for target in relative if not reaches(doc, target)] == []
