"""The chart's PrometheusRule and Grafana dashboard: the rules are the documented alerts and
pass promtool's checks and unit tests; the dashboard's queries are PromQL over the service's
metrics (tests/integration/test_dashboard.py checks them against a running service)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from promql_parser import parse

from tests.deploy import ROOT
from tests.deploy.chart import CHART, Manifest, only, render
from tests.integration.test_alerts import DOCUMENTED, selectors

MONITORING = {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
DASHBOARD = json.loads((CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))
# ./dev.sh test unpacks it from Debian's prometheus package into the venv.
PROMTOOL = Path(sys.prefix) / "tools" / "promtool"


def promtool(*arguments: str | Path, cwd: Path) -> None:
    found = PROMTOOL if PROMTOOL.exists() else shutil.which("promtool")
    if found is None:
        pytest.fail(
            f"promtool is neither at {PROMTOOL} nor on PATH: ./dev.sh test fetches it from "
            "Debian's prometheus package (apt-get download prometheus; see .venv/promtool.log)"
        )
    done = subprocess.run(  # noqa: S603 - our own arguments
        [found, *arguments], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def rules_file(directory: Path, values: dict[str, Any] = MONITORING) -> Path:
    """The rendered PrometheusRule's spec, which is a Prometheus rule file."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(only(render(values), "PrometheusRule")["spec"]), "utf-8")
    return path


def rules(values: dict[str, Any] = MONITORING) -> list[dict[str, Any]]:
    spec = only(render(values), "PrometheusRule")["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"]]


def test_monitoring_is_optional() -> None:
    kinds = {m["kind"] for m in render()}
    assert "PrometheusRule" not in kinds
    assert len([kind for kind in kinds if kind == "ConfigMap"]) == 1


def test_the_rules_are_the_documented_alerts() -> None:
    assert [(rule["expr"], rule.get("for")) for rule in rules()] == DOCUMENTED


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    promtool("check", "rules", rules_file(tmp_path), cwd=tmp_path)


def test_promtool_runs_the_alerts_unit_tests(tmp_path: Path) -> None:
    rules_file(tmp_path)
    shutil.copy(ROOT / "tests" / "deploy" / "alerts_test.yaml", tmp_path)
    promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)


def test_promtool_fails_a_broken_rule(tmp_path: Path) -> None:
    """So that the checks above can fail."""
    path = rules_file(tmp_path)
    path.write_text(path.read_text("utf-8").replace("max(ccc_bridge_ccc_up)", "max(("), "utf-8")
    with pytest.raises(AssertionError, match=r"CccBridgeCccAway.*could not parse"):
        promtool("check", "rules", path, cwd=tmp_path)


def test_alert_labels_and_rule_labels_are_added() -> None:
    values = MONITORING | {
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "kube-prometheus"},
            "alertLabels": {"team": "contact-centre"},
        },
    }
    manifest = only(render(values), "PrometheusRule")
    assert manifest["metadata"]["labels"]["release"] == "kube-prometheus"
    assert all(rule["labels"]["team"] == "contact-centre" for rule in rules(values))
    assert all(rule["labels"]["severity"] for rule in rules(values))


def dashboard(manifests: list[Manifest]) -> Manifest:
    (found,) = (m for m in manifests if m["metadata"]["name"].endswith("-dashboard"))
    return found


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel.get("targets", [])]


def test_the_dashboard_is_for_grafanas_sidecar() -> None:
    config_map = dashboard(render(MONITORING))
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["ccc-bridge.json"]) == DASHBOARD


def test_every_dashboard_panel_queries_the_service() -> None:
    for panel in DASHBOARD["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
    for query in dashboard_queries():
        names = {selector.name for selector in selectors(parse(query))}
        assert names, query
        assert all(str(name).startswith("ccc_bridge_") for name in names), query
