"""The AsyncAPI document, judged by AsyncAPI's own parser (@asyncapi/parser, the library
behind AsyncAPI's CLI and Studio) on the machine's Node.js.

tests/asyncapi/ pins the parser and, in its lock file, everything it needs. The first run
installs them with `npm ci` into .venv (ignored by git), from the npm registry and nothing
else; a change to any file there installs again."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from service.kafka.settings import KafkaSettings
from service.schemas import asyncapi
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tests" / "asyncapi"
PACKAGE_FILES = ("package.json", "package-lock.json", "validate.mjs")
CACHE = ROOT / ".venv" / "asyncapi-parser"
INSTALL_TIMEOUT_S = 240
# Errors and warnings fail. Information and hints pass: the one the document gets is
# `asyncapi-latest-version`, which recommends AsyncAPI 3.1 over the 3.0 it is written in.
FAILING = {"Error", "Warning"}
SETTINGS = Settings(kafka=KafkaSettings(bootstrap_servers="kafka-1:9092"))


def _install() -> Path:
    """The package directory with its node_modules, keyed by the package files' hash. npm
    installs into a staging directory that is then renamed into place, so neither a test run
    alongside nor an interrupted install ever sees half a tree."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.fail("Node.js (node and npm) is needed to run AsyncAPI's own parser")
    digest = hashlib.sha256(b"".join((PACKAGE / name).read_bytes() for name in PACKAGE_FILES))
    key = digest.hexdigest()[:16]
    installed = CACHE / key
    if installed.is_dir():
        return installed
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=CACHE))
    try:
        for name in PACKAGE_FILES:
            shutil.copy(PACKAGE / name, staging / name)
        # No install scripts: the parser needs none, and one of its dependencies' would phone
        # home. Short fetch timeouts, so an unreachable registry fails well within the timeout.
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        command += ["--fetch-timeout=30000", "--fetch-retries=1"]
        try:
            done = subprocess.run(  # noqa: S603 # npm, found on PATH, with fixed arguments
                command,
                cwd=staging,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci did not install tests/asyncapi in {INSTALL_TIMEOUT_S} s")
        if done.returncode != 0:
            pytest.fail(
                f"npm ci could not install tests/asyncapi (AsyncAPI's parser) from the npm "
                f"registry into {CACHE} (exit {done.returncode}):\n{done.stderr[-3000:]}"
            )
        with contextlib.suppress(OSError):  # another test run installed it first
            staging.rename(installed)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for stale in CACHE.iterdir():  # installs of earlier package files
        if not stale.name.startswith(key):
            shutil.rmtree(stale, ignore_errors=True)
    return installed


@pytest.fixture(scope="session")
def parser() -> Path:
    return _install() / "validate.mjs"


def diagnostics(parser: Path, document: dict[str, Any], tmp_path: Path) -> list[dict[str, str]]:
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    done = subprocess.run(  # noqa: S603 # node, found on PATH, runs our own script
        [shutil.which("node") or "node", str(parser), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found: list[dict[str, str]] = json.loads(done.stdout)
    return found


def failing(found: list[dict[str, str]]) -> list[str]:
    return [
        f"{d['severity']} {d['code']} at {d['path']}: {d['message']}"
        for d in found
        if d["severity"] in FAILING
    ]


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 60)  # the first run installs the parser
def test_the_document_passes_asyncapis_own_parser(parser: Path, tmp_path: Path) -> None:
    found = diagnostics(parser, asyncapi(SETTINGS), tmp_path)
    assert failing(found) == []


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 60)
def test_the_parser_refuses_an_openapi_discriminator(parser: Path, tmp_path: Path) -> None:
    """So a pass above means something: pydantic's own discriminator object is an error."""
    document = asyncapi(SETTINGS)
    dial = document["components"]["schemas"]["com.aliyun.ccc.command.dial"]
    dial["discriminator"] = {"propertyName": dial["discriminator"]}
    found = failing(diagnostics(parser, document, tmp_path))
    assert any("discriminator" in line for line in found), found
