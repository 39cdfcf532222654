"""Write docs/configuration.md from the settings model: one row per setting, with its
environment variable, its default and its description (the field's docstring).

    python -m scripts.config_reference           # rewrite docs/configuration.md
    python -m scripts.config_reference --check   # exit 1 if the committed file differs

tests/unit/test_docs.py holds the committed file equal to `render()`, so a setting added,
renamed or changed without running this fails there.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from scripts.generated import write_or_check
from service.settings import ENV_PREFIX, Settings
from service.webhooks.settings import WebhookEndpoint

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "configuration.md"

HEADER = """\
# Configuration reference

<!-- Generated from the settings model by `python -m scripts.config_reference`: edit the
field's docstring in service/, not this file (tests/unit/test_docs.py compares them). -->

One settings model (`service/settings.py`, with the `ccc`, `kafka`, `topics` and `webhooks`
sections in `service/ccc/settings.py`, `service/kafka/settings.py` and
`service/webhooks/settings.py`), read from, lowest to highest precedence:

1. built-in defaults (the tables below);
2. [`config/default.yaml`](../config/default.yaml), which repeats some of them, so that an
   installed wheel (which has no `config/`) acts alike;
3. `--config FILE` (YAML, the same sections; merged key by key);
4. secret files in `$CCC_BRIDGE_SECRETS_DIR` (default `/run/secrets/ccc-bridge`), one file per
   setting named like its environment variable (`CCC_BRIDGE_CCC__ACCESS_KEY_SECRET`), as a
   Kubernetes secret mount gives them;
5. environment variables `CCC_BRIDGE_<SECTION>__<FIELD>` (deeper:
   `CCC_BRIDGE_CCC__RETRY__MAX_ATTEMPTS`); lists and objects as JSON.

**Secret.** marks a setting that is or holds a credential (`SecretStr`: never in logs, errors
or reprs). Give those as secret files or environment variables, never in a config file.
`null` is YAML's and JSON's null. Webhook endpoints are described in
[webhooks.md](webhooks.md), the poller split in [replicas.md](replicas.md), the chart's
values in [deploy.md](deploy.md).
"""


SETTING_HEADER = ("setting", "env var", "default", "what")


def leaves(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """(dotted path, field) of every setting, in declaration order; a nested section's
    fields, not the section."""
    found: list[tuple[str, FieldInfo]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += leaves(annotation, f"{prefix}{name}.")
        else:
            found.append((prefix + name, field))
    return found


def env_var(path: str) -> str:
    return ENV_PREFIX + path.upper().replace(".", "__")


def holds_secret(annotation: Any) -> bool:
    """A SecretStr, or a list, union or model with one inside."""
    if annotation is SecretStr:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(holds_secret(field.annotation) for field in annotation.model_fields.values())
    origin = get_origin(annotation)
    if origin in {list, dict, Union, types.UnionType, Annotated}:
        return any(holds_secret(arg) for arg in get_args(annotation))
    return False


def default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]  # none takes validated data
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`"


def description(path: str, field: FieldInfo) -> str:
    if not field.description:
        raise ValueError(f"{path} has no docstring: say what it does below the field")
    text = " ".join(field.description.split())
    if holds_secret(field.annotation):
        text = f"**Secret.** {text}"
    return text.replace("|", "\\|")


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines) + "\n"


def endpoint_fields() -> str:
    """webhooks.endpoints is one setting, a list: the fields of each of its items."""
    rows: list[tuple[str, ...]] = [
        (f"`{name}`", default(field), description(f"webhooks.endpoints[].{name}", field))
        for name, field in WebhookEndpoint.model_fields.items()
    ]
    return (
        "\n### Each of `webhooks.endpoints`\n\n"
        "The fields of one endpoint, inside that JSON or YAML list (no variable of their "
        "own):\n\n" + table(("field", "default", "what"), rows)
    )


def render() -> str:
    """The whole of docs/configuration.md."""
    sections: dict[str, list[tuple[str, ...]]] = {}
    for path, field in leaves(Settings):
        row = (f"`{path}`", f"`{env_var(path)}`", default(field), description(path, field))
        sections.setdefault(path.split(".", 1)[0], []).append(row)
    parts = [HEADER]
    for section, rows in sections.items():
        parts.append(f"\n## `{section}`\n\n{table(SETTING_HEADER, rows)}")
        if section == "webhooks":
            parts.append(endpoint_fields())
    return "".join(parts)


def main() -> int:
    description = __doc__.splitlines()[0] if __doc__ else ""
    return write_or_check(REFERENCE, render, description, "scripts.config_reference")


if __name__ == "__main__":
    sys.exit(main())
