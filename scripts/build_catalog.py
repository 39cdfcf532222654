"""Regenerate service/ccc/actions.json from ../shared/ccc-api/actions.json.

The packaged catalogue keeps only the seed actions (the API overview) and only what the
client and the emulator read: method, parameters and response shape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "ccc-api" / "actions.json"
TARGET = ROOT / "service" / "ccc" / "actions.json"
PARAM_KEYS = ("name", "type", "required", "repeat_list")


def build(source: dict[str, Any]) -> dict[str, Any]:
    actions = {}
    for action in sorted(source["actions"], key=lambda a: a["action"]):
        if not action["seed"]:
            continue
        params = [
            {key: param[key] for key in PARAM_KEYS if param.get(key) is not None}
            for param in action["params"]
        ]
        actions[action["action"]] = {
            "method": action["method"],
            "params": params,
            "response": action["response"],
        }
    return {"version": source["version"], "actions": actions}


def render(catalog: dict[str, Any]) -> str:
    return json.dumps(catalog, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    source = json.loads(SOURCE.read_text(encoding="utf-8"))
    TARGET.write_text(render(build(source)), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
