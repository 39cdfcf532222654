"""The package layers hold (pyproject.toml's [tool.importlinter] contracts), and Kafka is read
through one consumer runtime: both read from the imports themselves, not from a list."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service"
CONSUMER_RUNTIME = SERVICE / "kafka" / "consumer.py"


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(  # noqa: S603 - the venv's own import-linter on files of ours
        [lint_imports, "--no-cache"],  # the contracts of pyproject.toml, in cwd
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def imports_a_consumer(tree: ast.Module) -> bool:
    """Whether a module imports AIOKafkaConsumer, or anything of aiokafka.consumer."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        if any(
            name in {"aiokafka.AIOKafkaConsumer", "aiokafka.consumer"}
            or name.startswith("aiokafka.consumer.")
            for name in names
        ):
            return True
    return False


def test_only_the_consumer_runtime_imports_a_kafka_consumer() -> None:
    direct = [
        str(path.relative_to(ROOT))
        for path in sorted(SERVICE.rglob("*.py"))
        if path != CONSUMER_RUNTIME and imports_a_consumer(ast.parse(path.read_bytes()))
    ]
    assert direct == []
