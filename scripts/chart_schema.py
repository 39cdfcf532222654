"""Write the `config` and `secrets` sections of helm/ccc-bridge/values.schema.json from the
settings model, so that Helm refuses a misspelt or mistyped setting at install rather than the
pod at start. The rest of the file is written by hand and kept as it is.

    python -m scripts.chart_schema           # rewrite values.schema.json
    python -m scripts.chart_schema --check   # exit 1 if the committed file differs

The model's JSON Schema (draft 2020-12) is adapted to what Helm reads (draft 7): references
inlined, `X or null` written as a type list, and only what validates kept: no titles,
descriptions or defaults (docs/configuration.md has those), no formats draft 7 lacks.
tests/deploy/test_chart.py holds the committed file equal to `generate()`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from scripts.generated import write_or_check
from service.settings import MIN_API_KEY_CHARS, Settings

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "helm" / "ccc-bridge" / "values.schema.json"

ANNOTATIONS = {"title", "description", "default", "examples", "writeOnly", "readOnly"}
DRAFT_7_FORMATS = {"date-time", "date", "time", "email", "hostname", "ipv4", "ipv6", "uri"}
# Settings the chart keeps in its Secret besides those the model marks secret (SecretStr): the
# access key id goes with its secret (templates/_helpers.tpl, ccc-bridge.secretSettings).
ALSO_SECRET = {("ccc", "access_key_id")}
# A secret under `config` passes the schema, so that the templates refuse it with a message
# that says where it belongs (templates/configmap.yaml) rather than "additional property".
MISPLACED_SECRET = {"$comment": "a secret: the chart refuses it here and asks for `secrets`"}
# What the templates read: the probes' admin port and the grace period's budget.
CHART_REQUIRES = {"http": ["port", "admin_port"], "lifecycle": ["shutdown_budget_s"]}
# The service's own rule for an API key (service/settings.py), which a validator enforces.
API_KEY = {"type": "string", "pattern": f"^[!-~]{{{MIN_API_KEY_CHARS},}}$"}

Schema = dict[str, Any]


def target(reference: Schema, defs: Schema) -> Schema:
    found: Schema = defs[reference["$ref"].removeprefix("#/$defs/")]
    return found


def draft_7(node: Any, defs: Schema) -> Any:
    """`node` with references inlined, annotations dropped and `X or null` as a type list."""
    if isinstance(node, list):
        return [draft_7(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return draft_7(target(node, defs), defs)
    out = {
        key: value if key in {"properties", "enum", "pattern"} else draft_7(value, defs)
        for key, value in node.items()
        if key not in ANNOTATIONS and not (key == "format" and value not in DRAFT_7_FORMATS)
    }
    if "properties" in out:
        out["properties"] = {k: draft_7(v, defs) for k, v in out["properties"].items()}
    match out.pop("anyOf", None):
        case [{"type": str(kind), **rest}, {"type": "null"}] if "anyOf" not in rest:
            out |= rest | {"type": [kind, "null"]}
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        case None:
            pass
        case other:
            out["anyOf"] = other
    return out


def is_secret(node: Any, defs: Schema) -> bool:
    """The model marks a secret `writeOnly` (SecretStr), also within lists and objects."""
    if isinstance(node, dict):
        if "$ref" in node:
            return is_secret(target(node, defs), defs)
        return node.get("writeOnly") is True or any(is_secret(v, defs) for v in node.values())
    return isinstance(node, list) and any(is_secret(v, defs) for v in node)


def secret_only(node: Schema) -> Schema:
    """A secret given is never empty: its strings need a character."""
    if node.get("type") in ("string", ["string", "null"]) and "pattern" not in node:
        return {**node, "minLength": max(node.get("minLength", 0), 1)}
    return {
        key: secret_only(value) if isinstance(value, dict) else value for key, value in node.items()
    }


def sections() -> tuple[Schema, Schema]:
    """The `config` and `secrets` schemas: each section's settings, split by secrecy."""
    model = Settings.model_json_schema()
    defs = model["$defs"]
    config: Schema = {}
    secrets: Schema = {}
    for section, reference in model["properties"].items():
        for field, schema in target(reference, defs)["properties"].items():
            secret = is_secret(schema, defs) or (section, field) in ALSO_SECRET
            config.setdefault(section, {})[field] = (
                MISPLACED_SECRET if secret else draft_7(schema, defs)
            )
            if secret:
                secrets.setdefault(section, {})[field] = secret_only(draft_7(schema, defs))
    secrets["http"]["api_keys"]["items"] = API_KEY
    return (
        {
            "type": "object",
            "description": "settings by section, as in config/default.yaml; secrets go under "
            "`secrets`; lists and mappings go to the service as JSON",
            "properties": {
                section: closed(fields, CHART_REQUIRES.get(section, []))
                for section, fields in config.items()
            },
            "required": sorted(CHART_REQUIRES),
            "additionalProperties": False,
        },
        {
            "type": "object",
            "description": "secret settings by section, written to the chart's Secret",
            "properties": {section: closed(fields, []) for section, fields in secrets.items()},
            "additionalProperties": False,
        },
    )


def closed(fields: Schema, required: list[str]) -> Schema:
    section: Schema = {"type": "object", "properties": fields, "additionalProperties": False}
    return section | ({"required": required} if required else {})


def generate(schema: Schema) -> Schema:
    """`schema` (values.schema.json) with its `config` and `secrets` written anew."""
    config, secrets = sections()
    properties = dict(schema["properties"])
    properties["config"], properties["secrets"] = config, secrets
    return {**schema, "properties": properties}


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    def wanted() -> str:
        return render(generate(json.loads(SCHEMA.read_text(encoding="utf-8"))))

    return write_or_check(SCHEMA, wanted, __doc__.splitlines()[0], "scripts.chart_schema")


if __name__ == "__main__":
    sys.exit(main())
